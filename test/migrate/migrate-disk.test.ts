/**
 * `migrate --disk` / `incoming --disk` on real QEMU (issue 16 item 4): a busy guest that also
 * writes random blocks to its virtio disk moves with the disk through each QEMU's own NBD server
 * and dirty bitmaps, across two network namespaces on a capped veth link; then, independently of
 * the commands' own checks, both images are compared (qemu-img compare) and both RAMs
 * (pmemsave), and the destination runs on and goes on writing. Then the faults: a destination
 * drive too small, a destination image that is not blank (the check catches what the first copy
 * did not cover), the disk on one side only.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import type { QemuVm } from '../../src/qemu/launcher.js';
import { qemuTool, type QemuVersion } from '../../src/qemu/versions.js';
import { guestArgs } from '../fixtures/meta.js';
import { bootGuest, jsonLines, migstream, runsOn, status } from '../helpers/migrate-cli.js';
import { expectSameRamThenRunsOn } from '../helpers/migrate-expect.js';
import { createLink, netnsAvailable, type Link } from '../helpers/netns.js';

const MIB = 1024 * 1024;
const RAM = `${256 * 1024 + 8}K`;
const SMALL_RAM = `${128 * 1024 + 8}K`;
const DISK_MIB = 64;

const scratch = mkdtempSync(join(tmpdir(), 'migstream-migrate-disk-'));
const vms: QemuVm[] = [];
let link: Link;
beforeAllOrFail(() => {
  if (!netnsAvailable()) throw new Error('cannot create network namespaces (needs root, iproute2 and tc)');
  link = createLink({ rateMbit: 200 });
});
afterAll(async () => {
  await Promise.all(vms.map((vm) => vm.quit()));
  link?.destroy();
  rmSync(scratch, { recursive: true, force: true });
});

function image(qemu: QemuVersion, name: string, format: 'raw' | 'qcow2', mib = DISK_MIB): string {
  const path = join(scratch, `${name}.${format}`);
  execFileSync(qemuTool(qemu, 'qemu-img'), ['create', '-q', '-f', format, path, `${mib}M`]);
  return path;
}

const driveArgs = (path: string, format: string, id = 'disk0'): string[] => ['-drive', `file=${path},format=${format},if=none,id=${id},cache=writeback`, '-device', `virtio-blk-pci,drive=${id},id=${id}-dev`];

/** The guest's disk writer's counter: bytes written so far. */
function diskWritten(vm: QemuVm): number {
  const all = [...vm.serialText().matchAll(/migstream-disk (\d+)/g)];
  return all.length === 0 ? 0 : Number(all[all.length - 1]![1]);
}

const port = (): number => 40000 + Math.floor(Math.random() * 20000);

describe.each([
  { qemu: '7.2' as QemuVersion, machine: 'pc-i440fx-7.2', format: 'raw' as const },
  { qemu: '10.0' as QemuVersion, machine: 'pc-q35-10.0', format: 'qcow2' as const },
])('migrate --disk on QEMU $qemu ($format) across two namespaces (200 Mbit/s veth)', ({ qemu, machine, format }) => {
  test('a busy guest writing random 4, 8 and 64 KiB blocks moves with its disk; images and RAM equal; the destination runs on and writes', async () => {
    const tag = `disk-${qemu}`;
    const p = port();
    const srcImage = image(qemu, `${tag}-src`, format);
    const dstImage = image(qemu, `${tag}-dst`, format);
    // Each write takes one of the three sizes at random (guest/diskwrite.c).
    const args = guestArgs('busy', ['wss=16', 'rate=4', 'disk=4096,8192,65536:2:7']);
    const [source, dest] = await Promise.all([
      bootGuest({ scratch, name: `${tag}-src`, machine, qemu, ram: RAM, guest: args, extra: driveArgs(srcImage, format), netns: link.a }),
      bootGuest({ scratch, name: `${tag}-dst`, machine, qemu, ram: RAM, guest: args, extra: [...driveArgs(dstImage, format), '-S', '-incoming', 'defer'], netns: link.b }),
    ]);
    vms.push(source.vm, dest.vm);
    await source.vm.waitForSerial(/migstream-disk \d+/, 120_000);
    expect(source.vm.serialText()).toMatch(/migstream-disk-ready \d+ 4096,8192,65536 /);
    const incoming = migstream(
      ['incoming', '--qmp', dest.qmp, '--listen', `${link.addressB}:${p}`, '--insecure', '--disk', 'disk0', '--verify', '--no-resume', '--json', '--timeout', '300'],
      link.inNs(link.b, []),
    );
    const migrate = migstream(['migrate', '--qmp', source.qmp, '--to', `${link.addressB}:${p}`, '--insecure', '--disk', 'disk0', '--verify', '--json', '--timeout', '240'], link.inNs(link.a, []));
    const [src, dst] = await Promise.all([migrate, incoming]);
    expect(src.code, src.stderr).toBe(0);
    expect(dst.code, dst.stderr).toBe(0);

    const summary = jsonLines(src.stdout).find((e) => e.type === 'summary')!;
    const disk = summary.disk as { drives: { drive: string; bytesSent: number; passes: { phase: string; bytes: number }[]; check: { chunks: number } }[]; switchoverMs: number };
    const drive = disk.drives[0]!;
    expect(drive.drive).toBe('disk0');
    expect(drive.check.chunks).toBe(DISK_MIB);
    const phases = drive.passes.map((pass) => pass.phase);
    expect(phases[0]).toBe('first-copy');
    expect(phases.at(-1)).toBe('last');
    // RAM started only after a dirty pass: the time-slicing.
    expect(phases).toContain('before-ram');
    const events = jsonLines(src.stdout);
    const ready = events.findIndex((e) => e.type === 'disk-ready');
    const firstProgress = events.findIndex((e) => e.type === 'progress');
    expect(ready).toBeGreaterThan(-1);
    expect(firstProgress).toBeGreaterThan(ready);
    expect(disk.switchoverMs).toBeGreaterThan(0);
    const arrived = jsonLines(dst.stdout).find((e) => e.type === 'summary')!.disk as { drive: string; chunksChecked: number; records: number }[];
    expect(arrived).toEqual([expect.objectContaining({ drive: 'disk0', chunksChecked: DISK_MIB })]);
    expect(arrived[0]!.records).toBeGreaterThan(0);

    // Independently: the images hold the same bytes (both QEMUs paused, their writes flushed),
    expect(await status(source.vm)).toBe('postmigrate');
    execFileSync(qemuTool(qemu, 'qemu-img'), ['compare', '-q', '-U', '-f', format, '-F', format, srcImage, dstImage]);
    // RAM too; then the destination runs on, and its guest goes on writing to the disk it got.
    await expectSameRamThenRunsOn(source.vm, dest.vm, join(scratch, tag));
    const before = diskWritten(dest.vm);
    for (let i = 0; i < 120 && diskWritten(dest.vm) <= before; i++) await new Promise((resolve) => setTimeout(resolve, 250));
    expect(diskWritten(dest.vm)).toBeGreaterThan(before);
  }, 480_000);
});

describe('migrate --disk faults (QEMU 7.2, one host): the source runs on, the destination is never resumed', () => {
  /** A busy guest writing to disk0; with `second`, an idle disk1 beside it (its images: source, destination). */
  const boot = async (tag: string, dstImage: string, second?: { src: string; dst: string }) => {
    const args = guestArgs('busy', ['wss=8', 'rate=2', 'disk=4096:1:3']);
    const srcImage = image('7.2', `${tag}-src`, 'raw');
    const [source, dest] = await Promise.all([
      bootGuest({
        scratch,
        name: `${tag}-src`,
        machine: 'pc-i440fx-7.2',
        qemu: '7.2',
        ram: SMALL_RAM,
        guest: args,
        extra: [...driveArgs(srcImage, 'raw'), ...(second ? driveArgs(second.src, 'raw', 'disk1') : [])],
      }),
      bootGuest({
        scratch,
        name: `${tag}-dst`,
        machine: 'pc-i440fx-7.2',
        qemu: '7.2',
        ram: SMALL_RAM,
        guest: args,
        extra: [...driveArgs(dstImage, 'raw'), ...(second ? driveArgs(second.dst, 'raw', 'disk1') : []), '-S', '-incoming', 'defer'],
      }),
    ]);
    vms.push(source.vm, dest.vm);
    await source.vm.waitForSerial(/migstream-disk \d+/, 120_000);
    return { source, dest };
  };
  const expectSourceRunsDestNot = async (source: QemuVm, dest: QemuVm): Promise<void> => {
    expect(await status(source)).toBe('running');
    expect(await runsOn(source)).toBe(true);
    // A destination that quit (RAM came without its disk) may still be going.
    expect(await status(dest).catch(() => 'gone')).not.toBe('running');
    // No bitmap, export or NBD server of ours is left on the source.
    const blocks = await source.execute<{ inserted?: { 'dirty-bitmaps'?: unknown[] } }[]>('query-block');
    expect(blocks.flatMap((b) => b.inserted?.['dirty-bitmaps'] ?? [])).toEqual([]);
    expect(await source.execute<unknown[]>('query-block-exports')).toEqual([]);
  };

  test('a destination drive smaller than the source: refused before RAM moves, named in both errors', async () => {
    const { source, dest } = await boot('small', image('7.2', 'small-dst', 'raw', DISK_MIB / 2));
    const p = port();
    const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `127.0.0.1:${p}`, '--insecure', '--disk', 'disk0', '--timeout', '15']);
    const src = await migstream(['migrate', '--qmp', source.qmp, '--to', `127.0.0.1:${p}`, '--insecure', '--disk', 'disk0', '--no-probe', '--timeout', '60']);
    expect(src.code).toBe(1);
    expect(src.stderr).toMatch(/refused the disk stream: .*smaller than the source drive \(33554432 bytes, expected 67108864\).*\(the source VM is running\)/);
    await expectSourceRunsDestNot(source.vm, dest.vm);
    // The destination has nothing to resume; it gives up at its timeout, the guest paused.
    const dst = await incoming;
    expect(dst.code).toBe(1);
    expect(dst.stderr).toMatch(/not resumed|QEMU is gone/);
  }, 240_000);

  /** disk1 images: blank on the source, 1 MiB of 0xa5 at 40 MiB on the destination. */
  const notBlankSecond = (tag: string): { src: string; dst: string } => {
    const second = { src: image('7.2', `${tag}-src1`, 'raw'), dst: image('7.2', `${tag}-dst1`, 'raw') };
    const fd = openSync(second.dst, 'r+');
    writeSync(fd, Buffer.alloc(MIB, 0xa5), 0, MIB, 40 * MIB);
    closeSync(fd);
    return second;
  };

  test('a destination drive that is not blank ends equal to the source: the first copy zeroes what the source reads as zeros', async () => {
    const second = notBlankSecond('zeroed');
    const { source, dest } = await boot('zeroed', image('7.2', 'zeroed-dst0', 'raw'), second);
    const p = port();
    const disks = ['--disk', 'disk0', '--disk', 'disk1'];
    const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `127.0.0.1:${p}`, '--insecure', ...disks, '--no-resume', '--json', '--timeout', '120']);
    const migrate = migstream(['migrate', '--qmp', source.qmp, '--to', `127.0.0.1:${p}`, '--insecure', ...disks, '--no-probe', '--json', '--timeout', '120']);
    const [src, dst] = await Promise.all([migrate, incoming]);
    expect(src.code, src.stderr).toBe(0);
    expect(dst.code, dst.stderr).toBe(0);
    // disk1's first copy read nothing and zeroed all of it; the destination zeroed its 64 MiB.
    const drives = (jsonLines(src.stdout).find((e) => e.type === 'summary')!.disk as { drives: { drive: string; passes: { phase: string; bytes: number }[]; applied: { bytesZeroed: number } }[] }).drives;
    const disk1 = drives.find((d) => d.drive === 'disk1')!;
    expect(disk1.passes[0]!.phase).toBe('first-copy');
    expect(disk1.passes[0]!.bytes).toBeLessThan(64 * 64);
    expect(disk1.applied.bytesZeroed).toBeGreaterThanOrEqual(DISK_MIB * MIB);
    // Independently, both QEMUs paused: both drives' images hold the same bytes.
    execFileSync(qemuTool('7.2', 'qemu-img'), ['compare', '-q', '-U', '-f', 'raw', '-F', 'raw', second.src, second.dst]);
  }, 240_000);

  test('two drives, the second destination image not blank but --disk-target-is-zero: the check at switch-over names its chunk, the migration is cancelled', async () => {
    // disk0 is the guest's busy disk; disk1 is idle and blank on the source: told the target is
    // zero, its first copy sends nothing, so what the destination's image held before stays,
    // and only the check can tell.
    const second = notBlankSecond('two');
    const { source, dest } = await boot('two', image('7.2', 'two-dst0', 'raw'), second);
    const p = port();
    const disks = ['--disk', 'disk0', '--disk', 'disk1'];
    const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `127.0.0.1:${p}`, '--insecure', ...disks, '--timeout', '120']);
    const migrate = migstream(['migrate', '--qmp', source.qmp, '--to', `127.0.0.1:${p}`, '--insecure', ...disks, '--disk-target-is-zero', '--no-probe', '--timeout', '120']);
    const [src, dst] = await Promise.all([migrate, incoming]);
    expect(src.code, src.stderr).toBe(1);
    expect(src.stderr).toMatch(/disk "disk1".*1 chunk\(s\) of 1048576 bytes differ .*chunk 40 at 0x2800000.*\(the source VM is running\)/);
    expect(dst.code).toBe(1);
    expect(dst.stderr).toMatch(/not resumed|QEMU is gone|exited/);
    await expectSourceRunsDestNot(source.vm, dest.vm);
  }, 240_000);

  test('incoming --disk, but migrate without it: the destination stops its QEMU when RAM comes alone; the source runs on', async () => {
    const { source, dest } = await boot('ram-only', image('7.2', 'ram-only-dst', 'raw'));
    const p = port();
    const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `127.0.0.1:${p}`, '--insecure', '--disk', 'disk0', '--timeout', '120']);
    const migrate = migstream(['migrate', '--qmp', source.qmp, '--to', `127.0.0.1:${p}`, '--insecure', '--no-probe', '--timeout', '120']);
    const [src, dst] = await Promise.all([migrate, incoming]);
    expect(dst.code).toBe(1);
    expect(dst.stderr).toMatch(/no disk stream came for drive disk0 .*migrate --disk/);
    expect(src.code).toBe(1);
    await expectSourceRunsDestNot(source.vm, dest.vm);
  }, 240_000);

  test('migrate --disk, but incoming without it: refused with what to do; the source runs on', async () => {
    const { source, dest } = await boot('no-disk', image('7.2', 'no-disk-dst', 'raw'));
    const p = port();
    const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `127.0.0.1:${p}`, '--insecure', '--timeout', '15']);
    const src = await migstream(['migrate', '--qmp', source.qmp, '--to', `127.0.0.1:${p}`, '--insecure', '--disk', 'disk0', '--no-probe', '--timeout', '60']);
    expect(src.code).toBe(1);
    expect(src.stderr).toMatch(/refused the disk stream: the destination takes no disk \(start migstream incoming with --disk DRIVE\)/);
    await expectSourceRunsDestNot(source.vm, dest.vm);
    expect((await incoming).code).toBe(1);
  }, 240_000);
});

describe('migrate --disk QoS, and a drive resized or removed mid-run (QEMU 7.2)', () => {
  test('a guest writing faster than a 40 Mbit/s link: passes stop shrinking, the write limit falls step by step, and it is lifted after the switch-over', async () => {
    const slow = createLink({ rateMbit: 40 });
    try {
      const p = port();
      const srcImage = image('7.2', 'qos-src', 'raw', 16);
      const dstImage = image('7.2', 'qos-dst', 'raw', 16);
      const args = guestArgs('idle', ['disk=65536:16:5']);
      const [source, dest] = await Promise.all([
        bootGuest({ scratch, name: 'qos-src', machine: 'pc-i440fx-7.2', qemu: '7.2', ram: SMALL_RAM, guest: args, extra: driveArgs(srcImage, 'raw'), netns: slow.a }),
        bootGuest({ scratch, name: 'qos-dst', machine: 'pc-i440fx-7.2', qemu: '7.2', ram: SMALL_RAM, guest: args, extra: [...driveArgs(dstImage, 'raw'), '-S', '-incoming', 'defer'], netns: slow.b }),
      ]);
      vms.push(source.vm, dest.vm);
      await source.vm.waitForSerial(/migstream-disk \d+/, 120_000);
      const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `${slow.addressB}:${p}`, '--insecure', '--disk', 'disk0', '--no-resume', '--json', '--timeout', '300'], slow.inNs(slow.b, []));
      const migrate = migstream(
        ['migrate', '--qmp', source.qmp, '--to', `${slow.addressB}:${p}`, '--insecure', '--disk', 'disk0', '-c', 'lz4', '--no-probe', '--json', '--timeout', '280'],
        slow.inNs(slow.a, []),
      );
      const [src, dst] = await Promise.all([migrate, incoming]);
      expect(src.code, src.stderr).toBe(0);
      expect(dst.code, dst.stderr).toBe(0);
      const limits = jsonLines(src.stdout)
        .filter((e) => e.type === 'disk-throttle')
        .map((e) => e.bytesPerSecond as number);
      expect(limits.length).toBeGreaterThan(0);
      // Each step halves the one before (the first: half the guest's measured write rate).
      for (let i = 1; i < limits.length; i++) expect(limits[i]).toBeLessThan(limits[i - 1]!);
      const summary = jsonLines(src.stdout).find((e) => e.type === 'summary')!;
      const drive = (summary.disk as { drives: { throttle: unknown[]; check: { chunks: number } }[] }).drives[0]!;
      expect(drive.throttle).toHaveLength(limits.length);
      expect(drive.check.chunks).toBe(16);
      // Lifted: the source drive has no write limit left.
      const blocks = await source.vm.execute<{ device: string; inserted?: { bps_wr: number } }[]>('query-block');
      expect(blocks.find((b) => b.device === 'disk0')!.inserted!.bps_wr).toBe(0);
      execFileSync(qemuTool('7.2', 'qemu-img'), ['compare', '-q', '-U', '-f', 'raw', '-F', 'raw', srcImage, dstImage]);
    } finally {
      slow.destroy();
    }
  }, 420_000);

  test.each([
    {
      change: 'resized',
      // The next pass's export is larger than the drive the run started with.
      act: (vm: QemuVm) => vm.execute('block_resize', { device: 'disk0', size: (DISK_MIB + 1) * MIB }),
      message: /disk "disk0".*the drive changed size since the run started \(68157440 bytes, expected 67108864\).*\(the source VM is running\)/,
    },
    {
      change: 'removed',
      // drive_del (HMP only) takes the medium away under the device, as an operator may. Which
      // QMP step of the pass meets it first depends on timing: the next pass's transaction
      // (device not found), or the pass under way's bitmap removal (node not found).
      act: (vm: QemuVm) => vm.execute('human-monitor-command', { 'command-line': 'drive_del disk0' }),
      message: /disk "disk0", beside-ram pass: .*(Cannot find device=|Node '#block\d+' not found).*\(the source VM is running\)/,
    },
  ])(
    'the source drive is $change while RAM moves: the next pass fails and says why, the migration is cancelled, the source runs on',
    async ({ change, act, message }) => {
      const p = port();
      const srcImage = image('7.2', `${change}-src`, 'raw');
      const args = guestArgs('busy', ['wss=16', 'rate=4', 'disk=4096:1:3']);
      const [source, dest] = await Promise.all([
        bootGuest({ scratch, name: `${change}-src`, machine: 'pc-i440fx-7.2', qemu: '7.2', ram: RAM, guest: args, extra: driveArgs(srcImage, 'raw') }),
        bootGuest({
          scratch,
          name: `${change}-dst`,
          machine: 'pc-i440fx-7.2',
          qemu: '7.2',
          ram: RAM,
          guest: args,
          extra: [...driveArgs(image('7.2', `${change}-dst`, 'raw'), 'raw'), '-S', '-incoming', 'defer'],
        }),
      ]);
      vms.push(source.vm, dest.vm);
      await source.vm.waitForSerial(/migstream-disk \d+/, 120_000);
      // The source may fail before its RAM stream ever reaches this side: then incoming waits for
      // a migration until its timeout (a failed disk connection does not end it: a source may retry).
      const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `127.0.0.1:${p}`, '--insecure', '--disk', 'disk0', '--timeout', '20']);
      // RAM capped at 8 MiB/s: it takes long enough to change the drive while it moves.
      const migrate = migstream(['migrate', '--qmp', source.qmp, '--to', `127.0.0.1:${p}`, '--insecure', '--disk', 'disk0', '--no-probe', '--max-bandwidth', '8M', '--timeout', '120']);
      for (let i = 0; i < 300; i++) {
        const info = await source.vm.execute<{ status?: string }>('query-migrate');
        if (info.status === 'active') break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      await act(source.vm);
      const [src, dst] = await Promise.all([migrate, incoming]);
      expect(src.code, src.stderr).toBe(1);
      expect(src.stderr).toMatch(message);
      expect(dst.code).toBe(1);
      expect(await status(source.vm)).toBe('running');
      expect(await runsOn(source.vm)).toBe(true);
      expect(await status(dest.vm).catch(() => 'gone')).not.toBe('running');
      expect(await source.vm.execute<unknown[]>('query-block-exports')).toEqual([]);
    },
    300_000,
  );
});

describe('migrate --disk usage', () => {
  test('--disk with --with-disk, a drive named twice, a bad block size: usage errors before QEMU is touched', async () => {
    writeFileSync(join(scratch, 'not-a-socket'), '');
    const base = ['migrate', '--qmp', join(scratch, 'not-a-socket'), '--to', '127.0.0.1:4444', '--insecure'];
    for (const [extra, message] of [
      [['--disk', 'a', '--with-disk'], /--disk and --with-disk exclude each other/],
      [['--disk', 'a', '--disk', 'a'], /--disk names a drive twice/],
      [['--disk', 'a', '--disk-block-size', '3K'], /--disk-block-size must be a power of two from 4096/],
      [['--disk', 'a', '--disk-granularity', '100'], /--disk-granularity must be a power of two/],
    ] as const) {
      const ran = await migstream([...base, ...extra]);
      expect(ran.code, ran.stderr).toBe(2);
      expect(ran.stderr).toMatch(message);
    }
  });
});
