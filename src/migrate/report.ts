/**
 * The end-of-run report of `migrate`, in the spirit of `virsh domjobinfo`: one object for
 * --json, and the same figures as aligned lines for a person.
 */
import type { SourceResult } from './source.js';

export interface MigrateReport {
  status: 'completed';
  qemu: string;
  /** Host ms from `migrate` to QEMU reporting completed. */
  totalMs: number;
  /** QEMU's own downtime figure (ms): the source stop to the last byte written. */
  qemuDowntimeMs: number | null;
  /** QEMU's setup-time (ms). */
  setupMs: number | null;
  bytesIntoQemuPipe: number;
  mbPerSecond: number;
  passes: number;
  pages: { normal: number; zero: number };
  throttle: { steps: { percent: number; atMs: number }[]; maxPercent: number; throttledMs: number };
  notices: string[];
  verify: unknown;
}

export function buildMigrateReport(result: SourceResult, verify: unknown = null): MigrateReport {
  const { info } = result;
  const totalMs = result.completedAtMs - result.startedAtMs;
  const ram = info.ram;
  const bytes = ram?.transferred ?? 0;
  const steps = result.throttleSteps.map((s) => ({ percent: s.percent, atMs: s.atMs }));
  // Throttled time: from the first step with a level above 0 to the end of the run.
  const first = steps.find((s) => s.percent > 0);
  return {
    status: 'completed',
    qemu: `${result.levers.version.major}.${result.levers.version.minor}.${result.levers.version.micro}`,
    totalMs,
    qemuDowntimeMs: typeof info.downtime === 'number' ? info.downtime : null,
    setupMs: typeof info['setup-time'] === 'number' ? info['setup-time'] : null,
    bytesIntoQemuPipe: bytes,
    mbPerSecond: totalMs > 0 ? bytes / 1e6 / (totalMs / 1000) : 0,
    passes: ram?.['dirty-sync-count'] ?? 0,
    pages: { normal: ram?.normal ?? 0, zero: ram?.duplicate ?? 0 },
    throttle: {
      steps,
      maxPercent: steps.reduce((m, s) => Math.max(m, s.percent), 0),
      throttledMs: first === undefined ? 0 : Math.max(0, totalMs - first.atMs),
    },
    notices: result.notices,
    verify,
  };
}

export function formatMigrateReport(report: MigrateReport): string {
  const ms = (v: number | null): string => (v === null ? 'n/a' : `${v} ms`);
  const lines: [string, string][] = [
    ['Status', `${report.status} (QEMU ${report.qemu})`],
    ['Total time', ms(report.totalMs)],
    ['Downtime (QEMU)', ms(report.qemuDowntimeMs)],
    ['Setup time', ms(report.setupMs)],
    ['Into QEMU pipe', `${(report.bytesIntoQemuPipe / 1e6).toFixed(1)} MB (${report.mbPerSecond.toFixed(1)} MB/s)`],
    ['Passes', String(report.passes)],
    ['Pages', `${report.pages.normal} normal, ${report.pages.zero} zero`],
    [
      'Throttle',
      report.throttle.steps.length === 0
        ? 'none'
        : `${report.throttle.steps.map((s) => `${s.percent} % at ${(s.atMs / 1000).toFixed(1)} s`).join(', ')}; throttled ${(report.throttle.throttledMs / 1000).toFixed(1)} s`,
    ],
  ];
  for (const notice of report.notices) lines.push(['Notice', notice]);
  if (report.verify !== null) lines.push(['Verify', describeVerify(report.verify)]);
  return `${lines.map(([k, v]) => `${`${k}:`.padEnd(18)}${v}`).join('\n')}\n`;
}

function describeVerify(verify: unknown): string {
  const v = verify as { pagesCompared?: number; mismatches?: number };
  if (typeof v.pagesCompared === 'number') return `${v.pagesCompared} pages compared, ${v.mismatches ?? 0} differ`;
  return JSON.stringify(verify);
}
