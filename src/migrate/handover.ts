/**
 * The downtime QEMU may spend, out of the downtime the user asked for.
 *
 * QEMU's downtime-limit covers its own side only: it switches over when what is dirty can be
 * written at its measured rate within the limit (migration_update_counters), and counts the
 * guest as down from its stop to its last byte. The guest stays down longer: the stream's tail
 * still crosses the link (a router's queue holds 100 ms on the bench's tbf link, measured by the
 * link probe as `tailMs`), and the destination finishes the load and resumes
 * (process_incoming_migration_bh, then our cont: 90–150 ms under TCG on this machine, from
 * QEMU's own MIGRATION and RESUME event times). With hot-page dropping, send's hold (full
 * when the link is the bottleneck) drains after QEMU's last byte too. Those are the hand-over;
 * QEMU gets the rest.
 */
import { ArgumentError } from '../stream/errors.js';

/** The destination's finish and resume, when nothing better is known (measured, TCG). */
export const DESTINATION_FINISH_MS = 100;

/** QEMU keeps at least this share of the user's limit, or pre-copy could never switch over. */
const MIN_QEMU_SHARE = 0.25;

export interface DowntimeBudget {
  /** What the user asked for: the downtime the guest sees. */
  limitMs: number;
  /** What is kept for the hand-over. */
  handoverMs: number;
  /** What QEMU is given as downtime-limit. */
  qemuLimitMs: number;
}

/** Splits `limitMs` into QEMU's part and the hand-over (the link's tail plus the destination's finish). */
export function downtimeBudget(limitMs: number, handoverMs: number): DowntimeBudget {
  if (!(Number.isFinite(limitMs) && limitMs > 0)) throw new ArgumentError(`downtimeBudget: limitMs must be positive, got ${limitMs}`);
  if (!(Number.isFinite(handoverMs) && handoverMs >= 0)) throw new ArgumentError(`downtimeBudget: handoverMs must be ≥ 0, got ${handoverMs}`);
  const qemuLimitMs = Math.max(Math.ceil(limitMs * MIN_QEMU_SHARE), Math.round(limitMs - handoverMs));
  return { limitMs, handoverMs: limitMs - qemuLimitMs, qemuLimitMs };
}

/**
 * The hand-over to keep: the probe's measured tail (none without a probe), send's hold (the
 * time the link takes to drain it) and the destination's finish.
 */
export function handoverMs(tailMs: number | null, holdMs = 0): number {
  return Math.round((tailMs ?? 0) + holdMs + DESTINATION_FINISH_MS);
}
