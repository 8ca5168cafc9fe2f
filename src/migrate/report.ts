/**
 * The end-of-run report of `migrate`, in the spirit of `virsh domjobinfo`: one object for
 * --json, and the same figures as aligned lines for a person.
 */
import type { SourceResult } from './source.js';
import type { HoldReport } from './send-stats-wire.js';
import type { HeatSegment, PassCounts } from './pass-tracker.js';
import type { SendStats } from './send-stats-wire.js';
import type { DowntimeBudget } from './handover.js';
import type { ProbeReport } from './probe.js';
import type { DiskMoveReport } from './disk-mover.js';

/** Heat segments the text report names (the JSON has send's top 16). */
const HEAT_LINES = 5;
/** Pass lines the text report shows before summing up the rest. */
const PASS_LINES = 8;

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
  /** Disk bytes QEMU's block migration put into the stream (null: no disk in the stream). */
  diskBytes: number | null;
  mbPerSecond: number;
  /** What send put on the wire (null: send did not report). */
  bytesOnWire: number | null;
  /** Stream bytes / wire bytes (1 without compression, a little below for the frame headers). */
  compressionRatio: number | null;
  /** Passes over RAM and the heat map as send saw them in the stream (null: no report). */
  stream: { passes: PassCounts[]; heat: HeatSegment[]; hold: HoldReport } | null;
  /** avail-switchover-bandwidth given to QEMU (bytes/s), in order. */
  switchoverBandwidth: { atMs: number; bytesPerSecond: number }[];
  passes: number;
  pages: { normal: number; zero: number };
  throttle: { steps: { percent: number; atMs: number }[]; maxPercent: number; throttledMs: number };
  notices: string[];
  verify: unknown;
  /** What the probe predicted and how far off its total time was ((actual − predicted) / predicted). */
  prediction: { converges: boolean; totalMs: number; downtimeMs: number; streamBytes: number; totalTimeError: number | null } | null;
  /** The downtime limit asked for, QEMU's part and the hand-over (null: not probed). */
  budget: DowntimeBudget | null;
  /** The drives moved with --disk (null: none). */
  disk: DiskMoveReport | null;
}

export function buildMigrateReport(result: SourceResult, verify: unknown = null, sendStats: SendStats | null = null, probe: ProbeReport | null = null, disk: DiskMoveReport | null = null): MigrateReport {
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
    diskBytes: result.diskBytes,
    mbPerSecond: totalMs > 0 ? bytes / 1e6 / (totalMs / 1000) : 0,
    bytesOnWire: sendStats?.wireBytes ?? null,
    compressionRatio: sendStats && sendStats.wireBytes > 0 ? sendStats.streamBytes / sendStats.wireBytes : null,
    stream: sendStats ? { passes: sendStats.passes, heat: sendStats.heat ?? [], hold: sendStats.hold } : null,
    switchoverBandwidth: result.switchoverBandwidth,
    passes: ram?.['dirty-sync-count'] ?? 0,
    pages: { normal: ram?.normal ?? 0, zero: ram?.duplicate ?? 0 },
    throttle: {
      steps,
      maxPercent: steps.reduce((m, s) => Math.max(m, s.percent), 0),
      throttledMs: first === undefined ? 0 : Math.max(0, totalMs - first.atMs),
    },
    notices: result.notices,
    verify,
    prediction:
      probe === null
        ? null
        : {
            converges: probe.prediction.converges,
            totalMs: probe.prediction.totalMs,
            downtimeMs: probe.prediction.downtimeMs,
            streamBytes: probe.prediction.streamBytes,
            totalTimeError: Number.isFinite(probe.prediction.totalMs) && probe.prediction.totalMs > 0 ? (totalMs - probe.prediction.totalMs) / probe.prediction.totalMs : null,
          },
    budget: probe?.budget ?? null,
    disk,
  };
}

export function formatMigrateReport(report: MigrateReport): string {
  const ms = (v: number | null): string => (v === null ? 'n/a' : `${v} ms`);
  const lines: [string, string][] = [
    ['Status', `${report.status} (QEMU ${report.qemu})`],
    ['Total time', ms(report.totalMs)],
    [
      'Downtime (QEMU)',
      `${ms(report.qemuDowntimeMs)}${report.budget ? ` (its limit ${report.budget.qemuLimitMs} ms of the ${report.budget.limitMs} ms asked; ${report.budget.handoverMs} ms kept for the hand-over)` : ''}`,
    ],
    ['Setup time', ms(report.setupMs)],
    [
      'Into QEMU pipe',
      `${(report.bytesIntoQemuPipe / 1e6).toFixed(1)} MB of RAM (${report.mbPerSecond.toFixed(1)} MB/s)${report.diskBytes === null ? '' : `, ${(report.diskBytes / 1e6).toFixed(1)} MB of disk`}`,
    ],
    ['On the wire', report.bytesOnWire === null ? 'n/a (send did not report)' : `${(report.bytesOnWire / 1e6).toFixed(1)} MB (stream/wire ${report.compressionRatio?.toFixed(2) ?? 'n/a'})`],
    ['Passes', String(report.passes)],
    ['Pages', `${report.pages.normal} normal, ${report.pages.zero} zero`],
    [
      'Throttle',
      report.throttle.steps.length === 0
        ? 'none'
        : `${report.throttle.steps.map((s) => `${s.percent} % at ${(s.atMs / 1000).toFixed(1)} s`).join(', ')}; throttled ${(report.throttle.throttledMs / 1000).toFixed(1)} s`,
    ],
  ];
  if (report.stream) {
    lines.push(...passLines(report.stream.passes));
    for (const h of report.stream.heat.slice(0, HEAT_LINES)) {
      lines.push(['Hot', `${h.block}+0x${h.offset.toString(16)} (${(h.length / 1048576).toFixed(1)} MiB): ${h.resends} re-sent pages`]);
    }
    const h = report.stream.hold;
    lines.push([
      'Hot dropped',
      h.limitBytes === 0
        ? 'off (no --hold)'
        : `${h.droppedPages} earlier copies of re-sent pages (${(h.droppedBytes / 1e6).toFixed(1)} MB) cut from send's ${(h.limitBytes / 1048576).toFixed(1)} MiB hold; kept ${h.pinnedPages} under an XBZRLE delta, ${h.keptPages} naming their block or across frames`,
    ]);
  }
  const lastBandwidth = report.switchoverBandwidth.at(-1);
  if (lastBandwidth) lines.push(['Switch-over bw', `${(lastBandwidth.bytesPerSecond / 1e6).toFixed(1)} MB/s told to QEMU (${report.switchoverBandwidth.length} updates)`]);
  for (const notice of report.notices) lines.push(['Notice', notice]);
  if (report.prediction) {
    const p = report.prediction;
    lines.push([
      'Predicted',
      p.converges
        ? `${(p.totalMs / 1000).toFixed(1)} s (${p.totalTimeError === null ? 'n/a' : `${p.totalTimeError >= 0 ? '+' : ''}${(p.totalTimeError * 100).toFixed(0)} %`} off), ${Math.round(p.downtimeMs)} ms downtime`
        : 'not to converge without help',
    ]);
  }
  if (report.verify !== null) lines.push(['Verify', describeVerify(report.verify)]);
  if (report.disk !== null) lines.push(...diskLines(report.disk));
  return `${lines.map(([k, v]) => `${`${k}:`.padEnd(18)}${v}`).join('\n')}\n`;
}

function describeVerify(verify: unknown): string {
  const side = (v: unknown): string | null => {
    const c = v as { pagesCompared?: unknown; mismatches?: unknown } | null;
    return c !== null && typeof c === 'object' && typeof c.pagesCompared === 'number' ? `${c.pagesCompared} pages compared, ${Number(c.mismatches ?? 0)} differ` : null;
  };
  const v = verify as { source?: unknown; destination?: unknown; local?: { ms?: unknown } };
  const source = side(v.source);
  const destination = side(v.destination);
  if (source !== null && destination !== null) {
    const ms = typeof v.local?.ms === 'number' ? ` (${v.local.ms} ms here)` : '';
    return `source ${source}${ms}; destination ${destination}`;
  }
  return side(verify) ?? JSON.stringify(verify);
}

/** One line per pass of the stream (the first few, then the rest summed). */
function passLines(passes: readonly PassCounts[]): [string, string][] {
  const line = (p: Pick<PassCounts, 'pages' | 'zeroPages' | 'resentPages'>): string => `${p.pages} pages, ${p.zeroPages} zero, ${p.resentPages} re-sent`;
  const lines: [string, string][] = passes.slice(0, PASS_LINES).map((p) => [`Stream pass ${p.index}`, line(p)]);
  const rest = passes.slice(PASS_LINES);
  if (rest.length > 0) {
    const sum = rest.reduce((a, p) => ({ pages: a.pages + p.pages, zeroPages: a.zeroPages + p.zeroPages, resentPages: a.resentPages + p.resentPages }), { pages: 0, zeroPages: 0, resentPages: 0 });
    lines.push([`Passes ${PASS_LINES}-${passes.length - 1}`, line(sum)]);
  }
  return lines;
}

/** A line per drive: passes and bytes, the write limits set, the check; and the switch-over's share. */
function diskLines(disk: DiskMoveReport): [string, string][] {
  const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
  const lines: [string, string][] = disk.drives.map((d) => {
    const last = d.passes.filter((p) => p.phase === 'last').at(-1);
    const throttle = d.throttle.length === 0 ? 'no write limit' : `write limit down to ${mb(d.throttle.at(-1)!.bytesPerSecond)}/s in ${d.throttle.length} step(s)`;
    const check = d.check === null ? 'not checked' : `${d.check.chunks} MiB checked equal in ${d.check.ms} ms`;
    return [`Disk ${d.drive}`, `${mb(d.bytesSent)} in ${d.passes.length} passes (last: ${last === undefined ? 'n/a' : `${mb(last.bytes)} in ${last.ms} ms`}); ${throttle}; ${check}`];
  });
  lines.push(['Disk before RAM', `${(disk.beforeRamMs / 1000).toFixed(1)} s; paused source's last pass and check ${disk.switchoverMs === null ? 'n/a' : `${disk.switchoverMs} ms`}`]);
  for (const notice of disk.notices) lines.push(['Notice', `disk ${notice}`]);
  return lines;
}
