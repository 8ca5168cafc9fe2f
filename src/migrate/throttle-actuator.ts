/**
 * Carries the convergence policy's throttle levels out through unpatched QEMU's auto-converge.
 *
 * QEMU has no "throttle to N % now" command. Its auto-converge throttle is set only by
 * mig_throttle_guest_down, which migration_trigger_throttle calls at a dirty-bitmap sync once
 * the dirty bytes of two periods in a row exceed throttle-trigger-threshold % of the bytes
 * sent. It starts at cpu-throttle-initial and then moves to min(now + cpu-throttle-increment,
 * max-cpu-throttle). So:
 *   - armed (before any decision): auto-converge on, every knob at its floor (1 %, trigger
 *     at 100 %): a stalled guest is slowed by at most 1 % until the policy speaks;
 *   - set(p): initial = max = p, increment 99, trigger 1 %: the next trigger moves the
 *     throttle to exactly p, from below or from above.
 * Capabilities cannot change while a migration runs, which is why arming happens before
 * `migrate`. QEMU stops the throttle itself when the migration ends (cpu_throttle_stop), on
 * success or failure.
 */
import type { QmpExecutor } from '../qemu/qmp.js';

/** migrate_params_check accepts 1–99 for the throttle levels. */
const FLOOR = 1;
const CEILING = 99;

export interface ThrottleStep {
  percent: number;
  atMs: number;
}

export class ThrottleActuator {
  /** Every level asked for, in order (the report's throttle steps). */
  readonly steps: ThrottleStep[] = [];

  constructor(private readonly qmp: QmpExecutor) {}

  /** Before `migrate`: auto-converge on, throttling at most 1 % until a level is set. */
  async arm(): Promise<void> {
    await this.qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'auto-converge', state: true }] });
    await this.qmp.execute('migrate-set-parameters', {
      'cpu-throttle-initial': FLOOR,
      'cpu-throttle-increment': FLOOR,
      'max-cpu-throttle': FLOOR,
      'throttle-trigger-threshold': 100,
    });
  }

  /** Ask for `percent` (1–99) from the next dirty-bitmap sync on. */
  async set(percent: number, atMs: number): Promise<void> {
    const level = Math.min(CEILING, Math.max(FLOOR, Math.round(percent)));
    await this.qmp.execute('migrate-set-parameters', {
      'cpu-throttle-initial': level,
      'cpu-throttle-increment': CEILING,
      'max-cpu-throttle': level,
      'throttle-trigger-threshold': FLOOR,
      'cpu-throttle-tailslow': false,
    });
    this.steps.push({ percent: level, atMs });
  }
}
