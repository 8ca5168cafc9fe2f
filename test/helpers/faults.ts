/**
 * Shared pieces of the fault matrix (test/faults/, docs/faults.md): a small booted source
 * guest, migstream commands run by QEMU (`exec:`) whose exit status, stderr and exit time are
 * recorded, finding such a process to kill it, a small tmpfs for disk-full cells, and one
 * printed line per cell with what was measured.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { launchQemu, type QemuVm } from '../../src/qemu/launcher.js';
import { queryMigrate, setParameters, shellQuote } from '../../src/qemu/migration.js';
import { HEARTBEAT, REPO_ROOT, guestArgs } from '../fixtures/meta.js';
import { loadFixture } from './qemu.js';
import { BIN } from './transport.js';

/** Seeded PRNG (mulberry32): the same seed gives the same fault points. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `MIGSTREAM_FAULT_SEED` replays a run; otherwise a fresh seed. Printed either way. */
export function faultSeed(family: string): number {
  const fixed = process.env.MIGSTREAM_FAULT_SEED;
  const seed = fixed !== undefined ? Number(fixed) >>> 0 : (Date.now() ^ (process.pid << 16)) >>> 0;
  console.log(`fault matrix (${family}): seed ${seed} (replay with MIGSTREAM_FAULT_SEED=${seed})`);
  return seed;
}

const MiB = 1024 * 1024;
/** 128 MiB + 8 KiB: small and quick under TCG (see scenarios.ts for the 8 KiB). */
export const GUEST_MEMORY = 128 * MiB + 8 * 1024;
export const GUEST_ARGS = ['-machine', 'pc-i440fx-7.2', '-m', `${GUEST_MEMORY / 1024}K`, '-smp', '1', ...guestArgs('idle')];
export const accel = (): 'kvm' | 'tcg' => loadFixture('idle').meta.accel;

export async function bootGuest(name: string, dir: string, extra: string[] = []): Promise<QemuVm> {
  return launchQemu({ args: [...GUEST_ARGS, ...extra], accel: accel(), name, cwd: REPO_ROOT, serialLogPath: join(dir, `${name}.log`) });
}

/** A running source guest whose migrations are capped at `maxBandwidth` bytes/s. */
export async function bootCappedSource(name: string, dir: string, maxBandwidth: number): Promise<QemuVm> {
  const vm = await bootGuest(name, dir);
  try {
    await vm.waitForSerial(HEARTBEAT, 180_000);
    await setParameters(vm, { 'max-bandwidth': maxBandwidth });
  } catch (error) {
    await vm.quit();
    throw error;
  }
  return vm;
}

/** A destination waiting for `-incoming exec:`, paused (-S): it must never run unless told. */
export async function bootDestination(name: string, dir: string): Promise<QemuVm> {
  return bootGuest(name, dir, ['-S', '-incoming', 'defer']);
}

const heartbeats = (vm: QemuVm): number => vm.serialText().match(new RegExp(HEARTBEAT.source, 'g'))?.length ?? 0;

/** Waits for the guest to print a heartbeat after the ones already on its console. */
export async function nextHeartbeat(vm: QemuVm, timeoutMs = 60_000): Promise<void> {
  const seen = heartbeats(vm);
  const deadline = Date.now() + timeoutMs;
  while (heartbeats(vm) <= seen) {
    if (Date.now() > deadline) throw new Error(`no new heartbeat on ${vm.name} within ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** The source survived the fault: QMP says running and the guest prints a new heartbeat. */
export async function expectSourceRuns(vm: QemuVm, timeoutMs = 60_000): Promise<void> {
  expect(vm.hasExited, `${vm.name} exited: ${vm.stderrText()}`).toBe(false);
  // A failed outgoing migration takes a moment to go from "active" to "failed" + running.
  const deadline = Date.now() + timeoutMs;
  let status = '';
  while (Date.now() < deadline) {
    status = (await vm.execute<{ status: string }>('query-status')).status;
    if (status === 'running') break;
    await sleep(100);
  }
  expect(status).toBe('running');
  await nextHeartbeat(vm, Math.max(1000, deadline - Date.now()));
}

/**
 * The destination never ran the guest: it exited (QEMU 7.2 exits when an incoming load fails)
 * or is still paused, and its serial console holds no heartbeat of its own.
 */
export async function expectDestinationNotResumed(vm: QemuVm, timeoutMs = 30_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let status = 'none';
  while (Date.now() < deadline) {
    if (vm.hasExited) {
      status = 'exited';
      break;
    }
    status = (await vm.execute<{ status: string }>('query-status').catch(() => ({ status: 'exited' }))).status;
    if (status === 'exited' || status === 'paused' || status === 'postmigrate' || status === 'shutdown') break;
    expect(status).not.toBe('running');
    await sleep(100);
  }
  expect(status).not.toBe('running');
  expect(heartbeats(vm)).toBe(0);
  return status;
}

/** Polls the incoming side until the load completed, failed, or QEMU exited. */
export async function waitIncoming(vm: QemuVm, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = vm.hasExited ? 'exited' : ((await queryMigrate(vm).catch(() => ({ status: 'exited' }))).status ?? 'none');
    if (status === 'completed' || status === 'failed' || status === 'exited') return status;
    if (Date.now() > deadline) return `timeout (${status})`;
    await sleep(100);
  }
}

/** Polls the outgoing side until the migration is no longer running. */
export async function waitOutgoing(vm: QemuVm, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = (await queryMigrate(vm)).status ?? 'none';
    if (status === 'completed' || status === 'failed' || status === 'cancelled') return status;
    if (Date.now() > deadline) return `timeout (${status})`;
    await sleep(100);
  }
}

export interface Outcome {
  /** Exit status; 128 + N when killed by signal N (as the shell reports it). */
  code: number;
  stderr: string;
  /** Date.now() when it exited. */
  exitedAt: number;
}

export interface Tracked {
  name: string;
  /** The exec: command line (run by /bin/sh). */
  command: string;
  outcome(): Outcome | undefined;
  /** Waits for the exit; undefined when it did not exit within `timeoutMs`. */
  waitExit(timeoutMs: number): Promise<Outcome | undefined>;
  /** The migstream process's pid (found among the processes: it is QEMU's grandchild). */
  pid(): number | undefined;
}

/**
 * `migstream ARGS` for an exec: URI, its stderr to DIR/NAME.err and, when it exits, its status
 * and the time in DIR/NAME.rc. stdin and stdout stay QEMU's. `prefix` runs it through e.g.
 * `ip netns exec NS`; `marker` is an argument that identifies the process among the others.
 */
export function tracked(dir: string, name: string, args: string[], options: { prefix?: string[] } = {}): Tracked {
  mkdirSync(dir, { recursive: true });
  const err = join(dir, `${name}.err`);
  const rc = join(dir, `${name}.rc`);
  rmSync(rc, { force: true });
  const argv = [...(options.prefix ?? []), process.execPath, BIN, ...args];
  const line = argv.map(shellQuote).join(' ');
  // The status line is written to a temporary name and renamed, so it is never read half-written.
  const command = `${line} 2>${shellQuote(err)}; echo "$? $(date +%s%3N)" >${shellQuote(`${rc}.tmp`)}; mv ${shellQuote(`${rc}.tmp`)} ${shellQuote(rc)}`;
  const outcome = (): Outcome | undefined => {
    if (!existsSync(rc)) return undefined;
    const [code, at] = readFileSync(rc, 'utf8').trim().split(' ');
    return { code: Number(code), exitedAt: Number(at), stderr: readFileSync(err, 'utf8') };
  };
  return {
    name,
    command,
    outcome,
    async waitExit(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const result = outcome();
        if (result) return result;
        await sleep(50);
      }
      return outcome();
    },
    pid: () => findProcess((cmdline) => cmdline.includes(BIN) && args.every((arg) => cmdline.includes(arg)) && cmdline[0] === process.execPath),
  };
}

/** Pid of a process whose argv matches, or undefined. */
export function findProcess(match: (argv: string[]) => boolean): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8')
        .split('\0')
        .filter((s) => s !== '');
      if (match(argv)) return Number(entry);
    } catch {}
  }
  return undefined;
}

/** Waits until `find()` gives a pid (the exec: child starting), then SIGKILLs it; returns the time. */
export async function killWhenFound(find: () => number | undefined, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pid = find();
    if (pid !== undefined) {
      process.kill(pid, 'SIGKILL');
      return Date.now();
    }
    if (Date.now() > deadline) throw new Error('the process to kill never appeared');
    await sleep(20);
  }
}

/** Resolves once the outgoing migration has transferred `bytes` (polled every 25 ms). */
export async function whenTransferred(vm: QemuVm, bytes: number, timeoutMs = 120_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await queryMigrate(vm);
    const transferred = info.ram?.transferred ?? 0;
    if (transferred >= bytes) return transferred;
    if (info.status === 'completed' || info.status === 'failed') {
      throw new Error(`the migration ended (${info.status}) after ${transferred} bytes, before the fault point ${bytes}`);
    }
    if (Date.now() > deadline) throw new Error(`the migration did not reach ${bytes} bytes within ${timeoutMs} ms`);
    await sleep(25);
  }
}

/**
 * One clear message: exactly one "migstream CMD: error: …" line matching `pattern`; any other
 * line is recv's start-up notice ("listening on …").
 */
export function expectOneMessage(stderr: string, command: string, pattern: RegExp): void {
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  const errors = lines.filter((line) => line.startsWith(`migstream ${command}: error: `));
  expect(errors, stderr).toHaveLength(1);
  expect(errors[0]).toMatch(pattern);
  expect(
    lines.filter((line) => !errors.includes(line) && !/^migstream recv: listening on /.test(line)),
    stderr,
  ).toEqual([]);
}

/** The error line of a migstream command, else its first line (for the matrix's table). */
export const message = (stderr: string | undefined): string => {
  const lines = (stderr ?? '').split('\n').filter((line) => line.trim() !== '');
  return lines.find((line) => / error: /.test(line)) ?? lines.find((line) => !/listening on/.test(line)) ?? '';
};

/** A small tmpfs at `dir` (root only); returns its unmount. */
export function mountTmpfs(dir: string, sizeMiB: number): () => void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', dir]);
  return () => {
    try {
      execFileSync('umount', ['-l', dir]);
    } catch {}
  };
}

/**
 * Nothing that looks complete was left: the output's final name does not exist (a temporary
 * name beside it may, after a SIGKILL nobody can clean up after).
 */
export function expectNoOutput(path: string): void {
  expect(existsSync(path), `${path} exists after the failure`).toBe(false);
}

export interface CellRecord {
  family: string;
  cell: string;
  seed?: number;
  /** Where the fault landed (e.g. bytes transferred). */
  faultAt?: string;
  /** Milliseconds from the fault to each side's exit (undefined: did not exit in time). */
  exitMs: Record<string, number | undefined>;
  codes: Record<string, number | undefined>;
  messages: Record<string, string>;
  outcome: string;
}

/** Prints one line per cell; docs/faults.md's table is made from these. */
export function recordCell(record: CellRecord): void {
  console.log(`FAULT-CELL ${JSON.stringify(record)}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
