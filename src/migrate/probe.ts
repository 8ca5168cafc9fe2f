/**
 * `migrate --probe`: what a person wants to know before pressing go. The guest's RAM size (its
 * RAMBlocks as mapped, memory.ts), its share of zero pages (a sample of RAM read through
 * pmemsave and scanned by the addon), its dirty rate and working set (calc-dirty-rate over two
 * windows, dirty-rate.ts), and the link's rate (a burst over the destination's control port),
 * capped by QEMU's max-bandwidth; then predict.ts turns them into converges-or-not, time,
 * bytes and downtime.
 */
import { findZeroPages } from '../native/pages.js';
import { guestMemoryLayout, type MemoryRange } from '../qemu/memory.js';
import type { QmpExecutor } from '../qemu/qmp.js';
import { measureDirtyRate, type DirtyRateEstimate } from './dirty-rate.js';
import type { Levers } from './levers.js';
import { predictMigration, type Prediction } from './predict.js';
import { readGuestMemory } from './ram-reader.js';
import type { LinkRate } from './verdict-channel.js';

/** x86's TARGET_PAGE_SIZE: what QEMU's RAM migration counts in. */
const PAGE_SIZE = 4096;

export interface ZeroSample {
  /** Share of sampled pages that are all zero. */
  share: number;
  sampledBytes: number;
}

export interface ProbeReport {
  ramBytes: number;
  zero: ZeroSample;
  dirty: DirtyRateEstimate;
  /** The burst's rate, or null when none was measured (the rate then is max-bandwidth). */
  link: LinkRate | null;
  /** QEMU's max-bandwidth, bytes/s. */
  maxBandwidth: number;
  /** The rate the prediction uses: the smaller of the link's and max-bandwidth. */
  rate: number;
  downtimeLimitMs: number;
  prediction: Prediction;
  /** How long the probe took. */
  ms: number;
}

export interface ProbeOptions {
  qmp: QmpExecutor;
  levers: Levers;
  downtimeLimitMs: number;
  /** max-bandwidth the migration will run with (bytes/s); QEMU's current value when absent. */
  maxBandwidth?: number;
  /** Measures the link (migrate: a burst to the control port); absent: no link figure. */
  probeLink?: () => Promise<LinkRate>;
  dirtyWindowsMs?: readonly number[];
}

export async function probeSource(options: ProbeOptions): Promise<ProbeReport> {
  const started = Date.now();
  const { qmp } = options;
  const layout = await guestMemoryLayout(qmp);
  const ramBytes = layout.reduce((a, r) => a + r.length, 0);
  // The link burst and the guest's own figures do not disturb each other: run them together.
  const [link, zero, dirty, parameters] = await Promise.all([
    options.probeLink?.() ?? Promise.resolve(null),
    sampleZeroShare(qmp, layout),
    measureDirtyRate(qmp, options.levers, options.dirtyWindowsMs ? { windowsMs: options.dirtyWindowsMs } : {}),
    qmp.execute<{ 'max-bandwidth'?: number }>('query-migrate-parameters'),
  ]);
  const maxBandwidth = options.maxBandwidth ?? parameters['max-bandwidth'] ?? Infinity;
  const rate = Math.min(link?.bytesPerSecond ?? Infinity, maxBandwidth);
  const prediction = predictMigration(
    { ramBytes, pageSize: PAGE_SIZE, zeroShare: zero.share, dirtyRate: dirty.dirtyRate, workingSetBytes: dirty.workingSetBytes, wireRate: rate },
    { downtimeLimitMs: options.downtimeLimitMs },
  );
  return { ramBytes, zero, dirty, link, maxBandwidth, rate, downtimeLimitMs: options.downtimeLimitMs, prediction, ms: Date.now() - started };
}

/**
 * Zero pages in `slices` evenly spaced pieces of RAM of `sliceBytes` each (64 MiB read at
 * most by default, so a large guest costs no more than a small one). Reading a running guest
 * is fine here: it is an estimate, and QEMU's own zero-page test runs on live pages too.
 */
export async function sampleZeroShare(qmp: QmpExecutor, layout: readonly MemoryRange[], slices = 64, sliceBytes = 1024 * 1024): Promise<ZeroSample> {
  const pieces = sampleRanges(layout, slices, sliceBytes);
  let pending = Buffer.alloc(0);
  let pages = 0;
  let zeroPages = 0;
  const sampledBytes = await readGuestMemory(qmp, pieces, (chunk) => {
    const bytes = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
    const whole = bytes.length - (bytes.length % PAGE_SIZE);
    if (whole > 0) {
      const flags = findZeroPages(bytes.subarray(0, whole), PAGE_SIZE);
      pages += flags.length;
      for (const flag of flags) zeroPages += flag;
    }
    pending = Buffer.from(bytes.subarray(whole));
  });
  return { share: pages === 0 ? 0 : zeroPages / pages, sampledBytes };
}

/** `slices` page-aligned pieces spread evenly over the ranges as if laid end to end. */
export function sampleRanges(layout: readonly MemoryRange[], slices: number, sliceBytes: number): MemoryRange[] {
  const total = layout.reduce((a, r) => a + r.length, 0);
  if (total <= slices * sliceBytes) return [...layout];
  const pieces: MemoryRange[] = [];
  for (let i = 0; i < slices; i++) {
    let at = Math.floor((i * total) / slices / PAGE_SIZE) * PAGE_SIZE;
    for (const range of layout) {
      if (at < range.length) {
        const length = Math.min(sliceBytes, range.length - at);
        pieces.push({ ...range, offsetInBlock: range.offsetInBlock + at, guestPhysAddr: range.guestPhysAddr + at, length });
        break;
      }
      at -= range.length;
    }
  }
  return pieces;
}

const MB = 1e6;

/** The few lines a person reads before pressing go. */
export function formatProbe(report: ProbeReport): string {
  const p = report.prediction;
  const dirty = report.dirty;
  const lines: [string, string][] = [
    ['Guest RAM', `${(report.ramBytes / 1048576).toFixed(0)} MiB, ${(report.zero.share * 100).toFixed(0)} % zero pages (sampled ${(report.zero.sampledBytes / 1048576).toFixed(0)} MiB)`],
    [
      'Dirty rate',
      `${(dirty.dirtyRate / MB).toFixed(1)} MB/s (${dirty.mode}), working set ${Number.isFinite(dirty.workingSetBytes) ? `${(dirty.workingSetBytes / MB).toFixed(1)} MB` : 'unbounded'}`,
    ],
    [
      'Link',
      `${report.link ? `${(report.link.bytesPerSecond / MB).toFixed(1)} MB/s measured over ${report.link.connections} connection(s)` : 'not measured'}; max-bandwidth ${Number.isFinite(report.maxBandwidth) ? `${(report.maxBandwidth / MB).toFixed(1)} MB/s` : 'unlimited'}`,
    ],
    ['Prediction', `${p.summary} (downtime limit ${report.downtimeLimitMs} ms)`],
  ];
  return `${lines.map(([k, v]) => `${`${k}:`.padEnd(18)}${v}`).join('\n')}\n`;
}
