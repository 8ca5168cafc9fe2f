/**
 * Container bytes in, the original stream out, byte for byte.
 *
 *   await pipeline(new Decompressor({ threads: 4 }).decompress(createReadStream('vm.msz')), process.stdout);
 *
 * This thread parses frame headers (ContainerReader), walks them (container-walk.ts: the
 * pairing, the END check and the holding back it shares with direct mode) and hands each
 * segment (a META frame and the PAYLOAD frame after it) or DATA frame to a worker, which checks,
 * decompresses and splices it; segments are written in file order. Nothing unchecked is
 * written: a segment goes out only after the checksums of its frames passed, and the newest
 * one is held until the next one or the END frame confirms it (the last holds QEMU's EOF), so
 * a truncated or damaged container makes `-incoming exec:` fail instead of loading wrong RAM.
 */
import { CODEC_IDS, type CodecId } from '../codecs/registry.js';
import { ContainerReader, frameRef, type Frame } from '../container/reader.js';
import { ContainerError, CorruptFrameError, type FrameRef } from '../container/errors.js';
import { FrameKind, type ContainerInfo, type FrameHeader } from '../container/format.js';
import { checksumError, refPageProblem } from '../container/checks.js';
import { ContainerWalk, type WalkStep } from './container-walk.js';
import { failure } from './frame-failure.js';
import { OrderedQueue } from '../workers/ordered-queue.js';
import { WorkerPool, defaultThreads } from '../workers/pool.js';
import type { FailureReply, Returning, StoredFrame, UnpackReply } from '../workers/protocol.js';
import { BufferPool } from '../bytes/buffer-pool.js';
import { asBuffer } from '../bytes/transfer.js';
import { PageWindow } from '../container/page-window.js';

export interface DecompressOptions {
  threads?: number;
  /** A pool to run on instead of starting one (it is left running); `threads` is then ignored. */
  pool?: WorkerPool;
  /** Segments being decompressed or waiting to be written at once; default 2 × threads + 2. */
  maxInFlight?: number;
  onProgress?: (stats: Readonly<DecompressStats>) => void;
}

export interface DecompressStats {
  /** Container bytes read. */
  bytesIn: number;
  /** Stream bytes written. */
  bytesOut: number;
  frames: number;
  info: ContainerInfo | undefined;
}

interface Unpacked {
  readonly ref: FrameRef;
  readonly bytes: Buffer;
  readonly pages: Float64Array | undefined;
  /** The frames it came from, for the END frame's chain. */
  readonly frames: readonly FrameHeader[];
}

export class Decompressor {
  readonly stats: DecompressStats = { bytesIn: 0, bytesOut: 0, frames: 0, info: undefined };
  private readonly threads: number;
  private readonly maxInFlight: number;

  constructor(private readonly options: DecompressOptions = {}) {
    this.threads = options.pool?.size ?? options.threads ?? defaultThreads();
    this.maxInFlight = options.maxInFlight ?? 2 * this.threads + 2;
  }

  async *decompress(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Buffer> {
    const pool = this.options.pool ?? new WorkerPool(this.threads);
    try {
      yield* new Run(pool, this.maxInFlight, this.stats, this.options.onProgress).decompress(input);
    } finally {
      if (pool !== this.options.pool) await pool.close();
    }
  }
}

/** The state of one decompression. */
class Run {
  private readonly reader = new ContainerReader();
  /** Stored frames on their way to a worker (a buffer comes back with each reply). */
  private slots: BufferPool;
  private readonly queue: OrderedQueue<Unpacked>;
  /** The walk over the frames: made at the HEADER frame (the preamble gave the version). */
  private walk!: ContainerWalk<Frame, Buffer>;
  private window: PageWindow | undefined;
  /** The segment the END frame confirmed: it goes out once the input has ended too. */
  private last: Buffer | undefined;
  private ready: Buffer[] = [];

  constructor(
    private readonly pool: WorkerPool,
    private readonly maxInFlight: number,
    private readonly stats: DecompressStats,
    private readonly onProgress: ((stats: Readonly<DecompressStats>) => void) | undefined,
  ) {
    this.queue = new OrderedQueue(maxInFlight, (unpacked) => this.accept(unpacked));
    this.slots = new BufferPool(maxInFlight + 2, 1 << 20);
  }

  async *decompress(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of input) {
        const bytes = asBuffer(chunk);
        this.stats.bytesIn += bytes.length;
        for (const frame of this.reader.push(bytes)) {
          await this.handle(frame);
          yield* this.flush();
        }
      }
      // Bytes after END refuse the file: the last segment waits for this.
      this.reader.end();
    } catch (error) {
      throw await this.earlierFailure(error);
    }
    if (this.last !== undefined) this.ready.push(this.last);
    this.last = undefined;
    yield* this.flush();
  }

  /**
   * Frame headers are read ahead of the workers: a problem found in a header may lie after a
   * frame still being checked. The first problem in file order is the one to report.
   */
  private async earlierFailure(error: unknown): Promise<unknown> {
    // A failure of the queue came in file order already.
    if (!(error instanceof ContainerError) || this.queue.failed) return error;
    try {
      await this.queue.drain();
    } catch (earlier) {
      return earlier;
    }
    return error;
  }

  private flush(): Buffer[] {
    const out = this.ready;
    if (out.length === 0) return out;
    this.ready = [];
    for (const bytes of out) this.stats.bytesOut += bytes.length;
    this.onProgress?.(this.stats);
    return out;
  }

  private async handle(frame: Frame): Promise<void> {
    this.stats.frames++;
    // The reader has checked that frame 0, and only frame 0, is the HEADER.
    if (frame.kind === FrameKind.HEADER) {
      this.walk = new ContainerWalk(this.reader.version!);
      const info = this.walk.header(frame);
      this.stats.info = info;
      // A segment's stored bytes rarely exceed its raw payload: slots that fit from the start.
      this.slots = new BufferPool(this.maxInFlight + 2, Math.min(Math.max(info.frameBytes, 1 << 20), 64 << 20) * 1.25);
      if (info.dedupWindowPages > 0) this.window = new PageWindow(info.dedupWindowPages, info.pageSize, this.walk.window);
      return;
    }
    for (const step of this.walk.next(frame)) await this.submit(step);
  }

  private async submit(step: WalkStep<Frame>): Promise<void> {
    switch (step.kind) {
      case 'segment':
        return this.submitSegment(step.meta, step.payload);
      case 'data':
        return this.submitData(step.frame, frameRef(step.frame));
      case 'end':
        await this.queue.drain();
        this.last = this.walk.end(step.frame, step.frame.stored);
    }
  }

  private async submitSegment(meta: Frame, payload: Frame | undefined): Promise<void> {
    const info = this.walk.info;
    const bytes = this.slots.take(meta.stored.length + (payload?.stored.length ?? 0));
    meta.stored.copy(bytes, 0);
    payload?.stored.copy(bytes, meta.stored.length);
    const request = {
      op: 'splice' as const,
      meta: this.stored(meta, bytes.subarray(0, meta.stored.length)),
      payload: payload && this.stored(payload, bytes.subarray(meta.stored.length)),
      pageSize: info.pageSize,
      window: this.window !== undefined,
    };
    const metaRef = frameRef(meta);
    const job = (this.pool.run(request, [bytes.buffer as ArrayBuffer]) as Promise<Returning<UnpackReply | FailureReply>>).then((reply) => {
      this.slots.give(reply.returned);
      if (!reply.ok) throw failure(reply, reply.frame === 'payload' && payload ? payload : meta, this.walk.checksum);
      const { bytes, pages } = reply as UnpackReply;
      return { ref: metaRef, bytes: asBuffer(bytes), pages, frames: payload ? [meta, payload] : [meta] };
    });
    await this.queue.add(job);
  }

  private async submitData(frame: Frame, ref: FrameRef): Promise<void> {
    const checksum = this.walk.checksum;
    if (frame.codec === CODEC_IDS.none) {
      const actual = checksum.of(frame.stored);
      if (actual !== frame.rawChecksum) throw checksumError('stored bytes fail their checksum', ref, checksum, frame.rawChecksum, actual);
      return this.queue.add(Promise.resolve({ ref, bytes: frame.stored, pages: undefined, frames: [frame] }));
    }
    const bytes = this.slots.take(frame.stored.length);
    frame.stored.copy(bytes);
    const job = (this.pool.run({ op: 'decompress', frame: this.stored(frame, bytes) }, [bytes.buffer as ArrayBuffer]) as Promise<Returning<UnpackReply | FailureReply>>).then((reply) => {
      this.slots.give(reply.returned);
      if (!reply.ok) throw failure(reply, frame, checksum);
      return { ref, bytes: asBuffer((reply as UnpackReply).bytes), pages: undefined, frames: [frame] };
    });
    await this.queue.add(job);
  }

  /** A segment or DATA frame, in file order: the walk holds the newest until the next one. */
  private accept(unpacked: Unpacked): void {
    const { bytes, pages, ref } = unpacked;
    if (pages !== undefined) this.resolvePages(bytes, pages, ref);
    this.ready.push(...this.walk.accept(bytes, bytes.length, unpacked.frames, false));
  }

  /** Copies REF pages in from the window and records the stored pages in it, in cut order. */
  private resolvePages(bytes: Buffer, pages: Float64Array, ref: FrameRef): void {
    const window = this.window!;
    const pageSize = window.pageSize;
    for (let i = 0; i < pages.length; i += 3) {
      const at = pages[i]!;
      const distance = pages[i + 1]!;
      if (distance === 0) {
        window.push(bytes.subarray(at, at + pageSize));
        continue;
      }
      const page = window.reach(distance);
      const problem = typeof page === 'string' ? page : refPageProblem(page, distance, this.walk.checksum, pages[i + 2]!);
      if (problem !== undefined) throw new CorruptFrameError(problem, ref);
      (page as Buffer).copy(bytes, at);
    }
  }

  private stored(frame: Frame, bytes: Buffer): StoredFrame {
    return {
      codec: frame.codec as CodecId,
      checksum: this.walk.checksum.version,
      stored: bytes,
      rawLength: frame.rawLength,
      rawChecksum: frame.rawChecksum,
      storedChecksum: frame.storedChecksum,
    };
  }
}
