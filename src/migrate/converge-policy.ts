/**
 * When and how hard to throttle a guest whose pre-copy does not converge: the CPU-throttling
 * strategy CEC published for loaded Oracle VMs (they patched it into QEMU's
 * mig_throttle_guest_down; we decide from outside and act through QMP parameters).
 *
 * A pure state machine: measurements in, decisions out, no clock of its own and no I/O, so
 * every path is tested without QEMU. The caller feeds one `PassSample` per dirty-sync pass
 * (query-migrate's `dirty-sync-count` went up) and calls `tick(now)` between passes, then
 * carries out the decisions (see throttle-actuator.ts).
 *
 *   watching ──(dirty volume shrank < 5 % over a pass)──┬─ remaining < 5 s of wire ─▶ direct
 *      ▲                                                └─ otherwise ──────────────▶ staged
 *      │                                                                              │
 *   direct:  90 % for 3 s, then 99 % for 3 s ─────────────────────────────────────────┤
 *   staged:  each stalled pass: level = 1 − (0.2 × wire / dirty) × (1 − level)        │
 *            until 99 %, held at most 3 s ────────────────────────────────────────────┤
 *                                                                                     ▼
 *                                                         exhausted: tell the user, and
 *                                                         force the switch-over if allowed
 *
 * The staged formula aims at a dirty rate of 20 % of the wire rate. The dirty rate measured
 * under throttle level p is the guest's full rate times (1 − p), so the full rate is
 * dirty / (1 − p) and the level that brings it to 0.2 × wire is 1 − 0.2 × wire × (1 − p) / dirty.
 * A pass that already fits the downtime limit needs nothing: QEMU switches over by itself.
 */
import { ArgumentError } from '../stream/errors.js';

export interface ConvergeOptions {
  /** The downtime the user allows (QEMU's downtime-limit), in ms. */
  downtimeLimitMs: number;
  /** Highest throttle in percent (QEMU's max-cpu-throttle range ends at 99). */
  maxThrottle?: number;
  /** Below this relative shrink of the dirty volume from one pass to the next, the pass stalled. */
  stallShrink?: number;
  /** Throttle directly when the remaining dirty bytes take less than this many seconds on the wire. */
  directWindowS?: number;
  /** How long each direct step, and the top staged level, are held. */
  holdMs?: number;
  /** The share of the wire rate the staged levels aim the dirty rate at. */
  targetDirtyShare?: number;
  /** May the policy ask for the switch-over to be forced when throttling is exhausted? */
  allowForceSwitchover?: boolean;
}

export interface PassSample {
  /** QEMU's dirty-sync-count after the pass. */
  pass: number;
  /** When the sample was taken, ms on the caller's clock. */
  atMs: number;
  /** Dirty bytes left at the start of the next pass (query-migrate ram.remaining after the sync). */
  dirtyBytes: number;
  /** Bytes per second that left on the wire during the pass. */
  wireRate: number;
  /** Bytes per second the guest dirtied during the pass, under the throttle then in force. */
  dirtyRate: number;
}

export type Phase = 'watching' | 'direct' | 'staged' | 'exhausted';

export type ConvergeDecision = { kind: 'throttle'; percent: number; reason: string } | { kind: 'exhausted'; reason: string } | { kind: 'force-switchover'; reason: string };

interface Resolved {
  downtimeLimitMs: number;
  maxThrottle: number;
  stallShrink: number;
  directWindowS: number;
  holdMs: number;
  targetDirtyShare: number;
  allowForceSwitchover: boolean;
}

/** The first direct step (CEC: 90 % first, then the maximum). */
export const DIRECT_FIRST_LEVEL = 90;

/** The policy's defaults (CEC's figures); predict.ts models the same. */
export const CONVERGE_DEFAULTS = { maxThrottle: 99, stallShrink: 0.05, directWindowS: 5, holdMs: 3_000, targetDirtyShare: 0.2 } as const;

function resolve(options: ConvergeOptions): Resolved {
  const r: Resolved = {
    downtimeLimitMs: options.downtimeLimitMs,
    maxThrottle: options.maxThrottle ?? CONVERGE_DEFAULTS.maxThrottle,
    stallShrink: options.stallShrink ?? CONVERGE_DEFAULTS.stallShrink,
    directWindowS: options.directWindowS ?? CONVERGE_DEFAULTS.directWindowS,
    holdMs: options.holdMs ?? CONVERGE_DEFAULTS.holdMs,
    targetDirtyShare: options.targetDirtyShare ?? CONVERGE_DEFAULTS.targetDirtyShare,
    allowForceSwitchover: options.allowForceSwitchover ?? false,
  };
  const positive = (name: string, value: number): void => {
    if (!(Number.isFinite(value) && value > 0)) throw new ArgumentError(`ConvergencePolicy: ${name} must be a positive number, got ${value}`);
  };
  positive('downtimeLimitMs', r.downtimeLimitMs);
  positive('directWindowS', r.directWindowS);
  positive('holdMs', r.holdMs);
  if (!(Number.isInteger(r.maxThrottle) && r.maxThrottle >= DIRECT_FIRST_LEVEL && r.maxThrottle <= 99)) {
    throw new ArgumentError(`ConvergencePolicy: maxThrottle must be an integer from ${DIRECT_FIRST_LEVEL} to 99, got ${r.maxThrottle}`);
  }
  if (!(r.stallShrink > 0 && r.stallShrink < 1)) throw new ArgumentError(`ConvergencePolicy: stallShrink must be in (0, 1), got ${r.stallShrink}`);
  if (!(r.targetDirtyShare > 0 && r.targetDirtyShare < 1)) {
    throw new ArgumentError(`ConvergencePolicy: targetDirtyShare must be in (0, 1), got ${r.targetDirtyShare}`);
  }
  return r;
}

export class ConvergencePolicy {
  private readonly options: Resolved;
  private phaseNow: Phase = 'watching';
  private level = 0;
  /** When the current level was set (ms), for the holds. */
  private levelSinceMs = 0;
  private previous: PassSample | undefined;

  constructor(options: ConvergeOptions) {
    this.options = resolve(options);
  }

  get phase(): Phase {
    return this.phaseNow;
  }

  /** The throttle level (percent) the policy wants now; 0 before it throttles. */
  get throttle(): number {
    return this.level;
  }

  /** One pass ended. Returns what to do now (possibly nothing). */
  observe(sample: PassSample): ConvergeDecision[] {
    checkSample(sample);
    const previous = this.previous;
    this.previous = sample;
    const decisions = this.tick(sample.atMs);
    if (this.phaseNow === 'exhausted' || previous === undefined) return decisions;
    if (this.fitsDowntime(sample)) return decisions;
    if (!stalled(previous.dirtyBytes, sample.dirtyBytes, this.options.stallShrink)) return decisions;

    if (this.phaseNow === 'watching') {
      const remainingS = sample.wireRate > 0 ? sample.dirtyBytes / sample.wireRate : Infinity;
      if (remainingS < this.options.directWindowS) {
        this.phaseNow = 'direct';
        return [...decisions, this.set(DIRECT_FIRST_LEVEL, sample.atMs, `remaining ${mb(sample.dirtyBytes)} is under ${this.options.directWindowS} s of the wire; throttling directly`)];
      }
      this.phaseNow = 'staged';
    }
    if (this.phaseNow === 'staged' && this.level < this.options.maxThrottle) {
      const next = this.stagedLevel(sample);
      return [...decisions, this.set(next, sample.atMs, `dirty volume shrank under ${pct(this.options.stallShrink)} (dirty ${mbs(sample.dirtyRate)}, wire ${mbs(sample.wireRate)})`)];
    }
    return decisions;
  }

  /** Time passed without a pass ending: the holds of the direct steps and the top level. */
  tick(nowMs: number): ConvergeDecision[] {
    if (!Number.isFinite(nowMs)) throw new ArgumentError(`ConvergencePolicy.tick: time must be finite, got ${nowMs}`);
    const held = nowMs - this.levelSinceMs >= this.options.holdMs;
    if (!held) return [];
    if (this.phaseNow === 'direct' && this.level < this.options.maxThrottle) {
      return [this.set(this.options.maxThrottle, nowMs, `${DIRECT_FIRST_LEVEL} % held ${this.options.holdMs / 1000} s without converging`)];
    }
    if ((this.phaseNow === 'direct' || this.phaseNow === 'staged') && this.level >= this.options.maxThrottle) {
      this.phaseNow = 'exhausted';
      const reason = `the guest still dirties memory faster than it can be sent after ${this.options.holdMs / 1000} s at ${this.level} %`;
      const decisions: ConvergeDecision[] = [{ kind: 'exhausted', reason }];
      if (this.options.allowForceSwitchover) decisions.push({ kind: 'force-switchover', reason });
      return decisions;
    }
    return [];
  }

  private fitsDowntime(sample: PassSample): boolean {
    return sample.wireRate > 0 && (sample.dirtyBytes / sample.wireRate) * 1000 <= this.options.downtimeLimitMs;
  }

  private stagedLevel(sample: PassSample): number {
    const running = 1 - this.level / 100;
    const wanted = sample.dirtyRate > 0 ? 1 - (this.options.targetDirtyShare * sample.wireRate * running) / sample.dirtyRate : 0;
    // Never step down while stalled, and always step up by at least one percent point.
    const percent = Math.ceil(wanted * 100);
    return Math.min(this.options.maxThrottle, Math.max(this.level + 1, percent));
  }

  private set(percent: number, atMs: number, reason: string): ConvergeDecision {
    this.level = percent;
    this.levelSinceMs = atMs;
    return { kind: 'throttle', percent, reason };
  }
}

/** Did the dirty volume shrink by less than `shrink` of itself (or grow)? */
export function stalled(previousBytes: number, currentBytes: number, shrink: number): boolean {
  if (previousBytes <= 0) return currentBytes > 0;
  return (previousBytes - currentBytes) / previousBytes < shrink;
}

function checkSample(sample: PassSample): void {
  for (const key of ['pass', 'atMs', 'dirtyBytes', 'wireRate', 'dirtyRate'] as const) {
    const value = sample[key];
    if (!(Number.isFinite(value) && value >= 0)) {
      throw new ArgumentError(`ConvergencePolicy.observe: ${key} must be a finite number ≥ 0, got ${String(value)}`);
    }
  }
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function mbs(rate: number): string {
  return `${(rate / 1e6).toFixed(1)} MB/s`;
}

function pct(share: number): string {
  return `${Math.round(share * 100)} %`;
}
