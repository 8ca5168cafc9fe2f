/**
 * When the disk lets RAM start, and how hard to hold the guest's writes back (issue 16 item 4:
 * CEC's RAM/disk time-slicing and disk I/O QoS, done from outside QEMU). Pure: dirty passes
 * in, decisions out; disk-mover.ts carries them out.
 *
 * - RAM pre-copy starts only once a dirty pass sends at most `readyBytes` (by default what the
 *   link carries in READY_MS): before that, RAM pages would be sent again and again while the
 *   disk copies and competes for the link.
 * - A pass that sends no less than (1 − SHRINK_MIN) of the pass before (CEC's 5 % rule, as the
 *   RAM policy in converge-policy.ts) lowers the guest's write limit one step: the first step
 *   to half the guest's measured write rate, each later one to half the limit before, down to
 *   `floorBytesPerSecond`. Once at the floor, or after `maxPasses`, RAM starts anyway and the
 *   report says the last pass will be large (it adds to the downtime).
 */
import { ArgumentError } from '../stream/errors.js';

/** A pass "did not shrink" when it sent more than 95 % of the pass before. */
export const SHRINK_MIN = 0.05;
/** RAM may start once a dirty pass would cross the link in this long. */
export const READY_MS = 1000;
/** Below this the limit stops falling: a guest that cannot write at all is a stalled guest. */
export const DEFAULT_FLOOR_BYTES_PER_SECOND = 1024 * 1024;

export interface DiskPassSample {
  /** Disk-stream bytes the pass sent (what the guest dirtied since the pass before, as sent). */
  readonly bytes: number;
  /** Time from the start of the pass before to the start of this one: the window its writes came in. */
  readonly windowMs: number;
}

export type DiskDecision =
  { readonly kind: 'pass-again' } | { readonly kind: 'throttle'; readonly bytesPerSecond: number; readonly reason: string } | { readonly kind: 'start-ram'; readonly reason: string; readonly notice?: string };

export interface DiskPolicyOptions {
  /** A pass at most this large lets RAM start. */
  readonly readyBytes: number;
  readonly floorBytesPerSecond?: number;
  /** Dirty passes before RAM starts whatever they send. Default 30. */
  readonly maxPasses?: number;
  /** Lower the guest's write limit when passes stop shrinking. Default true. */
  readonly throttle?: boolean;
}

/** `readyBytes` for a link of `bytesPerSecond`: what it carries in READY_MS, at least 1 MiB. */
export function readyBytesForLink(bytesPerSecond: number): number {
  return Math.max(1024 * 1024, Math.round((bytesPerSecond * READY_MS) / 1000));
}

export class DiskPolicy {
  private previous: DiskPassSample | undefined;
  private passes = 0;
  /** The write limit set so far (bytes/s), undefined while unthrottled. */
  limit: number | undefined;
  private readonly floor: number;
  private readonly maxPasses: number;

  constructor(private readonly options: DiskPolicyOptions) {
    if (!(options.readyBytes >= 0)) throw new ArgumentError(`DiskPolicy: readyBytes must be ≥ 0, got ${options.readyBytes}`);
    this.floor = options.floorBytesPerSecond ?? DEFAULT_FLOOR_BYTES_PER_SECOND;
    this.maxPasses = options.maxPasses ?? 30;
  }

  /** What to do after a dirty pass (not the first copy). */
  observe(sample: DiskPassSample): DiskDecision {
    this.passes++;
    const previous = this.previous;
    this.previous = sample;
    const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;
    if (sample.bytes <= this.options.readyBytes) {
      return { kind: 'start-ram', reason: `the last disk pass sent ${mb(sample.bytes)}, at most ${mb(this.options.readyBytes)}` };
    }
    if (this.passes >= this.maxPasses) {
      return {
        kind: 'start-ram',
        reason: `${this.passes} disk passes`,
        notice: `the disk did not converge in ${this.passes} passes (the last sent ${mb(sample.bytes)}): RAM starts; the last pass, with the guest paused, will be about as large`,
      };
    }
    const shrinking = previous === undefined || sample.bytes < previous.bytes * (1 - SHRINK_MIN);
    if (shrinking || this.options.throttle === false) return { kind: 'pass-again' };
    if (this.limit !== undefined && this.limit <= this.floor) {
      return {
        kind: 'start-ram',
        reason: 'the write limit is at its floor',
        notice: `the disk does not converge with the guest's writes limited to ${mb(this.limit)}/s (the last pass sent ${mb(sample.bytes)}): RAM starts; the last pass, with the guest paused, will be about as large`,
      };
    }
    // What the guest wrote, as the pass sent it (with sub-block deltas near what it changed;
    // the bitmap's dirty bytes count whole granules).
    const writeRate = (sample.bytes * 1000) / Math.max(1, sample.windowMs);
    const next = Math.max(this.floor, Math.round((this.limit ?? writeRate) / 2));
    this.limit = next;
    return { kind: 'throttle', bytesPerSecond: next, reason: `disk pass ${this.passes} sent ${mb(sample.bytes)} after ${mb(previous.bytes)}: not shrinking (guest writes ${mb(writeRate)}/s)` };
  }
}
