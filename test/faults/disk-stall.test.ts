/**
 * Fault matrix, disk-full and stalled-reader families (docs/faults.md). The destination's disk
 * fills up under `decompress -o`, `recv -o` and a live save through `exec:migstream compress
 * -o` (a small tmpfs, root only); a destination QEMU stops reading (SIGSTOP) during a live
 * migration through send/recv. Every migstream end exits 1 with one message within the
 * timeout, the source runs on, the destination never runs, nothing looks complete.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import type { QemuVm } from '../../src/qemu/launcher.js';
import {
  bootCappedSource,
  bootDestination,
  expectDestinationNotResumed,
  expectNoOutput,
  expectOneMessage,
  expectSourceRuns,
  faultSeed,
  message,
  mountTmpfs,
  mulberry32,
  recordCell,
  tracked,
  waitOutgoing,
  whenTransferred,
} from '../helpers/faults.js';
import { loadFixture } from '../helpers/qemu.js';
import { BIN, freePort, run, startRecv, testCerts } from '../helpers/transport.js';

const TIMEOUT_S = 5;
const EXIT_BOUND_MS = (TIMEOUT_S + 5) * 1000;
/** Smaller than any stream below (the idle guest's ~50 MB, the compress fixture's 43 MiB). */
const DISK_MIB = 16;
const MAX_BANDWIDTH = 48 * 1024 * 1024;

const seed = faultSeed('disk-stall');
const random = mulberry32(seed);
const scratch = mkdtempSync(join(tmpdir(), 'migstream-faults-disk-'));
const unmounts: (() => void)[] = [];
const vms: QemuVm[] = [];
let source: QemuVm;

/** A fresh small tmpfs under scratch. */
function smallDisk(name: string): string {
  const dir = join(scratch, name);
  unmounts.push(mountTmpfs(dir, DISK_MIB));
  return dir;
}

beforeAllOrFail(async () => {
  source = await bootCappedSource('disk-source', scratch, MAX_BANDWIDTH);
  vms.push(source);
}, 240_000);

afterAll(async () => {
  await Promise.all(vms.map((vm) => vm.quit()));
  for (const unmount of unmounts) unmount();
  rmSync(scratch, { recursive: true, force: true });
});

describe(`the destination's disk fills up (seed ${seed})`, () => {
  test('decompress -o into a full disk: exit 1 naming ENOSPC, no output, no partial file', () => {
    const fixture = loadFixture('compress');
    const container = join(scratch, 'compress.msz');
    execFileSync(process.execPath, [BIN, 'compress', fixture.stream, '-c', 'lz4', '-o', container, '--quiet']);
    const disk = smallDisk('decompress');
    const out = join(disk, 'restored.mig');
    const started = Date.now();
    const finished = run(['decompress', container, '-o', out, '--quiet']);
    return finished.exited.then((result) => {
      recordCell({
        family: 'disk full',
        cell: `decompress -o into a ${DISK_MIB} MiB tmpfs`,
        seed,
        faultAt: `${DISK_MIB} MiB`,
        exitMs: { decompress: result.ms },
        codes: { decompress: result.code ?? undefined },
        messages: { decompress: message(result.stderr) },
        outcome: `files left: ${readdirSync(disk).join(', ') || 'none'}`,
      });
      expect(result.code, result.stderr).toBe(1);
      expectOneMessage(result.stderr, 'decompress', /cannot write .*restored\.mig: ENOSPC/);
      expect(Date.now() - started).toBeLessThan(30_000);
      expectNoOutput(out);
      expect(readdirSync(disk)).toEqual([]);
    });
  }, 60_000);

  test('recv -o into a full disk: recv and send exit 1 naming the cause, no output', async () => {
    const fixture = loadFixture('compress');
    const disk = smallDisk('recv');
    const out = join(disk, 'received.mig');
    const certs = testCerts();
    const recv = await startRecv(['--tls', certs, '-o', out, '--quiet', '--timeout', String(TIMEOUT_S)]);
    const send = run(['send', `127.0.0.1:${recv.port}`, fixture.stream, '--channels', '2', '--tls', certs, '--quiet', '--timeout', String(TIMEOUT_S)]);
    const [sent, received] = await Promise.all([send.exited, recv.exited]);
    recordCell({
      family: 'disk full',
      cell: `recv -o into a ${DISK_MIB} MiB tmpfs`,
      seed,
      faultAt: `${DISK_MIB} MiB`,
      exitMs: { send: sent.ms, recv: received.ms },
      codes: { send: sent.code ?? undefined, recv: received.code ?? undefined },
      messages: { send: message(sent.stderr), recv: message(received.stderr) },
      outcome: `files left: ${readdirSync(disk).join(', ') || 'none'}`,
    });
    expect(received.code, received.stderr).toBe(1);
    expectOneMessage(received.stderr, 'recv', /cannot write .*received\.mig: ENOSPC/);
    expect(sent.code, sent.stderr).toBe(1);
    expectOneMessage(sent.stderr, 'send', /receiver failed: .*ENOSPC/);
    expectNoOutput(out);
    expect(readdirSync(disk)).toEqual([]);
  }, 60_000);

  test('a live save through exec:migstream compress -o into a full disk: compress exits 1, the source runs on', async () => {
    const disk = smallDisk('save');
    const out = join(disk, 'save.msz');
    // Stored frames (-c none) so the container outgrows the disk whatever the guest holds.
    const compress = tracked(scratch, 'compress-full', ['compress', '-c', 'none', '--no-dedup', '-o', out, '--quiet']);
    await source.execute('migrate', { uri: `exec:${compress.command}` });
    const outcome = await compress.waitExit(60_000);
    const status = await waitOutgoing(source, 60_000);
    recordCell({
      family: 'disk full',
      cell: `live save, compress -o into a ${DISK_MIB} MiB tmpfs`,
      seed,
      faultAt: `${DISK_MIB} MiB`,
      exitMs: {},
      codes: { compress: outcome?.code },
      messages: { compress: message(outcome?.stderr) },
      outcome: `source ${status}; files left: ${readdirSync(disk).join(', ') || 'none'}`,
    });
    expect(outcome?.code, outcome?.stderr).toBe(1);
    expectOneMessage(outcome!.stderr, 'compress', /cannot write .*save\.msz: ENOSPC/);
    expect(status).toBe('failed');
    await expectSourceRuns(source);
    expectNoOutput(out);
    expect(readdirSync(disk)).toEqual([]);
  }, 120_000);
});

describe(`a reader that stops reading (seed ${seed})`, () => {
  test('the destination QEMU stopped (SIGSTOP) mid-migration: recv and send exit 1 within the timeout, the source runs on', async () => {
    const certs = testCerts();
    const port = await freePort();
    const dest = await bootDestination('stall-dest', scratch);
    vms.push(dest);
    const recv = tracked(scratch, 'recv-stall', ['recv', '--listen', `127.0.0.1:${port}`, '--tls', certs, '--quiet', '--timeout', String(TIMEOUT_S)]);
    const send = tracked(scratch, 'send-stall', ['send', `127.0.0.1:${port}`, '--channels', '2', '--tls', certs, '--tls-name', '127.0.0.1', '--quiet', '--timeout', String(TIMEOUT_S)]);
    await dest.execute('migrate-incoming', { uri: `exec:${recv.command}` });
    await source.execute('migrate', { uri: `exec:${send.command}` });
    const transferred = await whenTransferred(source, Math.round(20_000_000 * (0.3 + 0.5 * random())));
    const faultAt = Date.now();
    process.kill(dest.pid, 'SIGSTOP');
    const [sent, received] = await Promise.all([send.waitExit(EXIT_BOUND_MS + 10_000), recv.waitExit(EXIT_BOUND_MS + 10_000)]);
    try {
      const sourceStatus = await waitOutgoing(source, 60_000);
      recordCell({
        family: 'stalled reader',
        cell: 'destination QEMU stopped (SIGSTOP)',
        seed,
        faultAt: `${transferred} B`,
        exitMs: { send: sent ? sent.exitedAt - faultAt : undefined, recv: received ? received.exitedAt - faultAt : undefined },
        codes: { send: sent?.code, recv: received?.code },
        messages: { send: message(sent?.stderr), recv: message(received?.stderr) },
        outcome: `source ${sourceStatus}`,
      });
      expect(received, 'recv did not exit').toBeDefined();
      expect(received!.code, received!.stderr).toBe(1);
      expectOneMessage(received!.stderr, 'recv', /the output's reader took no byte for 5 s/);
      expect(received!.exitedAt - faultAt).toBeLessThan(EXIT_BOUND_MS);
      expect(sent, 'send did not exit').toBeDefined();
      expect(sent!.code, sent!.stderr).toBe(1);
      expect(sent!.exitedAt - faultAt).toBeLessThan(EXIT_BOUND_MS);
      expect(sourceStatus).toBe('failed');
      await expectSourceRuns(source);
    } finally {
      process.kill(dest.pid, 'SIGCONT');
    }
    // Woken up, the destination finds its stream cut: it fails the load and never runs.
    const destStatus = await expectDestinationNotResumed(dest, 60_000);
    expect(destStatus).not.toBe('running');
  }, 180_000);
});
