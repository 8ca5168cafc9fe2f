/**
 * For tests of `migstream migrate` / `incoming` on real QEMU: booting a guest with a second
 * QMP socket for the command under test, running the CLI (optionally inside a network
 * namespace), and telling whether a guest runs.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { launchQemu, type QemuVm } from '../../src/qemu/launcher.js';
import type { QemuVersion } from '../../src/qemu/versions.js';
import { chooseAccel } from '../fixtures/build.js';
import { REPO_ROOT } from '../fixtures/meta.js';
import { BIN } from './transport.js';

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs bin/migstream with `args`, behind `prefix` (e.g. `ip netns exec NS`) when given. */
export function migstream(args: string[], prefix: readonly string[] = []): Promise<Ran> {
  const started = Date.now();
  const argv = [...prefix, process.execPath, BIN, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t));
  child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr, ms: Date.now() - started })));
}

export const jsonLines = (text: string): Record<string, unknown>[] =>
  text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

export interface BootOptions {
  scratch: string;
  name: string;
  machine: string;
  qemu: QemuVersion;
  ram: string;
  guest: readonly string[];
  extra?: readonly string[];
  netns?: string;
}

/** A VM with a second QMP socket for the command under test (the launcher keeps the first). */
export async function bootGuest(options: BootOptions): Promise<{ vm: QemuVm; qmp: string }> {
  const qmp = join(options.scratch, `${options.name}.qmp`);
  const vm = await launchQemu({
    args: ['-machine', options.machine, '-m', options.ram, '-smp', '1', ...options.guest, '-qmp', `unix:${qmp},server=on,wait=off`, ...(options.extra ?? [])],
    accel: await chooseAccel(),
    qemu: options.qemu,
    name: options.name,
    cwd: REPO_ROOT,
    serialLogPath: join(options.scratch, `${options.name}.log`),
    ...(options.netns !== undefined ? { netns: options.netns } : {}),
  });
  return { vm, qmp };
}

/** Lines the guest prints as it runs: the busy guest's work counter, the idle guest's heartbeat. */
export const workLines = (vm: QemuVm): number => vm.serialText().match(/migstream-(?:work|heartbeat) \d+/g)?.length ?? 0;

export async function status(vm: QemuVm): Promise<string> {
  return (await vm.execute<{ status: string }>('query-status')).status;
}

/** True when the guest prints a new work line within 10 s. */
export async function runsOn(vm: QemuVm): Promise<boolean> {
  const before = workLines(vm);
  for (let i = 0; i < 40; i++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    if (workLines(vm) > before) return true;
  }
  return false;
}
