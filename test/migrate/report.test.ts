/** The end-of-run report: figures taken from QEMU, send's stats, the probe and the check. */
import { describe, expect, test } from 'vitest';
import { leversFrom } from '../../src/migrate/levers.js';
import { buildMigrateReport, formatMigrateReport } from '../../src/migrate/report.js';
import type { SourceResult } from '../../src/migrate/source.js';
import type { ProbeReport } from '../../src/migrate/probe.js';

const result: SourceResult = {
  info: { status: 'completed', downtime: 20, 'setup-time': 227, ram: { transferred: 300e6, remaining: 0, total: 270e6, duplicate: 40, normal: 70, 'normal-bytes': 0, 'dirty-sync-count': 11 } },
  levers: leversFrom({ major: 7, minor: 2, micro: 22 }, new Set(['auto-converge', 'block']), new Set(['max-cpu-throttle']), false),
  startedAtMs: 1000,
  completedAtMs: 16000,
  stoppedAtMs: 15900,
  throttleSteps: [
    { percent: 90, atMs: 10000 },
    { percent: 99, atMs: 13000 },
  ] as SourceResult['throttleSteps'],
  passes: [],
  switchoverBandwidth: [],
  diskBytes: 64 * 1024 * 1024,
  switchoverMs: null,
  notices: [],
};

describe('migrate report', () => {
  const stats = {
    type: 'send-stats' as const,
    streamBytes: 400e6,
    leftBytes: 400e6,
    wireBytes: 200e6,
    passes: Array.from({ length: 10 }, (_, index) => ({ index, pages: index === 0 ? 70 : 3, zeroPages: index === 0 ? 40 : 0, resentPages: index === 0 ? 0 : 3, payloadBytes: 0 })),
    heat: [{ block: 'pc.ram', offset: 0x5800000, length: 4 * 1048576, resends: 27 }],
    hold: { limitBytes: 2 << 20, droppedPages: 12, droppedBytes: 12 * 4104, pinnedPages: 2, keptPages: 1 },
  };
  const probe = { prediction: { converges: true, totalMs: 12000, downtimeMs: 100, streamBytes: 1, wireBytes: 1, passes: 3, passBytes: [], summary: '' } } as unknown as ProbeReport;
  const verify = { source: { pagesCompared: 65442, mismatches: 0 }, destination: { pagesCompared: 32000, mismatches: 0 }, local: { ms: 676, bytes: 1 } };

  test('JSON figures: time, throttle, wire ratio, disk, prediction error', () => {
    const report = buildMigrateReport(result, verify, stats, probe);
    expect(report).toMatchObject({ totalMs: 15000, qemuDowntimeMs: 20, bytesOnWire: 200e6, compressionRatio: 2, diskBytes: 64 * 1024 * 1024, passes: 11 });
    expect(report.throttle).toEqual({
      steps: [
        { percent: 90, atMs: 10000 },
        { percent: 99, atMs: 13000 },
      ],
      maxPercent: 99,
      throttledMs: 5000,
    });
    expect(report.prediction!.totalTimeError).toBeCloseTo(0.25, 10);
    expect(report.stream!.passes).toHaveLength(10);
  });

  test('text: one line per figure, the first passes then the rest summed, hot segments, both sides of the check', () => {
    const text = formatMigrateReport(buildMigrateReport(result, verify, stats, probe));
    expect(text).toContain('Into QEMU pipe:   300.0 MB of RAM (20.0 MB/s), 67.1 MB of disk\n');
    expect(text).toContain('On the wire:      200.0 MB (stream/wire 2.00)\n');
    expect(text).toContain('Stream pass 0:    70 pages, 40 zero, 0 re-sent\n');
    expect(text).toContain('Passes 8-9:       6 pages, 0 zero, 6 re-sent\n');
    expect(text).toContain('Hot:              pc.ram+0x5800000 (4.0 MiB): 27 re-sent pages\n');
    expect(text).toContain("Hot dropped:      12 earlier copies of re-sent pages (0.0 MB) cut from send's 2.0 MiB hold; kept 2 under an XBZRLE delta, 1 naming their block or across frames\n");
    expect(text).toContain('Predicted:        12.0 s (+25 % off), 100 ms downtime\n');
    expect(text).toContain('Verify:           source 65442 pages compared, 0 differ (676 ms here); destination 32000 pages compared, 0 differ\n');
    expect(text).not.toContain('{');
  });

  test('without send stats or a probe the report says so instead of inventing figures', () => {
    const report = buildMigrateReport({ ...result, diskBytes: null });
    expect(report).toMatchObject({ bytesOnWire: null, compressionRatio: null, stream: null, prediction: null, diskBytes: null });
    expect(formatMigrateReport(report)).toContain('On the wire:      n/a (send did not report)\n');
  });
});
