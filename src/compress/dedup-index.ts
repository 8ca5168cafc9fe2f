/**
 * The compressor's dedup in TypeScript (payload-store.ts uses it without the native addon): a
 * hash index over the pages of a PageWindow (src/container/page-window.ts), and the hashers it
 * takes.
 */
import { nativeBinding } from '../native/binding.js';
import { hashPages } from '../native/pages.js';
import { xxh32 } from '../container/checksum.js';
import { WRITTEN_CHECKSUM } from '../container/format.js';
import { PageWindow } from '../container/page-window.js';

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

/** A PageWindow plus a hash index over the pages it holds. */
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
