import { describe, expect, test } from 'vitest';
import { firstPassSeconds, predictMigration, type ProbeResult } from '../../src/migrate/predict.js';
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

describe('prediction from the measured dirty curve, through a codec, under max-bandwidth', () => {
  // A guest sweeping a 100 MB set at 10 MB/s: the windows saw 10 MB in 1 s, 40 MB in 4 s and
  // the whole set in 15 s.
  const sweeping: ProbeResult = {
    ...base,
    zeroShare: 0,
    dirtyRate: 10e6,
    workingSetBytes: Infinity,
    dirtyWindows: [
      { windowMs: 1000, dirtyBytes: 10e6 },
      { windowMs: 4000, dirtyBytes: 40e6 },
      { windowMs: 15000, dirtyBytes: 100e6 },
    ],
    wireRate: 10e6,
  };

  test('each pass re-sends what the curve says the guest dirtied while the one before ran', () => {
    const p = predictMigration(sweeping, { downtimeLimitMs: 300 });
    // Pass 0: 25,600 pages of 4104 bytes = 105,062,400 bytes, 10.506 s: between the 4 s and
    // 15 s windows, 40 + 60 × 6.506 / 11 = 75.49 MB dirtied.
    const pass0S = (25_600 * 4104) / 10e6;
    const dirtied1 = 40e6 + (60e6 * (pass0S - 4)) / 11;
    expect(p.passBytes[1]).toBe(Math.round((dirtied1 / 4096) * 4104));
    // Without the windows, a 10 MB/s writer with no bound seen would dirty 105 MB in pass 0:
    // all of RAM.
    const blind = predictMigration({ ...sweeping, dirtyWindows: undefined }, { downtimeLimitMs: 300 });
    expect(blind.passBytes[1]).toBe(Math.round((Math.min(pass0S * 10e6, 100 * MiB) / 4096) * 4104));
    expect(p.passBytes[1]!).toBeLessThan(blind.passBytes[1]!);
  });

  test('max-bandwidth caps the stream rate, and the codec shrinks the wire bytes pass by pass', () => {
    const capped = predictMigration({ ...base, streamRateCap: 50e6 }, { downtimeLimitMs: 300 });
    expect(capped.totalMs).toBeCloseTo((capped.passBytes[0]! / 50e6) * 1000, 6);
    const packed = predictMigration({ ...sweeping, wireRatio: 0.4, dirtyWireRatio: 0.5 }, { downtimeLimitMs: 300 });
    const resent = packed.streamBytes - packed.passBytes[0]!;
    expect(packed.wireBytes).toBe(Math.round(packed.passBytes[0]! * 0.4 + resent * 0.5));
    // The first pass runs at 10 / 0.4 = 25 MB/s of stream.
    const plain = predictMigration(sweeping, { downtimeLimitMs: 300 });
    expect(packed.totalMs).toBeLessThan(plain.totalMs / 2);
    expect(() => predictMigration({ ...base, dirtyWireRatio: 0 }, { downtimeLimitMs: 300 })).toThrow(/dirtyWireRatio/);
    expect(() => predictMigration({ ...base, streamRateCap: -1 }, { downtimeLimitMs: 300 })).toThrow(/streamRateCap/);
  });

  test('with --converge the model throttles a guest that would not converge, as the policy does', () => {
    // 30 MB/s into a 10 MB/s link with an unbounded set: never converges on its own.
    const hot: ProbeResult = { ...base, zeroShare: 0, dirtyRate: 30e6, workingSetBytes: 60e6, wireRate: 10e6 };
    const alone = predictMigration(hot, { downtimeLimitMs: 300 });
    expect(alone.converges).toBe(false);
    expect(alone.throttlePercent).toBe(0);
    const steered = predictMigration(hot, { downtimeLimitMs: 300, converge: true });
    expect(steered.converges).toBe(true);
    expect(steered.throttlePercent).toBeGreaterThanOrEqual(90);
    expect(steered.throttledMs).toBeGreaterThan(0);
    expect(steered.throttledMs).toBeLessThan(steered.totalMs);
    expect(steered.summary).toMatch(/throttled to \d+ % for the last \d+\.\d s/);
    // An idle guest is never throttled.
    expect(predictMigration(base, { downtimeLimitMs: 300, converge: true }).throttlePercent).toBe(0);
  });

  test('firstPassSeconds: every page once through the codec and the cap', () => {
    expect(firstPassSeconds(base)).toBeCloseTo(0.526464, 6);
    expect(firstPassSeconds({ ...base, wireRatio: 0.5 })).toBeCloseTo(0.263232, 6);
    expect(firstPassSeconds({ ...base, wireRatio: 0.5, streamRateCap: 100e6 })).toBeCloseTo(0.526464, 6);
  });
});
