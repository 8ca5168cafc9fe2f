/**
 * XBZRLE page deltas, mirroring QEMU 7.2 migration/xbzrle.c.
 *
 *   delta = zrun nzrun | zrun nzrun delta
 *   zrun  = length                  bytes equal to the old page: skip them
 *   nzrun = length byte[length]     bytes that changed: copy them
 *   length = uleb128, at most two bytes (14 bits: uleb128_decode_small in util/cutils.c)
 *
 * A trailing zero run is not sent, so a delta may cover less than the page.
 */
import { ArgumentError } from '../stream/errors.js';
import { XbzrleError, type PayloadLocation } from './errors.js';

/** Largest run uleb128_encode_small can write (it asserts n <= 0x3fff). */
export const XBZRLE_MAX_RUN = 0x3fff;

// Failure codes of scanXbzrle; the result is -(position * 8 + code).
const TRUNCATED = 1;
const LONG_ULEB = 2;
const EMPTY_ZRUN = 3;
const ZRUN_OVERFLOW = 4;
const EMPTY_NZRUN = 5;
const NZRUN_OVERFLOW = 6;
const NZRUN_TRUNCATED = 7;

const PROBLEMS: Record<number, string> = {
  [TRUNCATED]: 'fewer than 2 bytes left for a run',
  [LONG_ULEB]: 'run length longer than two uleb128 bytes',
  [EMPTY_ZRUN]: 'zero-length unchanged run after the first',
  [ZRUN_OVERFLOW]: 'unchanged run goes past the end of the page',
  [EMPTY_NZRUN]: 'zero-length changed run',
  [NZRUN_OVERFLOW]: 'changed run goes past the end of the page',
  [NZRUN_TRUNCATED]: 'changed run goes past the end of the delta',
};

/**
 * A run length at `at` (two bytes are known to be there): uleb128 of at most two bytes, as
 * uleb128_decode_small reads it. Returns `length << 2 | bytes used`, or -1 for a longer one.
 */
function readRun(delta: Uint8Array, at: number): number {
  const b = delta[at]!;
  if (b < 0x80) return (b << 2) | 1;
  const b2 = delta[at + 1]!;
  if (b2 & 0x80) return -1;
  return (((b & 0x7f) | (b2 << 7)) << 2) | 2;
}

/**
 * Walks a delta exactly as xbzrle_decode_buffer does, with the same bounds checks, copying the
 * changed runs into `page` when it is given. Returns the number of page bytes covered, or
 * -(position * 8 + code) on failure.
 */
export function scanXbzrle(delta: Uint8Array, page: Uint8Array | null, pageLength: number): number {
  const slen = delta.length;
  let i = 0;
  let d = 0;
  while (i < slen) {
    // zrun: xbzrle_decode_buffer wants two bytes left even for a one-byte length.
    if (slen - i < 2) return -(i * 8 + TRUNCATED);
    let run = readRun(delta, i);
    if (run < 0) return -(i * 8 + LONG_ULEB);
    let count = run >>> 2;
    let size = run & 3;
    // Only the first run may be empty (the page starts with a change).
    if (i !== 0 && count === 0) return -(i * 8 + EMPTY_ZRUN);
    d += count;
    if (d > pageLength) return -(i * 8 + ZRUN_OVERFLOW);
    i += size;

    // nzrun
    if (slen - i < 2) return -(i * 8 + TRUNCATED);
    run = readRun(delta, i);
    if (run < 0) return -(i * 8 + LONG_ULEB);
    count = run >>> 2;
    size = run & 3;
    if (count === 0) return -(i * 8 + EMPTY_NZRUN);
    if (d + count > pageLength) return -(i * 8 + NZRUN_OVERFLOW);
    i += size;
    if (i + count > slen) return -(i * 8 + NZRUN_TRUNCATED);
    if (page !== null) {
      if (count < 32) {
        for (let k = 0; k < count; k++) page[d + k] = delta[i + k]!;
      } else {
        page.set(delta.subarray(i, i + count), d);
      }
    }
    d += count;
    i += count;
  }
  return d;
}

/** Turns a negative scanXbzrle result into its error. */
export function xbzrleFailure(result: number, where?: PayloadLocation): XbzrleError {
  const packed = -result;
  const code = packed & 7;
  return new XbzrleError(PROBLEMS[code] ?? 'invalid delta', (packed - code) / 8, where);
}

/**
 * Applies `delta` to `page` in place (xbzrle_decode_buffer with dlen = page.length). Returns the
 * number of page bytes the delta covers; throws XbzrleError where QEMU returns -1. On error the
 * page may be partly updated, as in QEMU.
 */
export function decodeXbzrle(delta: Uint8Array, page: Uint8Array, where?: PayloadLocation): number {
  const result = scanXbzrle(delta, page, page.length);
  if (result < 0) throw xbzrleFailure(result, where);
  return result;
}

function putUleb(out: Uint8Array, at: number, n: number): number {
  if (n < 0x80) {
    out[at] = n;
    return 1;
  }
  out[at] = (n & 0x7f) | 0x80;
  out[at + 1] = n >> 7;
  return 2;
}

const EMPTY = Buffer.alloc(0);

/**
 * The delta from `oldPage` to `newPage`, as xbzrle_encode_buffer writes it with
 * dlen = `maxLength` (QEMU's sender passes TARGET_PAGE_SIZE). Returns an empty buffer when the
 * pages are equal (QEMU: 0, nothing is sent) and null when the delta would not fit (QEMU: -1, the
 * page is sent whole) or a run exceeds 14 bits (where QEMU would assert).
 */
export function encodeXbzrle(oldPage: Uint8Array, newPage: Uint8Array, maxLength = newPage.length): Buffer | null {
  const slen = newPage.length;
  if (oldPage.length !== slen) {
    throw new ArgumentError(`encodeXbzrle: pages differ in length (${oldPage.length} and ${slen})`);
  }
  const out = Buffer.allocUnsafe(maxLength);
  let i = 0;
  let d = 0;
  while (i < slen) {
    if (d + 2 > maxLength) return null;
    const zrunStart = i;
    while (i < slen && oldPage[i] === newPage[i]) i++;
    const zrun = i - zrunStart;
    if (zrun === slen) return EMPTY; // buffer unchanged
    if (i === slen) break; // the last zero run is not sent
    if (zrun > XBZRLE_MAX_RUN) return null;
    d += putUleb(out, d, zrun);

    if (d + 2 > maxLength) return null;
    const nzrunStart = i;
    while (i < slen && oldPage[i] !== newPage[i]) i++;
    const nzrun = i - nzrunStart;
    if (nzrun > XBZRLE_MAX_RUN) return null;
    d += putUleb(out, d, nzrun);
    if (d + nzrun > maxLength) return null;
    out.set(newPage.subarray(nzrunStart, i), d);
    d += nzrun;
  }
  return out.subarray(0, d);
}
