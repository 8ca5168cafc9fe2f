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
 * pass however long the pass is. Pure arithmetic, no I/O.
 */
import { ArgumentError } from '../stream/errors.js';

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
  /** Ratio of bytes on the wire to stream bytes (1 without compression). */
  wireRatio?: number;
}

export interface PredictOptions {
  downtimeLimitMs: number;
  /** Passes after which QEMU is taken as never converging (QEMU has no limit; people do). */
  maxPasses?: number;
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
  /** One sentence a person reads. */
  summary: string;
}

/** be64 page header (CONTINUE set, no block name) before a page or zero byte (ram_save_page). */
const PAGE_HEADER_BYTES = 8;

export function predictMigration(probe: ProbeResult, options: PredictOptions): Prediction {
  check(probe, options);
  const maxPasses = options.maxPasses ?? 30;
  const pages = Math.ceil(probe.ramBytes / probe.pageSize);
  const zeroPages = Math.round(pages * probe.zeroShare);
  const firstPass = zeroPages * (PAGE_HEADER_BYTES + 1) + (pages - zeroPages) * (PAGE_HEADER_BYTES + probe.pageSize);
  const wireRatio = probe.wireRatio ?? 1;
  // What leaves per second, in stream bytes.
  const streamRate = probe.wireRate / wireRatio;
  const thresholdBytes = (streamRate * options.downtimeLimitMs) / 1000;
  const dirtyCap = Math.min(probe.workingSetBytes, probe.ramBytes);

  const passBytes: number[] = [firstPass];
  let streamBytes = firstPass;
  let elapsedS = firstPass / streamRate;
  let pending = firstPass;
  for (;;) {
    const dirtied = Math.min((pending / streamRate) * probe.dirtyRate, dirtyCap);
    // Re-sent pages are normal pages: the zero pages a guest dirties are rare enough to ignore.
    const next = (dirtied / probe.pageSize) * (PAGE_HEADER_BYTES + probe.pageSize);
    if (next <= thresholdBytes) {
      passBytes.push(next);
      streamBytes += next;
      const downtimeMs = (next / streamRate) * 1000;
      const totalMs = (elapsedS * 1000) + downtimeMs;
      return finish(true, passBytes, streamBytes, wireRatio, totalMs, downtimeMs, options);
    }
    if (passBytes.length >= maxPasses) {
      const downtimeMs = (next / streamRate) * 1000;
      return finish(false, passBytes, streamBytes, wireRatio, Infinity, downtimeMs, options);
    }
    passBytes.push(next);
    streamBytes += next;
    elapsedS += next / streamRate;
    pending = next;
  }
}

function finish(
  converges: boolean,
  passBytes: number[],
  streamBytes: number,
  wireRatio: number,
  totalMs: number,
  downtimeMs: number,
  options: PredictOptions,
): Prediction {
  const summary = converges
    ? `converges in ${passBytes.length} passes: about ${(totalMs / 1000).toFixed(1)} s, ${(streamBytes / 1e6).toFixed(0)} MB, ${Math.round(downtimeMs)} ms of downtime`
    : `does not converge at a ${options.downtimeLimitMs} ms downtime limit: after ${passBytes.length} passes ${(passBytes[passBytes.length - 1]! / 1e6).toFixed(1)} MB stay dirty, ${Math.round(downtimeMs)} ms on the wire`;
  return {
    converges,
    passes: passBytes.length,
    streamBytes: Math.round(streamBytes),
    wireBytes: Math.round(streamBytes * wireRatio),
    totalMs,
    downtimeMs,
    passBytes: passBytes.map(Math.round),
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
  positive('downtimeLimitMs', options.downtimeLimitMs);
  if (!(probe.zeroShare >= 0 && probe.zeroShare <= 1)) throw new ArgumentError(`predictMigration: zeroShare must be from 0 to 1, got ${probe.zeroShare}`);
  if (!(Number.isFinite(probe.dirtyRate) && probe.dirtyRate >= 0)) throw new ArgumentError(`predictMigration: dirtyRate must be ≥ 0, got ${probe.dirtyRate}`);
  if (!(probe.workingSetBytes >= 0)) throw new ArgumentError(`predictMigration: workingSetBytes must be ≥ 0, got ${probe.workingSetBytes}`);
  if (probe.wireRatio !== undefined && !(probe.wireRatio > 0 && probe.wireRatio <= 2)) {
    throw new ArgumentError(`predictMigration: wireRatio must be in (0, 2], got ${probe.wireRatio}`);
  }
  if (options.maxPasses !== undefined && !(Number.isInteger(options.maxPasses) && options.maxPasses >= 2)) {
    throw new ArgumentError(`predictMigration: maxPasses must be an integer ≥ 2, got ${options.maxPasses}`);
  }
}
