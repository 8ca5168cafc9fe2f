import { describe, expect, test } from 'vitest';
import { dirtiedWithin } from '../../src/migrate/dirty-rate.js';
import { ArgumentError } from '../../src/stream/errors.js';

const MB = 1e6;

describe('distinct bytes dirtied in t seconds, from the measured windows', () => {
  const windows = [
    { windowMs: 4000, dirtyBytes: 40 * MB },
    { windowMs: 1000, dirtyBytes: 10 * MB },
    { windowMs: 15000, dirtyBytes: 100 * MB },
  ];

  test('straight lines through (0, 0) and each window, in window order', () => {
    const e = { windows, workingSetBytes: Infinity };
    expect(dirtiedWithin(e, 0)).toBe(0);
    expect(dirtiedWithin(e, 0.5)).toBeCloseTo(5 * MB, 3);
    expect(dirtiedWithin(e, 1)).toBeCloseTo(10 * MB, 3);
    expect(dirtiedWithin(e, 2.5)).toBeCloseTo(25 * MB, 3);
    expect(dirtiedWithin(e, 9.5)).toBeCloseTo(70 * MB, 3);
    expect(dirtiedWithin(e, 15)).toBeCloseTo(100 * MB, 3);
  });

  test('past the longest window: a bounded set stays at its size, an unbounded one grows at the last slope', () => {
    expect(dirtiedWithin({ windows, workingSetBytes: 100 * MB }, 60)).toBeCloseTo(100 * MB, 3);
    // 60 MB over the 11 s from 4 to 15 s.
    expect(dirtiedWithin({ windows, workingSetBytes: Infinity }, 26)).toBeCloseTo(160 * MB, 3);
  });

  test('a noisy count that falls as the window grows does not make the curve fall', () => {
    const noisy = [
      { windowMs: 1000, dirtyBytes: 8 * MB },
      { windowMs: 4000, dirtyBytes: 6 * MB },
    ];
    expect(dirtiedWithin({ windows: noisy, workingSetBytes: 8 * MB }, 3)).toBeCloseTo(8 * MB, 3);
    expect(dirtiedWithin({ windows: noisy, workingSetBytes: 8 * MB }, 30)).toBeCloseTo(8 * MB, 3);
  });

  test('a negative time is an argument error', () => {
    expect(() => dirtiedWithin({ windows, workingSetBytes: Infinity }, -1)).toThrow(ArgumentError);
  });
});
