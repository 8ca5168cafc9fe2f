/**
 * The source side of moving a VM: prepares QEMU through QMP, starts `migrate` into an exec:
 * transport, steers it (progress, convergence policy, throttle), and makes sure the source
 * runs on whatever goes wrong. The `migrate` command is a thin shell over this.
 *
 *   check ─▶ arm ─▶ migrate ─▶ poll ┬─ completed ─▶ result (source stays paused: postmigrate)
 *                                   ├─ pre-switchover ─▶ beforeSwitchover() ─▶ migrate-continue ─▶ poll
 *                                   ├─ failed / cancelled ─▶ resume source ─▶ throw
 *                                   └─ timeout / abort ─▶ migrate_cancel ─▶ resume ─▶ throw
 */
import type { QmpClient, QmpEvent } from '../qemu/qmp.js';
import { MigrationFailedError } from '../qemu/errors.js';
import { queryMigrate, type MigrationInfo } from '../qemu/migration.js';
import { ConvergencePolicy, type ConvergeDecision, type PassSample } from './converge-policy.js';
import { ConvergenceError, LeverMissingError, VmStateError } from './errors.js';
import { formatVersion, readLevers, type Levers } from './levers.js';
import { ProgressMeter, type ProgressEvent } from './progress.js';
import { ThrottleActuator, type ThrottleStep } from './throttle-actuator.js';
import { WakeablePause } from './wakeable-pause.js';

export type MigrateEvent =
  ProgressEvent | { type: 'pass'; sample: PassSample } | { type: 'throttle'; percent: number; reason: string; elapsedMs: number } | { type: 'notice'; message: string; elapsedMs: number };

export interface SourceOptions {
  qmp: QmpClient;
  /** The command QEMU runs for `exec:` (e.g. `migstream send HOST:PORT …`). */
  transport: string;
  /** QEMU's downtime-limit; QEMU's own default (300 ms) when absent. */
  downtimeLimitMs?: number;
  /** QEMU's max-bandwidth in bytes per second. */
  maxBandwidth?: number;
  converge?: 'auto' | 'off';
  /** With converge auto: when throttling is exhausted, raise downtime-limit to this to force the switch-over. */
  forceDowntimeLimitMs?: number;
  capabilities?: Readonly<Record<string, boolean>>;
  parameters?: Readonly<Record<string, unknown>>;
  /** Carry the VM's writable disks in the stream (QEMU's block migration, QEMU ≤ 9.0). */
  withDisk?: boolean;
  /**
   * Runs with the source paused, before QEMU sends its device state (QEMU's
   * pause-before-switchover: state `pre-switchover` until `migrate-continue`), e.g. the disk's
   * last pass and check. A throw cancels the migration and the source resumes.
   */
  beforeSwitchover?: () => Promise<void>;
  /** Called at every poll; a throw (e.g. a disk pass running beside RAM failed) fails the migration. */
  watch?: () => void;
  pollMs?: number;
  /** Cancel (and resume the source) when the migration has not completed by then. */
  timeoutMs?: number;
  /** The transport's byte counters so far (send-stats), when it reports them. */
  transportBytes?: () => TransportBytes | undefined;
  onEvent?: (event: MigrateEvent) => void;
  signal?: AbortSignal;
}

export interface TransportBytes {
  /** Bytes on the wire (compressed, framed). */
  wireBytes: number;
  /** Stream bytes handed to the sockets: what drained QEMU's pipe. */
  leftBytes: number;
}

export interface SourceResult {
  info: MigrationInfo;
  levers: Levers;
  startedAtMs: number;
  completedAtMs: number;
  /** Host time of QEMU's STOP event (the guest stopped for the switch-over), ms. */
  stoppedAtMs: number | undefined;
  throttleSteps: ThrottleStep[];
  passes: PassSample[];
  /** avail-switchover-bandwidth values given to QEMU (bytes/s), in order. */
  switchoverBandwidth: { atMs: number; bytesPerSecond: number }[];
  /** Bytes of disk the block migration carried (QEMU drops `disk` from query-migrate once done: the size last seen). */
  diskBytes: number | null;
  /** How long beforeSwitchover held the paused source at pre-switchover (null: not asked for). */
  switchoverMs: number | null;
  notices: string[];
}

interface StatusReply {
  status: string;
  running: boolean;
}

export const DEFAULT_DOWNTIME_MS = 300;
/** The drain window (2 s) must have filled before its rate means anything. */
const SWITCHOVER_SETTLE_MS = 2000;

/** The source must be running and not already migrating (checked before a probe, too). */
export async function assertMigratable(qmp: QmpClient): Promise<void> {
  const status = await qmp.execute<StatusReply>('query-status');
  if (status.status !== 'running') {
    throw new VmStateError(`the source VM is "${status.status}", not running: nothing to migrate live`, status.status);
  }
  const current = await queryMigrate(qmp);
  if (current.status === 'active' || current.status === 'setup' || current.status === 'device' || current.status === 'pre-switchover') {
    throw new VmStateError(`a migration is already ${current.status} on the source`, status.status);
  }
}

export async function migrateSource(options: SourceOptions): Promise<SourceResult> {
  const { qmp } = options;
  await assertMigratable(qmp);
  const levers = await readLevers(qmp);
  const converge = options.converge ?? 'off';
  if (converge === 'auto' && !levers.cpuThrottle) throw new LeverMissingError('--converge auto needs auto-converge and max-cpu-throttle, which this QEMU lacks');
  if (options.withDisk === true && !levers.blockMigration) {
    throw new LeverMissingError(`--with-disk needs QEMU's block migration, which QEMU ${formatVersion(levers.version)} no longer has (removed in 9.1): move the disk through NBD instead`);
  }

  const downtimeLimitMs = options.downtimeLimitMs ?? DEFAULT_DOWNTIME_MS;
  const actuator = new ThrottleActuator(qmp);
  const pausing = options.beforeSwitchover !== undefined;
  const wanted = {
    ...(options.capabilities ?? {}),
    ...(options.withDisk === true ? { block: true } : {}),
    // events: a MIGRATION event wakes the poll at pre-switchover, where the guest is already down.
    ...(pausing ? { 'pause-before-switchover': true, events: true } : {}),
  };
  const capabilities = Object.entries(wanted).map(([capability, state]) => ({ capability, state }));
  if (capabilities.length) await qmp.execute('migrate-set-capabilities', { capabilities });
  if (converge === 'auto') await actuator.arm();
  const parameters: Record<string, unknown> = { ...(options.parameters ?? {}), 'downtime-limit': downtimeLimitMs };
  if (options.maxBandwidth !== undefined) parameters['max-bandwidth'] = Math.round(options.maxBandwidth);
  await qmp.execute('migrate-set-parameters', parameters);

  const policy = converge === 'auto' ? new ConvergencePolicy({ downtimeLimitMs, allowForceSwitchover: options.forceDowntimeLimitMs !== undefined }) : undefined;
  const notices: string[] = [];
  const passes: PassSample[] = [];
  const switchoverBandwidth: SourceResult['switchoverBandwidth'] = [];
  let stoppedAtMs: number | undefined;
  // A MIGRATION event (pre-switchover: the guest is already down) cuts the poll's pause short.
  const poll = new WakeablePause();
  const stopListener = qmp.onEvent((event: QmpEvent) => {
    if (event.event === 'STOP') stoppedAtMs = event.timestamp.seconds * 1000 + event.timestamp.microseconds / 1000;
    if (event.event === 'MIGRATION') poll.wake();
  });
  let switchoverMs: number | null = null;

  const startedAtMs = Date.now();
  const emit = options.onEvent ?? (() => undefined);
  const meter = new ProgressMeter(startedAtMs);
  try {
    await qmp.execute('migrate', { uri: `exec:${options.transport}` });
    let lastPass = 0;
    let diskBytes: number | null = null;
    let passStart = { atMs: startedAtMs, transferred: 0, left: options.transportBytes?.()?.leftBytes };
    for (;;) {
      if (options.signal?.aborted) throw new MigrationFailedError('the migration was aborted', undefined, { cause: options.signal.reason });
      const info = await queryMigrate(qmp);
      const atMs = Date.now();
      if (info.status === 'completed') {
        stopListener();
        return { info, levers, startedAtMs, completedAtMs: atMs, stoppedAtMs, throttleSteps: actuator.steps, passes, switchoverBandwidth, diskBytes, switchoverMs, notices };
      }
      if (info.status === 'pre-switchover' && options.beforeSwitchover !== undefined && switchoverMs === null) {
        const paused = Date.now();
        await options.beforeSwitchover();
        switchoverMs = Date.now() - paused;
        await qmp.execute('migrate-continue', { state: 'pre-switchover' });
        continue;
      }
      options.watch?.();
      if (info.status === 'failed' || info.status === 'cancelled') {
        throw new MigrationFailedError(`the migration ${info.status}: ${info['error-desc'] ?? 'QEMU gave no reason'}`, info);
      }
      if (info.disk !== undefined) diskBytes = info.disk.total;
      const transport = options.transportBytes?.();
      const progress = meter.push(transport === undefined ? { atMs, info } : { atMs, info, ...transport });
      emit(progress);
      if (levers.availSwitchoverBandwidth && progress.drainRate !== null) await tellSwitchoverBandwidth(progress.drainRate, atMs);
      const decisions: ConvergeDecision[] = [];
      if (progress.pass > lastPass && lastPass > 0) {
        const seconds = Math.max(1e-3, (atMs - passStart.atMs) / 1000);
        // The link's rate in stream bytes (what the dirty volume is counted in): what left our
        // frames for the sockets, or, without send-stats, what QEMU wrote into the pipe.
        const sentBytes = transport !== undefined && passStart.left !== undefined ? transport.leftBytes - passStart.left : progress.transferred - passStart.transferred;
        const sample: PassSample = { pass: progress.pass, atMs, dirtyBytes: progress.remaining, wireRate: Math.max(0, sentBytes) / seconds, dirtyRate: progress.dirtyRate };
        passes.push(sample);
        emit({ type: 'pass', sample });
        if (policy) decisions.push(...policy.observe(sample));
      } else if (policy) {
        decisions.push(...policy.tick(atMs));
      }
      if (progress.pass > lastPass) {
        lastPass = progress.pass;
        passStart = { atMs, transferred: progress.transferred, left: transport?.leftBytes };
      }
      for (const decision of decisions) await carryOut(decision, atMs - startedAtMs);
      if (options.timeoutMs !== undefined && atMs - startedAtMs > options.timeoutMs) {
        throw new ConvergenceError(`the migration did not complete within ${options.timeoutMs / 1000} s (pass ${progress.pass}, ${(progress.remaining / 1e6).toFixed(1)} MB still dirty)`);
      }
      await poll.pause(options.pollMs ?? 250);
    }
  } catch (error) {
    stopListener();
    await cancelAndResume(qmp);
    throw error;
  } finally {
    // The value was this link's; a later migration must not inherit it (0: QEMU measures again).
    if (switchoverBandwidth.length > 0 && !qmp.closed) await qmp.execute('migrate-set-parameters', { 'avail-switchover-bandwidth': 0 }).catch(() => undefined);
    // Likewise the block capability: a later migration must not carry the disks unasked.
    if (options.withDisk === true && !qmp.closed) await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'block', state: false }] }).catch(() => undefined);
    // And the pause: a later plain `migrate` would otherwise wait at pre-switchover for nobody.
    if (pausing && !qmp.closed) await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'pause-before-switchover', state: false }] }).catch(() => undefined);
  }

  /**
   * QEMU ≥ 8.2 judges the switch-over by avail-switchover-bandwidth when it is set, instead of
   * by how fast it wrote into our pipe (migration_update_counters): give it the link's drain
   * rate, so the downtime it predicts is the one the guest gets. Updated on a 10 % change.
   */
  async function tellSwitchoverBandwidth(drainRate: number, atMs: number): Promise<void> {
    if (atMs - startedAtMs < SWITCHOVER_SETTLE_MS || drainRate < 1e6) return;
    const last = switchoverBandwidth.at(-1)?.bytesPerSecond;
    if (last !== undefined && Math.abs(drainRate - last) < 0.1 * last) return;
    const bytesPerSecond = Math.round(drainRate);
    await qmp.execute('migrate-set-parameters', { 'avail-switchover-bandwidth': bytesPerSecond });
    switchoverBandwidth.push({ atMs: atMs - startedAtMs, bytesPerSecond });
  }

  async function carryOut(decision: ConvergeDecision, elapsedMs: number): Promise<void> {
    switch (decision.kind) {
      case 'throttle':
        await actuator.set(decision.percent, elapsedMs);
        emit({ type: 'throttle', percent: decision.percent, reason: decision.reason, elapsedMs });
        return;
      case 'exhausted':
        notices.push(decision.reason);
        emit({ type: 'notice', message: `throttling is exhausted: ${decision.reason}`, elapsedMs });
        return;
      case 'force-switchover':
        await qmp.execute('migrate-set-parameters', { 'downtime-limit': options.forceDowntimeLimitMs });
        notices.push(`switch-over forced: downtime-limit raised to ${options.forceDowntimeLimitMs} ms`);
        emit({ type: 'notice', message: `forcing the switch-over with a ${options.forceDowntimeLimitMs} ms downtime limit`, elapsedMs });
        return;
    }
  }
}

/**
 * After a failure the source must run. QEMU restarts a VM it stopped for the switch-over when
 * the migration fails (migration_iteration_finish), but a cancel during pre-copy or a QEMU that
 * failed differently may leave it paused: then we resume it. A completed migration never gets
 * here, so a paused source here is ours to resume.
 */
async function cancelAndResume(qmp: QmpClient): Promise<void> {
  if (qmp.closed) return;
  try {
    const info = await queryMigrate(qmp);
    if (info.status !== 'completed' && info.status !== 'failed' && info.status !== 'cancelled' && info.status !== undefined) {
      await qmp.execute('migrate_cancel');
      const deadline = Date.now() + 30_000;
      for (;;) {
        const now = await queryMigrate(qmp);
        if (now.status !== 'cancelling' && now.status !== 'active' && now.status !== 'setup') break;
        if (Date.now() > deadline) break;
        await sleep(50);
      }
    }
    const status = await qmp.execute<StatusReply>('query-status');
    if (!status.running && (status.status === 'paused' || status.status === 'finish-migrate')) await qmp.execute('cont');
  } catch {
    // QEMU went away: nothing left to resume.
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
