/**
 * `migstream migrate` and `migstream incoming` against real QEMU on one host: a dirtying guest
 * moved end to end through QMP, the copy verified before the destination resumes, and a planted
 * difference caught (destination paused, source running).
 */
import { mkdtempSync, openSync, closeSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { receiveMigration } from '../../src/migrate/destination.js';
import { VerdictListener } from '../../src/migrate/verdict-channel.js';
import { verifyDestination } from '../../src/migrate/verify.js';
import type { QemuVm } from '../../src/qemu/launcher.js';
import { shellQuote } from '../../src/qemu/migration.js';
import type { QemuVersion } from '../../src/qemu/versions.js';
import { VerifyError } from '../../src/migrate/errors.js';
import { guestArgs } from '../fixtures/meta.js';
import { diskArgs, type DiskSpec } from '../fixtures/scenarios.js';
import { BIN, freePort } from '../helpers/transport.js';
import { bootGuest, jsonLines, migstream, runsOn, status } from '../helpers/migrate-cli.js';
import { expectSameRamThenRunsOn } from '../helpers/migrate-expect.js';

// 8 KiB over 256 MiB: QEMU 7.2 under TCG loses dirty pages of a RAMBlock whose size is a multiple
// of 256 KiB (docs/libvirt-testing.md), and --verify rightly fails such a run (it did once: 23 pages).
const RAM = `${256 * 1024 + 8}K`;
const scratch = mkdtempSync(join(tmpdir(), 'migstream-migrate-cli-'));
const vms: QemuVm[] = [];
afterAll(async () => {
  await Promise.all(vms.map((vm) => vm.quit()));
  rmSync(scratch, { recursive: true, force: true });
});

/** The busy guest used where a guest must dirty memory while it moves. */
const BUSY = guestArgs('busy', ['wss=16', 'rate=4']);

async function boot(name: string, machine: string, qemu: QemuVersion, extra: string[], guest = BUSY): Promise<{ vm: QemuVm; qmp: string }> {
  const booted = await bootGuest({ scratch, name, machine, qemu, ram: RAM, guest, extra });
  vms.push(booted.vm);
  return booted;
}

// A dirtying guest on 7.2 under TCG is not moved reliably by QEMU itself: in the first run of
// this test --verify found 21 pages of the paused source that the stream never carried (the
// loss the issue describes). So 7.2 moves an idle guest here and 10.0 the dirtying one.
// On 7.2 the destination checks a 50 % sample (--verify-sample), on 10.0 all of its RAM.
describe.each([
  { qemu: '7.2' as const, machine: 'pc-i440fx-7.2', guest: 'an idle guest', args: guestArgs('idle'), ready: /migstream-heartbeat/, destVerify: ['--verify-sample', '50'] },
  { qemu: '10.0' as const, machine: 'pc-q35-10.0', guest: 'a dirtying guest', args: BUSY, ready: /migstream-busy/, destVerify: ['--verify'] },
])('migrate + incoming on QEMU $qemu ($machine)', ({ qemu, machine, guest, args, ready, destVerify }) => {
  test(`${guest} moves end to end with ${destVerify.join(' ')} at the destination: both exit 0, destination RAM equals the paused source, the guest runs on`, async () => {
    const tag = `ok-${qemu}`;
    const port = await freePort();
    const [source, dest] = await Promise.all([boot(`${tag}-src`, machine, qemu, [], args), boot(`${tag}-dst`, machine, qemu, ['-S', '-incoming', 'defer'], args)]);
    await source.vm.waitForSerial(ready, 120_000);
    const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `127.0.0.1:${port}`, '--insecure', ...destVerify, '--no-resume', '--json', '--timeout', '300']);
    const migrate = migstream(['migrate', '--qmp', source.qmp, '--to', `127.0.0.1:${port}`, '--insecure', '--verify', '--json', '--timeout', '240']);
    const [src, dst] = await Promise.all([migrate, incoming]);
    expect(src.code, src.stderr).toBe(0);
    expect(dst.code, dst.stderr).toBe(0);
    const summary = jsonLines(src.stdout).find((e) => e.type === 'summary')!;
    expect(summary.status).toBe('completed');
    const verify = summary.verify as { source: { pagesCompared: number; mismatches: number }; destination: { pagesCompared: number; mismatches: number } };
    expect(verify.source.mismatches).toBe(0);
    expect(verify.destination.mismatches).toBe(0);
    expect(verify.source.pagesCompared).toBeGreaterThan(60_000);
    if (destVerify[0] === '--verify') expect(verify.destination.pagesCompared).toBe(verify.source.pagesCompared);
    else {
      // Half of RAM in 1 MiB pieces: within a piece or two of half the pages.
      expect(Math.abs(verify.destination.pagesCompared - verify.source.pagesCompared / 2)).toBeLessThanOrEqual(512);
    }
    expect(jsonLines(src.stdout).some((e) => e.type === 'progress')).toBe(true);
    // send's own view of the stream, through --stats-socket: every page once in the first pass,
    // and the page counts QEMU reports (normal, zero) seen in the stream itself.
    const stream = summary.stream as { passes: { pages: number; zeroPages: number; resentPages: number }[]; heat: { resends: number }[] };
    const pages = summary.pages as { normal: number; zero: number };
    const sum = (key: 'pages' | 'zeroPages' | 'resentPages'): number => stream.passes.reduce((a, p) => a + p[key], 0);
    expect(stream.passes[0]!.pages).toBeGreaterThanOrEqual(verify.source.pagesCompared);
    expect(sum('zeroPages')).toBe(pages.zero);
    expect(sum('pages') - sum('zeroPages')).toBe(pages.normal);
    expect(summary.bytesOnWire as number).toBeGreaterThan(summary.bytesIntoQemuPipe as number);
    expect(stream.heat.reduce((a, h) => a + h.resends, 0)).toBeLessThanOrEqual(sum('resentPages'));
    if (guest === 'a dirtying guest') expect(sum('resentPages')).toBeGreaterThan(0);
    expect(jsonLines(dst.stdout).find((e) => e.type === 'summary')).toMatchObject({ status: 'completed', resumed: false });
    await expectSameRamThenRunsOn(source.vm, dest.vm, join(scratch, tag));
  }, 420_000);
});

describe('migrate --verify on QEMU 7.2: a planted difference', () => {
  test('one page of the destination changed after the load: the destination stays paused, the source runs, both name the page', async () => {
    const port = await freePort();
    const memFile = join(scratch, 'dst-ram');
    const source = await boot('plant-src', 'pc-i440fx-7.2', '7.2', []);
    const dest = await boot('plant-dst', 'pc-i440fx-7.2,memory-backend=pc.ram', '7.2', ['-object', `memory-backend-file,id=pc.ram,size=${RAM},mem-path=${memFile},share=on`, '-S', '-incoming', 'defer']);
    await source.vm.waitForSerial(/migstream-busy/, 120_000);
    const planted = 0x200000 + 7 * 4096;
    const listener = await VerdictListener.listen({ host: '127.0.0.1', port: port + 1, tls: null });
    const hashFile = join(scratch, 'plant-hashes.json');
    const recv = [process.execPath, BIN, 'recv', '--listen', `127.0.0.1:${port}`, '--insecure', '--quiet', '--page-hashes', hashFile].map(shellQuote).join(' ');
    const destination = receiveMigration({
      qmp: dest.vm.qmp,
      transport: recv,
      timeoutMs: 300_000,
      check: async () => {
        // The load is done and the guest paused: flip one byte of its RAM file.
        const fd = openSync(memFile, 'r+');
        const byte = Buffer.alloc(1);
        readSync(fd, byte, 0, 1, planted + 100);
        byte[0]! ^= 0x5a;
        writeSync(fd, byte, 0, 1, planted + 100);
        closeSync(fd);
        await verifyDestination({ qmp: dest.vm.qmp, hashFile, listener });
      },
    }).catch((e: unknown) => e);
    const src = await migstream(['migrate', '--qmp', source.qmp, '--to', `127.0.0.1:${port}`, '--insecure', '--verify', '--timeout', '240']);
    const error = await destination;
    listener.close();
    expect(error).toBeInstanceOf(VerifyError);
    expect((error as VerifyError).mismatches).toBe(1);
    expect((error as VerifyError).first[0]).toEqual({ idstr: 'pc.ram', offset: planted, guestPhysAddr: planted });
    expect(src.code).toBe(1);
    expect(src.stderr).toMatch(/destination: 1 of \d+ pages differ.*pc\.ram\+0x207000 \(guest-physical 0x207000\)/);
    expect(src.stderr).toMatch(/source was resumed/);
    expect(await status(dest.vm)).toBe('paused');
    expect(await status(source.vm)).toBe('running');
    expect(await runsOn(source.vm)).toBe(true);
  }, 420_000);
});

describe('migrate / incoming faults on QEMU 7.2: one clear error, exit 1, the VM as it was', () => {
  test('a destination not in -incoming defer, a paused source, and a destination nobody listens on', async () => {
    const { vm, qmp } = await boot('fault', 'pc-i440fx-7.2', '7.2', [], guestArgs('idle'));
    await vm.waitForSerial(/migstream-heartbeat/, 120_000);
    const port = await freePort();

    const notIncoming = await migstream(['incoming', '--qmp', qmp, '--listen', `127.0.0.1:${port}`, '--insecure']);
    expect(notIncoming.code).toBe(1);
    expect(notIncoming.stderr).toMatch(/^migstream incoming: error: the destination VM is "running", not waiting for a migration: start QEMU with -S -incoming defer/);
    expect(await status(vm)).toBe('running');

    // Nobody listens on the port: the probe cannot reach the control port, before QEMU is touched.
    const noProbe = await migstream(['migrate', '--qmp', qmp, '--to', `127.0.0.1:${port}`, '--insecure', '--timeout', '60']);
    expect(noProbe.code).toBe(1);
    expect(noProbe.stderr).toMatch(/^migstream migrate: error: cannot reach the destination's control port 127\.0\.0\.1:\d+: .*\(the source VM is running\)/);
    expect((await vm.execute<{ status?: string }>('query-migrate')).status).toBeUndefined();

    // The same without the probe: send fails, QEMU's migration fails, the source runs on.
    const noPeer = await migstream(['migrate', '--qmp', qmp, '--to', `127.0.0.1:${port}`, '--insecure', '--timeout', '60', '--no-probe']);
    expect(noPeer.code).toBe(1);
    expect(noPeer.stderr).toMatch(/^migstream migrate: error: the migration failed.*\(the source VM is running\)/);
    expect(await status(vm)).toBe('running');
    expect(await runsOn(vm)).toBe(true);

    await vm.execute('stop');
    const paused = await migstream(['migrate', '--qmp', qmp, '--to', `127.0.0.1:${port}`, '--insecure']);
    expect(paused.code).toBe(1);
    expect(paused.stderr).toMatch(/^migstream migrate: error: the source VM is "paused", not running/);
    expect(await status(vm)).toBe('paused');
    await vm.execute('cont');
  }, 240_000);

  test('the destination QEMU dies mid-run: both commands exit 1 with one clear error, the source runs on', async () => {
    const port = await freePort();
    const [source, dest] = await Promise.all([boot('die-src', 'pc-i440fx-7.2', '7.2', []), boot('die-dst', 'pc-i440fx-7.2', '7.2', ['-S', '-incoming', 'defer'])]);
    await source.vm.waitForSerial(/migstream-busy/, 120_000);
    const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `127.0.0.1:${port}`, '--insecure', '--timeout', '200']);
    // 8 MiB/s: the first pass takes long enough to kill the destination in the middle of it.
    const migrate = migstream(['migrate', '--qmp', source.qmp, '--to', `127.0.0.1:${port}`, '--insecure', '--no-probe', '--max-bandwidth', '8M', '--timeout', '200']);
    for (let i = 0; i < 150; i++) {
      const info = await source.vm.execute<{ ram?: { transferred: number } }>('query-migrate');
      if ((info.ram?.transferred ?? 0) > 20e6) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    dest.vm.kill();
    const [src, dst] = await Promise.all([migrate, incoming]);
    expect(src.code).toBe(1);
    expect(src.stderr).toMatch(/^migstream migrate: error: the migration failed: .*\(the source VM is running\)\n$/);
    expect(dst.code).toBe(1);
    expect(dst.stderr).toMatch(/^migstream incoming: error: .*(exited|is gone)/);
    expect(await status(source.vm)).toBe('running');
    expect(await runsOn(source.vm)).toBe(true);
  }, 300_000);
});

describe('migrate --with-disk: the disk in the stream where QEMU still has block migration', () => {
  test('QEMU 7.2: RAM and a 32 MiB disk move with --verify; the destination disk equals the source byte for byte', async () => {
    const disk: DiskSpec = { driveId: 'disk0', sizeMiB: 32 };
    const srcDisk = join(scratch, 'with-disk-src.raw');
    const dstDisk = join(scratch, 'with-disk-dst.raw');
    // Random content with a zero stretch in the middle (block migration skips zero chunks).
    const content = randomBytes(disk.sizeMiB * 1024 * 1024);
    content.fill(0, 8 * 1024 * 1024, 12 * 1024 * 1024);
    writeFileSync(srcDisk, content);
    writeFileSync(dstDisk, Buffer.alloc(content.length));
    const port = await freePort();
    const idle = guestArgs('idle');
    const [source, dest] = await Promise.all([
      boot('with-disk-src', 'pc-i440fx-7.2', '7.2', diskArgs(srcDisk, disk), idle),
      boot('with-disk-dst', 'pc-i440fx-7.2', '7.2', [...diskArgs(dstDisk, disk), '-S', '-incoming', 'defer'], idle),
    ]);
    await source.vm.waitForSerial(/migstream-heartbeat/, 120_000);
    const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `127.0.0.1:${port}`, '--insecure', '--verify', '--no-resume', '--json', '--timeout', '300']);
    const migrate = migstream(['migrate', '--qmp', source.qmp, '--to', `127.0.0.1:${port}`, '--insecure', '--verify', '--with-disk', '--json', '--timeout', '240']);
    const [src, dst] = await Promise.all([migrate, incoming]);
    expect(src.code, src.stderr).toBe(0);
    expect(dst.code, dst.stderr).toBe(0);
    const summary = jsonLines(src.stdout).find((e) => e.type === 'summary')!;
    expect(summary.diskBytes).toBe(content.length);
    // The capability is ours only for this migration.
    const caps = await source.vm.execute<{ capability: string; state: boolean }[]>('query-migrate-capabilities');
    expect(caps.find((c) => c.capability === 'block')?.state).toBe(false);
    expect(readFileSync(dstDisk).equals(content)).toBe(true);
    await expectSameRamThenRunsOn(source.vm, dest.vm, join(scratch, 'with-disk'));
  }, 420_000);

  test('QEMU 10.0 has no block migration: one clear error before anything is set, the source runs on', async () => {
    const { vm, qmp } = await boot('with-disk-10', 'pc-i440fx-10.0', '10.0', [], guestArgs('idle'));
    await vm.waitForSerial(/migstream-heartbeat/, 120_000);
    const refused = await migstream(['migrate', '--qmp', qmp, '--to', '127.0.0.1:9', '--insecure', '--no-probe', '--with-disk']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^migstream migrate: error: --with-disk needs QEMU's block migration, which QEMU 10\.0\.\d+ no longer has \(removed in 9\.1\).*\(the source VM is running\)\n$/);
    expect(await status(vm)).toBe('running');
    expect((await vm.execute<{ status?: string }>('query-migrate')).status).toBeUndefined();
  }, 120_000);
});
