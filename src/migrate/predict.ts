/**
 * What a pre-copy migration will do, predicted from a probe: the guest's RAM, its share of
 * zero pages, its dirty rate and working set, and the link's rate. A person reads the
 * prediction before pressing go; `migrate` compares it with what happened.
 *
 * The model is QEMU's own loop (migration_iteration_run): pass 0 sends every page, each later
 * pass sends what the guest dirtied during the pass before it, and QEMU switches over once
 * what is left fits the downtime limit at the rate it measured (migration_update_counters:
 * threshold_size = bandwidth × downtime_limit). What a pass dirties grows with its duration,
 * at the dirty rate, up to the working set: a guest rewriting a 4 MiB buffer dirties 4 MiB per
 * pass however long the pass is.
 *
 * With `converge` the model throttles as converge-policy.ts does: when a pass shrank less than
 * 5 % from the one before, the guest's dirty rate is cut to 10 % then 1 % (the direct steps,
 * when what is left takes under 5 s) or to 20 % of the link's rate (a staged step). The rate a
 * pass drains at is the link's in stream bytes (wire rate / compression ratio), capped by
 * QEMU's max-bandwidth, which QEMU applies to the stream it writes (migration_rate_exceeded).
 * Pure arithmetic, no I/O.
 */
import { ArgumentError } from '../stream/errors.js';
import { CONVERGE_DEFAULTS, DIRECT_FIRST_LEVEL } from './converge-policy.js';
import { dirtiedWithin, type DirtyWindow } from './dirty-rate.js';

export interface ProbeResult {
  /** Bytes of guest RAM to migrate (the RAMBlocks' used lengths). */
  ramBytes: number;
  /** TARGET_PAGE_SIZE. */
  pageSize: number;
  /** Share of pages that are all zero, 0 to 1. */
  zeroShare: number;
  /** Bytes per second the guest dirties (distinct pages per second × page size). */
  dirtyRate: number;
  /** Distinct bytes the guest dirties however long it runs; Infinity when no bound was seen. */
  workingSetBytes: number;
  /** Bytes per second the link carries. */
  wireRate: number;
  /** Ratio of bytes on the wire to stream bytes (1 without compression), for the first pass. */
  wireRatio?: number;
  /** The same for re-sent pages, which are normal pages (zero pages compress far better). */
  dirtyWireRatio?: number;
  /** The dirty-rate windows measured (dirty-rate.ts): the distinct-bytes curve over time. */
  dirtyWindows?: readonly DirtyWindow[];
  /** QEMU's max-bandwidth: stream bytes per second it writes at most. */
  streamRateCap?: number;
}

export interface PredictOptions {
  downtimeLimitMs: number;
  /** Passes after which QEMU is taken as never converging (QEMU has no limit; people do). */
  maxPasses?: number;
  /** Model `--converge auto`'s throttle (converge-policy.ts). */
  converge?: boolean;
}

export interface Prediction {
  converges: boolean;
  /** Passes until the switch-over (pass 0 included), or maxPasses when it does not converge. */
  passes: number;
  /** Stream bytes QEMU writes, first pass and re-sends included. */
  streamBytes: number;
  /** Bytes on the wire (streamBytes × wireRatio). */
  wireBytes: number;
  /** Time to the switch-over plus the final pass; Infinity when it does not converge. */
  totalMs: number;
  /** The final pass's time on the wire (device state not counted). */
  downtimeMs: number;
  /** Bytes each pass sent, pass 0 first (at most maxPasses entries). */
  passBytes: number[];
  /** The highest throttle the model needed (0 to 99 %), and from how long before the end. */
  throttlePercent: number;
  throttledMs: number;
  /** One sentence a person reads. */
  summary: string;
}

/** be64 page header (CONTINUE set, no block name) before a page or zero byte (ram_save_page). */
const PAGE_HEADER_BYTES = 8;

/** How long the first pass takes: every page once, at the link's rate through the codec. */
export function firstPassSeconds(probe: ProbeResult): number {
  check(probe, { downtimeLimitMs: 1 });
  const rate = Math.min(probe.wireRate / (probe.wireRatio ?? 1), probe.streamRateCap ?? Infinity);
  return firstPassBytes(probe) / rate;
}

function firstPassBytes(probe: ProbeResult): number {
  const pages = Math.ceil(probe.ramBytes / probe.pageSize);
  const zeroPages = Math.round(pages * probe.zeroShare);
  return zeroPages * (PAGE_HEADER_BYTES + 1) + (pages - zeroPages) * (PAGE_HEADER_BYTES + probe.pageSize);
}

export function predictMigration(probe: ProbeResult, options: PredictOptions): Prediction {
  check(probe, options);
  const maxPasses = options.maxPasses ?? 30;
  const firstPass = firstPassBytes(probe);
  const wireRatio = probe.wireRatio ?? 1;
  const dirtyWireRatio = probe.dirtyWireRatio ?? wireRatio;
  // What leaves per second, in stream bytes: the link's rate through the codec, and never more
  // than max-bandwidth, which QEMU applies to the stream it writes (migration_rate_exceeded).
  const cap = probe.streamRateCap ?? Infinity;
  const firstRate = Math.min(probe.wireRate / wireRatio, cap);
  const resendRate = Math.min(probe.wireRate / dirtyWireRatio, cap);
  // QEMU switches over when what is dirty fits the downtime at the rate it measured
  // (migration_update_counters: threshold_size = bandwidth × downtime_limit).
  const thresholdBytes = (resendRate * options.downtimeLimitMs) / 1000;
  const dirtied = dirtyCurve(probe);
  const throttle = new ModelThrottle(options.converge === true, probe.dirtyRate, resendRate);

  const passBytes: number[] = [firstPass];
  let streamBytes = firstPass;
  let passS = firstPass / firstRate;
  let elapsedS = passS;
  const end = (converges: boolean, next: number): Prediction => {
    const downtimeMs = (next / resendRate) * 1000;
    const totalMs = converges ? elapsedS * 1000 + downtimeMs : Infinity;
    const throttledMs = throttle.sinceS === null ? 0 : totalMs - throttle.sinceS * 1000;
    const wireBytes = firstPass * wireRatio + (streamBytes - firstPass) * dirtyWireRatio;
    return finish(converges, passBytes, streamBytes, wireBytes, totalMs, downtimeMs, throttle.level, throttledMs, options);
  };
  for (;;) {
    // A guest throttled to level p runs (1 − p) of the time: it dirties in a pass of t seconds
    // what it would in (1 − p) t (cpu_throttle_thread sleeps the vCPUs).
    const dirtiedBytes = Math.min(dirtied(passS * (1 - throttle.level)), probe.ramBytes);
    // Re-sent pages are normal pages: the zero pages a guest dirties are rare enough to ignore.
    const next = (dirtiedBytes / probe.pageSize) * (PAGE_HEADER_BYTES + probe.pageSize);
    passBytes.push(next);
    streamBytes += next;
    if (next <= thresholdBytes) return end(true, next);
    if (passBytes.length > maxPasses) {
      passBytes.pop();
      streamBytes -= next;
      return end(false, next);
    }
    // The sync ending the pass just sent: what it collected is `next`; the policy compares it
    // with the pass before and decides a level that QEMU applies at the following sync.
    const previous = passBytes[passBytes.length - 2]!;
    throttle.sync(elapsedS);
    if (passBytes.length >= 3 && next > (1 - CONVERGE_DEFAULTS.stallShrink) * previous) throttle.stalled(next);
    passS = next / resendRate;
    elapsedS += passS;
  }
}

/** Distinct bytes dirtied in t seconds: the measured windows' curve, or rate × t up to the set. */
function dirtyCurve(probe: ProbeResult): (seconds: number) => number {
  const windows = probe.dirtyWindows;
  if (windows !== undefined && windows.length > 0) {
    return (seconds) => dirtiedWithin({ workingSetBytes: probe.workingSetBytes, windows }, seconds);
  }
  return (seconds) => Math.min(seconds * probe.dirtyRate, probe.workingSetBytes);
}

/** converge-policy.ts's levels, on the model's clock: direct steps or staged ones. */
class ModelThrottle {
  /** The level in force: it slows the guest's dirtying. */
  level = 0;
  /** Model seconds at which the first level took effect (null: never throttled). */
  sinceS: number | null = null;
  /** The level decided at the last sync, in force from the next one. */
  private pending = 0;

  constructor(
    private readonly enabled: boolean,
    private readonly dirtyRate: number,
    private readonly streamRate: number,
  ) {}

  /**
   * QEMU's dirty sync at the end of a pass: the level decided at the sync before takes effect
   * now. QEMU changes the throttle only there (migration_bitmap_sync calls
   * migration_trigger_throttle, which calls mig_throttle_guest_down); the policy decides just
   * after a sync, from query-migrate, so its level slows the pass after next.
   */
  sync(atS: number): void {
    if (this.pending <= this.level) return;
    this.level = this.pending;
    this.sinceS ??= atS;
  }

  stalled(remainingBytes: number): void {
    const decided = Math.max(this.level, this.pending);
    if (!this.enabled || decided >= MAX_THROTTLE) return;
    const direct = remainingBytes / this.streamRate < DIRECT_WINDOW_S;
    let next = direct ? (decided < DIRECT_FIRST ? DIRECT_FIRST : MAX_THROTTLE) : 1 - (TARGET_DIRTY_SHARE * this.streamRate) / this.dirtyRate;
    // A staged step that would not go higher goes to the top, as the policy's hold does.
    if (next <= decided) next = MAX_THROTTLE;
    this.pending = Math.min(MAX_THROTTLE, next);
  }
}

const MAX_THROTTLE = CONVERGE_DEFAULTS.maxThrottle / 100;
const DIRECT_FIRST = DIRECT_FIRST_LEVEL / 100;
const DIRECT_WINDOW_S = CONVERGE_DEFAULTS.directWindowS;
const TARGET_DIRTY_SHARE = CONVERGE_DEFAULTS.targetDirtyShare;

function finish(
  converges: boolean,
  passBytes: number[],
  streamBytes: number,
  wireBytes: number,
  totalMs: number,
  downtimeMs: number,
  throttle: number,
  throttledMs: number,
  options: PredictOptions,
): Prediction {
  const throttled = throttle > 0 ? `, throttled to ${Math.round(throttle * 100)} % for the last ${(throttledMs / 1000).toFixed(1)} s` : '';
  const summary = converges
    ? `converges in ${passBytes.length} passes: about ${(totalMs / 1000).toFixed(1)} s, ${(streamBytes / 1e6).toFixed(0)} MB, ${Math.round(downtimeMs)} ms of downtime${throttled}`
    : `does not converge at a ${options.downtimeLimitMs} ms downtime limit: after ${passBytes.length} passes ${(passBytes[passBytes.length - 1]! / 1e6).toFixed(1)} MB stay dirty, ${Math.round(downtimeMs)} ms on the wire`;
  return {
    converges,
    passes: passBytes.length,
    streamBytes: Math.round(streamBytes),
    wireBytes: Math.round(wireBytes),
    totalMs,
    downtimeMs,
    passBytes: passBytes.map(Math.round),
    throttlePercent: Math.round(throttle * 100),
    throttledMs: converges ? throttledMs : 0,
    summary,
  };
}

function check(probe: ProbeResult, options: PredictOptions): void {
  const positive = (name: string, value: number): void => {
    if (!(Number.isFinite(value) && value > 0)) throw new ArgumentError(`predictMigration: ${name} must be a positive number, got ${value}`);
  };
  positive('ramBytes', probe.ramBytes);
  positive('pageSize', probe.pageSize);
  positive('wireRate', probe.wireRate);
  if (probe.streamRateCap !== undefined && !(probe.streamRateCap > 0)) throw new ArgumentError(`predictMigration: streamRateCap must be positive, got ${probe.streamRateCap}`);
  positive('downtimeLimitMs', options.downtimeLimitMs);
  if (!(probe.zeroShare >= 0 && probe.zeroShare <= 1)) throw new ArgumentError(`predictMigration: zeroShare must be from 0 to 1, got ${probe.zeroShare}`);
  if (!(Number.isFinite(probe.dirtyRate) && probe.dirtyRate >= 0)) throw new ArgumentError(`predictMigration: dirtyRate must be ≥ 0, got ${probe.dirtyRate}`);
  if (!(probe.workingSetBytes >= 0)) throw new ArgumentError(`predictMigration: workingSetBytes must be ≥ 0, got ${probe.workingSetBytes}`);
  for (const key of ['wireRatio', 'dirtyWireRatio'] as const) {
    const ratio = probe[key];
    if (ratio !== undefined && !(ratio > 0 && ratio <= 2)) throw new ArgumentError(`predictMigration: ${key} must be in (0, 2], got ${ratio}`);
  }
  if (options.maxPasses !== undefined && !(Number.isInteger(options.maxPasses) && options.maxPasses >= 2)) {
    throw new ArgumentError(`predictMigration: maxPasses must be an integer ≥ 2, got ${options.maxPasses}`);
  }
}
