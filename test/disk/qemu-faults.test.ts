/**
 * Faults of the disk path against real QEMU 7.2 and 10.0 (no guest: a paused machine with a
 * drive is all the block layer needs): a meta context the export does not have is refused, a
 * destination export smaller than the source drive is refused before anything is written, an
 * NBD server that goes away mid-pass fails the pass naming the peer and leaves the source QEMU
 * running (the device has share-rw=on so the paused machine's drive takes a writable export). Out-of-range extents and wrong lengths, which QEMU does not send, are in
 * test/disk/pass-plan.test.ts and test/nbd.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import { DiskSink, DiskSizeError, DiskSource, addExport, deleteExport, findDriveNode } from '../../src/disk/index.js';
import { NbdClient, NbdConnectionError, NbdError, NbdRefusedError } from '../../src/nbd/index.js';
import { launchQemu, type QemuVm } from '../../src/qemu/launcher.js';
import { qemuTool, type QemuVersion } from '../../src/qemu/versions.js';
import { REPO_ROOT } from '../fixtures/meta.js';
import { loadFixture } from '../helpers/qemu.js';

const MIB = 1024 * 1024;

for (const qemu of ['7.2', '10.0'] as const satisfies readonly QemuVersion[]) {
  describe(`disk path faults, QEMU ${qemu}`, () => {
    let dir: string;
    let vm: QemuVm;

    beforeAllOrFail(async () => {
      dir = mkdtempSync(join(tmpdir(), 'msdiskf-'));
      const image = join(dir, 'disk.raw');
      const data = Buffer.alloc(8 * MIB);
      for (let i = 0; i < data.length; i += 4096) data[i] = ((i / 4096) % 251) | 1;
      writeFileSync(image, data);
      execFileSync(qemuTool(qemu, 'qemu-img'), ['resize', '-q', '-f', 'raw', image, '16M']);
      vm = await launchQemu({
        qemu,
        accel: loadFixture('idle').meta.accel,
        cwd: REPO_ROOT,
        name: `disk-faults-${qemu}`,
        args: ['-machine', qemu === '7.2' ? 'pc-i440fx-7.2' : 'pc-i440fx-10.0', '-m', '64M', '-S', '-drive', `file=${image},format=raw,if=none,id=disk0`, '-device', 'virtio-blk-pci,drive=disk0,share-rw=on'],
      });
    });

    afterAll(async () => {
      await vm?.quit();
      rmSync(dir, { recursive: true, force: true });
    });

    test('a dirty bitmap the export was not given: the meta context is refused, naming the export', async () => {
      const socketPath = join(dir, 'a.sock');
      const node = await findDriveNode(vm.qmp, 'disk0');
      await vm.execute('nbd-server-start', { addr: { type: 'unix', data: { path: socketPath } } });
      await addExport(vm.qmp, { id: 'plain', nodeName: node.nodeName, writable: false });
      try {
        const error = await NbdClient.connect({ path: socketPath, exportName: 'plain', metaContexts: ['qemu:dirty-bitmap:nope'] }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(NbdRefusedError);
        expect((error as NbdRefusedError).message).toMatch(/export "plain".*qemu:dirty-bitmap:nope/);
      } finally {
        await deleteExport(vm.qmp, 'plain');
        await vm.execute('nbd-server-stop');
      }
    });

    test('a destination export smaller than the source drive: DiskSizeError before any write, export removed', async () => {
      const header = { device: 'disk0', size: 32 * MIB, chunkSize: MIB, subBlockSize: 4096 };
      const error = await DiskSink.open({ qmp: vm.qmp, drive: 'disk0', socketPath: join(dir, 'b.sock'), header }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DiskSizeError);
      expect((error as DiskSizeError).code).toBe('ERR_DISK_SIZE');
      expect((error as DiskSizeError).message).toMatch(
        /disk "disk0" \(nbd unix:.*b\.sock export "migstream-disk0-sink"\): the destination's export is smaller than the source drive \(16777216 bytes, expected 33554432\)/,
      );
      expect(await vm.execute('query-block-exports')).toEqual([]);
    });

    test('the NBD server stops mid-pass: the pass fails naming the peer, the QEMU runs on, its bitmaps are cleaned up', async () => {
      const source = await DiskSource.open({ qmp: vm.qmp, drive: 'disk0', socketPath: join(dir, 'c.sock'), windowBytes: MIB });
      let records = 0;
      const error = await source
        .firstCopy(async () => {
          if (records++ === 0) await vm.execute('nbd-server-stop');
        })
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(error).toBeInstanceOf(NbdError);
      expect(error).toBeInstanceOf(NbdConnectionError);
      expect((error as NbdError).peer).toMatch(/c\.sock export "migstream-disk0-export-0"/);
      expect(records).toBe(1);
      expect(await vm.execute('query-status')).toMatchObject({ status: 'prelaunch' });
      // close(): the server is gone already, which it says; the bitmap is removed all the same.
      await source.close().catch(() => undefined);
      const block = (await vm.execute('query-block')) as { device: string; inserted?: { 'dirty-bitmaps'?: unknown[] } }[];
      expect(block.find((b) => b.device === 'disk0')?.inserted?.['dirty-bitmaps'] ?? []).toEqual([]);
    });
  });
}
