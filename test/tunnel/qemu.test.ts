/**
 * Real QEMU migrations over UNIX sockets through a pair of `migstream tunnel` processes: what
 * libvirt's UNIX-socket migration does, without libvirt (test/libvirt/ adds it). The source
 * QEMU migrates to `unix:` the source-side tunnel listens on; the destination QEMU listens on
 * its own `unix:` path that the destination-side tunnel connects to.
 *
 * - QEMU 10.0, a busy guest, return-path and 2 multifd channels over 2 TLS channels: RAM equal
 *   to the paused source's, the guest runs on, and the tunnel saw one main stream and two
 *   multifd connections.
 * - QEMU 7.2 with its disk mirrored through NBD (drive-mirror to the destination's NBD export,
 *   as libvirt's --copy-storage-all does) while the guest writes to it: disk identical after
 *   block-job-cancel, RAM equal.
 * - Page-aware compression (-c lz4/zstd with the default page cache): a busy guest's re-sent
 *   pages cross as deltas, on QEMU 7.2's main stream and on QEMU 10.0's multifd channels; RAM
 *   equal, and fewer bytes on the wire than QEMU wrote.
 * - The source-side tunnel killed mid-migration: the migration fails, the source runs on.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { launchQemu, type QemuVm } from '../../src/qemu/launcher.js';
import { dumpGuestMemory, guestMemoryLayout } from '../../src/qemu/memory.js';
import { queryMigrate, setCapabilities, setParameters } from '../../src/qemu/migration.js';
import { checkVmAgainstImage } from '../../src/migrate/verify.js';
import type { QemuVersion } from '../../src/qemu/versions.js';
import { HEARTBEAT, REPO_ROOT, guestArgs } from '../fixtures/meta.js';
import { diskArgs } from '../fixtures/scenarios.js';
import { nextHeartbeat } from '../helpers/faults.js';
import { firstDifference } from '../helpers/qemu.js';
import { testCerts } from '../helpers/transport.js';
import { startTunnelPair, type TunnelPair } from '../helpers/tunnel.js';

const MiB = 1024 * 1024;
const scratch = mkdtempSync(join(tmpdir(), 'migstream-tunnel-qemu-'));
const vms: QemuVm[] = [];
const pairs: TunnelPair[] = [];
afterAll(async () => {
  await Promise.all(pairs.map((pair) => pair.stop()));
  await Promise.all(vms.map((vm) => vm.quit()));
  rmSync(scratch, { recursive: true, force: true });
});

/** 256 MiB + 8 KiB: see test/fixtures/scenarios.ts ram() on QEMU 7.2's TCG dirty tracking. */
const ramArgs = (machine: string): string[] => ['-machine', machine, '-m', `${256 * 1024 + 8}K`, '-smp', '1'];

async function boot(name: string, qemu: QemuVersion, args: string[]): Promise<QemuVm> {
  const vm = await launchQemu({ args, qemu, accel: 'tcg', name, cwd: REPO_ROOT, serialLogPath: join(scratch, `${name}.log`) });
  vms.push(vm);
  return vm;
}

/** Polls query-migrate until completed or failed (or the VM is gone). */
async function migrationEnd(vm: QemuVm, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = vm.hasExited ? 'exited' : ((await queryMigrate(vm).catch(() => ({ status: 'exited' }))).status ?? 'none');
    if (status === 'completed' || status === 'failed' || status === 'exited' || status === 'cancelled') return status;
    if (Date.now() > deadline) return `timeout (${status})`;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function expectSameRam(source: QemuVm, destination: QemuVm, name: string): Promise<void> {
  const layout = await guestMemoryLayout(source);
  await dumpGuestMemory(source, layout, join(scratch, `${name}-source.bin`));
  await dumpGuestMemory(destination, layout, join(scratch, `${name}-dest.bin`));
  expect(await firstDifference(join(scratch, `${name}-source.bin`), join(scratch, `${name}-dest.bin`))).toBe(-1);
}

interface ReportEvent {
  streamBytes: number;
  multifdBytes: number;
  wireBytes: number;
  passes: { pages: number; zeroPages: number }[];
  multifd: { channels: number; normalPages: number; zeroPages: number; pageBytes: number };
  ramDigest: string | null;
  problems: string[];
  deltaPages: number;
}

/**
 * The tunnel's migration report against QEMU's own counters: every page QEMU counted as
 * normal or zero (query-migrate ram.normal, ram.duplicate) was seen in the main stream or a
 * multifd packet.
 */
async function expectReportMatchesQemu(pair: TunnelPair, source: QemuVm, options: { otherStreams: boolean }): Promise<ReportEvent> {
  const report = (await pair.source.waitFor('migration')) as unknown as ReportEvent;
  expect(report.problems).toEqual([]);
  const ram = (await queryMigrate(source)).ram!;
  const mainPages = report.passes.reduce((n, p) => n + p.pages, 0);
  const mainZero = report.passes.reduce((n, p) => n + p.zeroPages, 0);
  expect(mainPages - mainZero + report.multifd.normalPages).toBe(ram.normal);
  expect(mainZero + report.multifd.zeroPages).toBe(ram.duplicate);
  // Uncompressed, the tunnel's frames are what QEMU wrote plus a few bytes per chunk (and
  // whatever other streams, NBD, carried meanwhile).
  const carried = report.streamBytes + report.multifdBytes;
  expect(report.wireBytes).toBeGreaterThan(carried);
  if (!options.otherStreams) expect(report.wireBytes).toBeLessThan(carried * 1.01 + 100_000);
  return report;
}

describe('QEMU migrations through migstream tunnel', () => {
  test('QEMU 10.0, busy guest, return-path + 2 multifd channels over 2 TLS channels: RAM equal, guest runs on', async () => {
    const args = [...ramArgs('pc-i440fx-10.0'), ...guestArgs('busy', ['fill=64', 'wss=32', 'rate=8'])];
    const source = await boot('tun-mfd-src', '10.0', args);
    await source.waitForSerial(/migstream-busy/, 120_000);
    const destination = await boot('tun-mfd-dst', '10.0', [...args, '-S', '-incoming', 'defer']);
    const capabilities = { 'return-path': true, multifd: true };
    for (const vm of [source, destination]) {
      await setCapabilities(vm, capabilities);
      await setParameters(vm, { 'multifd-channels': 2 });
    }
    const target = join(scratch, 'dst-qemu.sock');
    const listen = join(scratch, 'src-qemu.sock');
    await destination.execute('migrate-incoming', { uri: `unix:${target}` });
    const pair = await startTunnelPair({ routes: [`${listen}=${target}`], targets: [target], channels: 2, tls: testCerts() });
    pairs.push(pair);
    await setParameters(source, { 'downtime-limit': 2000, 'max-bandwidth': 1024 * MiB });
    await source.execute('migrate', { uri: `unix:${listen}` });
    expect(await migrationEnd(source, 240_000)).toBe('completed');
    expect(await migrationEnd(destination, 60_000)).toBe('completed');
    await expectSameRam(source, destination, 'multifd');
    await destination.execute('cont');
    await nextHeartbeat(destination);

    const report = await expectReportMatchesQemu(pair, source, { otherStreams: false });
    expect(report.multifd.channels).toBe(2);
    expect(report.multifd.normalPages).toBeGreaterThan(0);
    expect(report.multifd.pageBytes).toBe(report.multifd.normalPages * 4096);
    const kinds = pair.source.events.filter((e) => e.event === 'stream').map((e) => e.kind);
    expect(kinds.filter((k) => k === 'qemu-main')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'multifd')).toHaveLength(2);
    const main = await pair.source.waitFor('closed', (e) => e.kind === 'qemu-main');
    expect(main.serverBytes as number).toBeGreaterThan(0); // the return path answered
    expect(new Set(pair.source.events.filter((e) => e.event === 'stream').map((e) => e.channel))).toEqual(new Set([0, 1]));
  }, 400_000);

  test('QEMU 7.2, disk mirrored over NBD through the tunnel while the guest writes, then RAM: disk and RAM identical', async () => {
    const diskSize = 32 * MiB;
    const sourceDisk = join(scratch, 'src-disk.raw');
    const destDisk = join(scratch, 'dst-disk.raw');
    const initial = randomBytes(diskSize);
    writeFileSync(sourceDisk, initial);
    writeFileSync(join(scratch, 'initial.raw'), initial);
    writeFileSync(destDisk, Buffer.alloc(diskSize));
    const disk = { driveId: 'disk0', sizeMiB: 32 };
    const guest = [...ramArgs('pc-i440fx-7.2'), ...guestArgs('idle', ['disk=4096:1'])];
    const source = await boot('tun-nbd-src', '7.2', [...guest, ...diskArgs(sourceDisk, disk)]);
    await source.waitForSerial(/migstream-guest: disk block=4096/, 120_000);
    await source.waitForSerial(HEARTBEAT, 120_000);
    const destination = await boot('tun-nbd-dst', '7.2', [...guest, ...diskArgs(destDisk, disk), '-S', '-incoming', 'defer']);

    const qemuTarget = join(scratch, 'dst-q.sock');
    const nbdTarget = join(scratch, 'dst-nbd.sock');
    const qemuListen = join(scratch, 'src-q.sock');
    const nbdListen = join(scratch, 'src-nbd.sock');
    // The destination's disk as a writable NBD export (libvirt: nbd-server-start + block-export-add).
    // nbd-server-start takes the legacy SocketAddress (type + data).
    await destination.execute('nbd-server-start', { addr: { type: 'unix', data: { path: nbdTarget } } });
    await destination.execute('nbd-server-add', { device: 'disk0', writable: true });
    for (const vm of [source, destination]) await setCapabilities(vm, { 'return-path': true });
    await destination.execute('migrate-incoming', { uri: `unix:${qemuTarget}` });
    const hashFile = join(scratch, 'nbd-ram.hashes');
    const pair = await startTunnelPair({
      routes: [`${qemuListen}=${qemuTarget}`, `${nbdListen}=${nbdTarget}`],
      targets: [qemuTarget, nbdTarget],
      channels: 2,
      extra: { source: ['--page-hashes', hashFile] },
    });
    pairs.push(pair);

    await source.execute('drive-mirror', { device: 'disk0', 'job-id': 'mirror0', target: `nbd+unix:///disk0?socket=${nbdListen}`, format: 'raw', mode: 'existing', sync: 'full' });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const jobs = await source.execute<{ device: string; ready: boolean }[]>('query-block-jobs');
      if (jobs.some((job) => job.device === 'mirror0' && job.ready)) break;
      if (Date.now() > deadline) throw new Error(`mirror not ready: ${JSON.stringify(jobs)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await setParameters(source, { 'downtime-limit': 2000 });
    await source.execute('migrate', { uri: `unix:${qemuListen}` });
    expect(await migrationEnd(source, 240_000)).toBe('completed');
    expect(await migrationEnd(destination, 60_000)).toBe('completed');
    // The source is paused: cancelling a ready mirror leaves a point-in-time copy of now.
    await source.execute('block-job-cancel', { device: 'mirror0' });
    for (;;) {
      const jobs = await source.execute<unknown[]>('query-block-jobs');
      if (jobs.length === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await destination.execute('nbd-server-stop');
    expect(await firstDifference(sourceDisk, destDisk)).toBe(-1);
    await expectSameRam(source, destination, 'nbd');
    const report = await expectReportMatchesQemu(pair, source, { otherStreams: true });
    expect(report.multifd.channels).toBe(0);
    expect(report.ramDigest).toMatch(/^[0-9a-f]{64}$/);
    // The page hashes the tunnel took from the stream are the destination's RAM, page for page.
    const check = await checkVmAgainstImage(destination, hashFile);
    expect(check).toMatchObject({ error: null, mismatches: 0, digest: report.ramDigest });
    const layout = await guestMemoryLayout(destination);
    expect(check.pagesCompared).toBe(layout.reduce((n, range) => n + range.length, 0) / 4096);
    await destination.execute('cont');
    await nextHeartbeat(destination);
    const kinds = pair.source.events.filter((e) => e.event === 'stream').map((e) => e.kind);
    expect(kinds).toContain('nbd');
    expect(kinds).toContain('qemu-main');
    // The guest wrote while the disk was mirrored: the copy is not just the starting image.
    expect(await firstDifference(join(scratch, 'initial.raw'), destDisk)).not.toBe(-1);
  }, 400_000);

  test.each([
    ['7.2', 'the main stream', 'lz4', 0],
    ['10.0', '2 multifd channels', 'zstd', 2],
  ] as const)(
    'QEMU %s, busy guest, pages over %s, -c %s: re-sent pages cross as deltas, RAM equal, fewer bytes on the wire than QEMU wrote',
    async (qemu, _over, codec, multifd) => {
      const name = `tun-delta-${multifd}`;
      const args = [...ramArgs(qemu === '7.2' ? 'pc-i440fx-7.2' : 'pc-i440fx-10.0'), ...guestArgs('busy', ['fill=64', 'wss=16', 'rate=8'])];
      const source = await boot(`${name}-src`, qemu, args);
      await source.waitForSerial(/migstream-busy/, 120_000);
      const destination = await boot(`${name}-dst`, qemu, [...args, '-S', '-incoming', 'defer']);
      for (const vm of [source, destination]) {
        await setCapabilities(vm, { 'return-path': true, ...(multifd > 0 ? { multifd: true } : {}) });
        if (multifd > 0) await setParameters(vm, { 'multifd-channels': multifd });
      }
      const target = join(scratch, `${name}-dst.sock`);
      const listen = join(scratch, `${name}-src.sock`);
      await destination.execute('migrate-incoming', { uri: `unix:${target}` });
      const pair = await startTunnelPair({ routes: [`${listen}=${target}`], targets: [target], channels: 2, tls: testCerts(), extra: { source: ['-c', codec] } });
      pairs.push(pair);
      // A slow link and a short downtime: several passes re-send the working set (a page is
      // kept when it is sent the second time, and goes as a delta from the third on).
      await setParameters(source, { 'downtime-limit': 100, 'max-bandwidth': 48 * MiB });
      await source.execute('migrate', { uri: `unix:${listen}` });
      expect(await migrationEnd(source, 240_000)).toBe('completed');
      expect(await migrationEnd(destination, 60_000)).toBe('completed');
      await expectSameRam(source, destination, name);
      await destination.execute('cont');
      await nextHeartbeat(destination);
      const report = (await pair.source.waitFor('migration')) as unknown as ReportEvent;
      console.log(`${name}: ${JSON.stringify({ deltaPages: report.deltaPages, streamBytes: report.streamBytes, multifdBytes: report.multifdBytes, wireBytes: report.wireBytes, passes: report.passes.length })}`);
      expect(report.problems).toEqual([]);
      expect(report.deltaPages).toBeGreaterThan(0);
      expect(report.wireBytes).toBeLessThan(report.streamBytes + report.multifdBytes);
    },
    400_000,
  );

  test('the source-side tunnel killed mid-migration: QEMU reports failure, the source guest runs on, nothing completes at the destination', async () => {
    const args = [...ramArgs('pc-i440fx-7.2'), ...guestArgs('busy', ['fill=128', 'wss=16', 'rate=4'])];
    const source = await boot('tun-kill-src', '7.2', args);
    await source.waitForSerial(/migstream-busy/, 120_000);
    const destination = await boot('tun-kill-dst', '7.2', [...args, '-S', '-incoming', 'defer']);
    for (const vm of [source, destination]) await setCapabilities(vm, { 'return-path': true });
    const target = join(scratch, 'dst-kill.sock');
    const listen = join(scratch, 'src-kill.sock');
    await destination.execute('migrate-incoming', { uri: `unix:${target}` });
    const pair = await startTunnelPair({ routes: [`${listen}=${target}`], targets: [target] });
    pairs.push(pair);
    // 8 MiB/s: about 20 s for the filled guest, so the kill lands mid-transfer.
    await setParameters(source, { 'max-bandwidth': 8 * MiB });
    await source.execute('migrate', { uri: `unix:${listen}` });
    await pair.source.waitFor('stream', (e) => e.kind === 'qemu-main');
    await new Promise((resolve) => setTimeout(resolve, 2000));
    pair.source.child.kill('SIGKILL');
    expect(await migrationEnd(source, 60_000)).toBe('failed');
    expect((await source.execute<{ status: string }>('query-status')).status).toBe('running');
    await nextHeartbeat(source);
    expect(await migrationEnd(destination, 30_000)).not.toBe('completed');
    // The destination-side tunnel saw its session end and goes on listening.
    await pair.destination.waitFor('session-failed');
    expect(pair.destination.child.exitCode).toBeNull();
  }, 300_000);
});
