/**
 * Direct mode of the decompressor: a container *file* into an output *file descriptor*, which is
 * what `-incoming "exec:migstream decompress FILE"` runs. The main thread only reads and checks
 * frame headers (positional reads) and orders the work; each worker reads its segment's frames
 * from the file itself, checks and decompresses them, and, when its turn comes, writes the
 * segment to the fd with one gathered write of views (no spliced copy). No segment bytes cross
 * threads, and read buffers are reused, which spares the copies and page faults that dominate
 * the general path (decompressor.ts).
 *
 * Same guarantees as the general path: frames are checked before their bytes are written; the
 * last segment is written only after the END frame confirmed the whole container. Containers
 * with a page window (dedup) need the pages in one place: run() returns false for them and the
 * caller uses the general path.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { ChecksumChain } from './checksum.js';
import type { CodecId } from './codecs.js';
import { checkFrameHeader, checkPreamble, frameRef, type Frame } from './container-reader.js';
import type { DecompressOptions, DecompressStats } from './decompressor.js';
import { checkEnd, failure, parseInfo } from './frame-checks.js';
import { FrameOrderError, TruncatedContainerError, type FrameRef } from './errors.js';
import { FRAME_HEADER_LENGTH, FrameKind, PREAMBLE_LENGTH, type FrameHeader } from './format.js';
import { OrderedQueue } from './ordered.js';
import { WorkerPool, defaultThreads } from './pool.js';
import type { FailureReply, FileFrame, LoadReply } from './protocol.js';
import { MigstreamError } from '../stream/errors.js';

interface Located extends FrameHeader {
  readonly offset: number;
}

interface Loaded {
  readonly key: number;
  readonly worker: number;
  readonly length: number;
  readonly checksums: readonly number[];
}

function readAt(fd: number, position: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, out, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return out.subarray(0, done);
}

/** An errno-style error, so the CLI reports EPIPE and friends as it does for streams. */
function ioError(reply: FailureReply): Error {
  return Object.assign(new Error(reply.message), { code: reply.code ?? 'EIO' });
}

export class DirectDecompressor {
  readonly stats: DecompressStats = { bytesIn: 0, bytesOut: 0, frames: 0, info: undefined };
  private readonly threads: number;
  private readonly maxInFlight: number;

  constructor(private readonly options: Omit<DecompressOptions, 'pool'> = {}) {
    this.threads = options.threads ?? defaultThreads();
    this.maxInFlight = options.maxInFlight ?? 2 * this.threads + 2;
  }

  /** Decompresses the container at `path` into `outFd`; false (nothing written) when it needs the general path. */
  async run(path: string, outFd: number): Promise<boolean> {
    const fd = openSync(path, 'r');
    try {
      return await new DirectRun(fd, fstatSync(fd).size, outFd, this.stats, this.options.onProgress).run(this.threads, this.maxInFlight);
    } finally {
      closeSync(fd);
    }
  }
}

class DirectRun {
  private offset = PREAMBLE_LENGTH;
  private number = 0;
  private readonly chain = new ChecksumChain();
  private streamBytes = 0;
  private held: Loaded | undefined;
  private pool: WorkerPool | undefined;

  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly outFd: number,
    private readonly stats: DecompressStats,
    private readonly onProgress: ((stats: Readonly<DecompressStats>) => void) | undefined,
  ) {}

  async run(threads: number, maxInFlight: number): Promise<boolean> {
    const preamble = readAt(this.fd, 0, PREAMBLE_LENGTH);
    if (preamble.length < PREAMBLE_LENGTH) {
      throw new TruncatedContainerError(preamble.length === 0 ? 'the input is empty' : `the input ends inside the preamble (${preamble.length} bytes)`, { frame: 0, offset: 0 });
    }
    checkPreamble(preamble);
    const first = this.next()!;
    const info = parseInfo(this.withStored(first), frameRef(first));
    this.stats.info = info;
    if (info.dedupWindowPages > 0) return false;

    const pool = new WorkerPool(threads);
    this.pool = pool;
    try {
      const queue = new OrderedQueue<Loaded>(maxInFlight, (loaded) => this.accept(loaded));
      let meta: Located | undefined;
      for (;;) {
        const frame = this.next();
        if (frame === undefined) {
          throw new TruncatedContainerError(`the input ends after frame ${this.number - 1} without an END frame`, { frame: this.number, offset: this.offset });
        }
        const ref = frameRef(frame);
        if (frame.kind === FrameKind.PAYLOAD) {
          if (meta === undefined) throw new FrameOrderError('PAYLOAD frame without a META frame before it', ref);
          await queue.add(this.load([meta, frame], false, info.pageSize));
          meta = undefined;
          continue;
        }
        if (meta !== undefined) await queue.add(this.load([meta], false, info.pageSize));
        meta = undefined;
        if (frame.kind === FrameKind.META) meta = frame;
        else if (frame.kind === FrameKind.DATA) await queue.add(this.load([frame], true, info.pageSize));
        else if (frame.kind === FrameKind.END) {
          await queue.drain();
          this.checkEnd(frame, ref);
          if (this.held !== undefined) await this.write(this.held);
          this.held = undefined;
          return true;
        }
      }
    } finally {
      this.pool = undefined;
      await pool.close();
    }
  }

  /** The next frame header, checked; undefined at the end of the file. */
  private next(): Located | undefined {
    if (this.offset >= this.size) return undefined;
    const where = { frame: this.number, offset: this.offset };
    const bytes = readAt(this.fd, this.offset, FRAME_HEADER_LENGTH);
    if (bytes.length < FRAME_HEADER_LENGTH) {
      throw new TruncatedContainerError(`the input ends inside a frame header (${bytes.length} of ${FRAME_HEADER_LENGTH} bytes)`, where);
    }
    const header = checkFrameHeader(bytes, this.number, this.offset);
    const present = this.size - this.offset - FRAME_HEADER_LENGTH;
    if (present < header.storedLength) {
      throw new TruncatedContainerError(`the input ends inside the frame: ${present} of ${header.storedLength} stored bytes present`, frameRef({ ...header, offset: this.offset }));
    }
    const located = { ...header, offset: this.offset };
    this.offset += FRAME_HEADER_LENGTH + header.storedLength;
    this.number++;
    this.stats.bytesIn = this.offset;
    this.stats.frames = this.number;
    return located;
  }

  private withStored(frame: Located): Frame {
    return { ...frame, stored: readAt(this.fd, frame.offset + FRAME_HEADER_LENGTH, frame.storedLength) };
  }

  private load(frames: Located[], data: boolean, pageSize: number): Promise<Loaded> {
    const files: FileFrame[] = frames.map((frame) => ({
      codec: frame.codec as CodecId,
      position: frame.offset + FRAME_HEADER_LENGTH,
      storedLength: frame.storedLength,
      rawLength: frame.rawLength,
      rawChecksum: frame.rawChecksum,
      storedChecksum: frame.storedChecksum,
    }));
    const key = frames[0]!.number;
    return this.pool!.runTracked({ op: 'load', fd: this.fd, key, data, frames: files, pageSize }).then(({ reply, worker }) => {
      if (!reply.ok) {
        if (reply.kind === 'io') throw new MigstreamError('ERR_IO', `reading container frame ${key}: ${reply.message}`);
        const blamed = reply.frame === 'payload' ? frames[1]! : frames[0]!;
        throw failure(reply, this.withStored(blamed));
      }
      return { key, worker, length: (reply as LoadReply).length, checksums: frames.map((frame) => frame.rawChecksum) };
    });
  }

  /** In file order: the previous segment is now confirmed by this one, so it is written. */
  private async accept(loaded: Loaded): Promise<void> {
    this.streamBytes += loaded.length;
    for (const checksum of loaded.checksums) this.chain.add(checksum);
    const previous = this.held;
    this.held = loaded;
    if (previous !== undefined) await this.write(previous);
  }

  private async write(segment: Loaded): Promise<void> {
    const reply = await this.pool!.runOn(segment.worker, { op: 'write', fd: this.outFd, key: segment.key });
    if (!reply.ok) throw ioError(reply);
    this.stats.bytesOut += segment.length;
    this.onProgress?.(this.stats);
  }

  private checkEnd(frame: Located, ref: FrameRef): void {
    checkEnd(frame, this.withStored(frame).stored, ref, this.streamBytes, this.chain.value);
    if (this.offset !== this.size) {
      throw new FrameOrderError('data after the END frame', { frame: this.number, offset: this.offset }, { actual: `${this.size - this.offset} more bytes` });
    }
  }
}
