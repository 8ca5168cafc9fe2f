/**
 * The page window behind dedup references (docs/container.md, Dedup): the last `capacity`
 * stored pages (PAGE cuts), kept by compressor and decompressor alike, so a REF cut is resolved
 * from memory of at most capacity × pageSize whatever the stream size.
 *
 * Stored pages are numbered 0, 1, 2, … in stream order; REF distance d means "the page stored d
 * pages before the next one", 1 ≤ d ≤ capacity.
 *
 *   WindowSlots  the numbering alone: the slot of each stored page and the REF bound. Direct
 *                mode (src/decompress/direct.ts) keeps its pages where they were decompressed.
 *   PageWindow   the numbering and a copy of the pages (the piped decompressor, DedupIndex).
 */
import { ArgumentError } from '../stream/errors.js';

export class WindowSlots {
  private stored = 0;

  constructor(readonly capacity: number) {
    if (!(Number.isInteger(capacity) && capacity > 0)) throw new ArgumentError(`page window of ${String(capacity)} pages`);
  }

  /** Pages stored so far (also the number the next stored page gets). */
  get count(): number {
    return this.stored;
  }

  /** Counts the next stored page; returns its slot (0..capacity-1). */
  store(): number {
    return this.stored++ % this.capacity;
  }

  /** The slot of the page stored `distance` pages back, or what is wrong with the reference. */
  reach(distance: number): number | string {
    if (!(distance >= 1 && distance <= this.capacity && distance <= this.stored)) {
      return `a page reference reaches ${distance} stored pages back; the page window holds ${Math.min(this.stored, this.capacity)}`;
    }
    return (this.stored - distance) % this.capacity;
  }
}

/** Pages a window starts with; it doubles up to its capacity as pages arrive. */
const INITIAL_WINDOW_PAGES = 256;

export class PageWindow {
  /**
   * Grows with the pages stored, up to capacity × pageSize: a container's HEADER may announce
   * 2^24 pages, and a decompressor must not take gigabytes on the word of a file that then
   * holds a few pages. Until the ring is full, page n lies in slot n, so growing keeps slots.
   */
  private ring: Buffer;

  /** `slots`: the numbering to follow, e.g. a container walk's (src/decompress/container-walk.ts). */
  constructor(
    readonly capacity: number,
    readonly pageSize: number,
    private readonly slots: WindowSlots = new WindowSlots(capacity),
  ) {
    this.ring = Buffer.alloc(Math.min(capacity, INITIAL_WINDOW_PAGES) * pageSize);
  }

  /** Pages stored so far (also the number the next stored page gets). */
  get count(): number {
    return this.slots.count;
  }

  push(page: Uint8Array): void {
    const at = this.slots.store() * this.pageSize;
    if (at >= this.ring.length) {
      const grown = Buffer.alloc(Math.min(this.capacity * this.pageSize, 2 * this.ring.length));
      this.ring.copy(grown);
      this.ring = grown;
    }
    this.ring.set(page, at);
  }

  /** The page stored `distance` pages back, or what is wrong with the reference. */
  reach(distance: number): Buffer | string {
    const slot = this.slots.reach(distance);
    return typeof slot === 'string' ? slot : this.ring.subarray(slot * this.pageSize, (slot + 1) * this.pageSize);
  }

  /** The page stored `distance` pages back, or undefined when outside the window. */
  get(distance: number): Buffer | undefined {
    const page = this.reach(distance);
    return typeof page === 'string' ? undefined : page;
  }
}
