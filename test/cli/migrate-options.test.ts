/** The option values `migrate` and `incoming` parse, and send's frame size per link rate. */
import { describe, expect, test } from 'vitest';
import { UsageError } from '../../src/cli/args.js';
import { controlAddress, frameKiBForLink, parseRate, verifyFraction } from '../../src/cli/migrate-options.js';

describe('migrate/incoming options', () => {
  test('rates take K, M, G as powers of 1024, with or without B and /s', () => {
    expect(parseRate('100')).toBe(100);
    expect(parseRate('12M')).toBe(12 * 1024 ** 2);
    expect(parseRate('1.5GiB/s')).toBe(1.5 * 1024 ** 3);
    expect(() => parseRate('fast')).toThrow(UsageError);
    expect(() => parseRate('0')).toThrow(/at least 1/);
  });

  test('the control port is PORT + 1 unless given, and must be a port', () => {
    expect(controlAddress({ host: 'h', port: 4444 }, undefined)).toEqual({ host: 'h', port: 4445 });
    expect(controlAddress({ host: 'h', port: 4444 }, '9000')).toEqual({ host: 'h', port: 9000 });
    expect(() => controlAddress({ host: 'h', port: 65535 }, undefined)).toThrow(/--control-port is needed/);
    expect(() => controlAddress({ host: 'h', port: 1 }, '70000')).toThrow(UsageError);
  });

  test('--verify is all of RAM, --verify-sample a share of it, neither no check', () => {
    expect(verifyFraction({})).toBeUndefined();
    expect(verifyFraction({ verify: true })).toBe(1);
    expect(verifyFraction({ 'verify-sample': '10' })).toBeCloseTo(0.1, 10);
    expect(verifyFraction({ verify: true, 'verify-sample': '100' })).toBe(1);
    for (const bad of ['0', '-5', '101', 'ten']) expect(() => verifyFraction({ 'verify-sample': bad })).toThrow(/--verify-sample/);
  });

  test("send's frames drain in about 50 ms of the link: 4 frames per channel, 64 KiB to 1 MiB, powers of two", () => {
    // 12.5 MB/s (100 Mbit/s), one channel: 625 kB in flight at most → 128 KiB frames (512 KiB held).
    expect(frameKiBForLink(12.5e6, 1)).toBe(128);
    expect(frameKiBForLink(12.5e6, 2)).toBe(64);
    expect(frameKiBForLink(1e6, 1)).toBe(64);
    expect(frameKiBForLink(1e9, 1)).toBe(1024);
    expect(frameKiBForLink(Infinity, 1)).toBe(1024);
    for (const rate of [3e6, 40e6, 110e6, 600e6]) {
      const kib = frameKiBForLink(rate, 1);
      expect(Math.log2(kib) % 1).toBe(0);
      if (kib > 64) expect((kib * 1024 * 4) / rate).toBeLessThanOrEqual(0.05);
    }
  });
});
