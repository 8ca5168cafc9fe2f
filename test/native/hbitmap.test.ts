/**
 * HBitmap against the one-byte-per-bit model: random operation sequences at sizes on word and
 * level boundaries, checked after every operation (as QEMU's test-hbitmap.c does).
 */
import { describe, expect, test } from 'vitest';
import { HBitmap } from '../../src/native.js';
import { prng } from '../helpers/feed.js';
import { BitModel } from './model.js';

const SIZES = [0, 1, 2, 63, 64, 65, 127, 128, 129, 4095, 4096, 4097, 262_143, 262_144, 262_145, 2 ** 20 + 1];

type Random = () => number;
const int = (random: Random, below: number): number => Math.floor(random() * below);

/** A position, often next to a word or level boundary (multiples of 64, 4096, 262144). */
function position(random: Random, size: number): number {
  if (size === 0) return 0;
  const pick = random();
  if (pick < 0.4) {
    const unit = [64, 4096, 262_144][int(random, 3)]!;
    const k = int(random, Math.floor(size / unit) + 1);
    return Math.min(size - 1, Math.max(0, k * unit + int(random, 3) - 1));
  }
  return int(random, size);
}

/** A range inside the map: short, word-sized or long. */
function range(random: Random, size: number): [number, number] {
  const start = size === 0 ? 0 : position(random, size);
  const room = size - start;
  const scale = [4, 70, 5000, room][int(random, 4)]!;
  return [start, Math.min(room, int(random, scale + 1))];
}

function checkQueries(map: HBitmap, model: BitModel, random: Random): void {
  const size = model.size;
  expect(map.count()).toBe(model.count());
  for (let probe = 0; probe < 4; probe++) {
    const at = position(random, size);
    if (size > 0) expect(map.get(at), `get(${at})`).toBe(model.bits[at] === 1);
    expect(map.nextSet(at), `nextSet(${at})`).toBe(model.nextSet(at));
    expect(map.nextZero(at), `nextZero(${at})`).toBe(model.nextZero(at));
    const end = at + int(random, 300);
    expect(map.nextSet(at, end), `nextSet(${at}, ${end})`).toBe(model.nextSet(at, end));
    expect(map.nextZero(at, end), `nextZero(${at}, ${end})`).toBe(model.nextZero(at, end));
    const maxLength = [1, 3, 64, 65, Infinity][int(random, 5)]!;
    expect(map.nextDirtyArea(at, maxLength), `nextDirtyArea(${at}, ${maxLength})`).toEqual(model.areas(at, maxLength)[0] ?? null);
    const [start, count] = range(random, size);
    expect(map.countRange(start, count), `countRange(${start}, ${count})`).toBe(model.count(start, count));
  }
}

function checkWhole(map: HBitmap, model: BitModel, random: Random): void {
  expect(Buffer.from(map.export()).equals(Buffer.from(model.pack()))).toBe(true);
  const from = position(random, model.size);
  const maxLength = [1, 7, 64, 1000, Infinity][int(random, 5)]!;
  expect([...map.dirtyAreas(from, maxLength)]).toEqual(model.areas(from, maxLength));
}

function runSequence(size: number, seed: number, operations: number): void {
  const random = prng(seed);
  const map = new HBitmap(size, { granularity: 4096 });
  const model = new BitModel(size);
  for (let op = 0; op < operations; op++) {
    const kind = random();
    if (kind < 0.45) {
      const [start, count] = range(random, size);
      expect(map.set(start, count), `set(${start}, ${count})`).toBe(model.set(start, count));
    } else if (kind < 0.85) {
      const [start, count] = range(random, size);
      expect(map.reset(start, count), `reset(${start}, ${count})`).toBe(model.reset(start, count));
    } else if (kind < 0.88) {
      map.clear();
      model.reset(0, size);
    } else if (kind < 0.94) {
      // merge a random sparse map
      const other = new HBitmap(size, { granularity: 4096 });
      const shadow = new BitModel(size);
      for (let i = 0; i < 5; i++) {
        const [start, count] = range(random, size);
        other.set(start, count);
        shadow.set(start, count);
      }
      let added = 0;
      for (let i = 0; i < size; i++) if (shadow.bits[i] === 1 && model.bits[i] === 0) added++;
      expect(map.merge(other)).toBe(added);
      for (let i = 0; i < size; i++) model.bits[i]! |= shadow.bits[i]!;
    } else {
      // export, import into a fresh map, keep working on the copy
      const copy = new HBitmap(size, { granularity: 4096 });
      copy.import(map.export());
      expect(copy.count()).toBe(model.count());
      checkQueries(copy, model, random);
    }
    checkQueries(map, model, random);
    if (op % 10 === 0 || size < 5000) checkWhole(map, model, random);
  }
  checkWhole(map, model, random);
}

describe('HBitmap against the bit model', () => {
  for (const size of SIZES) {
    const operations = size <= 5000 ? 300 : size <= 300_000 ? 80 : 40;
    test(`random operations, ${size} granules`, () => runSequence(size, 1000 + size, operations));
  }

  test('dense random maps: export, areas and counts agree', () => {
    const random = prng(7);
    for (const size of [65, 4097, 262_145]) {
      for (const density of [0.001, 0.1, 0.5, 0.9, 0.999]) {
        const model = new BitModel(size);
        for (let i = 0; i < size; i++) model.bits[i] = random() < density ? 1 : 0;
        const map = new HBitmap(size);
        map.import(model.pack());
        expect(map.count()).toBe(model.count());
        expect([...map.dirtyAreas()]).toEqual(model.areas());
        expect([...map.dirtyAreas(0, 5)]).toEqual(model.areas(0, 5));
        expect([...map]).toEqual([...model.bits.keys()].filter((i) => model.bits[i] === 1));
        checkQueries(map, model, random);
      }
    }
  });

  test('resize keeps the bits that fit and clears the rest', () => {
    const random = prng(11);
    let size = 100;
    const map = new HBitmap(size);
    let model = new BitModel(size);
    for (let step = 0; step < 60; step++) {
      const [start, count] = range(random, size);
      map.set(start, count);
      model.set(start, count);
      const next = [0, 1, 63, 64, 65, 4096, 4097, 262_145, int(random, 5000)][int(random, 9)]!;
      map.resize(next);
      const grown = new BitModel(next);
      grown.bits.set(model.bits.subarray(0, next));
      model = grown;
      size = next;
      expect(map.size).toBe(size);
      expect(map.count()).toBe(model.count());
      expect(Buffer.from(map.export()).equals(Buffer.from(model.pack()))).toBe(true);
      checkQueries(map, model, random);
    }
  });

  test('clone is independent', () => {
    const map = new HBitmap(5000);
    map.set(10, 100);
    const copy = map.clone();
    copy.reset(10, 50);
    expect(map.count()).toBe(100);
    expect(copy.count()).toBe(50);
    expect(copy.granularity).toBe(map.granularity);
  });

  test('areas can be reset while iterating', () => {
    const map = new HBitmap(10_000);
    for (let i = 0; i < 10_000; i += 3) map.set(i, Math.min(2, 10_000 - i));
    let seen = 0;
    for (const { start, length } of map.dirtyAreas()) {
      seen += length;
      map.reset(start, length);
    }
    expect(seen).toBe(6667);
    expect(map.count()).toBe(0);
  });
});

describe('HBitmap byte ranges and granularity', () => {
  test('setBytes rounds outwards, resetBytes inwards', () => {
    const map = new HBitmap(16, { granularity: 4096 });
    expect(map.setBytes(4095, 2)).toBe(2); // touches granules 0 and 1
    expect([...map]).toEqual([0, 1]);
    expect(map.resetBytes(100, 8192)).toBe(1); // only granule 1 lies wholly inside
    expect([...map]).toEqual([0]);
    expect(map.setBytes(0, 0)).toBe(0);
    expect(() => map.setBytes(16 * 4096 - 1, 2)).toThrow(/exceed/);
  });

  test('1 MiB chunks of a 16 TiB drive', () => {
    const map = new HBitmap(2 ** 24, { granularity: 2 ** 20 });
    map.setBytes(2 ** 44 - 2 ** 20, 2 ** 20);
    expect(map.nextSet()).toBe(2 ** 24 - 1);
  });
});

describe('HBitmap at 2^32 granules and beyond (a 16 TiB guest at 4 KiB pages)', () => {
  test('sparse operations stay cheap and keep memory untouched', () => {
    const before = process.memoryUsage().rss;
    const size = 2 ** 32 + 130;
    const map = new HBitmap(size, { granularity: 4096 });
    const marks = [0, 63, 64, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 64, size - 1];
    for (const mark of marks) expect(map.set(mark)).toBe(1);
    expect(map.count()).toBe(marks.length);
    const found: number[] = [];
    for (let at = map.nextSet(0); at >= 0; at = map.nextSet(at + 1)) found.push(at);
    expect(found).toEqual(marks);
    expect([...map.dirtyAreas()]).toEqual([
      { start: 0, length: 1 },
      { start: 63, length: 2 },
      { start: 2 ** 31, length: 1 },
      { start: 2 ** 32 - 1, length: 2 },
      { start: 2 ** 32 + 64, length: 1 },
      { start: size - 1, length: 1 },
    ]);
    expect(map.countRange(1, size - 2)).toBe(marks.length - 2);
    expect(map.get(2 ** 32)).toBe(true);
    expect(map.get(2 ** 32 + 1)).toBe(false);
    expect(map.nextZero(2 ** 32 - 1)).toBe(2 ** 32 + 1);
    // a long run across the 2^32 boundary, over three of the marks
    expect(map.set(2 ** 32 - 100_000, 100_100)).toBe(100_100 - 3);
    expect(map.nextDirtyArea(2 ** 32 - 200_000, 50_000)).toEqual({ start: 2 ** 32 - 100_000, length: 50_000 });
    expect(map.nextDirtyArea(2 ** 32 - 50_000)).toEqual({ start: 2 ** 32 - 50_000, length: 50_100 });
    expect(map.reset(0, size)).toBe(100_100 + 5);
    expect(map.nextSet()).toBe(-1);
    map.set(size - 1);
    map.clear();
    expect(map.count()).toBe(0);
    // 512 MiB of storage, but only the pages holding bits were ever written.
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 2 ** 20);
  });

  test('the largest size is accepted, one more is not', () => {
    expect(HBitmap.MAX_GRANULES).toBe(2 ** 41);
    expect(() => new HBitmap(2 ** 41 + 1)).toThrow(expect.objectContaining({ code: 'ERR_ARGUMENT' }));
  });
});
