/**
 * Bad arguments are an ArgumentError (code ERR_ARGUMENT) at the TypeScript boundary, and again
 * when the raw addon is called directly: nothing reaches memory out of range.
 */
import { describe, expect, test } from 'vitest';
import { HBitmap, findZeroPages, hash64, hashPages, isAllZero, nativeBinding } from '../../src/native.js';
import { expectArgumentError } from '../helpers/argument-error.js';

const notIntegers: unknown[] = [-1, 1.5, Number.NaN, Infinity, '3', null, undefined, 3n, {}];

describe('HBitmap rejects bad arguments', () => {
  test('constructor', () => {
    for (const size of notIntegers) expectArgumentError(() => new HBitmap(size as number), /size/);
    expectArgumentError(() => new HBitmap(2 ** 41 + 1), /size/);
    for (const granularity of [0, 3, 1.5, 2 ** 31, -4096, '4096']) {
      expectArgumentError(() => new HBitmap(10, { granularity: granularity as number }), /granularity/);
    }
  });

  test('ranges, indexes and positions', () => {
    const map = new HBitmap(100);
    for (const bad of notIntegers) {
      if (bad === undefined) continue; // undefined takes the default
      expectArgumentError(() => map.set(bad as number), /start/);
      expectArgumentError(() => map.reset(0, bad as number), /count/);
      expectArgumentError(() => map.get(bad as number), /index/);
      expectArgumentError(() => map.countRange(bad as number, 1), /start/);
      expectArgumentError(() => map.nextSet(bad as number), /from/);
      expectArgumentError(() => map.nextZero(0, bad as number), /end/);
      expectArgumentError(() => map.nextDirtyArea(bad as number), /from/);
    }
    expectArgumentError(() => map.set(100), /exceeds the size 100/);
    expectArgumentError(() => map.set(50, 51), /exceeds/);
    expectArgumentError(() => map.reset(101, 0), /start/);
    expectArgumentError(() => map.get(100), /index/);
    expectArgumentError(() => new HBitmap(0).get(0), /index/);
    expectArgumentError(() => map.countRange(0, 101), /count/);
    expectArgumentError(() => map.nextDirtyArea(0, 0), /maxLength/);
    expectArgumentError(() => map.nextDirtyArea(0, 1.5), /maxLength/);
    expectArgumentError(() => map.dirtyAreas(-1), /from/); // at the call, not at the first next()
    expectArgumentError(() => map.dirtyAreas(0, 0), /maxLength/);
    expectArgumentError(() => map.fillDirtyAreas(new Float64Array(1)), /Float64Array/);
    expectArgumentError(() => map.fillDirtyAreas(new Float32Array(4) as unknown as Float64Array), /Float64Array/);
    expectArgumentError(() => map.setBytes(-1, 1), /offset/);
    expectArgumentError(() => map.resetBytes(0, 101), /exceed/);
    // Searches past the end are not errors: there is nothing there.
    expect(map.nextSet(5000)).toBe(-1);
    expect(map.nextZero(100)).toBe(-1);
    expect(map.nextDirtyArea(2 ** 53 - 1)).toBeNull();
  });

  test('merge, import and resize', () => {
    const map = new HBitmap(100);
    expectArgumentError(() => map.merge(new HBitmap(101)), /differ/);
    expectArgumentError(() => map.merge(new HBitmap(100, { granularity: 2 })), /differ/);
    expectArgumentError(() => map.merge({} as HBitmap), /HBitmap/);
    expectArgumentError(() => map.import(new Uint8Array(12)), /expected 13/);
    expectArgumentError(() => map.import([0, 1] as unknown as Uint8Array), /Uint8Array/);
    const tail = new Uint8Array(13);
    tail[12] = 0x10; // bit 100
    expectArgumentError(() => map.import(tail), /past the size/);
    tail[12] = 0x08; // bit 99: fine
    map.import(tail);
    expect([...map]).toEqual([99]);
    expectArgumentError(() => map.resize(-5), /size/);
    expectArgumentError(() => map.resize(2 ** 41 + 1), /size/);
  });
});

describe('page scans reject bad arguments', () => {
  test('buffers, page sizes and outputs', () => {
    const page = new Uint8Array(4096);
    for (const fn of [findZeroPages, hashPages] as ((b: unknown, p: unknown, o?: unknown) => unknown)[]) {
      for (const buffer of [null, undefined, 'abc', [0, 0], 42, {}]) expectArgumentError(() => fn(buffer, 4096), /buffer/);
      for (const size of [0, -4096, 1.5, Number.NaN, '4096', 2 ** 32 + 1]) expectArgumentError(() => fn(page, size), /pageSize/);
      expectArgumentError(() => fn(page, 1000), /whole number of 1000-byte pages/);
      expectArgumentError(() => fn(new Uint8Array(8192), 4096, fn === hashPages ? new BigUint64Array(1) : new Uint8Array(1)), /out holds 1/);
      expectArgumentError(() => fn(page, 4096, new Uint32Array(1)), /out must be/);
    }
    expectArgumentError(() => isAllZero('0000' as unknown as Uint8Array), /buffer/);
    expectArgumentError(() => hash64(undefined as unknown as Uint8Array), /buffer/);
  });
});

describe('the addon re-checks every argument itself', () => {
  const raw = nativeBinding();
  const storage = new ArrayBuffer(raw.hbitmapBytes(1000));
  const call = (fn: () => unknown, message: RegExp) => expectArgumentError(fn, message);

  test('bitmap storage and sizes', () => {
    expect(raw.hbitmapBytes(1000)).toBe(8 * (16 + 1));
    call(() => raw.hbitmapBytes(2 ** 41 + 1), /size/);
    call(() => raw.hbSet(new ArrayBuffer(8), 1000, 0, 1), /too small/);
    call(() => raw.hbSet(new Uint8Array(storage) as unknown as ArrayBuffer, 1000, 0, 1), /ArrayBuffer/);
    call(() => raw.hbSet(new SharedArrayBuffer(136) as unknown as ArrayBuffer, 1000, 0, 1), /ArrayBuffer/);
    call(() => raw.hbSet(storage, -1, 0, 1), /size/);
    call(() => raw.hbSet(storage, 2 ** 41 + 1, 0, 1), /size/);
    call(() => (raw.hbSet as (...args: unknown[]) => unknown)(storage, 1000, 0), /expected 4 arguments/);
    const detached = new ArrayBuffer(136);
    structuredClone(detached, { transfer: [detached] });
    call(() => raw.hbSet(detached, 1000, 0, 1), /too small/);
  });

  test('ranges and positions', () => {
    call(() => raw.hbSet(storage, 1000, 999, 2), /exceeds the bitmap size 1000/);
    call(() => raw.hbSet(storage, 1000, 1001, 0), /start/);
    call(() => raw.hbReset(storage, 1000, 0, 1001), /count/);
    call(() => raw.hbCount(storage, 1000, 0.5, 1), /start/);
    call(() => raw.hbNextSet(storage, 1000, Number.NaN, 1), /start/);
    call(() => raw.hbNextZero(storage, 1000, 0, -1), /count/);
    call(() => raw.hbGet(storage, 1000, 1000), /index/);
    call(() => raw.hbGet(storage, 0, 0), /empty/);
    call(() => raw.hbSet(storage, 1000, '1' as unknown as number, 1), /start must be a number/);
    call(() => raw.hbDirtyAreas(storage, 1000, 0, 1000, 0, new Float64Array(2)), /maxLength/);
    call(() => raw.hbDirtyAreas(storage, 1000, 0, 1000, 1, new Float32Array(2) as unknown as Float64Array), /Float64Array/);
  });

  test('merge, copy, export and import', () => {
    const other = new ArrayBuffer(raw.hbitmapBytes(999));
    call(() => raw.hbMerge(storage, 1000, other, 999), /sizes differ/);
    call(() => raw.hbCopy(storage, 1000, storage, 1000), /same storage/);
    call(() => raw.hbExport(storage, 1000, new Uint8Array(124)), /expected 125/);
    call(() => raw.hbImport(storage, 1000, new Uint8Array(126)), /expected 125/);
    call(() => raw.hbImport(storage, 1001, new Uint8Array(126).fill(0xff)), /too small|past the size/);
    call(() => raw.hbExport(storage, 1000, new Uint16Array(63) as unknown as Uint8Array), /Uint8Array/);
  });

  test('page scans', () => {
    const page = new Uint8Array(4096);
    call(() => raw.findZeroPages(page, 0, new Uint8Array(1)), /pageSize/);
    call(() => raw.findZeroPages(page, 1000, new Uint8Array(5)), /whole number/);
    call(() => raw.findZeroPages(page, 4096, new Uint8Array(0)), /out holds 0/);
    call(() => raw.findZeroPages(new Uint16Array(2048) as unknown as Uint8Array, 4096, new Uint8Array(1)), /Uint8Array/);
    call(() => raw.hashPages(page, 4096, new BigInt64Array(1) as unknown as BigUint64Array), /BigUint64Array/);
    call(() => raw.hashPages(page, 4096, new BigUint64Array(0)), /out holds 0/);
    call(() => raw.isAllZero({} as Uint8Array), /Uint8Array/);
    call(() => (raw.isAllZero as () => boolean)(), /expected 1 arguments/);
  });

  test('a failed check leaves the storage untouched', () => {
    const before = Buffer.from(storage).toString('hex');
    expect(() => raw.hbSet(storage, 1000, 999, 2)).toThrow();
    expect(Buffer.from(storage).toString('hex')).toBe(before);
  });
});
