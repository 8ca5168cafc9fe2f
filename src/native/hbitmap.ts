/**
 * HBitmap: QEMU's multi-level dirty bitmap (util/hbitmap.c) over the C++ addon, with its storage
 * in an ArrayBuffer owned here. See native/hbitmap.h for the design and complexity.
 *
 *   const dirty = new HBitmap(guestBytes / 4096, { granularity: 4096 });
 *   dirty.set(page, 1);
 *   for (const { start, length } of dirty.dirtyAreas()) …
 */
import { endianness } from 'node:os';
import { ArgumentError } from '../stream/errors.js';
import { checkInteger, describe, nativeBinding } from './binding.js';

export interface HBitmapOptions {
  /**
   * Bytes one granule (one bit) stands for: a power of two, 1 (default) to 2^30, e.g. 4096 for
   * guest pages or 1 MiB for block-migration chunks. Only the byte-range helpers use it.
   */
  granularity?: number;
}

/** A run of set bits: granules [start, start + length). */
export interface DirtyArea {
  start: number;
  length: number;
}

const LITTLE_ENDIAN = endianness() === 'LE';
/** Scratch of nextDirtyArea: calls are synchronous, and each thread has its own module. */
const PAIR = new Float64Array(2);
/** Dirty areas fetched per call while iterating. */
const AREA_BATCH = 256;

/**
 * A multi-level dirty bitmap in the style of QEMU's util/hbitmap.c: one bit per granule at the
 * bottom level, and above it levels with one bit per non-zero 64-bit word of the level below,
 * so searches skip empty stretches 64, 4096, 262144… granules at a time.
 *
 * Every index and count is in granules. Sizes go up to 2^41 granules; memory is size/8 bytes
 * plus about 1/63 of that for the upper levels, allocated lazily by the OS (an untouched
 * 2^32-granule map costs no resident memory).
 *
 * Iteration (dirtyAreas(), the iterator) reads areas in batches; bits may be set or reset while
 * iterating: an area already read is still yielded, changes before the iteration position are
 * not seen, changes after it are.
 */
export class HBitmap {
  /** Largest size: 2^41 granules (QEMU's HBITMAP_LOG_MAX_SIZE on 64-bit hosts). */
  static readonly MAX_GRANULES = 2 ** 41;

  /** Bytes per granule. */
  readonly granularity: number;
  #size: number;
  #words: ArrayBuffer;
  #bytes: Uint8Array;
  #count = 0;

  constructor(granules: number, options: HBitmapOptions = {}) {
    checkInteger('HBitmap', 'size', granules, 0, HBitmap.MAX_GRANULES);
    const granularity = options.granularity ?? 1;
    checkInteger('HBitmap', 'granularity', granularity, 1, 2 ** 30);
    if ((granularity & (granularity - 1)) !== 0) {
      throw new ArgumentError(`HBitmap: granularity must be a power of two, got ${granularity}`);
    }
    this.granularity = granularity;
    this.#size = granules;
    this.#words = allocate(granules);
    this.#bytes = new Uint8Array(this.#words);
  }

  /** Number of granules. */
  get size(): number {
    return this.#size;
  }

  /** Sets granules [start, start + count); returns how many were clear before. */
  set(start: number, count = 1): number {
    this.#range('set', start, count);
    const added = nativeBinding().hbSet(this.#words, this.#size, start, count);
    this.#count += added;
    return added;
  }

  /** Clears granules [start, start + count); returns how many were set before. */
  reset(start: number, count = 1): number {
    this.#range('reset', start, count);
    const removed = nativeBinding().hbReset(this.#words, this.#size, start, count);
    this.#count -= removed;
    return removed;
  }

  /** Whether granule `index` is set. Read here, without a native call. */
  get(index: number): boolean {
    checkInteger('HBitmap.get', 'index', index, 0, this.#size - 1);
    // Level 0 starts the storage: 64-bit words in native byte order.
    const byte = LITTLE_ENDIAN ? Math.floor(index / 8) : Math.floor(index / 64) * 8 + 7 - (Math.floor(index / 8) % 8);
    return ((this.#bytes[byte]! >> (index % 8)) & 1) === 1;
  }

  /** Set granules in the whole map (kept up to date, no scan). */
  count(): number {
    return this.#count;
  }

  /** Set granules in [start, start + count). */
  countRange(start: number, count: number): number {
    this.#range('countRange', start, count);
    return nativeBinding().hbCount(this.#words, this.#size, start, count);
  }

  /** The first set granule at or after `from` (and before `end`, default the size), or -1. */
  nextSet(from = 0, end = this.#size): number {
    const [start, count] = this.#window('nextSet', from, end);
    return count === 0 ? -1 : nativeBinding().hbNextSet(this.#words, this.#size, start, count);
  }

  /** The first clear granule at or after `from` (and before `end`, default the size), or -1. */
  nextZero(from = 0, end = this.#size): number {
    const [start, count] = this.#window('nextZero', from, end);
    return count === 0 ? -1 : nativeBinding().hbNextZero(this.#words, this.#size, start, count);
  }

  /**
   * The first run of set granules starting at or after `from`, at most `maxLength` long (a
   * longer run is cut; the next call from its end returns the rest), or null
   * (hbitmap_next_dirty_area).
   */
  nextDirtyArea(from = 0, maxLength = Infinity): DirtyArea | null {
    return this.fillDirtyAreas(PAIR, from, maxLength) === 1 ? { start: PAIR[0]!, length: PAIR[1]! } : null;
  }

  /**
   * The batch form of nextDirtyArea for hot loops: fills `out` with (start, length) pairs of
   * successive dirty areas from `from` and returns how many it wrote (fewer than
   * out.length / 2 only when the map has no more).
   */
  fillDirtyAreas(out: Float64Array, from = 0, maxLength = Infinity): number {
    if (!(out instanceof Float64Array) || out.length < 2) {
      throw new ArgumentError(`HBitmap.fillDirtyAreas: out must be a Float64Array of at least 2 entries, got ${describe(out)}`);
    }
    const [start, count] = this.#window('fillDirtyAreas', from, this.#size);
    const cap = this.#maxLength('fillDirtyAreas', maxLength);
    if (count === 0) return 0;
    return nativeBinding().hbDirtyAreas(this.#words, this.#size, start, count, cap, out);
  }

  /** Every dirty area from `from`, each at most `maxLength` granules. Arguments are checked now. */
  dirtyAreas(from = 0, maxLength = Infinity): Generator<DirtyArea, void, undefined> {
    this.#window('dirtyAreas', from, this.#size);
    this.#maxLength('dirtyAreas', maxLength);
    return this.#areas(from, maxLength);
  }

  *#areas(from: number, maxLength: number): Generator<DirtyArea, void, undefined> {
    const batch = new Float64Array(2 * AREA_BATCH);
    let position = from;
    for (;;) {
      if (position >= this.#size) return;
      const n = this.fillDirtyAreas(batch, position, maxLength);
      for (let i = 0; i < n; i++) yield { start: batch[2 * i]!, length: batch[2 * i + 1]! };
      if (n < AREA_BATCH) return;
      position = batch[2 * n - 2]! + batch[2 * n - 1]!;
    }
  }

  /** Every set granule, in order. */
  *[Symbol.iterator](): Generator<number, void, undefined> {
    for (const { start, length } of this.dirtyAreas()) {
      for (let i = start; i < start + length; i++) yield i;
    }
  }

  /** Clears every granule; costs only as much as there are non-zero words. */
  clear(): void {
    if (this.#count === 0) return;
    nativeBinding().hbReset(this.#words, this.#size, 0, this.#size);
    this.#count = 0;
  }

  /** ORs `other` (same size and granularity) into this map; returns how many bits were newly set. */
  merge(other: HBitmap): number {
    if (!(other instanceof HBitmap)) throw new ArgumentError(`HBitmap.merge: expected an HBitmap, got ${describe(other)}`);
    if (other.#size !== this.#size || other.granularity !== this.granularity) {
      throw new ArgumentError(`HBitmap.merge: maps differ (${this.#size} granules of ${this.granularity} bytes, other ${other.#size} of ${other.granularity})`);
    }
    const added = nativeBinding().hbMerge(this.#words, this.#size, other.#words, other.#size);
    this.#count += added;
    return added;
  }

  /**
   * The bottom level as ceil(size / 8) bytes: granule i is bit i % 8 of byte i / 8 (QEMU's
   * little-endian serialization, without its padding to whole 64-bit words).
   */
  export(): Uint8Array {
    const out = new Uint8Array(Math.ceil(this.#size / 8));
    nativeBinding().hbExport(this.#words, this.#size, out);
    return out;
  }

  /** Replaces the content with `bytes` in export()'s format; bits past the size must be clear. */
  import(bytes: Uint8Array): void {
    if (!(bytes instanceof Uint8Array)) throw new ArgumentError(`HBitmap.import: expected a Uint8Array, got ${describe(bytes)}`);
    const expected = Math.ceil(this.#size / 8);
    if (bytes.length !== expected) {
      throw new ArgumentError(`HBitmap.import: ${bytes.length} bytes for ${this.#size} granules, expected ${expected}`);
    }
    const spare = this.#size % 8;
    if (spare !== 0 && bytes[expected - 1]! >> spare !== 0) {
      throw new ArgumentError(`HBitmap.import: bits at or past the size ${this.#size} are set`);
    }
    this.#count = nativeBinding().hbImport(this.#words, this.#size, bytes);
  }

  /** Grows or shrinks the map to `granules`, keeping the bits that still fit (hbitmap_truncate). */
  resize(granules: number): void {
    checkInteger('HBitmap.resize', 'size', granules, 0, HBitmap.MAX_GRANULES);
    if (granules === this.#size) return;
    const words = allocate(granules);
    this.#count = this.#count === 0 ? 0 : nativeBinding().hbCopy(words, granules, this.#words, this.#size);
    this.#words = words;
    this.#bytes = new Uint8Array(words);
    this.#size = granules;
  }

  /** A copy with the same size, granularity and bits. */
  clone(): HBitmap {
    const copy = new HBitmap(this.#size, { granularity: this.granularity });
    copy.merge(this);
    return copy;
  }

  /** Sets every granule that bytes [offset, offset + length) touch (rounding outwards). */
  setBytes(offset: number, length: number): number {
    const [first, end] = this.#granules('setBytes', offset, length, true);
    return end > first ? this.set(first, end - first) : 0;
  }

  /** Clears the granules wholly inside bytes [offset, offset + length) (rounding inwards). */
  resetBytes(offset: number, length: number): number {
    const [first, end] = this.#granules('resetBytes', offset, length, false);
    return end > first ? this.reset(first, end - first) : 0;
  }

  #range(name: string, start: number, count: number): void {
    const where = `HBitmap.${name}`;
    checkInteger(where, 'start', start, 0, this.#size);
    checkInteger(where, 'count', count, 0, this.#size);
    if (start + count > this.#size) {
      throw new ArgumentError(`${where}: range ${start} + ${count} exceeds the size ${this.#size}`);
    }
  }

  /** [from, end) of a search as (start, count), clipped to the map. */
  #window(name: string, from: number, end: number): [number, number] {
    const where = `HBitmap.${name}`;
    checkInteger(where, 'from', from, 0, Number.MAX_SAFE_INTEGER);
    checkInteger(where, 'end', end, 0, Number.MAX_SAFE_INTEGER);
    const stop = Math.min(end, this.#size);
    const start = Math.min(from, stop);
    return [start, stop - start];
  }

  #maxLength(name: string, maxLength: number): number {
    if (maxLength === Infinity) return Number.MAX_SAFE_INTEGER;
    return checkInteger(`HBitmap.${name}`, 'maxLength', maxLength, 1, Number.MAX_SAFE_INTEGER);
  }

  #granules(name: string, offset: number, length: number, outwards: boolean): [number, number] {
    const where = `HBitmap.${name}`;
    const bytes = this.#size * this.granularity;
    checkInteger(where, 'offset', offset, 0, Number.MAX_SAFE_INTEGER);
    checkInteger(where, 'length', length, 0, Number.MAX_SAFE_INTEGER);
    if (offset + length > bytes) {
      throw new ArgumentError(`${where}: bytes ${offset} + ${length} exceed the ${bytes} bytes the map covers`);
    }
    const g = this.granularity;
    return outwards ? [Math.floor(offset / g), Math.ceil((offset + length) / g)] : [Math.ceil(offset / g), Math.floor((offset + length) / g)];
  }
}

function allocate(granules: number): ArrayBuffer {
  const bytes = nativeBinding().hbitmapBytes(granules);
  try {
    return new ArrayBuffer(bytes);
  } catch (error) {
    throw new ArgumentError(`HBitmap: cannot allocate ${bytes} bytes for ${granules} granules (${(error as Error).message})`);
  }
}
