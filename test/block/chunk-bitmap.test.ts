import { describe, expect, it } from 'vitest';
import { ChunkBitmap } from '../../src/block/chunk-bitmap.js';
import { prng } from './feed.js';

describe('ChunkBitmap', () => {
  it('matches a shadow array after every operation, across word boundaries', () => {
    const random = prng(42);
    const size = 300;
    const bitmap = new ChunkBitmap();
    const shadow = new Uint8Array(size);
    for (let op = 0; op < 2000; op++) {
      const a = Math.floor(random() * size);
      const b = Math.min(size - 1, a + Math.floor(random() * 70));
      const value = random() < 0.5;
      bitmap.fill(a, b, value);
      shadow.fill(value ? 1 : 0, a, b + 1);
      const probe = Math.floor(random() * size);
      expect(bitmap.get(probe)).toBe(shadow[probe] === 1);
      const c = Math.floor(random() * size);
      const d = Math.min(size - 1, c + Math.floor(random() * 100));
      expect(bitmap.anySet(c, d)).toBe(shadow.subarray(c, d + 1).includes(1));
    }
  });

  it('handles chunk indexes past 2^32 (byte offsets near 2^53)', () => {
    const bitmap = new ChunkBitmap();
    const high = 2 ** 33 - 5;
    expect(bitmap.anySet(0, high)).toBe(false);
    bitmap.fill(31, 32, true);
    expect([30, 31, 32, 33].map((i) => bitmap.get(i))).toEqual([false, true, true, false]);
    expect(bitmap.get(high)).toBe(false);
    expect(bitmap.get(high % 2 ** 32)).toBe(false);
  });
});
