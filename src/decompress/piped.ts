/**
 * Container bytes in, the original stream out, byte for byte.
 *
 *   await pipeline(new Decompressor({ threads: 4 }).decompress(createReadStream('vm.msz')), process.stdout);
 *
 * This thread parses frame headers and hands each segment (a META frame and the PAYLOAD frame
 * after it) or DATA frame to a worker, which checks, decompresses and splices it; segments are
 * written in file order. Nothing unchecked is written: a segment goes out only after the
 * checksums of its frames passed, and the last segment (it holds QEMU's EOF) is held back until
 * the END frame confirms the length and checksum of the whole stream, so a truncated or damaged
 * container makes `-incoming exec:` fail instead of loading wrong RAM.
 */
import { ChecksumChain, dataChecksum, type DataChecksum } from '../container/checksum.js';
import { CODEC_IDS, type CodecId } from '../codecs/registry.js';
import { ContainerReader, frameRef, type Frame } from '../container/reader.js';
import { ContainerError, CorruptFrameError, FrameOrderError, type FrameRef } from '../container/errors.js';
import { FrameKind, type ContainerInfo } from '../container/format.js';
import { checkEnd, checkKindForMode, checksumError, parseInfo, refPageProblem } from '../container/checks.js';
import { failure } from './frame-failure.js';
import { OrderedQueue } from '../workers/ordered-queue.js';
import { WorkerPool, defaultThreads } from '../workers/pool.js';
import type { FailureReply, Returning, StoredFrame, UnpackReply } from '../workers/protocol.js';
import { SlotPool } from '../workers/slots.js';
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
  /** Raw checksums of the frames, for the END frame's chain. */
  readonly checksums: readonly number[];
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
  private readonly chain = new ChecksumChain();
  private streamBytes = 0;
  private slots = new SlotPool(1 << 20);
  private readonly queue: OrderedQueue<Unpacked>;
  private info: ContainerInfo | undefined;
  /** The container version's checksum: known from the preamble on, before the first frame. */
  private checksum!: DataChecksum;
  private window: PageWindow | undefined;
  /** A META frame waiting to see whether a PAYLOAD frame follows. */
  private meta: Frame | undefined;
  /** The newest segment, written once another one or the END frame confirms it. */
  private held: Buffer | undefined;
  private ready: Buffer[] = [];

  constructor(
    private readonly pool: WorkerPool,
    maxInFlight: number,
    private readonly stats: DecompressStats,
    private readonly onProgress: ((stats: Readonly<DecompressStats>) => void) | undefined,
  ) {
    this.queue = new OrderedQueue(maxInFlight, (unpacked) => this.accept(unpacked));
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
      this.reader.end();
    } catch (error) {
      throw await this.earlierFailure(error);
    }
    if (this.held !== undefined) this.ready.push(this.held);
    this.held = undefined;
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
    const ref = frameRef(frame);
    this.stats.frames++;
    // The reader has checked that frame 0, and only frame 0, is the HEADER.
    if (frame.kind !== FrameKind.HEADER) checkKindForMode(frame.kind, this.info!, ref);
    if (frame.kind === FrameKind.PAYLOAD) {
      const meta = this.meta;
      if (meta === undefined) throw new FrameOrderError('PAYLOAD frame without a META frame before it', ref);
      this.meta = undefined;
      return this.submitSegment(meta, frame);
    }
    if (this.meta !== undefined) {
      const meta = this.meta;
      this.meta = undefined;
      await this.submitSegment(meta, undefined);
    }
    switch (frame.kind) {
      case FrameKind.HEADER:
        this.checksum = dataChecksum(this.reader.version!);
        this.info = parseInfo(frame, ref, this.checksum);
        this.stats.info = this.info;
        // A segment's stored bytes rarely exceed its raw payload: slots that fit from the start.
        this.slots = new SlotPool(Math.min(Math.max(this.info.frameBytes, 1 << 20), 64 << 20) * 1.25);
        if (this.info.dedupWindowPages > 0) this.window = new PageWindow(this.info.dedupWindowPages, this.info.pageSize);
        return;
      case FrameKind.META:
        this.meta = frame;
        return;
      case FrameKind.DATA:
        return this.submitData(frame, ref);
      case FrameKind.END:
        await this.queue.drain();
        this.checkEnd(frame, ref);
        // The last segment goes out once the input has ended too: bytes after END refuse the file.
        return;
    }
  }

  private async submitSegment(meta: Frame, payload: Frame | undefined): Promise<void> {
    const info = this.info!;
    const slot = this.slots.acquire();
    const bytes = slot.view(meta.stored.length + (payload?.stored.length ?? 0));
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
    const job = (this.pool.run(request, [slot.lend()]) as Promise<Returning<UnpackReply | FailureReply>>).then(
      (reply) => {
        slot.restore(reply.returned);
        this.slots.release(slot);
        if (!reply.ok) throw failure(reply, reply.frame === 'payload' && payload ? payload : meta, this.checksum);
        const { bytes, pages } = reply as UnpackReply;
        const checksums = payload ? [meta.rawChecksum, payload.rawChecksum] : [meta.rawChecksum];
        return { ref: metaRef, bytes: asBuffer(bytes), pages, checksums };
      },
    );
    await this.queue.add(job);
  }

  private async submitData(frame: Frame, ref: FrameRef): Promise<void> {
    if (frame.codec === CODEC_IDS.none) {
      const actual = this.checksum.of(frame.stored);
      if (actual !== frame.rawChecksum) throw checksumError('stored bytes fail their checksum', ref, this.checksum, frame.rawChecksum, actual);
      return this.queue.add(Promise.resolve({ ref, bytes: frame.stored, pages: undefined, checksums: [frame.rawChecksum] }));
    }
    const slot = this.slots.acquire();
    const bytes = slot.view(frame.stored.length);
    frame.stored.copy(bytes);
    const job = (this.pool.run({ op: 'decompress', frame: this.stored(frame, bytes) }, [slot.lend()]) as Promise<Returning<UnpackReply | FailureReply>>).then(
      (reply) => {
        slot.restore(reply.returned);
        this.slots.release(slot);
        if (!reply.ok) throw failure(reply, frame, this.checksum);
        return { ref, bytes: asBuffer((reply as UnpackReply).bytes), pages: undefined, checksums: [frame.rawChecksum] };
      },
    );
    await this.queue.add(job);
  }

  /** A segment or DATA frame, in file order. */
  private accept(unpacked: Unpacked): void {
    const { bytes, pages, ref } = unpacked;
    if (pages !== undefined) this.resolvePages(bytes, pages, ref);
    for (const checksum of unpacked.checksums) this.chain.add(checksum);
    this.streamBytes += bytes.length;
    if (this.held !== undefined) this.ready.push(this.held);
    this.held = bytes;
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
      const page = window.get(distance);
      if (page === undefined) {
        throw new CorruptFrameError(`a page reference reaches ${distance} stored pages back`, ref, {
          expected: `at most ${Math.min(window.count, window.capacity)} (the page window)`,
          actual: distance,
        });
      }
      const problem = refPageProblem(page, distance, this.checksum, pages[i + 2]!);
      if (problem !== undefined) throw new CorruptFrameError(problem, ref);
      page.copy(bytes, at);
    }
  }

  private checkEnd(frame: Frame, ref: FrameRef): void {
    checkEnd(frame, frame.stored, ref, this.checksum, this.streamBytes, this.chain.value);
  }

  private stored(frame: Frame, bytes: Buffer): StoredFrame {
    return {
      codec: frame.codec as CodecId,
      checksum: this.checksum.version,
      stored: bytes,
      rawLength: frame.rawLength,
      rawChecksum: frame.rawChecksum,
      storedChecksum: frame.storedChecksum,
    };
  }
}
