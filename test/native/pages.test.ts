/**
 * Zero-page scan and page hashing: against plain loops, on views at every alignment, and
 * against XXH64 values printed by `xxhsum -H1` (xxHash 0.8.1).
 */
import { describe, expect, test } from 'vitest';
import { findZeroPages, hash64, hashPages, isAllZero } from '../../src/native.js';
import { prng } from '../helpers/feed.js';

function referenceZeroPages(bytes: Uint8Array, pageSize: number): Uint8Array {
  const out = new Uint8Array(bytes.length / pageSize);
  for (let page = 0; page < out.length; page++) {
    out[page] = bytes.subarray(page * pageSize, (page + 1) * pageSize).every((b) => b === 0) ? 1 : 0;
  }
  return out;
}

/** `length` bytes at byte offset `offset` of a larger buffer with non-zero guard bytes around. */
function viewAt(offset: number, length: number): Uint8Array {
  const backing = new Uint8Array(offset + length + 16).fill(0xee);
  const view = backing.subarray(offset, offset + length);
  view.fill(0);
  return view;
}

describe('findZeroPages', () => {
  test('matches a plain loop for many page sizes, at every alignment', () => {
    const random = prng(3);
    for (const pageSize of [1, 3, 8, 15, 16, 31, 32, 33, 64, 255, 256, 257, 512, 1000, 4096]) {
      for (let offset = 0; offset < 16; offset++) {
        const pages = Math.floor(random() * 12);
        const view = viewAt(offset, pages * pageSize);
        for (let page = 0; page < pages; page++) {
          const kind = random();
          if (kind < 0.4) continue; // zero page
          if (kind < 0.8) view[page * pageSize + Math.floor(random() * pageSize)] = 1 + Math.floor(random() * 255);
          else for (let i = 0; i < pageSize; i++) view[page * pageSize + i] = Math.floor(random() * 256);
        }
        const expected = referenceZeroPages(view, pageSize);
        expect(findZeroPages(view, pageSize), `pageSize ${pageSize}, offset ${offset}`).toEqual(expected);
      }
    }
  });

  test('a single non-zero byte anywhere in a 4 KiB page is seen, aligned or not', () => {
    for (const offset of [0, 1, 7]) {
      // 4096 pages, page i with byte i set, then one zero page.
      const view = viewAt(offset, 4097 * 4096);
      for (let i = 0; i < 4096; i++) view[i * 4096 + i] = 0x80;
      const result = findZeroPages(view, 4096);
      expect(result.length).toBe(4097);
      expect(result.subarray(0, 4096).every((z) => z === 0)).toBe(true);
      expect(result[4096]).toBe(1);
    }
  });

  test('the guard bytes around a view are not read as part of it', () => {
    const view = viewAt(5, 3 * 4096);
    expect([...findZeroPages(view, 4096)]).toEqual([1, 1, 1]);
    expect(isAllZero(view)).toBe(true);
    expect(isAllZero(view.subarray(1, 4000))).toBe(true);
  });

  test('takes any view or buffer, and an out array to reuse', () => {
    const bytes = new Uint8Array(64);
    bytes[40] = 1;
    const expected = [1, 1, 0, 1];
    expect([...findZeroPages(Buffer.from(bytes), 16)]).toEqual(expected);
    expect([...findZeroPages(new Uint16Array(bytes.buffer), 16)]).toEqual(expected);
    expect([...findZeroPages(new DataView(bytes.buffer, 16), 16)]).toEqual([1, 0, 1]);
    expect([...findZeroPages(bytes.buffer, 16)]).toEqual(expected);
    const shared = new Uint8Array(new SharedArrayBuffer(64));
    shared[5] = 9;
    expect([...findZeroPages(shared, 32)]).toEqual([0, 1]);
    const out = new Uint8Array(10).fill(7);
    const result = findZeroPages(bytes, 16, out);
    expect(result.buffer).toBe(out.buffer);
    expect([...result]).toEqual(expected);
    expect(out[4]).toBe(7);
    expect(findZeroPages(new Uint8Array(0), 4096)).toEqual(new Uint8Array(0));
  });

  test('isAllZero on short and long buffers', () => {
    for (let length = 0; length < 80; length++) {
      for (let at = 0; at < length; at++) {
        const view = viewAt(length % 8, length);
        expect(isAllZero(view)).toBe(true);
        view[at] = 1;
        expect(isAllZero(view), `length ${length}, byte ${at}`).toBe(false);
      }
    }
    const big = new Uint8Array(3 * 2 ** 20 + 5);
    expect(isAllZero(big)).toBe(true);
    big[2 ** 20 + 777] = 1;
    expect(isAllZero(big)).toBe(false);
  });
});

describe('hashPages', () => {
  const pattern = (length: number) => Uint8Array.from({ length }, (_, i) => (i * 131 + 7) & 255);
  const range = (length: number) => Uint8Array.from({ length }, (_, i) => i);
  // xxhsum -H1 of the same bytes.
  const vectors: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'ef46db3751d8e999'],
    ['"a"', Buffer.from('a'), 'd24ec4f1a98c6e5b'],
    ['"abc"', Buffer.from('abc'), '44bc2cf5ad770999'],
    ['0..3', range(4), 'ffced8604453cc1e'],
    ['0..7', range(8), '884a173614b81b8d'],
    ['0..30', range(31), 'c346d2b59b4d8ee1'],
    ['0..31', range(32), 'cbf59c5116ff32b4'],
    ['0..32', range(33), '0c535d1acafb8ead'],
    ['0..62', range(63), 'e26aa9e2a95f8e4f'],
    ['4096 zero bytes', new Uint8Array(4096), 'ac869b6f32d8bbdb'],
    ['4096-byte pattern', pattern(4096), 'cf05adf75aca30cf'],
    ['4099-byte pattern', pattern(4099), 'c2c15a86d6a1985b'],
  ];

  test('is XXH64 (seed 0), as xxhsum -H1 prints it', () => {
    for (const [name, bytes, hex] of vectors) {
      expect(hash64(bytes).toString(16).padStart(16, '0'), name).toBe(hex);
      if (bytes.length > 0) expect(hashPages(bytes, bytes.length)[0]!.toString(16).padStart(16, '0'), name).toBe(hex);
    }
  });

  test('one hash per page, the same at any alignment', () => {
    const random = prng(9);
    for (const pageSize of [1, 7, 32, 33, 100, 4096]) {
      const pages = 9;
      const source = Uint8Array.from({ length: pages * pageSize }, () => Math.floor(random() * 256));
      source.fill(0, 2 * pageSize, 3 * pageSize); // a zero page
      source.copyWithin(5 * pageSize, 4 * pageSize, 5 * pageSize); // a duplicate of page 4
      const aligned = hashPages(source, pageSize);
      expect(aligned.length).toBe(pages);
      for (let page = 0; page < pages; page++) {
        expect(aligned[page]).toBe(hash64(source.subarray(page * pageSize, (page + 1) * pageSize)));
      }
      expect(aligned[5]).toBe(aligned[4]);
      for (let offset = 1; offset < 9; offset++) {
        const view = viewAt(offset, source.length);
        view.set(source);
        expect(hashPages(view, pageSize), `pageSize ${pageSize}, offset ${offset}`).toEqual(aligned);
      }
    }
  });

  test('distinct pages get distinct hashes', () => {
    const pages = 20_000;
    const bytes = new Uint8Array(pages * 64);
    const view = new DataView(bytes.buffer);
    for (let page = 0; page < pages; page++) view.setUint32(page * 64 + 60, page);
    const hashes = hashPages(bytes, 64);
    expect(new Set(hashes).size).toBe(pages);
  });

  test('fills an out array to reuse', () => {
    const out = new BigUint64Array(4);
    const result = hashPages(new Uint8Array(8192), 4096, out);
    expect(result.length).toBe(2);
    expect(result.buffer).toBe(out.buffer);
    expect(out[0]).toBe(0xac869b6f32d8bbdbn);
    expect(out[2]).toBe(0n);
  });
});
