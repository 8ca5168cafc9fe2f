import { describe, expect, test } from 'vitest';
import { predictMigration, type ProbeResult } from '../../src/migrate/predict.js';
import { ArgumentError } from '../../src/stream/errors.js';

const MiB = 1024 * 1024;

// 25,600 pages of 4 KiB, half of them zero; 100 MB/s link.
const base: ProbeResult = {
  ramBytes: 100 * MiB,
  pageSize: 4096,
  zeroShare: 0.5,
  dirtyRate: 0,
  workingSetBytes: Infinity,
  wireRate: 100e6,
};

describe('migration prediction', () => {
  test('an idle guest: one full pass, nothing left to send at the switch-over', () => {
    const p = predictMigration(base, { downtimeLimitMs: 300 });
    // 12,800 zero records of 9 bytes and 12,800 pages of 8 + 4096 bytes.
    expect(p.passBytes).toEqual([12_800 * 9 + 12_800 * 4104, 0]);
    expect(p.converges).toBe(true);
    expect(p.totalMs).toBeCloseTo(526.464, 3);
    expect(p.downtimeMs).toBe(0);
  });

  test('a dirtying guest: the second pass is what the first dirtied, sent while paused', () => {
    const p = predictMigration({ ...base, dirtyRate: 10e6 }, { downtimeLimitMs: 300 });
    // Pass 0 takes 0.526464 s and dirties 5,264,640 bytes = 1285.3 pages of 4104 stream bytes.
    expect(p.passes).toBe(2);
    expect(p.passBytes[1]).toBe(Math.round((5_264_640 / 4096) * 4104));
    expect(p.downtimeMs).toBeCloseTo(52.749, 2);
    expect(p.totalMs).toBeCloseTo(526.464 + 52.749, 2);
    expect(p.streamBytes).toBe(p.passBytes[0]! + p.passBytes[1]!);
    expect(p.summary).toMatch(/converges in 2 passes/);
  });

  test('a guest dirtying faster than the link does not converge', () => {
    const p = predictMigration({ ...base, dirtyRate: 200e6 }, { downtimeLimitMs: 300, maxPasses: 10 });
    expect(p.converges).toBe(false);
    expect(p.passes).toBe(10);
    expect(p.totalMs).toBe(Infinity);
    // Every pass after the first re-sends the whole RAM (dirtying is capped by the RAM size).
    expect(p.passBytes[9]).toBe(Math.round(25_600 * 4104));
    expect(p.summary).toMatch(/does not converge at a 300 ms downtime limit/);
  });

  test('a small working set converges whatever the dirty rate', () => {
    const p = predictMigration({ ...base, dirtyRate: 200e6, workingSetBytes: 4 * MiB }, { downtimeLimitMs: 300 });
    expect(p.converges).toBe(true);
    expect(p.passBytes[1]).toBe(1024 * 4104);
  });

  test('the downtime limit decides the number of passes', () => {
    // dirty/wire = 0.5: each pass re-sends half the pages of the one before, each page with its
    // 8-byte header (4104 stream bytes per 4096 dirtied); the threshold at 10 ms is 1 MB.
    const tight = predictMigration({ ...base, zeroShare: 0, dirtyRate: 50e6 }, { downtimeLimitMs: 10 });
    const loose = predictMigration({ ...base, zeroShare: 0, dirtyRate: 50e6 }, { downtimeLimitMs: 1000 });
    expect(loose.passes).toBe(2);
    expect(tight.passes).toBeGreaterThan(loose.passes);
    expect(tight.downtimeMs).toBeLessThanOrEqual(10);
    for (let i = 1; i < tight.passBytes.length; i++) {
      expect(tight.passBytes[i]! / tight.passBytes[i - 1]!).toBeCloseTo((0.5 * 4104) / 4096, 6);
    }
  });

  test('compression scales the wire bytes and the rate QEMU sees', () => {
    const plain = predictMigration({ ...base, dirtyRate: 10e6 }, { downtimeLimitMs: 300 });
    const packed = predictMigration({ ...base, dirtyRate: 10e6, wireRatio: 0.5 }, { downtimeLimitMs: 300 });
    expect(packed.totalMs).toBeLessThan(plain.totalMs);
    expect(packed.wireBytes).toBe(Math.round(packed.streamBytes * 0.5));
  });

  test('bad probes are argument errors', () => {
    expect(() => predictMigration({ ...base, wireRate: 0 }, { downtimeLimitMs: 300 })).toThrow(ArgumentError);
    expect(() => predictMigration({ ...base, zeroShare: 1.5 }, { downtimeLimitMs: 300 })).toThrow(/zeroShare/);
    expect(() => predictMigration({ ...base, dirtyRate: Number.NaN }, { downtimeLimitMs: 300 })).toThrow(/dirtyRate/);
    expect(() => predictMigration(base, { downtimeLimitMs: 300, maxPasses: 1 })).toThrow(/maxPasses/);
  });
});
