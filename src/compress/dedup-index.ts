/**
 * The page window behind dedup references: the last `capacity` stored pages (PAGE cuts), kept
 * by compressor and decompressor alike, so a REF cut is resolved from memory of at most
 * capacity × pageSize whatever the stream size.
 *
 * Stored pages are numbered 0, 1, 2, … in stream order; REF distance d means "the page stored d
 * pages before the next one", 1 ≤ d ≤ capacity.
 */
import { nativeBinding } from '../native/binding.js';
import { hashPages } from '../native/pages.js';
import { ArgumentError } from '../stream/errors.js';
import { xxh32 } from '../container/checksum.js';
import { WRITTEN_CHECKSUM } from '../container/format.js';

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

/**
 * Hashes pages for dedup lookups. The native addon's hashPages fits (src/native.ts); equal
 * hashes are only candidates: the compressor compares the bytes before it writes a reference.
 */
export interface PageHasher {
  /** One hash per page of `pages`, whose length is a multiple of `pageSize`. */
  hashPages(pages: Uint8Array, pageSize: number): ArrayLike<number | bigint>;
}

/** Stand-in hasher in plain TypeScript (XXH32 per page). */
export const xxh32PageHasher: PageHasher = {
  hashPages(pages, pageSize) {
    const count = pages.length / pageSize;
    const out = new Uint32Array(count);
    for (let i = 0; i < count; i++) out[i] = xxh32(pages.subarray(i * pageSize, (i + 1) * pageSize));
    return out;
  },
};

/** XXH64 per page from the native addon (src/native.ts), or undefined when it is not built. */
export function nativePageHasher(): PageHasher | undefined {
  try {
    nativeBinding();
  } catch {
    return undefined;
  }
  const one = new BigUint64Array(1);
  return {
    hashPages: (pages, pageSize) => (pages.length === pageSize ? hashPages(pages, pageSize, one) : hashPages(pages, pageSize)),
  };
}

/**
 * The compressor's side in TypeScript (payload-store.ts uses it without the native addon): a
 * PageWindow plus a hash index over the pages it holds.
 */
export class DedupIndex {
  checksum = 0;
  readonly window: PageWindow;
  private readonly byHash = new Map<number | bigint, number>();
  private readonly slotHash: (number | bigint)[];

  constructor(
    capacity: number,
    pageSize: number,
    private readonly hasher: PageHasher = nativePageHasher() ?? xxh32PageHasher,
  ) {
    this.window = new PageWindow(capacity, pageSize);
    this.slotHash = new Array<number | bigint>(capacity).fill(0);
  }

  hash(page: Uint8Array): number | bigint {
    return this.hasher.hashPages(page, this.window.pageSize)[0]!;
  }

  /** Distance back to an earlier stored page with the same bytes, or 0. */
  find(hash: number | bigint, page: Uint8Array): number {
    const index = this.byHash.get(hash);
    if (index === undefined) return 0;
    const distance = this.window.count - index;
    const earlier = this.window.get(distance);
    return earlier !== undefined && earlier.equals(page) ? distance : 0;
  }

  /** Distance back to an equal stored page (`checksum` is then its checksum), or 0 after storing it. */
  lookup(page: Uint8Array): number {
    const hash = this.hash(page);
    const distance = this.find(hash, page);
    if (distance > 0) this.checksum = WRITTEN_CHECKSUM.of(page);
    else this.add(hash, page);
    return distance;
  }

  /** Records `page` as the next stored page. */
  add(hash: number | bigint, page: Uint8Array): void {
    const { capacity, count } = this.window;
    const slot = count % capacity;
    if (count >= capacity) {
      const evicted = this.slotHash[slot]!;
      if (this.byHash.get(evicted) === count - capacity) this.byHash.delete(evicted);
    }
    this.slotHash[slot] = hash;
    this.byHash.set(hash, count);
    this.window.push(page);
  }
}
