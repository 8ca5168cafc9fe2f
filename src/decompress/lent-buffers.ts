/**
 * Direct mode's buffers (direct.ts): the frames are read and decompressed into buffers lent
 * out and given back once no unwritten segment views them (pins) and the page window keeps
 * none of their pages. The page window (dedup) lies in the PAYLOAD buffers themselves, no copy:
 * this class is the PieceWindow that segmentRanges (splice.ts) records stored pages in and
 * resolves REF cuts from; boundWindow copies the window's pages out of sparse buffers, so the
 * window keeps at most WINDOW_SLACK × W × pageSize bytes, whatever the stream's layout.
 */
import type { DataChecksum } from '../container/checksum.js';
import { refPageProblem } from '../container/checks.js';
import type { ContainerInfo } from '../container/format.js';
import type { WindowSlots } from '../container/page-window.js';
import type { PieceWindow } from './splice.js';
import { BufferPool } from '../bytes/buffer-pool.js';

/** A buffer of decompressed (or stored, for codec none) bytes, lent out and given back. */
export interface Lent {
  readonly buffer: Buffer;
  /** Pages of the page window that lie in it: it goes back only once none do. */
  windowPages: number;
  /** Segments whose views of it are not written yet (and a frame being decoded into it). */
  pins: number;
}

/**
 * The buffers kept for the page window may hold this many times W × pageSize bytes before the
 * window's pages in sparse ones are copied out (boundWindow). Dense buffers (RAM pages) stay far
 * below; a PAYLOAD of disk chunks with a few RAM pages would otherwise be kept whole for each.
 */
const WINDOW_SLACK = 4;

/** Free buffers kept for reuse; more go to the garbage collector. */
const KEEP_FREE = 8;

/** What direct mode's buffers took: the bound its design promises, measured. */
export interface DirectMemory {
  /** Most bytes of decompression buffers lent out at once (segments in flight, page window). */
  peakBufferBytes: number;
}

export class LentBuffers implements PieceWindow {
  /** Free buffers (of at least 1.25 × frameBytes), and the ones lent out, oldest first. */
  private readonly free: BufferPool;
  private readonly lent: Lent[] = [];
  /** Bytes of the buffers in `lent`. */
  private lentBytes = 0;
  /** The page window: stored page n lies at windowOffsets[n % W] of windowLent[n % W]. */
  private windowLent: Lent[] = [];
  /** Both grow with the pages stored (stored()): the HEADER's word is no reason to allocate. */
  private windowOffsets: Float64Array;
  /** While a segment is decoded: its PAYLOAD buffer, and the buffers its REF pieces view. */
  private payloadLent: Lent | undefined;
  private pinned = new Set<Lent>();

  constructor(
    private readonly info: ContainerInfo,
    /** The walk's page window numbering (container-walk.ts), when the container has one. */
    private readonly slots: WindowSlots | undefined,
    private readonly checksum: DataChecksum,
    private readonly memory: DirectMemory,
  ) {
    this.windowOffsets = new Float64Array(Math.min(info.dedupWindowPages, 256));
    this.free = new BufferPool(KEEP_FREE, Math.ceil(info.frameBytes * 1.25));
  }

  /** While `segment` lays out a segment: its PAYLOAD buffer, and the set its REF pages pin. */
  laying(payload: Lent | undefined, pinned: Set<Lent>): void {
    this.payloadLent = payload;
    this.pinned = pinned;
  }

  /** A buffer of at least `length` bytes, pinned once. */
  borrow(length: number): Lent {
    return this.adopt(this.free.take(length));
  }

  adopt(buffer: Buffer): Lent {
    const lent: Lent = { buffer, windowPages: 0, pins: 1 };
    this.lent.push(lent);
    this.lentBytes += buffer.length;
    this.memory.peakBufferBytes = Math.max(this.memory.peakBufferBytes, this.lentBytes);
    return lent;
  }

  /** Gives back the buffers no unwritten segment views and the window no longer needs. */
  reclaim(): void {
    for (let i = 0; i < this.lent.length;) {
      const lent = this.lent[i]!;
      if (lent.pins === 0 && lent.windowPages === 0) {
        // An npm codec's own result (adopted) may lie in Buffer's shared pool: only ours go back.
        if (this.free.owns(lent.buffer)) this.free.give(lent.buffer.buffer as ArrayBuffer);
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
  boundWindow(): void {
    const window = this.info.dedupWindowPages;
    const pageSize = this.info.pageSize;
    let kept = 0;
    for (const lent of this.lent) if (lent.windowPages > 0) kept += lent.buffer.length;
    if (kept <= WINDOW_SLACK * window * pageSize) return;
    const sparse = (lent: Lent): boolean => 2 * lent.windowPages * pageSize < lent.buffer.length;
    const slots: number[] = [];
    const storedPages = this.slots!.count;
    for (let n = Math.max(0, storedPages - window); n < storedPages; n++) {
      if (sparse(this.windowLent[n % window]!)) slots.push(n % window);
    }
    if (slots.length === 0) return;
    const copy = this.adopt(this.free.take(slots.length * pageSize));
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

  stored(_payload: Buffer, at: number): void {
    const window = this.slots!;
    const lent = this.payloadLent!;
    // The page stored W pages ago leaves the window.
    if (window.count >= window.capacity) this.windowLent[window.count % window.capacity]!.windowPages--;
    const slot = window.store();
    if (slot >= this.windowOffsets.length) {
      const grown = new Float64Array(Math.min(this.info.dedupWindowPages, 2 * this.windowOffsets.length));
      grown.set(this.windowOffsets);
      this.windowOffsets = grown;
    }
    this.windowLent[slot] = lent;
    this.windowOffsets[slot] = at;
    lent.windowPages++;
  }

  ref(distance: number, checksum: number): Buffer | string {
    const pageSize = this.info.pageSize;
    const slot = this.slots!.reach(distance);
    if (typeof slot === 'string') return slot;
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
}
