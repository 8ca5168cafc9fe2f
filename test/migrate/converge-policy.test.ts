import { describe, expect, test } from 'vitest';
import { ConvergencePolicy, stalled, type PassSample } from '../../src/migrate/converge-policy.js';
import { ArgumentError } from '../../src/stream/errors.js';

const MB = 1e6;

function sample(pass: number, atMs: number, dirtyBytes: number, wireRate = 10 * MB, dirtyRate = 40 * MB): PassSample {
  return { pass, atMs, dirtyBytes, wireRate, dirtyRate };
}

describe('convergence policy', () => {
  test('a shrinking dirty volume needs nothing', () => {
    const policy = new ConvergencePolicy({ downtimeLimitMs: 300 });
    expect(policy.observe(sample(1, 1000, 200 * MB))).toEqual([]);
    expect(policy.observe(sample(2, 2000, 150 * MB))).toEqual([]);
    expect(policy.observe(sample(3, 3000, 100 * MB))).toEqual([]);
    expect(policy.phase).toBe('watching');
    expect(policy.throttle).toBe(0);
  });

  test('a pass that fits the downtime limit needs nothing even when it did not shrink', () => {
    const policy = new ConvergencePolicy({ downtimeLimitMs: 300 });
    policy.observe(sample(1, 1000, 2 * MB));
    // 2 MB at 10 MB/s = 200 ms ≤ 300 ms: QEMU switches over by itself.
    expect(policy.observe(sample(2, 2000, 2 * MB))).toEqual([]);
  });

  test('stalled with less than 5 s of wire left: 90 % for 3 s, 99 % for 3 s, then exhausted', () => {
    const policy = new ConvergencePolicy({ downtimeLimitMs: 300 });
    policy.observe(sample(1, 1000, 30 * MB));
    // 29 MB is 3.3 % less than 30 MB: stalled; 29 MB / 10 MB/s = 2.9 s < 5 s.
    const first = policy.observe(sample(2, 2000, 29 * MB));
    expect(first).toMatchObject([{ kind: 'throttle', percent: 90 }]);
    expect(policy.phase).toBe('direct');
    expect(policy.tick(4999)).toEqual([]);
    expect(policy.tick(5000)).toMatchObject([{ kind: 'throttle', percent: 99 }]);
    // A pass ending under 99 % does not restart the hold.
    expect(policy.observe(sample(3, 6000, 29 * MB))).toEqual([]);
    expect(policy.tick(7999)).toEqual([]);
    expect(policy.tick(8000)).toMatchObject([{ kind: 'exhausted' }]);
    expect(policy.phase).toBe('exhausted');
    expect(policy.tick(20_000)).toEqual([]);
    expect(policy.observe(sample(4, 21_000, 29 * MB))).toEqual([]);
  });

  test('exhausted forces the switch-over only where allowed', () => {
    const policy = new ConvergencePolicy({ downtimeLimitMs: 300, allowForceSwitchover: true });
    policy.observe(sample(1, 0, 30 * MB));
    policy.observe(sample(2, 1000, 30 * MB));
    policy.tick(4000);
    expect(policy.tick(7000).map((d) => d.kind)).toEqual(['exhausted', 'force-switchover']);
  });

  test('stalled with more than 5 s of wire left: staged levels from the formula, rising to 99 %', () => {
    const policy = new ConvergencePolicy({ downtimeLimitMs: 300 });
    policy.observe(sample(1, 0, 200 * MB));
    // wire 10 MB/s, dirty 40 MB/s at no throttle: 1 − 0.2 × 10 / 40 = 0.95.
    expect(policy.observe(sample(2, 1000, 198 * MB))).toMatchObject([{ kind: 'throttle', percent: 95 }]);
    expect(policy.phase).toBe('staged');
    // At 95 % the guest still dirties 8 MB/s: 1 − 0.2 × 10 × 0.05 / 8 = 0.9875 → 99 %.
    expect(policy.observe(sample(3, 2000, 197 * MB, 10 * MB, 8 * MB))).toMatchObject([{ kind: 'throttle', percent: 99 }]);
    expect(policy.observe(sample(4, 3000, 197 * MB))).toEqual([]);
    expect(policy.tick(4999)).toEqual([]);
    expect(policy.tick(5000)).toMatchObject([{ kind: 'exhausted' }]);
  });

  test('a staged level never steps down and always rises by at least one point', () => {
    const policy = new ConvergencePolicy({ downtimeLimitMs: 300 });
    policy.observe(sample(1, 0, 200 * MB));
    // Dirty rate barely above the target share: the formula asks for a low level.
    expect(policy.observe(sample(2, 1000, 200 * MB, 10 * MB, 2.5 * MB))).toMatchObject([{ percent: 20 }]);
    // Now the formula asks for less than 20 %: the level still goes up by one.
    expect(policy.observe(sample(3, 2000, 200 * MB, 10 * MB, 0.1 * MB))).toMatchObject([{ percent: 21 }]);
  });

  test('staging stops while the volume shrinks again', () => {
    const policy = new ConvergencePolicy({ downtimeLimitMs: 300 });
    policy.observe(sample(1, 0, 200 * MB));
    policy.observe(sample(2, 1000, 199 * MB));
    expect(policy.throttle).toBe(95);
    expect(policy.observe(sample(3, 2000, 150 * MB))).toEqual([]);
    expect(policy.throttle).toBe(95);
    expect(policy.tick(60_000)).toEqual([]);
  });

  test('stalled() compares relative shrink, growth counts as stalled', () => {
    expect(stalled(100, 96, 0.05)).toBe(true);
    expect(stalled(100, 95, 0.05)).toBe(false);
    expect(stalled(100, 120, 0.05)).toBe(true);
    expect(stalled(0, 0, 0.05)).toBe(false);
    expect(stalled(0, 1, 0.05)).toBe(true);
  });

  test('bad options and samples are argument errors', () => {
    expect(() => new ConvergencePolicy({ downtimeLimitMs: 0 })).toThrow(ArgumentError);
    expect(() => new ConvergencePolicy({ downtimeLimitMs: 300, maxThrottle: 100 })).toThrow(/maxThrottle/);
    expect(() => new ConvergencePolicy({ downtimeLimitMs: 300, stallShrink: 1 })).toThrow(/stallShrink/);
    const policy = new ConvergencePolicy({ downtimeLimitMs: 300 });
    expect(() => policy.observe(sample(1, 0, Number.NaN))).toThrow(/dirtyBytes/);
    expect(() => policy.observe(sample(1, 0, 1, -1))).toThrow(/wireRate/);
    expect(() => policy.tick(Number.POSITIVE_INFINITY)).toThrow(ArgumentError);
  });
});
