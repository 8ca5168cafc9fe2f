/**
 * Direct mode of the decompressor: a container *file* into an output *file descriptor*, which is
 * what `-incoming "exec:migstream decompress FILE"` runs. Made for the restore's critical path:
 *
 *   - no worker threads: the main thread reads each frame (positional reads) into buffers it
 *     reuses, and libuv's thread pool checks and decompresses it (the native codecs,
 *     src/native/codec.ts frameDecodeAsync), a segment ahead, into buffers reused too: no
 *     thread (and no V8 instance) starts, and little fresh memory page-faults (the window's
 *     PAYLOAD buffers, below, are most of it).
 *   - a segment goes out as one gathered write of ranges (its META structure bytes, its PAYLOAD
 *     bytes, and for a REF cut the page in an earlier PAYLOAD buffer): nothing is spliced, and
 *     no JS object is made per range (a filled guest's segment has two per page).
 *   - the write runs on libuv's thread pool (src/native/fd.ts writeRanges, blocking on the pipe
 *     to QEMU), while this thread decodes the next segment.
 *   - containers with a page window (dedup) keep the PAYLOAD buffers that hold the window's
 *     pages instead of a copy of them; where those buffers hold few window pages (disk chunks
 *     with a RAM page here and there), boundWindow copies the pages out, so the window keeps at
 *     most WINDOW_SLACK × W × pageSize bytes, whatever the stream's layout.
 *
 * Same guarantees as the piped path (piped.ts; both walk the frames with container-walk.ts): every frame is checked before any of
 * its bytes is written, and the last segment (it holds QEMU's EOF) is written only after the
 * END frame confirmed the whole container, so a damaged file makes QEMU's load fail instead of
 * completing with wrong RAM. The other segments go out as soon as they are checked: the first
 * bytes reach QEMU after one segment, not two.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { frameDecodeAsync } from '../native/codec.js';
import { writeRanges } from '../native/fd.js';
import { CODEC_IDS, hasNativeCodec, type CodecId } from '../codecs/registry.js';
import { checkFrameHeader, checkPreamble, frameRef, type Frame } from '../container/reader.js';
import type { DecompressStats } from './piped.js';
import type { DataChecksum } from '../container/checksum.js';
import { ContainerWalk, type Located } from './container-walk.js';
import { failure } from './frame-failure.js';
import { AFTER_PREAMBLE, ContainerError, CorruptFrameError, FrameOrderError, TruncatedContainerError } from '../container/errors.js';
import { FRAME_HEADER_LENGTH, PREAMBLE_LENGTH, type ContainerInfo } from '../container/format.js';
import { unpack } from './unpack-frame.js';
import { LentBuffers, type DirectMemory, type Lent } from './lent-buffers.js';
import { segmentRanges, type SegmentRanges } from './splice.js';

export type { DirectMemory } from './lent-buffers.js';

export interface DirectOptions {
  onProgress?: (stats: Readonly<DecompressStats>) => void;
}

/** A segment checked and ready, its bytes as ranges of lent buffers (each pinned once). */
interface Ready extends SegmentRanges {
  readonly lent: Set<Lent>;
}

/** A segment (or DATA frame) whose frames are being checked and decompressed. */
interface Decoding {
  readonly frames: Located[];
  readonly data: boolean;
  readonly decoded: Promise<Lent[]>;
}

/**
 * Segments started ahead of the one being finished: with one, the next segment decompresses on
 * the pool while this thread lays out the current one and another pool thread writes the one
 * before. More would only take CPU from QEMU's loader, the slower side on two cores.
 */
const DECODE_DEPTH = 1;

function readFully(fd: number, into: Buffer, position: number): number {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

export class DirectDecompressor {
  readonly stats: DecompressStats = { bytesIn: 0, bytesOut: 0, frames: 0, info: undefined };
  readonly memory: DirectMemory = { peakBufferBytes: 0 };

  constructor(private readonly options: DirectOptions = {}) {}

  /** Decompresses the container at `path` into `outFd`. */
  async run(path: string, outFd: number): Promise<void> {
    const fd = openSync(path, 'r');
    try {
      await this.runFd(fd, outFd);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Decompresses the container in the regular file open as `inFd` (e.g. stdin redirected from
   * a file), from its first byte whatever the descriptor's offset, into `outFd`.
   */
  async runFd(inFd: number, outFd: number): Promise<void> {
    await new DirectRun(inFd, fstatSync(inFd).size, outFd, this.stats, this.memory, this.options.onProgress).run();
  }
}

class DirectRun {
  private offset = PREAMBLE_LENGTH;
  private number = 0;
  private readonly header = Buffer.alloc(FRAME_HEADER_LENGTH);
  /** The walk over the frames (container-walk.ts), from the preamble on. */
  private walk!: ContainerWalk<Located, Ready>;
  private buffers!: LentBuffers;
  private info!: ContainerInfo;
  private checksum!: DataChecksum;
  /** Segments whose frames are being checked and decompressed, in file order. */
  private readonly decoding: Decoding[] = [];
  /** The END frame's header was read: the segment finished last holds EOF. */
  private atEnd = false;
  /** A problem was found: segments still finished are checked, not written. */
  private failing = false;
  /** A segment failed its checks (the first problem in file order). */
  private segmentFailed = false;
  /** The write under way. */
  private writing: Promise<void> = Promise.resolve();
  private writingError: unknown;

  constructor(
    private readonly fd: number,
    private readonly size: number,
    private readonly outFd: number,
    private readonly stats: DecompressStats,
    private readonly memory: DirectMemory,
    private readonly onProgress: ((stats: Readonly<DecompressStats>) => void) | undefined,
  ) {}

  async run(): Promise<void> {
    const preamble = Buffer.alloc(PREAMBLE_LENGTH);
    const got = readFully(this.fd, preamble, 0);
    if (got < PREAMBLE_LENGTH) {
      throw new TruncatedContainerError(got === 0 ? 'the input is empty' : `the input ends inside the preamble (${got} bytes)`, { frame: 0, offset: 0 });
    }
    this.walk = new ContainerWalk(checkPreamble(preamble));
    this.checksum = this.walk.checksum;
    const first = this.next();
    if (first === undefined) throw new TruncatedContainerError(AFTER_PREAMBLE, { frame: 0, offset: PREAMBLE_LENGTH });
    this.info = this.walk.header(this.withStored(first));
    this.stats.info = this.info;
    this.buffers = new LentBuffers(this.info, this.walk.window, this.checksum, this.memory);
    try {
      for (;;) {
        const frame = this.next();
        if (frame === undefined) {
          throw new TruncatedContainerError(`the input ends after frame ${this.number - 1} without an END frame`, { frame: this.number, offset: this.offset });
        }
        for (const step of this.walk.next(frame)) {
          if (step.kind === 'segment') await this.decode(step.payload ? [step.meta, step.payload] : [step.meta], false);
          else if (step.kind === 'data') await this.decode([step.frame], true);
          else return await this.end(step.frame);
        }
      }
    } catch (error) {
      throw await this.earlierFailure(error);
    } finally {
      // On failure, a write under way finishes (it holds checked bytes only); nothing more starts.
      await this.writing.catch(() => {});
    }
  }

  /** The END frame: what is under way finishes, END's checks, then the last segment goes. */
  private async end(frame: Located): Promise<void> {
    this.atEnd = true;
    while (this.decoding.length > 0) await this.finishOldest();
    await this.settle();
    const last = this.walk.end(frame, this.withStored(frame).stored);
    if (this.offset !== this.size) {
      throw new FrameOrderError('data after the END frame', { frame: this.number, offset: this.offset }, { actual: `${this.size - this.offset} more bytes` });
    }
    if (last !== undefined) this.startWrite(last);
    await this.settle();
  }

  /**
   * Starts checking and decompressing a segment's frames (or a DATA frame), then finishes the
   * oldest segments in file order while more than DECODE_DEPTH are under way.
   */
  private async decode(frames: Located[], data: boolean): Promise<void> {
    const decoded = Promise.all(frames.map((frame, i) => this.frame(frame, data ? undefined : i === 0 ? 'meta' : 'payload')));
    // A failure is reported when the segment's turn comes, after the segments before it.
    decoded.catch(() => {});
    this.decoding.push({ frames, data, decoded });
    while (this.decoding.length > DECODE_DEPTH) await this.finishOldest();
  }

  /**
   * The next header is read while the segment before it is still being checked: a problem
   * found in a header may lie after a frame that is damaged too. The first problem in file
   * order is the one to report; the segments finished to learn it are not written.
   */
  private async earlierFailure(error: unknown): Promise<unknown> {
    // A segment's own failure came in file order already.
    if (!(error instanceof ContainerError) || this.segmentFailed) return error;
    this.failing = true;
    try {
      while (this.decoding.length > 0) await this.finishOldest();
    } catch (earlier) {
      return earlier;
    }
    return error;
  }

  private async finishOldest(): Promise<void> {
    try {
      await this.finishOldestSegment();
    } catch (error) {
      this.segmentFailed = true;
      throw error;
    }
  }

  private async finishOldestSegment(): Promise<void> {
    const { frames, data, decoded } = this.decoding.shift()!;
    const lent = await decoded;
    const ready = data ? this.dataReady(frames[0]!, lent[0]!) : this.segment(frames[0]!, frames[1], lent[0]!, lent[1]);
    if (this.info.dedupWindowPages > 0) this.buffers.boundWindow();
    await this.accept(ready, frames, this.atEnd && this.decoding.length === 0);
  }

  /** The next frame header, checked; undefined at the end of the file. */
  private next(): Located | undefined {
    if (this.offset >= this.size) return undefined;
    const where = { frame: this.number, offset: this.offset };
    const got = readFully(this.fd, this.header, this.offset);
    if (got < FRAME_HEADER_LENGTH) {
      throw new TruncatedContainerError(`the input ends inside a frame header (${got} of ${FRAME_HEADER_LENGTH} bytes)`, where);
    }
    const header = checkFrameHeader(this.header, this.number, this.offset);
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

  /** A small frame (HEADER, END) with its stored bytes. */
  private withStored(frame: Located): Frame {
    const stored = Buffer.alloc(frame.storedLength);
    readFully(this.fd, stored, frame.offset + FRAME_HEADER_LENGTH);
    return { ...frame, stored };
  }

  /**
   * Reads one frame, then checks and decompresses it: on libuv's thread pool with the native
   * codecs, else with unpack (unpack-frame.ts). Its raw bytes come as a lent buffer (for codec
   * none, the buffer the stored bytes were read into).
   */
  private async frame(frame: Located, which: 'meta' | 'payload' | undefined): Promise<Lent> {
    const stored = this.buffers.borrow(frame.storedLength);
    const view = stored.buffer.subarray(0, frame.storedLength);
    readFully(this.fd, view, frame.offset + FRAME_HEADER_LENGTH);
    const codec = frame.codec as CodecId;
    if (codec !== CODEC_IDS.none && hasNativeCodec(codec)) {
      const raw = this.buffers.borrow(frame.rawLength);
      const check = await frameDecodeAsync(codec, view, raw.buffer.subarray(0, frame.rawLength), frame.storedChecksum, frame.rawChecksum, this.checksum.version);
      stored.pins--;
      if (check.status !== 0) {
        raw.pins--;
        const kind = check.status === 1 ? 'stored-checksum' : check.status === 3 ? 'raw-checksum' : 'codec';
        throw failure({ ok: false, kind, message: check.message, actual: check.actual, frame: which }, frame, this.checksum);
      }
      return raw;
    }
    const raw = codec === CODEC_IDS.none ? stored : this.buffers.borrow(frame.rawLength);
    const result = await unpack(
      {
        codec,
        checksum: this.checksum.version,
        stored: view,
        rawLength: frame.rawLength,
        rawChecksum: frame.rawChecksum,
        storedChecksum: frame.storedChecksum,
      },
      which,
      raw.buffer.subarray(0, frame.rawLength),
    );
    if (raw !== stored) stored.pins--;
    if (!Buffer.isBuffer(result)) {
      raw.pins--;
      throw failure(result, frame, this.checksum);
    }
    if (raw !== stored && result.buffer !== raw.buffer.buffer) {
      // The npm codec (no native library) returned its own buffer: lend that one instead.
      raw.pins--;
      return this.buffers.adopt(result);
    }
    return raw;
  }

  /** A segment's bytes as ranges, in file order (the page window follows the segments). */
  private segment(meta: Located, payload: Located | undefined, metaLent: Lent, payloadLent: Lent | undefined): Ready {
    const lent = new Set<Lent>(payloadLent ? [metaLent, payloadLent] : [metaLent]);
    this.buffers.laying(payloadLent, lent);
    const metaRaw = metaLent.buffer.subarray(0, meta.rawLength);
    const payloadRaw = payloadLent?.buffer.subarray(0, payload!.rawLength);
    const result = segmentRanges(metaRaw, payloadRaw, this.info.pageSize, this.info.dedupWindowPages > 0 ? this.buffers : undefined);
    this.buffers.laying(undefined, lent);
    if ('problem' in result) {
      const blamed = result.frame === 'payload' && payload ? payload : meta;
      throw new CorruptFrameError(result.problem, frameRef(blamed));
    }
    return { ...result, lent };
  }

  private dataReady(frame: Located, lent: Lent): Ready {
    const ranges = Float64Array.of(0, 0, frame.rawLength);
    return { buffers: [lent.buffer], ranges, count: 1, length: frame.rawLength, lent: new Set([lent]) };
  }

  // --- writing ------------------------------------------------------------------------------

  /**
   * In file order, a checked segment: written now, unless it is the last one. Only the last
   * segment holds QEMU's EOF (the compressor never ends a segment after it), so it alone waits
   * for the END frame to confirm the whole container: a truncated or damaged file makes QEMU's
   * load fail instead of completing.
   */
  private async accept(ready: Ready, frames: Located[], last: boolean): Promise<void> {
    const writable = this.walk.accept(ready, ready.length, frames, !last && !this.failing);
    if (this.failing) return;
    for (const segment of writable) {
      // One write at a time, in order: wait for the one under way, then start this one.
      await this.settle();
      this.startWrite(segment);
    }
  }

  private startWrite(ready: Ready): void {
    this.writing = writeRanges(this.outFd, ready.buffers, ready.ranges, ready.count).then(
      () => {
        for (const lent of ready.lent) lent.pins--;
        this.stats.bytesOut += ready.length;
        this.onProgress?.(this.stats);
      },
      (error: unknown) => {
        this.writingError = error;
      },
    );
  }

  /** Waits for the write under way; rethrows its failure. */
  private async settle(): Promise<void> {
    await this.writing;
    if (this.writingError !== undefined) throw this.writingError;
    this.buffers.reclaim();
  }
}
