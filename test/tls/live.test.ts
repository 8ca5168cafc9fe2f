/**
 * End to end with a running guest: source QEMU -> exec:migstream send -> TLS channels ->
 * migstream recv -> destination QEMU. The destination's RAM equals the paused source's and
 * the guest keeps printing its heartbeat after `cont`. When a channel dies mid-transfer, the
 * source reports a failed migration and its guest keeps running.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { launchQemu, type QemuVm } from '../../src/qemu/launcher.js';
import { dumpGuestMemory, guestMemoryLayout } from '../../src/qemu/memory.js';
import { migrateToExec, queryMigrate, shellQuote } from '../../src/qemu/migration.js';
import { HEARTBEAT, REPO_ROOT, guestArgs } from '../fixtures/meta.js';
import { findScenario } from '../fixtures/scenarios.js';
import { nextHeartbeat } from '../helpers/faults.js';
import { firstDifference, loadFixture } from '../helpers/qemu.js';
import { BIN, freePort, startProxy, testCerts } from '../helpers/transport.js';

const scenario = findScenario('idle');
const accel = loadFixture('idle').meta.accel;
const machineArgs = [...scenario.machine, ...guestArgs(scenario.guestMode)];
const scratch = mkdtempSync(join(tmpdir(), 'migstream-live-'));
const vms: QemuVm[] = [];
afterAll(async () => {
  await Promise.all(vms.map((vm) => vm.quit()));
  rmSync(scratch, { recursive: true, force: true });
});

const cli = (args: string[]): string => [process.execPath, BIN, ...args].map(shellQuote).join(' ');

async function boot(name: string, extra: string[] = []): Promise<QemuVm> {
  const vm = await launchQemu({ args: [...machineArgs, ...extra], accel, name, cwd: REPO_ROOT, serialLogPath: join(scratch, `${name}.log`) });
  vms.push(vm);
  return vm;
}

async function waitIncoming(vm: QemuVm, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = vm.hasExited ? 'exited' : ((await queryMigrate(vm).catch(() => ({ status: 'exited' }))).status ?? 'none');
    if (status === 'completed' || status === 'failed' || status === 'exited') return status;
    if (Date.now() > deadline) return `timeout (${status})`;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('live migration over migstream send/recv', () => {
  test('4 TLS channels with lz4: destination RAM equals the source, the guest runs on', async () => {
    const certs = testCerts();
    const port = await freePort();
    const source = await boot('tls-live-source');
    await source.waitForSerial(HEARTBEAT, 120_000);
    const dest = await boot('tls-live-dest', ['-S', '-incoming', 'defer']);
    await dest.execute('migrate-incoming', { uri: `exec:${cli(['recv', '--listen', `127.0.0.1:${port}`, '--tls', certs, '--quiet'])}` });
    const info = await migrateToExec(source, cli(['send', `127.0.0.1:${port}`, '--channels', '4', '-c', 'lz4', '--tls', certs, '--quiet']), { timeoutMs: 240_000 });
    expect(info.status).toBe('completed');
    expect(await waitIncoming(dest, 60_000)).toBe('completed');

    const layout = await guestMemoryLayout(source);
    await dumpGuestMemory(source, layout, join(scratch, 'source.bin'));
    await dumpGuestMemory(dest, layout, join(scratch, 'dest.bin'));
    expect(await firstDifference(join(scratch, 'source.bin'), join(scratch, 'dest.bin'))).toBe(-1);
    await dest.execute('cont');
    await dest.waitForSerial(HEARTBEAT, 120_000);
  }, 600_000);

  test('a channel reset mid-transfer: the source reports failure and keeps running', async () => {
    const port = await freePort();
    // Reset channel 1 once 20 MB went through all channels: early enough that QEMU is still
    // writing (an exec: source cannot see a failure after its last write, see docs/transport.md).
    const proxy = await startProxy(port, () => {
      const total = proxy.connections.reduce((n, c) => n + c.bytes, 0);
      const victim = proxy.connections[1];
      if (total > 20_000_000 && victim !== undefined && !victim.client.destroyed) victim.client.resetAndDestroy();
    });
    try {
      const source = await boot('tls-fail-source');
      await source.waitForSerial(HEARTBEAT, 120_000);
      const dest = await boot('tls-fail-dest', ['-S', '-incoming', 'defer']);
      await dest.execute('migrate-incoming', { uri: `exec:${cli(['recv', '--listen', `127.0.0.1:${port}`, '--insecure', '--quiet', '--timeout', '10'])}` });
      const started = Date.now();
      await expect(migrateToExec(source, cli(['send', `127.0.0.1:${proxy.port}`, '--channels', '2', '--insecure', '--quiet', '--timeout', '10']), { timeoutMs: 120_000 })).rejects.toThrow(/failed/);
      expect(Date.now() - started).toBeLessThan(60_000);
      expect(await waitIncoming(dest, 30_000)).not.toBe('completed');
      expect((await source.execute<{ status: string }>('query-status')).status).toBe('running');
      await nextHeartbeat(source, 60_000);
    } finally {
      proxy.close();
    }
  }, 600_000);
});
