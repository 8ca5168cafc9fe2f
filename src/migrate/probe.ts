/**
 * `migrate --probe`: what a person wants to know before pressing go. The guest's RAM size (its
 * RAMBlocks as mapped, memory.ts), its share of zero pages (a sample of RAM read through
 * pmemsave and scanned by the addon), its dirty rate and working set (calc-dirty-rate over two
 * windows, dirty-rate.ts), and the link's rate (a burst over the destination's control port),
 * capped by QEMU's max-bandwidth; then predict.ts turns them into converges-or-not, time,
 * bytes and downtime.
 */
import type { CodecId } from '../codecs/registry.js';
import { findZeroPages } from '../native/pages.js';
import { guestMemoryLayout, type MemoryRange } from '../qemu/memory.js';
import type { QmpExecutor } from '../qemu/qmp.js';
import { estimateDirtyRate, measureDirtyRate, measureDirtyWindow, type DirtyRateEstimate } from './dirty-rate.js';
import type { Levers } from './levers.js';
import { firstPassSeconds, predictMigration, type Prediction, type ProbeResult } from './predict.js';
import { readGuestMemory } from './ram-reader.js';
import { downtimeBudget, handoverMs, type DowntimeBudget } from './handover.js';
import type { LinkRate } from './verdict-channel.js';
import { WireRatioSampler, type WireRatios } from './wire-ratio.js';

/** x86's TARGET_PAGE_SIZE: what QEMU's RAM migration counts in. */
const PAGE_SIZE = 4096;

export interface ZeroSample {
  /** Share of sampled pages that are all zero. */
  share: number;
  sampledBytes: number;
  /** What send's codec made of the sample, laid out as stream records (absent: no codec). */
  wireRatios?: WireRatios;
}

export interface ProbeReport {
  ramBytes: number;
  zero: ZeroSample;
  dirty: DirtyRateEstimate;
  /** The burst's rate, or null when none was measured (the rate then is max-bandwidth). */
  link: LinkRate | null;
  /** QEMU's max-bandwidth, bytes/s. */
  maxBandwidth: number;
  /** The link's rate the prediction uses (max-bandwidth when no burst was measured). */
  rate: number;
  downtimeLimitMs: number;
  /** The user's downtime limit split into QEMU's part and the hand-over (handover.ts). */
  budget: DowntimeBudget;
  /** Predicted at QEMU's part of the limit; its downtimeMs is QEMU's, without the hand-over. */
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
  /** send's codec (id and level) and frame size: the prediction then counts compression. */
  codec?: { id: CodecId; level: number; frameBytes: number };
  /** Predict with `--converge auto`'s throttle. */
  converge?: boolean;
  /**
   * Longest extra dirty-rate window (ms). When the first windows show no bound and the first
   * pass will last longer, one more window as long as that pass (at most this) measures what
   * the guest dirties while it runs, which is what the second pass re-sends. 0: none.
   */
  maxPassWindowMs?: number;
  /** The hand-over to keep out of the downtime limit; default: the link's tail, send's hold and the destination's finish. */
  handoverMs?: number;
  /** send's hold for hot-page dropping, in ms of the link (migrate --hold). */
  holdMs?: number;
}

/** Default for maxPassWindowMs: a probe costs at most about 20 s more. */
const MAX_PASS_WINDOW_MS = 20_000;

export async function probeSource(options: ProbeOptions): Promise<ProbeReport> {
  const started = Date.now();
  const { qmp } = options;
  const layout = await guestMemoryLayout(qmp);
  const ramBytes = layout.reduce((a, r) => a + r.length, 0);
  // The link burst and the guest's own figures do not disturb each other: run them together.
  // The link burst does not disturb the guest: it runs beside the rest. The RAM sample does: it
  // competes with the guest while QEMU copies it (under TCG the 1 s window read 6.3 MB/s of an
  // 8.4 MB/s writer with the sample beside it), so the dirty windows wait for it.
  const linkProbe = options.probeLink?.() ?? Promise.resolve(null);
  // Its failure is reported where it is awaited, below, not as an unhandled rejection before.
  linkProbe.catch(() => undefined);
  const parameters = await qmp.execute<{ 'max-bandwidth'?: number }>('query-migrate-parameters');
  const zero = await sampleZeroShare(qmp, layout, 64, 1024 * 1024, options.codec);
  const firstDirty = await measureDirtyRate(qmp, options.levers, options.dirtyWindowsMs ? { windowsMs: options.dirtyWindowsMs } : {});
  const link = await linkProbe;
  const maxBandwidth = options.maxBandwidth ?? parameters['max-bandwidth'] ?? Infinity;
  const rate = link?.bytesPerSecond ?? maxBandwidth;
  const inputs = (dirty: DirtyRateEstimate): ProbeResult => ({
    ramBytes,
    pageSize: PAGE_SIZE,
    zeroShare: zero.share,
    dirtyRate: dirty.dirtyRate,
    workingSetBytes: dirty.workingSetBytes,
    dirtyWindows: dirty.windows,
    wireRate: rate,
    ...(Number.isFinite(maxBandwidth) ? { streamRateCap: maxBandwidth } : {}),
    ...(zero.wireRatios ? { wireRatio: zero.wireRatios.firstPass, dirtyWireRatio: zero.wireRatios.normalPages } : {}),
  });
  let dirty = firstDirty;
  const longestMs = Math.max(...dirty.windows.map((w) => w.windowMs));
  const passMs = Number.isFinite(rate) ? firstPassSeconds(inputs(dirty)) * 1000 : 0;
  const maxPassWindowMs = options.maxPassWindowMs ?? MAX_PASS_WINDOW_MS;
  if (!Number.isFinite(dirty.workingSetBytes) && passMs > longestMs * 1.5 && maxPassWindowMs > longestMs) {
    // QEMU < 8.2 measures whole seconds.
    const windowMs = Math.max(longestMs + 1000, Math.round(Math.min(passMs, maxPassWindowMs) / 1000) * 1000);
    const extra = await measureDirtyWindow(qmp, options.levers, windowMs);
    dirty = estimateDirtyRate([...dirty.windows, extra], dirty.mode);
  }
  const budget = downtimeBudget(options.downtimeLimitMs, options.handoverMs ?? handoverMs(link?.tailMs ?? null, options.holdMs ?? 0));
  const prediction = predictMigration(inputs(dirty), { downtimeLimitMs: budget.qemuLimitMs, ...(options.converge ? { converge: true } : {}) });
  return { ramBytes, zero, dirty, link, maxBandwidth, rate, downtimeLimitMs: options.downtimeLimitMs, budget, prediction, ms: Date.now() - started };
}

/**
 * Zero pages in `slices` evenly spaced pieces of RAM of `sliceBytes` each (64 MiB read at
 * most by default, so a large guest costs no more than a small one). Reading a running guest
 * is fine here: it is an estimate, and QEMU's own zero-page test runs on live pages too.
 */
export async function sampleZeroShare(qmp: QmpExecutor, layout: readonly MemoryRange[], slices = 64, sliceBytes = 1024 * 1024, codec?: { id: CodecId; level: number; frameBytes: number }): Promise<ZeroSample> {
  const pieces = sampleRanges(layout, slices, sliceBytes);
  const sampler = codec ? new WireRatioSampler({ codec: codec.id, level: codec.level, frameBytes: codec.frameBytes, pageSize: PAGE_SIZE }) : null;
  /** Sampled runs of whole pages with their zero flags, for the codec after the read. */
  const runs: { pages: Buffer; zero: Uint8Array }[] = [];
  let pending = Buffer.alloc(0);
  let pages = 0;
  let zeroPages = 0;
  const sampledBytes = await readGuestMemory(qmp, pieces, (chunk) => {
    const bytes = pending.length > 0 ? Buffer.concat([pending, chunk]) : chunk;
    const whole = bytes.length - (bytes.length % PAGE_SIZE);
    if (whole > 0) {
      const run = bytes.subarray(0, whole);
      const flags = findZeroPages(run, PAGE_SIZE);
      pages += flags.length;
      for (const flag of flags) zeroPages += flag;
      // Kept for the codec, which runs after the read (the FIFO's reader must not wait on it).
      if (sampler) runs.push({ pages: Buffer.from(run), zero: flags });
    }
    pending = Buffer.from(bytes.subarray(whole));
  });
  const share = pages === 0 ? 0 : zeroPages / pages;
  if (!sampler) return { share, sampledBytes };
  for (const { pages: run, zero } of runs) {
    for (let i = 0; i < zero.length; i++) await sampler.addPage(run.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE), zero[i] === 1);
  }
  return { share, sampledBytes, wireRatios: await sampler.finish() };
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
const pct = (share: number): string => `${(share * 100).toFixed(0)} %`;

/** The few lines a person reads before pressing go. */
export function formatProbe(report: ProbeReport): string {
  const p = report.prediction;
  const dirty = report.dirty;
  const lines: [string, string][] = [
    ['Guest RAM', `${(report.ramBytes / 1048576).toFixed(0)} MiB, ${(report.zero.share * 100).toFixed(0)} % zero pages (sampled ${(report.zero.sampledBytes / 1048576).toFixed(0)} MiB)`],
    ['Dirty rate', `${(dirty.dirtyRate / MB).toFixed(1)} MB/s (${dirty.mode}), working set ${Number.isFinite(dirty.workingSetBytes) ? `${(dirty.workingSetBytes / MB).toFixed(1)} MB` : 'unbounded'}`],
    [
      'Link',
      `${report.link ? `${(report.link.bytesPerSecond / MB).toFixed(1)} MB/s measured over ${report.link.connections} connection(s)` : 'not measured'}; max-bandwidth ${Number.isFinite(report.maxBandwidth) ? `${(report.maxBandwidth / MB).toFixed(1)} MB/s` : 'unlimited'}`,
    ],
    ...(report.zero.wireRatios
      ? ([['Compression', `first pass to ${pct(report.zero.wireRatios.firstPass)}, re-sent pages to ${pct(report.zero.wireRatios.normalPages)} of their stream bytes (sample)`]] as [string, string][])
      : []),
    [
      'Downtime limit',
      `${report.budget.limitMs} ms: QEMU ${report.budget.qemuLimitMs} ms, ${report.budget.handoverMs} ms kept for the hand-over${report.link ? ` (the link's tail ${Math.round(report.link.tailMs)} ms, the destination's finish)` : ''}`,
    ],
    ['Prediction', `${p.summary} (QEMU's downtime limit ${report.budget.qemuLimitMs} ms)`],
  ];
  return `${lines.map(([k, v]) => `${`${k}:`.padEnd(18)}${v}`).join('\n')}\n`;
}
