/**
 * The compressor's payload ring in shared memory, with its dedup window (native/dedup.h): PAGE
 * and BYTES payloads are written into it once, in stream order, and workers compress PAYLOAD
 * frames straight from views of it. The stored pages still in it are the dedup window: one
 * native call per page hashes it, looks it up among the last `windowPages` stored pages,
 * compares the bytes of a candidate, and copies it in when it is new.
 *
 *   const ring = new NativePayloadRing(ringBytes, 4096, 16384);
 *   const distance = ring.storePage(at, page);   // 0: copied to logical position `at`
 *   ring.copy(at, chunk);                        // any other payload bytes
 *
 * Positions are logical (they only grow); byte q lives at q % ringBytes. Whoever writes chooses
 * positions that do not wrap inside a write and never overwrites what a worker still reads
 * (src/compress/payload-store.ts).
 */
import { ArgumentError } from '../stream/errors.js';
import { checkInteger, describe, nativeBinding, type NativeBinding } from './binding.js';

/**
 * Copies `src` into `dst` at `at` with memcpy: also between shared and unshared memory, where
 * TypedArray#set copies an order of magnitude slower (element by element with atomics).
 */
export function copyBytes(dst: Uint8Array, at: number, src: Uint8Array): void {
  if (!(dst instanceof Uint8Array) || !(src instanceof Uint8Array)) {
    throw new ArgumentError(`copyBytes: destination and source must be Uint8Arrays, got ${describe(dst)} and ${describe(src)}`);
  }
  checkInteger('copyBytes', 'at', at, 0, dst.length);
  nativeBinding().ringCopy(dst, at, src);
}

/** Bytes per bucket of the dedup table: 4 entries of {u64 hash, u64 page number + 1}. */
const BUCKET_BYTES = 64;

export class NativePayloadRing {
  /** The ring: a view of a SharedArrayBuffer of `ringBytes` bytes. */
  readonly bytes: Uint8Array;
  /** Low 32 bits of the XXH64 of the page the last storePage() found (the REF cut records it). */
  checksum = 0;
  private stored = 0;
  private readonly table: Uint8Array;
  private readonly positions: Float64Array;
  private readonly out = new Uint32Array(1);
  private readonly binding: NativeBinding;

  /** `windowPages` 0: no dedup (storePage always copies). */
  constructor(
    readonly ringBytes: number,
    readonly pageSize: number,
    readonly windowPages: number,
  ) {
    checkInteger('NativePayloadRing', 'pageSize', pageSize, 1, 1 << 20);
    checkInteger('NativePayloadRing', 'windowPages', windowPages, 0, 1 << 24);
    checkInteger('NativePayloadRing', 'ringBytes', ringBytes, pageSize, 2 ** 40);
    this.binding = nativeBinding();
    this.bytes = new Uint8Array(new SharedArrayBuffer(ringBytes));
    // A bucket of 4 entries per window page (rounded up to a power of two): few useful entries
    // are ever pushed out by others.
    let buckets = 1;
    while (buckets < windowPages) buckets *= 2;
    this.table = new Uint8Array(windowPages > 0 ? buckets * BUCKET_BYTES : 0);
    this.positions = new Float64Array(windowPages);
  }

  /** Forgets every stored page (the ring is then as new, without new memory). */
  reset(): void {
    this.table.fill(0);
    this.stored = 0;
    this.checksum = 0;
  }

  /** Pages stored so far (the number the next stored page gets). */
  get count(): number {
    return this.stored;
  }

  /** Copies `src` to logical position `at` (no wrap: at % ringBytes + src.length <= ringBytes). */
  copy(at: number, src: Uint8Array): void {
    if (!(src instanceof Uint8Array)) throw new ArgumentError(`NativePayloadRing.copy: source must be a Uint8Array, got ${describe(src)}`);
    checkInteger('NativePayloadRing.copy', 'at', at, 0, Number.MAX_SAFE_INTEGER);
    this.binding.ringCopy(this.bytes, at % this.ringBytes, src);
  }

  /**
   * A RAM page: the distance back to an equal stored page (then `checksum` is set), or 0
   * after copying it to logical position `at` as the next stored page.
   */
  storePage(at: number, page: Uint8Array): number {
    if (!(page instanceof Uint8Array) || page.length !== this.pageSize) {
      throw new ArgumentError(`NativePayloadRing.storePage: page must be a Uint8Array of ${this.pageSize} bytes, got ${describe(page)}`);
    }
    if (this.windowPages === 0) {
      this.binding.ringCopy(this.bytes, at % this.ringBytes, page);
      this.stored++;
      return 0;
    }
    const distance = this.binding.dedupStore(this.bytes, this.table, this.positions, this.pageSize, this.stored, at, page, this.out);
    if (distance === 0) this.stored++;
    else this.checksum = this.out[0]!;
    return distance;
  }
}
