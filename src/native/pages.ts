/**
 * Zero-page scan and page hashing over any bytes: one native call per batch of pages, views at
 * any byte offset, outputs allocated here (or passed in to reuse).
 *
 *   const zero = findZeroPages(batch, 4096);   // Uint8Array, 1 per all-zero page
 *   const hashes = hashPages(batch, 4096);     // BigUint64Array, XXH64 per page
 */
import { ArgumentError } from '../stream/errors.js';
import { checkInteger, describe, nativeBinding } from './binding.js';

/** Anything that is bytes, as a Uint8Array view of the same memory (no copy). */
export type BytesLike = ArrayBufferView | ArrayBuffer | SharedArrayBuffer;

function toBytes(where: string, value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && value instanceof SharedArrayBuffer)) {
    return new Uint8Array(value);
  }
  throw new ArgumentError(`${where}: buffer must be a Buffer, TypedArray, DataView or ArrayBuffer, got ${describe(value)}`);
}

/** Largest page size the scans take (the addon's limit). */
export const MAX_PAGE_SIZE = 2 ** 32;

function checkPages(where: string, bytes: Uint8Array, pageSize: unknown): number {
  const size = checkInteger(where, 'pageSize', pageSize, 1, MAX_PAGE_SIZE);
  if (bytes.length % size !== 0) {
    throw new ArgumentError(`${where}: buffer of ${bytes.length} bytes is not a whole number of ${size}-byte pages`);
  }
  return bytes.length / size;
}

function checkOut<T extends Uint8Array | BigUint64Array>(where: string, out: unknown, kind: new (n: number) => T, pages: number): T {
  if (out === undefined) return new kind(pages);
  if (!(out instanceof kind)) throw new ArgumentError(`${where}: out must be a ${kind.name}, got ${describe(out)}`);
  if (out.length < pages) throw new ArgumentError(`${where}: out holds ${out.length} entries, ${pages} pages need one each`);
  return (out.length === pages ? out : out.subarray(0, pages)) as T;
}

// --- zero scan and hashing ------------------------------------------------------------------

/**
 * One entry per page of `buffer`: 1 where the page is all zero, else 0. The buffer must be a
 * whole number of pages; views at any byte offset are fine. Pass `out` (at least one entry per
 * page) to reuse memory; the result is then `out` or its leading subarray.
 */
export function findZeroPages(buffer: BytesLike, pageSize: number, out?: Uint8Array): Uint8Array {
  const bytes = toBytes('findZeroPages', buffer);
  const pages = checkPages('findZeroPages', bytes, pageSize);
  const result = checkOut('findZeroPages', out, Uint8Array, pages);
  nativeBinding().findZeroPages(bytes, pageSize, result);
  return result;
}

/** Whether every byte of `buffer` is zero (true for an empty buffer). */
export function isAllZero(buffer: BytesLike): boolean {
  return nativeBinding().isAllZero(toBytes('isAllZero', buffer));
}

/**
 * XXH64 (seed 0) of every page of `buffer`, in one call: what `xxhsum -H1` prints for each
 * page, so hashes can be checked with standard tools. For deduplication and verification, not
 * for security. `out`, if given, needs at least one entry per page.
 */
export function hashPages(buffer: BytesLike, pageSize: number, out?: BigUint64Array): BigUint64Array {
  const bytes = toBytes('hashPages', buffer);
  const pages = checkPages('hashPages', bytes, pageSize);
  const result = checkOut('hashPages', out, BigUint64Array, pages);
  nativeBinding().hashPages(bytes, pageSize, result);
  return result;
}

/** XXH64 of the empty input: a constant of the algorithm. */
const XXH64_EMPTY = 0xef46db3751d8e999n;

/** XXH64 (seed 0) of the whole buffer, up to MAX_PAGE_SIZE (4 GiB) bytes. */
export function hash64(buffer: BytesLike): bigint {
  const bytes = toBytes('hash64', buffer);
  if (bytes.length === 0) return XXH64_EMPTY;
  if (bytes.length > MAX_PAGE_SIZE) throw new ArgumentError(`hash64: ${bytes.length} bytes, at most ${MAX_PAGE_SIZE}`);
  const out = new BigUint64Array(1);
  nativeBinding().hashPages(bytes, bytes.length, out);
  return out[0]!;
}
