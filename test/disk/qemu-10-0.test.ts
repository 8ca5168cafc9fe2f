/**
 * The disk path against real QEMU 10.0 (test/helpers/disk-migration.ts): a guest writing random
 * 4 KiB blocks to its virtio disk, raw and qcow2; first copy, dirty passes, stop, last pass,
 * consistency check (and a planted difference), qemu-img compare of the images. Prints the
 * amplification of sub-block deltas against whole 1 MiB and 64 KiB chunks.
 */
import { describe, expect, test } from 'vitest';
import { printAmplification, runDiskMigration } from '../helpers/disk-migration.js';

describe('disk path, QEMU 10.0', () => {
  for (const format of ['raw', 'qcow2'] as const) {
    test(`${format}: the destination drive equals the source's after the last pass`, async () => {
      const result = await runDiskMigration({ qemu: '10.0', format, sizeMiB: 64, blockBytes: 4096, rateMiBs: 1, passes: 3, pauseMs: 1500 });
      printAmplification(`QEMU 10.0 ${format}, 4 KiB guest writes`, result);
      expect(result.guestBytes).toBeGreaterThan(0);
    }, 110_000);
  }
});
