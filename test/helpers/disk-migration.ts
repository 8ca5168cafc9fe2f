/**
 * The disk path against real QEMU (test/disk/qemu-*.test.ts): a source QEMU whose guest writes
 * random blocks to its virtio disk (guest/diskwrite), a destination QEMU in `-incoming defer`
 * with an image of the same size that is not blank (4 MiB of junk), and src/disk between them: the first copy and dirty
 * passes while the guest writes, `stop`, the last pass, the consistency check, a planted
 * difference, and after both QEMUs quit, `qemu-img compare`.
 *
 * Records go from the source through the disk stream's bytes (DiskStreamEncoder →
 * DiskStreamDecoder) into the destination, so the format is exercised end to end. Two more
 * sources on the same drive (their own bitmaps and exports, same NBD server) only count what
 * they would send, whole chunks at 1 MiB and at 64 KiB, for the amplification figures.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { DiskMismatchError, DiskSink, DiskSource, DiskStreamDecoder, DiskStreamEncoder, checkDiskConsistency, type ChunkRecord, type PassStats } from '../../src/disk/index.js';
import { launchQemu, type QemuVm } from '../../src/qemu/launcher.js';
import { qemuTool, type QemuVersion } from '../../src/qemu/versions.js';
import { REPO_ROOT, guestArgs } from '../fixtures/meta.js';
import { loadFixture } from './qemu.js';

const MIB = 1024 * 1024;
const GUEST_MEMORY = 128 * MIB + 8 * 1024;

export interface DiskRunOptions {
  readonly qemu: QemuVersion;
  readonly format: 'raw' | 'qcow2';
  readonly sizeMiB: number;
  /** Guest write size and rate (guest/diskwrite). */
  readonly blockBytes: number;
  readonly rateMiBs: number;
  /** Dirty passes while the guest runs, and the pause between them. */
  readonly passes: number;
  readonly pauseMs: number;
}

export interface DiskRunResult {
  readonly guestBytes: number;
  readonly rows: { name: string; bytes: number; amplification: number; passes: PassStats[] }[];
  readonly ms: number;
}

/** The last "migstream-disk N" the guest printed: bytes it has written so far. */
function guestWritten(vm: QemuVm): number {
  const all = [...vm.serialText().matchAll(/migstream-disk (\d+)/g)];
  return all.length === 0 ? 0 : Number(all[all.length - 1]![1]);
}

function machine(qemu: QemuVersion): string[] {
  return ['-machine', qemu === '7.2' ? 'pc-i440fx-7.2' : 'pc-i440fx-10.0', '-m', `${GUEST_MEMORY / 1024}K`, '-smp', '1'];
}

function drive(path: string, format: string): string[] {
  return ['-drive', `file=${path},format=${format},if=none,id=disk0,cache=writeback`, '-device', 'virtio-blk-pci,drive=disk0,id=disk0-dev'];
}

const debug = (...args: unknown[]): void => {
  if (process.env.DISK_DEBUG) console.error(new Date().toISOString().slice(11, 23), ...args);
};

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function runDiskMigration(options: DiskRunOptions): Promise<DiskRunResult> {
  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'msdisk-'));
  const img = qemuTool(options.qemu, 'qemu-img');
  const srcImage = join(dir, `src.${options.format}`);
  const dstImage = join(dir, `dst.${options.format}`);
  execFileSync(img, ['create', '-q', '-f', options.format, srcImage, `${options.sizeMiB}M`]);
  execFileSync(img, ['create', '-q', '-f', options.format, dstImage, `${options.sizeMiB}M`]);
  // The destination is not blank: the first copy zeroes what the source reads as zeros, and a
  // delta then builds on those zeros, so the drives still end equal.
  execFileSync(qemuTool(options.qemu, 'qemu-io'), ['-f', options.format, '-c', 'write -P 0x5a 8M 3M', '-c', `write -P 0xa5 ${options.sizeMiB - 1}M 1M`, dstImage], { stdio: 'ignore' });
  // The accelerator the fixtures found working (a KVM that opens may still not boot a guest).
  const accel = loadFixture('idle').meta.accel;
  const guest = guestArgs('idle', [`disk=${options.blockBytes}:${options.rateMiBs}:7`]);
  const vms: QemuVm[] = [];
  const sources: DiskSource[] = [];
  let sink: DiskSink | undefined;
  try {
    const [src, dst] = await Promise.all([
      launchQemu({ qemu: options.qemu, accel, cwd: REPO_ROOT, name: `disk-src-${options.qemu}`, args: [...machine(options.qemu), ...guest, ...drive(srcImage, options.format)] }),
      launchQemu({ qemu: options.qemu, accel, cwd: REPO_ROOT, name: `disk-dst-${options.qemu}`, args: [...machine(options.qemu), ...guest, ...drive(dstImage, options.format), '-S', '-incoming', 'defer'] }),
    ]);
    vms.push(src, dst);
    debug('launched');
    await src.waitForSerial(/migstream-disk \d+/, 120_000);
    debug('guest writing');

    // The measured path: sub-block deltas (1 MiB chunks, 64 KiB bitmap), through the stream's bytes.
    const srcSocket = join(dir, 'src.sock');
    const main = await DiskSource.open({ qmp: src.qmp, drive: 'disk0', socketPath: srcSocket, deltas: true, prefix: 'delta' });
    sources.push(main);
    const whole1M = await DiskSource.open({ qmp: src.qmp, drive: 'disk0', socketPath: srcSocket, serverStarted: true, prefix: 'whole1m' });
    sources.push(whole1M);
    const whole64K = await DiskSource.open({ qmp: src.qmp, drive: 'disk0', socketPath: srcSocket, serverStarted: true, chunkSize: 64 * 1024, prefix: 'whole64k' });
    sources.push(whole64K);
    expect(main.header.size).toBe(options.sizeMiB * MIB);

    debug('sources open');
    sink = await DiskSink.open({ qmp: dst.qmp, drive: 'disk0', socketPath: join(dir, 'dst.sock'), header: main.header });
    const encoder = new DiskStreamEncoder(main.header);
    const decoder = new DiskStreamDecoder();
    const through = async (bytes: Buffer[]): Promise<void> => {
      for (const piece of bytes) for (const record of decoder.push(piece)) await sink!.apply(record);
    };
    await through([encoder.start()]);
    expect(decoder.header).toEqual(main.header);
    // The decoder copies each record out of the frames: once through, the source may reuse the chunk's buffer.
    const apply = async (record: ChunkRecord, done: () => void): Promise<void> => {
      await through(encoder.encode(record));
      done();
    };
    const discard = (): void => undefined;

    const stats = new Map<DiskSource, PassStats[]>(sources.map((s) => [s, []]));
    const writtenAtStart = guestWritten(src);
    stats.get(main)!.push(await main.firstCopy(apply));
    debug('first copy', stats.get(main));
    stats.get(whole1M)!.push(await whole1M.firstCopy(discard));
    stats.get(whole64K)!.push(await whole64K.firstCopy(discard));
    const pass = async (): Promise<void> => {
      stats.get(main)!.push(await main.pass(apply));
      stats.get(whole1M)!.push(await whole1M.pass(discard));
      stats.get(whole64K)!.push(await whole64K.pass(discard));
    };
    for (let i = 0; i < options.passes; i++) {
      await sleep(options.pauseMs);
      await pass();
      debug('pass', i);
    }
    await src.execute('stop');
    const guestBytes = guestWritten(src) - writtenAtStart;
    await pass(); // the last pass, the guest paused
    await through(encoder.end());
    expect(decoder.complete).toBe(true);
    const applied = await sink.finish();
    expect(applied.dataRecords + applied.zeroRecords + applied.deltaRecords).toBeGreaterThan(0);

    // Consistency: the destination holds the source's drive at switch-over.
    debug('finished');
    const destination = sink.nbd;
    const report = await main.withReader((nbd) => checkDiskConsistency(nbd, destination, { drive: 'disk0', size: main.header.size }));
    expect(report.chunks).toBe(options.sizeMiB);

    // A planted difference is found and named, then taken back.
    const planted = 5 * MIB + 4096;
    const original = await destination.read(planted, 4096);
    const changed = Buffer.from(original);
    changed[123] = changed[123]! ^ 0xff;
    await destination.write(planted, changed);
    await destination.flush();
    const mismatch = await main
      .withReader((nbd) => checkDiskConsistency(nbd, destination, { drive: 'disk0', size: main.header.size }))
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    expect(mismatch).toBeInstanceOf(DiskMismatchError);
    expect((mismatch as DiskMismatchError).code).toBe('ERR_DISK_MISMATCH');
    expect((mismatch as DiskMismatchError).count).toBe(1);
    expect((mismatch as DiskMismatchError).first).toEqual([{ chunk: 5, offset: 5 * MIB }]);
    expect((mismatch as DiskMismatchError).message).toMatch(/1 chunk\(s\) of 1048576 bytes differ .*chunk 5 at 0x500000/);
    await destination.write(planted, original);
    await destination.flush();
    await main.withReader((nbd) => checkDiskConsistency(nbd, destination, { drive: 'disk0', size: main.header.size }));

    await sink.close();
    sink = undefined;
    for (const source of sources.splice(0)) await source.close();
    await Promise.all(vms.splice(0).map((vm) => vm.quit()));
    // qemu-img compare reads both images' contents (raw or qcow2): exit 0 when identical.
    execFileSync(img, ['compare', '-q', '-f', options.format, '-F', options.format, srcImage, dstImage]);

    const rows = [
      { name: 'sub-block delta (1 MiB chunks, 64 KiB bitmap)', source: main },
      { name: 'whole chunks, 1 MiB', source: whole1M },
      { name: 'whole chunks, 64 KiB', source: whole64K },
    ].map(({ name, source }) => {
      const passes = stats.get(source)!;
      const bytes = passes.slice(1).reduce((sum, p) => sum + p.bytes, 0);
      return { name, bytes, amplification: bytes / guestBytes, passes };
    });
    return { guestBytes, rows, ms: Date.now() - started };
  } finally {
    await sink?.close().catch(() => undefined);
    for (const source of sources) await source.close().catch(() => undefined);
    await Promise.all(vms.map((vm) => vm.quit()));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Prints the amplification table of a run (measured, not asserted). */
export function printAmplification(title: string, result: DiskRunResult): void {
  const lines = [
    `${title}: guest wrote ${(result.guestBytes / MIB).toFixed(2)} MiB during the passes; ${(result.ms / 1000).toFixed(1)} s`,
    ...result.rows.map((row) => {
      const perPass = row.passes
        .slice(1)
        .map((p) => `${(p.bytes / MIB).toFixed(2)}`)
        .join(' + ');
      return `  ${row.name.padEnd(48)} ${(row.bytes / MIB).toFixed(2).padStart(8)} MiB sent (${perPass}), amplification ${row.amplification.toFixed(2)}×`;
    }),
  ];
  console.log(lines.join('\n'));
}
