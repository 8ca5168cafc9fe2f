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
 * Same guarantees as the general path (decompressor.ts): every frame is checked before any of
 * its bytes is written, and the last segment (it holds QEMU's EOF) is written only after the
 * END frame confirmed the whole container, so a damaged file makes QEMU's load fail instead of
 * completing with wrong RAM. The other segments go out as soon as they are checked: the first
 * bytes reach QEMU after one segment, not two.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { frameDecodeAsync } from '../native/codec.js';
import { writeRanges } from '../native/fd.js';
import { ChecksumChain, dataChecksum, type DataChecksum } from '../container/checksum.js';
import { CODEC_IDS, hasNativeCodec, type CodecId } from '../codecs/registry.js';
import { checkFrameHeader, checkPreamble, frameRef, type Frame } from '../container/reader.js';
import type { DecompressStats } from './piped.js';
import { checkEnd, checkKindForMode, parseInfo, refPageProblem } from '../container/checks.js';
import { failure } from './frame-failure.js';
import { AFTER_PREAMBLE, ContainerError, CorruptFrameError, FrameOrderError, TruncatedContainerError } from '../container/errors.js';
import { FRAME_HEADER_LENGTH, FrameKind, PREAMBLE_LENGTH, type ContainerInfo, type FrameHeader } from '../container/format.js';
import { unpack } from './unpack-frame.js';
import { segmentRanges, type PieceWindow, type SegmentRanges } from './splice.js';

export interface DirectOptions {
  onProgress?: (stats: Readonly<DecompressStats>) => void;
}

interface Located extends FrameHeader {
  readonly offset: number;
}

/** A buffer of decompressed (or stored, for codec none) bytes, lent out and given back. */
interface Lent {
  readonly buffer: Buffer;
  /** Pages of the page window that lie in it: it goes back only once none do. */
  windowPages: number;
  /** Segments whose views of it are not written yet (and a frame being decoded into it). */
  pins: number;
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

/**
 * The buffers kept for the page window may hold this many times W × pageSize bytes before the
 * window's pages in sparse ones are copied out (boundWindow). Dense buffers (RAM pages) stay far
 * below; a PAYLOAD of disk chunks with a few RAM pages would otherwise be kept whole for each.
 */
const WINDOW_SLACK = 4;

/** Free buffers kept for reuse; more go to the garbage collector. */
const MAX_FREE = 8;

function readFully(fd: number, into: Buffer, position: number): number {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/** What direct mode's buffers took: the bound its design promises, measured. */
export interface DirectMemory {
  /** Most bytes of decompression buffers lent out at once (segments in flight, page window). */
  peakBufferBytes: number;
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

class DirectRun implements PieceWindow {
  private offset = PREAMBLE_LENGTH;
  private number = 0;
  private readonly chain = new ChecksumChain();
  private streamBytes = 0;
  private readonly header = Buffer.alloc(FRAME_HEADER_LENGTH);
  private info!: ContainerInfo;
  /** The container version's checksum (from the preamble). */
  private checksum!: DataChecksum;
  /** Free buffers, and the ones lent out, oldest first. */
  private readonly free: Buffer[] = [];
  private readonly lent: Lent[] = [];
  /** Bytes of the buffers in `lent`. */
  private lentBytes = 0;
  /** The page window: stored page n lies at windowOffsets[n % W] of windowLent[n % W]. */
  private windowLent: Lent[] = [];
  private windowOffsets = new Float64Array(0);
  private storedPages = 0;
  /** While a segment is decoded: its PAYLOAD buffer, and the buffers its REF pieces view. */
  private payloadLent: Lent | undefined;
  private pinned = new Set<Lent>();
  /** Segments whose frames are being checked and decompressed, in file order. */
  private readonly decoding: Decoding[] = [];
  /** The END frame's header was read: the segment finished last holds EOF. */
  private atEnd = false;
  /** A problem was found: segments still finished are checked, not written. */
  private failing = false;
  /** A segment failed its checks (the first problem in file order). */
  private segmentFailed = false;
  /** The last segment, waiting for the END frame's checks, and the write under way. */
  private held: Ready | undefined;
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
    this.checksum = dataChecksum(checkPreamble(preamble));
    const first = this.next();
    if (first === undefined) throw new TruncatedContainerError(AFTER_PREAMBLE, { frame: 0, offset: PREAMBLE_LENGTH });
    this.info = parseInfo(this.withStored(first), frameRef(first), this.checksum);
    this.stats.info = this.info;
    // Both grow with the pages stored (stored()): the HEADER's word is no reason to allocate.
    this.windowLent = [];
    this.windowOffsets = new Float64Array(Math.min(this.info.dedupWindowPages, 256));
    try {
      let meta: Located | undefined;
      for (;;) {
        const frame = this.next();
        if (frame === undefined) {
          throw new TruncatedContainerError(`the input ends after frame ${this.number - 1} without an END frame`, { frame: this.number, offset: this.offset });
        }
        const ref = frameRef(frame);
        checkKindForMode(frame.kind, this.info, ref);
        if (frame.kind === FrameKind.PAYLOAD) {
          if (meta === undefined) throw new FrameOrderError('PAYLOAD frame without a META frame before it', ref);
          await this.decode([meta, frame], false);
          meta = undefined;
          continue;
        }
        if (meta !== undefined) await this.decode([meta], false);
        meta = undefined;
        if (frame.kind === FrameKind.META) meta = frame;
        else if (frame.kind === FrameKind.DATA) await this.decode([frame], true);
        else if (frame.kind === FrameKind.END) {
          this.atEnd = true;
          while (this.decoding.length > 0) await this.finishOldest();
          await this.settle();
          checkEnd(frame, this.withStored(frame).stored, ref, this.checksum, this.streamBytes, this.chain.value);
          if (this.offset !== this.size) {
            throw new FrameOrderError('data after the END frame', { frame: this.number, offset: this.offset }, { actual: `${this.size - this.offset} more bytes` });
          }
          if (this.held !== undefined) this.startWrite(this.held);
          this.held = undefined;
          await this.settle();
          return;
        }
      }
    } catch (error) {
      throw await this.earlierFailure(error);
    } finally {
      // On failure, a write under way finishes (it holds checked bytes only); nothing more starts.
      await this.writing.catch(() => {});
    }
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
    if (this.info.dedupWindowPages > 0) this.boundWindow();
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

  /** A buffer of at least `length` bytes, pinned once. */
  private borrow(length: number): Lent {
    const index = this.free.findIndex((buffer) => buffer.length >= length);
    return this.adopt(index >= 0 ? this.free.splice(index, 1)[0]! : this.allocate(length));
  }

  private allocate(length: number): Buffer {
    return Buffer.allocUnsafeSlow(Math.max(length, Math.ceil(this.info.frameBytes * 1.25)));
  }

  private adopt(buffer: Buffer): Lent {
    const lent: Lent = { buffer, windowPages: 0, pins: 1 };
    this.lent.push(lent);
    this.lentBytes += buffer.length;
    this.memory.peakBufferBytes = Math.max(this.memory.peakBufferBytes, this.lentBytes);
    return lent;
  }

  /** Gives back the buffers no unwritten segment views and the window no longer needs. */
  private reclaim(): void {
    for (let i = 0; i < this.lent.length; ) {
      const lent = this.lent[i]!;
      if (lent.pins === 0 && lent.windowPages === 0) {
        if (this.free.length < MAX_FREE) this.free.push(lent.buffer);
        this.lent.splice(i, 1);
        this.lentBytes -= lent.buffer.length;
      } else {
        i++;
      }
    }
  }

  /**
   * Bounds the memory the page window keeps: once the buffers holding its pages pass
   * WINDOW_SLACK × W × pageSize bytes, the pages that lie in buffers less than half filled by
   * window pages are copied into one buffer of their own, and those buffers go back once no
   * unwritten segment views them. Afterwards the window keeps at most twice its pages' bytes in
   * dense buffers plus that copy.
   */
  private boundWindow(): void {
    const window = this.info.dedupWindowPages;
    const pageSize = this.info.pageSize;
    let kept = 0;
    for (const lent of this.lent) if (lent.windowPages > 0) kept += lent.buffer.length;
    if (kept <= WINDOW_SLACK * window * pageSize) return;
    const sparse = (lent: Lent): boolean => 2 * lent.windowPages * pageSize < lent.buffer.length;
    const slots: number[] = [];
    for (let n = Math.max(0, this.storedPages - window); n < this.storedPages; n++) {
      if (sparse(this.windowLent[n % window]!)) slots.push(n % window);
    }
    if (slots.length === 0) return;
    const copy = this.adopt(Buffer.allocUnsafeSlow(slots.length * pageSize));
    copy.pins = 0;
    slots.forEach((slot, i) => {
      const from = this.windowLent[slot]!;
      const at = this.windowOffsets[slot]!;
      from.buffer.copy(copy.buffer, i * pageSize, at, at + pageSize);
      from.windowPages--;
      copy.windowPages++;
      this.windowLent[slot] = copy;
      this.windowOffsets[slot] = i * pageSize;
    });
  }

  /**
   * Reads one frame, then checks and decompresses it: on libuv's thread pool with the native
   * codecs, else with unpack (frame-work.ts). Its raw bytes come as a lent buffer (for codec
   * none, the buffer the stored bytes were read into).
   */
  private async frame(frame: Located, which: 'meta' | 'payload' | undefined): Promise<Lent> {
    const stored = this.borrow(frame.storedLength);
    const view = stored.buffer.subarray(0, frame.storedLength);
    readFully(this.fd, view, frame.offset + FRAME_HEADER_LENGTH);
    const codec = frame.codec as CodecId;
    if (codec !== CODEC_IDS.none && hasNativeCodec(codec)) {
      const raw = this.borrow(frame.rawLength);
      const check = await frameDecodeAsync(codec, view, raw.buffer.subarray(0, frame.rawLength), frame.storedChecksum, frame.rawChecksum, this.checksum.version);
      stored.pins--;
      if (check.status !== 0) {
        raw.pins--;
        const kind = check.status === 1 ? 'stored-checksum' : check.status === 3 ? 'raw-checksum' : 'codec';
        throw failure({ ok: false, kind, message: check.message, actual: check.actual, frame: which }, frame, this.checksum);
      }
      return raw;
    }
    const raw = codec === CODEC_IDS.none ? stored : this.borrow(frame.rawLength);
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
      return this.adopt(result);
    }
    return raw;
  }

  /** A segment's bytes as ranges, in file order (the page window follows the segments). */
  private segment(meta: Located, payload: Located | undefined, metaLent: Lent, payloadLent: Lent | undefined): Ready {
    const lent = new Set<Lent>(payloadLent ? [metaLent, payloadLent] : [metaLent]);
    this.payloadLent = payloadLent;
    this.pinned = lent;
    const metaRaw = metaLent.buffer.subarray(0, meta.rawLength);
    const payloadRaw = payloadLent?.buffer.subarray(0, payload!.rawLength);
    const result = segmentRanges(metaRaw, payloadRaw, this.info.pageSize, this.info.dedupWindowPages > 0 ? this : undefined);
    this.payloadLent = undefined;
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

  // --- PieceWindow: the page window, over the PAYLOAD buffers -------------------------------

  stored(_payload: Buffer, at: number): void {
    const slot = this.storedPages % this.info.dedupWindowPages;
    const lent = this.payloadLent!;
    // The page stored W pages ago leaves the window.
    if (this.storedPages >= this.info.dedupWindowPages) this.windowLent[slot]!.windowPages--;
    if (slot >= this.windowOffsets.length) {
      const grown = new Float64Array(Math.min(this.info.dedupWindowPages, 2 * this.windowOffsets.length));
      grown.set(this.windowOffsets);
      this.windowOffsets = grown;
    }
    this.windowLent[slot] = lent;
    this.windowOffsets[slot] = at;
    lent.windowPages++;
    this.storedPages++;
  }

  ref(distance: number, checksum: number): Buffer | string {
    const window = this.info.dedupWindowPages;
    const pageSize = this.info.pageSize;
    if (!(distance >= 1 && distance <= window && distance <= this.storedPages)) {
      return `a page reference reaches ${distance} stored pages back; the page window holds ${Math.min(this.storedPages, window)}`;
    }
    const slot = (this.storedPages - distance) % window;
    const at = this.windowOffsets[slot]!;
    const lent = this.windowLent[slot]!;
    const page = lent.buffer.subarray(at, at + pageSize);
    const problem = refPageProblem(page, distance, this.checksum, checksum);
    if (problem !== undefined) return problem;
    // The segment views this buffer until it is written: pinned once per segment.
    if (!this.pinned.has(lent)) {
      this.pinned.add(lent);
      lent.pins++;
    }
    return page;
  }

  // --- writing ------------------------------------------------------------------------------

  /**
   * In file order, a checked segment: written now, unless it is the last one. Only the last
   * segment holds QEMU's EOF (the compressor never ends a segment after it), so it alone waits
   * for the END frame to confirm the whole container: a truncated or damaged file makes QEMU's
   * load fail instead of completing.
   */
  private async accept(ready: Ready, frames: Located[], last: boolean): Promise<void> {
    this.streamBytes += ready.length;
    for (const frame of frames) this.chain.add(frame.rawChecksum);
    if (last || this.failing) {
      this.held = ready;
      return;
    }
    // One write at a time, in order: wait for the one under way, then start this one.
    await this.settle();
    this.startWrite(ready);
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
    this.reclaim();
  }
}

