/**
 * migrateSource against real QEMU: a busy guest moved through migstream send/recv on one host,
 * with and without convergence control under a bandwidth cap that the guest outruns.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ConvergenceError, VmStateError } from '../../src/migrate/errors.js';
import { migrateSource, type MigrateEvent } from '../../src/migrate/source.js';
import { launchQemu, type QemuVm } from '../../src/qemu/launcher.js';
import { dumpGuestMemory, guestMemoryLayout } from '../../src/qemu/memory.js';
import { queryMigrate, shellQuote } from '../../src/qemu/migration.js';
import { chooseAccel } from '../fixtures/build.js';
import { HEARTBEAT, REPO_ROOT, guestArgs } from '../fixtures/meta.js';
import { firstDifference } from '../helpers/qemu.js';
import { BIN, freePort } from '../helpers/transport.js';

const MiB = 1024 * 1024;
const scratch = mkdtempSync(join(tmpdir(), 'migstream-migrate-'));
const vms: QemuVm[] = [];
afterAll(async () => {
  await Promise.all(vms.map((vm) => vm.quit()));
  rmSync(scratch, { recursive: true, force: true });
});

const machine = ['-machine', 'pc-i440fx-7.2', '-m', `${256 * 1024 + 8}K`, '-smp', '1'];
const cli = (args: string[]): string => [process.execPath, BIN, ...args].map(shellQuote).join(' ');

async function boot(name: string, extra: string[]): Promise<QemuVm> {
  const vm = await launchQemu({ args: [...machine, ...extra], accel: await chooseAccel(), name, cwd: REPO_ROOT, serialLogPath: join(scratch, `${name}.log`) });
  vms.push(vm);
  return vm;
}

/** A busy source and a destination waiting behind `migstream recv`; returns the send command. */
async function pair(name: string, busy: string[]): Promise<{ source: QemuVm; dest: QemuVm; send: string }> {
  const port = await freePort();
  const [source, dest] = await Promise.all([boot(`${name}-src`, guestArgs('busy', busy)), boot(`${name}-dst`, [...guestArgs('busy', busy), '-S', '-incoming', 'defer'])]);
  await source.waitForSerial(/migstream-busy/, 120_000);
  await dest.execute('migrate-incoming', { uri: `exec:${cli(['recv', '--listen', `127.0.0.1:${port}`, '--insecure', '--quiet'])}` });
  return { source, dest, send: cli(['send', `127.0.0.1:${port}`, '--insecure', '--quiet']) };
}

async function incomingStatus(vm: QemuVm, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = vm.hasExited ? 'exited' : ((await queryMigrate(vm).catch(() => ({ status: 'exited' }))).status ?? 'none');
    if (status === 'completed' || status === 'failed' || status === 'exited' || Date.now() > deadline) return status;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const workLines = (vm: QemuVm): number => vm.serialText().match(/migstream-work \d+/g)?.length ?? 0;

describe('migrateSource on real QEMU', () => {
  test('a guest dirtying 48 MiB/s behind a 12 MiB/s cap: without convergence control it is still dirty at the deadline, and runs on', async () => {
    const { source, send } = await pair('noconv', ['wss=96', 'rate=48']);
    const error = await migrateSource({ qmp: source.qmp, transport: send, maxBandwidth: 12 * MiB, converge: 'off', timeoutMs: 15_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConvergenceError);
    expect((await source.execute<{ status: string }>('query-status')).status).toBe('running');
    const before = workLines(source);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(workLines(source)).toBeGreaterThan(before);
  }, 240_000);

  test('the same guest with --converge auto: throttled in steps, converges, destination RAM equals the source', async () => {
    const { source, dest, send } = await pair('conv', ['wss=96', 'rate=48']);
    const events: MigrateEvent[] = [];
    const result = await migrateSource({ qmp: source.qmp, transport: send, maxBandwidth: 12 * MiB, downtimeLimitMs: 300, converge: 'auto', timeoutMs: 120_000, onEvent: (e) => events.push(e) });
    expect(result.info.status).toBe('completed');
    expect(result.throttleSteps.length).toBeGreaterThan(0);
    expect(result.throttleSteps[0]!.percent).toBeGreaterThanOrEqual(20);
    expect(events.some((e) => e.type === 'progress')).toBe(true);
    expect(events.filter((e) => e.type === 'throttle').length).toBe(result.throttleSteps.length);
    expect(result.stoppedAtMs).toBeDefined();
    expect(await incomingStatus(dest, 60_000)).toBe('completed');
    const layout = await guestMemoryLayout(source);
    await dumpGuestMemory(source, layout, join(scratch, 'conv-src.bin'));
    await dumpGuestMemory(dest, layout, join(scratch, 'conv-dst.bin'));
    expect(await firstDifference(join(scratch, 'conv-src.bin'), join(scratch, 'conv-dst.bin'))).toBe(-1);
    await dest.execute('cont');
    await dest.waitForSerial(HEARTBEAT, 60_000);
  }, 300_000);

  test('a source that is not running is refused before anything is set', async () => {
    const vm = await boot('paused-src', [...guestArgs('idle'), '-S']);
    const error = await migrateSource({ qmp: vm.qmp, transport: 'cat >/dev/null' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VmStateError);
    expect((error as Error).message).toMatch(/"prelaunch", not running/);
    expect((await queryMigrate(vm)).status).toBeUndefined();
  }, 60_000);
});
