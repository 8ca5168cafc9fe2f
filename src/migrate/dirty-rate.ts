/**
 * The guest's dirty rate and working set, from QEMU's own calc-dirty-rate over two windows.
 *
 * calc-dirty-rate counts the distinct pages written during its window, so a guest that keeps
 * rewriting one buffer reports the buffer's size whatever the window: its "rate" halves when
 * the window doubles. Two windows tell the cases apart: growth close to the windows' ratio is
 * a rate (unbounded working set); much less growth is a working set of about the larger
 * count. The prediction model needs both (see predict.ts).
 */
import { ArgumentError, MigstreamError } from '../stream/errors.js';
import type { QmpExecutor } from '../qemu/qmp.js';
import type { DirtyRateMode, Levers } from './levers.js';

const MiB = 1024 * 1024;

export interface DirtyWindow {
  windowMs: number;
  /** Distinct bytes dirtied in the window. */
  dirtyBytes: number;
}

export interface DirtyRateEstimate {
  /** Bytes per second over the shortest window. */
  dirtyRate: number;
  /** Bytes a pass dirties however long it lasts; Infinity when the windows showed no bound. */
  workingSetBytes: number;
  windows: DirtyWindow[];
  mode: DirtyRateMode;
}

export class DirtyRateError extends MigstreamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_DIRTY_RATE', message, options);
  }
}

/**
 * A working set the short window already covers gives the same count in both windows (growth
 * 1); a steady writer gives counts in the windows' ratio R. Both are noisy: page-sampling sees
 * about 32 of an 8 MiB set's pages at 4096 samples per GiB, calc-dirty-rate truncates to whole
 * MiB/s, and a vCPU sharing a busy host core falls behind its pace in one window and not the
 * other (a 16 MiB/s writer showed 0.74 R over 1 and 2 s on 2 shared cores; an 8 MiB set
 * grew by more than 1.2 over the same windows in CI on 2026-12-02, and by 1.8 over 1 and 3 s
 * here, 20 sampled pages in the short window against 36 in the long). So the default windows
 * are 1 and 4 s, and the cut is halfway between 1 and R on a log scale: growth below √R = 2 is
 * a bounded set.
 */
function boundedGrowthLimit(ratio: number): number {
  return Math.sqrt(ratio);
}

export function estimateDirtyRate(windows: readonly DirtyWindow[], mode: DirtyRateMode): DirtyRateEstimate {
  if (windows.length < 2) throw new ArgumentError(`estimateDirtyRate: needs two windows, got ${windows.length}`);
  const sorted = [...windows].sort((a, b) => a.windowMs - b.windowMs);
  const short = sorted[0]!;
  const long = sorted[sorted.length - 1]!;
  if (!(short.windowMs > 0) || long.windowMs <= short.windowMs) {
    throw new ArgumentError(`estimateDirtyRate: windows must be positive and of two lengths, got ${sorted.map((w) => w.windowMs).join(', ')} ms`);
  }
  const dirtyRate = (short.dirtyBytes * 1000) / short.windowMs;
  const ratio = long.windowMs / short.windowMs;
  // Nothing dirtied in either window is a working set of nothing, not an unbounded one.
  const bounded = long.dirtyBytes === 0 || long.dirtyBytes < boundedGrowthLimit(ratio) * short.dirtyBytes;
  const workingSetBytes = bounded ? Math.max(...sorted.map((w) => w.dirtyBytes)) : Infinity;
  return { dirtyRate, workingSetBytes, windows: sorted, mode };
}

/**
 * Distinct bytes the guest dirties in `seconds`, read off the measured windows: the curve
 * through (0, 0) and each window's count, straight between them. Past the longest window a
 * bounded set stays at its size and an unbounded one grows at the slope of the last stretch
 * (a steady writer's rate). This is what a pass of that length leaves to send next: QEMU
 * re-sends each page dirtied while the pass ran once, however often it was written
 * (migration_bitmap_sync).
 */
export function dirtiedWithin(estimate: Pick<DirtyRateEstimate, 'workingSetBytes'> & { windows: readonly DirtyWindow[] }, seconds: number): number {
  if (!(seconds >= 0)) throw new ArgumentError(`dirtiedWithin: seconds must be ≥ 0, got ${seconds}`);
  const windows = [...estimate.windows].sort((a, b) => a.windowMs - b.windowMs);
  let previousS = 0;
  let previousBytes = 0;
  for (const window of windows) {
    const windowS = window.windowMs / 1000;
    // Counts are noisy: never let the curve fall as the windows grow.
    const bytes = Math.max(previousBytes, window.dirtyBytes);
    if (seconds <= windowS) return previousBytes + ((bytes - previousBytes) * (seconds - previousS)) / (windowS - previousS);
    previousS = windowS;
    previousBytes = bytes;
  }
  if (Number.isFinite(estimate.workingSetBytes)) return Math.max(previousBytes, estimate.workingSetBytes);
  const last = windows.length >= 2 ? windows[windows.length - 2]! : { windowMs: 0, dirtyBytes: 0 };
  const slope = Math.max(0, (previousBytes - last.dirtyBytes) / (previousS - last.windowMs / 1000));
  return previousBytes + slope * (seconds - previousS);
}

interface DirtyRateReply {
  status: 'unstarted' | 'measuring' | 'measured';
  'dirty-rate'?: number;
  'calc-time'?: number;
}

export interface MeasureOptions {
  /** Window lengths; whole seconds unless QEMU takes milliseconds (≥ 8.2). */
  windowsMs?: readonly number[];
  /** Pages sampled per GiB in page-sampling mode (QEMU takes 128–4096; it defaults to 512). */
  samplePages?: number;
  pollMs?: number;
}

/** Runs calc-dirty-rate once per window, one after the other, in the best mode QEMU has. */
export async function measureDirtyRate(qmp: QmpExecutor, levers: Levers, options: MeasureOptions = {}): Promise<DirtyRateEstimate> {
  const mode = bestMode(levers);
  const windowsMs = options.windowsMs ?? [1000, 4000];
  const windows: DirtyWindow[] = [];
  for (const windowMs of windowsMs) windows.push(await measureDirtyWindow(qmp, levers, windowMs, options));
  return estimateDirtyRate(windows, mode);
}

/** One calc-dirty-rate window in the best mode QEMU has: distinct bytes dirtied in `windowMs`. */
export async function measureDirtyWindow(qmp: QmpExecutor, levers: Levers, windowMs: number, options: MeasureOptions = {}): Promise<DirtyWindow> {
  const mode = bestMode(levers);
  const args: Record<string, unknown> = { mode };
  if (levers.dirtyRateMilliseconds) {
    Object.assign(args, { 'calc-time': windowMs, 'calc-time-unit': 'millisecond' });
  } else {
    if (windowMs % 1000 !== 0) throw new ArgumentError(`measureDirtyRate: QEMU ${levers.version.major}.${levers.version.minor} measures whole seconds, not ${windowMs} ms`);
    args['calc-time'] = windowMs / 1000;
  }
  if (mode === 'page-sampling') args['sample-pages'] = options.samplePages ?? 4096;
  await qmp.execute('calc-dirty-rate', args);
  const reply = await waitMeasured(qmp, windowMs, options.pollMs ?? 100);
  // dirty-rate is whole MiB per second, rounded down (calculate_dirtyrate: sampled bytes >> 20
  // per second): a reading of n stands for n to n + 1, so n + 0.5 on average. An 8 MiB/s writer
  // read 6 or 7 over 1 s under TCG, and the prediction came out a fifth short.
  const mibPerSecond = reply['dirty-rate'] ?? 0;
  const unbiased = mibPerSecond > 0 ? mibPerSecond + 0.5 : 0;
  return { windowMs, dirtyBytes: (unbiased * MiB * windowMs) / 1000 };
}

function bestMode(levers: Levers): DirtyRateMode {
  return levers.dirtyRateModes.includes('dirty-bitmap') ? 'dirty-bitmap' : 'page-sampling';
}

async function waitMeasured(qmp: QmpExecutor, windowMs: number, pollMs: number): Promise<DirtyRateReply> {
  const deadline = Date.now() + windowMs + 10_000;
  await sleep(windowMs);
  for (;;) {
    const reply = await qmp.execute<DirtyRateReply>('query-dirty-rate');
    if (reply.status === 'measured') return reply;
    if (Date.now() > deadline) throw new DirtyRateError(`calc-dirty-rate of ${windowMs} ms still "${reply.status}" 10 s after its window`);
    await sleep(pollMs);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
