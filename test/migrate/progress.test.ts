import { describe, expect, test } from 'vitest';
import { ProgressMeter, formatProgressLine } from '../../src/migrate/progress.js';
import type { MigrationInfo } from '../../src/qemu/migration.js';

const MB = 1e6;

function info(transferred: number, remaining: number, extra: Partial<MigrationInfo> = {}, ram: Record<string, number> = {}): MigrationInfo {
  return {
    status: 'active',
    ...extra,
    ram: { transferred, remaining, total: 400 * MB, duplicate: 0, normal: 0, 'normal-bytes': 0, 'dirty-sync-count': 1, 'page-size': 4096, 'dirty-pages-rate': 0, ...ram },
  };
}

describe('progress meter', () => {
  test('rates over the last interval, percent of the dirty set sent, time left while the link keeps ahead', () => {
    const meter = new ProgressMeter(1000);
    const first = meter.push({ atMs: 1000, info: info(0, 400 * MB) });
    expect(first).toMatchObject({ percent: 0, pipeRate: 0, etaMs: null, pass: 1 });
    const second = meter.push({ atMs: 3000, info: info(100 * MB, 300 * MB, {}, { 'dirty-pages-rate': 2441 }) });
    expect(second.elapsedMs).toBe(2000);
    expect(second.percent).toBe(25);
    expect(second.pipeRate).toBe(50 * MB);
    expect(second.wireRate).toBeNull();
    // 2441 pages/s × 4096 = 10 MB/s dirtied: 300 MB left at a net 40 MB/s.
    expect(second.dirtyRate).toBe(2441 * 4096);
    expect(second.etaMs).toBeCloseTo(((300 * MB) / (50 * MB - 2441 * 4096)) * 1000, 6);
  });

  test('the wire rate comes from the transport when it reports bytes; a link behind the dirtying does not converge', () => {
    const meter = new ProgressMeter(0);
    meter.push({ atMs: 0, info: info(0, 400 * MB), wireBytes: 0 });
    const event = meter.push({ atMs: 1000, info: info(80 * MB, 320 * MB, { 'cpu-throttle-percentage': 40 }, { 'dirty-pages-rate': 50_000, 'dirty-sync-count': 4 }), wireBytes: 30 * MB });
    expect(event.wireRate).toBe(30 * MB);
    expect(event.etaMs).toBeNull();
    expect(event.throttle).toBe(40);
    expect(formatProgressLine(event)).toBe(' 20.0 %  80 MB sent, 320 MB dirty  wire 30.0 MB/s, pipe 80.0 MB/s  dirtying 204.8 MB/s  pass 4  throttle 40 %  not converging');
  });

  test('nothing left is 100 % and no time left', () => {
    const meter = new ProgressMeter(0);
    const event = meter.push({ atMs: 10, info: info(400 * MB, 0, { status: 'completed' }) });
    expect(event).toMatchObject({ percent: 100, etaMs: 0, status: 'completed' });
    expect(formatProgressLine(event)).toMatch(/100\.0 % .* ~0 s left$/);
  });
});
