/**
 * The page window behind dedup references: the last `capacity` stored pages (PAGE cuts), kept
 * by compressor and decompressor alike, so a REF cut is resolved from memory of at most
 * capacity × pageSize whatever the stream size.
 *
 * Stored pages are numbered 0, 1, 2, … in stream order; REF distance d means "the page stored d
 * pages before the next one", 1 ≤ d ≤ capacity.
 */
import { ArgumentError } from '../stream/errors.js';

/** Pages a window starts with; it doubles up to its capacity as pages arrive. */
const INITIAL_WINDOW_PAGES = 256;

export class PageWindow {
  /**
   * Grows with the pages stored, up to capacity × pageSize: a container's HEADER may announce
   * 2^24 pages, and a decompressor must not take gigabytes on the word of a file that then
   * holds a few pages. Until the ring is full, page n lies in slot n, so growing keeps slots.
   */
  private ring: Buffer;
  private stored = 0;

  constructor(
    readonly capacity: number,
    readonly pageSize: number,
  ) {
    if (!(Number.isInteger(capacity) && capacity > 0)) throw new ArgumentError(`page window of ${String(capacity)} pages`);
    this.ring = Buffer.alloc(Math.min(capacity, INITIAL_WINDOW_PAGES) * pageSize);
  }

  /** Pages stored so far (also the number the next stored page gets). */
  get count(): number {
    return this.stored;
  }

  push(page: Uint8Array): void {
    const at = (this.stored % this.capacity) * this.pageSize;
    if (at >= this.ring.length) {
      const grown = Buffer.alloc(Math.min(this.capacity * this.pageSize, 2 * this.ring.length));
      this.ring.copy(grown);
      this.ring = grown;
    }
    this.ring.set(page, at);
    this.stored++;
  }

  /** The page stored `distance` pages back, or undefined when outside the window. */
  get(distance: number): Buffer | undefined {
    if (!(distance >= 1 && distance <= this.capacity && distance <= this.stored)) return undefined;
    const slot = (this.stored - distance) % this.capacity;
    return this.ring.subarray(slot * this.pageSize, (slot + 1) * this.pageSize);
  }
}
