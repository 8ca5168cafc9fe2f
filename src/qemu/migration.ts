/**
 * Migration over `exec:` URIs: QEMU runs the command with /bin/sh and writes the stream to
 * its stdin (outgoing) or reads it from its stdout (incoming).
 */
import { existsSync, rmSync } from 'node:fs';
import { MigrationFailedError, QemuExitedError, QemuTimeoutError } from './errors.js';
import type { QemuVm } from './launcher.js';
import type { QmpExecutor } from './qmp.js';

/** query-migrate's answer; the members used here are typed, the rest passed through. */
export interface MigrationInfo {
  status?: string;
  'error-desc'?: string;
  'total-time'?: number;
  downtime?: number;
  ram?: {
    transferred: number;
    remaining: number;
    total: number;
    duplicate: number;
    normal: number;
    'normal-bytes': number;
    'dirty-sync-count': number;
    [key: string]: unknown;
  };
  disk?: { transferred: number; remaining: number; total: number; [key: string]: unknown };
  'xbzrle-cache'?: { 'cache-size': number; bytes: number; pages: number; 'cache-miss': number; overflow: number; [key: string]: unknown };
  compression?: { pages: number; 'compressed-size': number; [key: string]: unknown };
  [key: string]: unknown;
}

export type MigrationCapabilities = Readonly<Record<string, boolean>>;
export type MigrationParameters = Readonly<Record<string, unknown>>;

export interface PollOptions {
  /** Interval between query-migrate calls. */
  pollMs?: number;
  timeoutMs?: number;
  /** Called after every poll while the migration runs, e.g. to change parameters. */
  onPoll?: (info: MigrationInfo, elapsedMs: number) => void | Promise<void>;
}

export interface MigrateOptions extends PollOptions {
  capabilities?: MigrationCapabilities;
  parameters?: MigrationParameters;
  /** Block migration of all writable drives (QEMU ≤ 9.0). */
  blk?: boolean;
}

export interface RestoreOptions extends PollOptions {
  capabilities?: MigrationCapabilities;
  parameters?: MigrationParameters;
}

/** Quotes `value` for /bin/sh, which is what runs the command of an exec: URI. */
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export async function setCapabilities(vm: QemuVm, capabilities: MigrationCapabilities): Promise<void> {
  const list = Object.entries(capabilities).map(([capability, state]) => ({ capability, state }));
  if (list.length) await vm.execute('migrate-set-capabilities', { capabilities: list });
}

export async function setParameters(vm: QemuVm, parameters: MigrationParameters): Promise<void> {
  if (Object.keys(parameters).length) await vm.execute('migrate-set-parameters', parameters);
}

export function queryMigrate(qmp: QmpExecutor): Promise<MigrationInfo> {
  return qmp.execute<MigrationInfo>('query-migrate');
}

/**
 * Migrates the running VM into `command` (e.g. `cat > FILE`) and waits until it completes.
 * Afterwards the source stays paused (postmigrate) with its RAM intact.
 */
export async function migrateToExec(vm: QemuVm, command: string, options: MigrateOptions = {}): Promise<MigrationInfo> {
  await setCapabilities(vm, options.capabilities ?? {});
  await setParameters(vm, options.parameters ?? {});
  const args: Record<string, unknown> = { uri: `exec:${command}` };
  if (options.blk) args.blk = true;
  await vm.execute('migrate', args);
  return waitForMigration(vm, 'outgoing migration', options);
}

/**
 * Migrates into a file. QEMU reports "completed" before the exec: child has necessarily
 * drained the pipe (it waits for the child only later, while cleaning up), so the command
 * renames a temporary file when `cat` is done and we wait for that name to appear.
 */
export async function migrateToFile(vm: QemuVm, path: string, options: MigrateOptions = {}): Promise<MigrationInfo> {
  const partial = `${path}.partial`;
  rmSync(path, { force: true });
  const info = await migrateToExec(vm, `cat > ${shellQuote(partial)} && mv ${shellQuote(partial)} ${shellQuote(path)}`, options);
  const deadline = Date.now() + 60_000;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new QemuTimeoutError(`waiting for the exec: command to finish writing ${path}`, 60_000);
    await delay(20);
  }
  return info;
}

/**
 * Feeds the output of `command` (e.g. `cat FILE`) to a VM started with `-incoming defer`
 * and waits until the load completes. QEMU 7.2 exits when an incoming migration fails, so
 * that failure is a MigrationFailedError whose cause is a QemuExitedError with QEMU's stderr.
 */
export async function restoreFromExec(vm: QemuVm, command: string, options: RestoreOptions = {}): Promise<MigrationInfo> {
  await setCapabilities(vm, options.capabilities ?? {});
  await setParameters(vm, options.parameters ?? {});
  await vm.execute('migrate-incoming', { uri: `exec:${command}` });
  return waitForMigration(vm, 'incoming migration', options);
}

async function waitForMigration(vm: QemuVm, what: string, options: PollOptions): Promise<MigrationInfo> {
  const pollMs = options.pollMs ?? 100;
  const timeoutMs = options.timeoutMs ?? 10 * 60_000;
  const started = Date.now();
  let info: MigrationInfo = {};
  for (;;) {
    try {
      info = await queryMigrate(vm);
    } catch (err) {
      // The QMP socket closes a moment before the exit status is known.
      const exit = await Promise.race([vm.exited, delay(3_000).then(() => undefined)]);
      if (exit) {
        const exited = new QemuExitedError(`the ${what} of ${vm.name} was running`, exit, vm.stderrText());
        throw new MigrationFailedError(`${what} of ${vm.name} failed: ${exited.message}`, info, { cause: exited });
      }
      throw err;
    }
    if (info.status === 'completed') return info;
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw new MigrationFailedError(`${what} of ${vm.name} ${info.status}: ${info['error-desc'] ?? 'no error-desc'}`, info);
    }
    const elapsed = Date.now() - started;
    if (elapsed > timeoutMs) {
      throw new QemuTimeoutError(`waiting for ${what} of ${vm.name}`, timeoutMs, `last query-migrate: ${JSON.stringify(info)}`);
    }
    await options.onPoll?.(info, elapsed);
    await delay(pollMs);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Writes `size` bytes of guest-physical memory from `addr` to `path` (QEMU opens the file). */
export async function pmemsave(vm: QmpExecutor, addr: number, size: number, path: string): Promise<void> {
  await vm.execute('pmemsave', { val: addr, size, filename: path });
}
