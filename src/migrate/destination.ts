/**
 * The destination side of moving a VM: takes a QEMU started with `-incoming defer`, points it
 * at an exec: transport (`migstream recv …`), waits for the load, runs the caller's check, and
 * resumes the guest only when the load completed and the check passed. The `incoming` command
 * is a thin shell over this.
 *
 *   check state ─▶ migrate-incoming ─▶ poll ┬─ completed ─▶ check() ─┬─ ok ─▶ cont ─▶ result
 *                                           │                        └─ throws ─▶ stays paused
 *                                           └─ failed / QEMU exited / timeout ─▶ throw
 *
 * Nothing here resumes a guest whose load did not complete: on every failure path the
 * destination is left paused (or gone, when QEMU exited on a failed load, as 7.2 does in
 * process_incoming_migration_co).
 */
import { MigrationFailedError } from '../qemu/errors.js';
import { queryMigrate, type MigrationInfo } from '../qemu/migration.js';
import type { QmpClient, QmpEvent } from '../qemu/qmp.js';
import { VmStateError } from './errors.js';
import { WakeablePause } from './wakeable-pause.js';

export type IncomingEvent =
  { type: 'waiting'; elapsedMs: number } | { type: 'loading'; elapsedMs: number } | { type: 'loaded'; elapsedMs: number } | { type: 'checking'; elapsedMs: number } | { type: 'resumed'; elapsedMs: number };

export interface DestinationOptions {
  qmp: QmpClient;
  /** The command QEMU runs for `exec:` (e.g. `migstream recv --listen HOST:PORT …`). */
  transport: string;
  /**
   * Runs once the load completed, with the guest paused; a throw keeps it paused and is
   * rethrown. Needs the destination started with -S, or QEMU resumes it on its own.
   */
  check?: () => Promise<void>;
  /** Resume the guest when everything checked out (default true). */
  resume?: boolean;
  pollMs?: number;
  /** Give up when no migration completed by then (counted from migrate-incoming). */
  timeoutMs?: number;
  /** Called at every poll while the load runs; a throw fails the wait (e.g. a disk that never came). */
  watchLoad?: () => void;
  onEvent?: (event: IncomingEvent) => void;
  signal?: AbortSignal;
}

export interface DestinationResult {
  info: MigrationInfo;
  startedAtMs: number;
  /** Host time the load was first seen active. */
  loadStartedAtMs: number | undefined;
  loadedAtMs: number;
  /** Host time of QEMU's RESUME event after our `cont` (undefined when not resumed). */
  resumedAtMs: number | undefined;
  /** QEMU resumed the guest itself (started without -S, no check asked for). */
  autostarted: boolean;
}

const DESTINATION_EXITED = 'the destination QEMU exited before the migration completed (a failed load ends it)';

interface StatusReply {
  status: string;
  running: boolean;
}

export async function receiveMigration(options: DestinationOptions): Promise<DestinationResult> {
  const { qmp } = options;
  const status = await qmp.execute<StatusReply>('query-status');
  if (status.status !== 'inmigrate') {
    throw new VmStateError(`the destination VM is "${status.status}", not waiting for a migration: start QEMU with -S -incoming defer`, status.status);
  }
  const current = await queryMigrate(qmp);
  if (current.status !== undefined && current.status !== 'none') {
    throw new VmStateError(`the destination's incoming migration is already ${current.status}: start QEMU with -incoming defer, not -incoming URI`, status.status);
  }
  const emit = options.onEvent ?? (() => undefined);
  const startedAtMs = Date.now();
  const elapsed = (): number => Date.now() - startedAtMs;
  let resumedAtMs: number | undefined;
  /** The poll interval, cut short by a MIGRATION event: the guest waits for our cont. */
  const poll = new WakeablePause();
  const unlisten = qmp.onEvent((event: QmpEvent) => {
    if (event.event === 'RESUME') resumedAtMs = event.timestamp.seconds * 1000 + event.timestamp.microseconds / 1000;
    if (event.event === 'MIGRATION') poll.wake();
  });
  try {
    // MIGRATION events (status changes) only come with the events capability (migrate_events):
    // it is local to this QEMU, so setting it does not have to match the source.
    await qmp.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
    await qmp.execute('migrate-incoming', { uri: `exec:${options.transport}` });
    emit({ type: 'waiting', elapsedMs: 0 });
    let loadStartedAtMs: number | undefined;
    let info: MigrationInfo;
    for (;;) {
      if (options.signal?.aborted) throw new MigrationFailedError('waiting for the migration was aborted', undefined, { cause: options.signal.reason });
      if (qmp.closed) throw new MigrationFailedError(DESTINATION_EXITED);
      info = await queryMigrate(qmp).catch((error: unknown) => {
        if (qmp.closed) throw new MigrationFailedError(DESTINATION_EXITED, undefined, { cause: error });
        throw error;
      });
      if (info.status === 'completed') break;
      if (info.status === 'failed' || info.status === 'cancelled') {
        throw new MigrationFailedError(`the incoming migration ${info.status}: ${info['error-desc'] ?? 'QEMU gave no reason'}`, info);
      }
      if (info.status === 'active' && loadStartedAtMs === undefined) {
        loadStartedAtMs = Date.now();
        emit({ type: 'loading', elapsedMs: elapsed() });
      }
      if (info.status === 'active') options.watchLoad?.();
      if (options.timeoutMs !== undefined && elapsed() > options.timeoutMs) {
        throw new MigrationFailedError(`no migration completed within ${options.timeoutMs / 1000} s (incoming status ${info.status ?? 'none'})`, info);
      }
      await poll.pause(options.pollMs ?? 100);
    }
    const loadedAtMs = Date.now();
    emit({ type: 'loaded', elapsedMs: elapsed() });
    const after = await qmp.execute<StatusReply>('query-status');
    if (after.running) {
      if (options.check === undefined) {
        return { info, startedAtMs, loadStartedAtMs, loadedAtMs, resumedAtMs: resumedAtMs ?? loadedAtMs, autostarted: true };
      }
      // Without -S QEMU starts the guest as soon as the load completes
      // (process_incoming_migration_bh): stop it before it runs on an unchecked copy for long.
      await qmp.execute('stop');
      throw new VmStateError('the destination resumed by itself before the copy could be checked: start QEMU with -S -incoming defer', after.status);
    }
    if (options.check) {
      emit({ type: 'checking', elapsedMs: elapsed() });
      await options.check();
    }
    if (options.resume === false) return { info, startedAtMs, loadStartedAtMs, loadedAtMs, resumedAtMs: undefined, autostarted: false };
    await qmp.execute('cont');
    // The RESUME event arrives with (or just before) cont's answer; wait a moment if not.
    for (let i = 0; i < 20 && resumedAtMs === undefined; i++) await sleep(10);
    emit({ type: 'resumed', elapsedMs: elapsed() });
    return { info, startedAtMs, loadStartedAtMs, loadedAtMs, resumedAtMs: resumedAtMs ?? Date.now(), autostarted: false };
  } finally {
    unlisten();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
