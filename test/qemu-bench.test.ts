/**
 * The real-QEMU bench itself: fixtures exist and look right, and QEMU's own stream restores
 * into a destination with identical RAM (so later failures point at migstream, not the bench).
 */
import { open, stat } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { SCENARIOS } from './fixtures/scenarios.js';
import { firstDifference, loadFixture, restoreFixture, shellQuote } from './helpers/qemu.js';

const MAGIC = Buffer.from([0x51, 0x45, 0x56, 0x4d, 0x00, 0x00, 0x00, 0x03]);

async function head(path: string, length: number): Promise<Buffer> {
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await file.read(buffer, 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}

describe('real-QEMU fixtures', () => {
  for (const scenario of SCENARIOS) {
    it(`${scenario.name}: stream, dump and meta are sane`, async () => {
      const fixture = loadFixture(scenario.name);
      const { meta } = fixture;
      expect(meta.queryMigrate.status).toBe('completed');
      expect(await head(fixture.stream, 8)).toEqual(MAGIC);
      expect((await stat(fixture.stream)).size).toBe(meta.streamBytes);

      const expectedDump = meta.memoryLayout.reduce((sum, range) => sum + range.length, 0);
      expect(meta.dumpSize).toBe(expectedDump);
      expect((await stat(fixture.sourceDump)).size).toBe(expectedDump);
      const pcRam = meta.memoryLayout.filter((range) => range.idstr === 'pc.ram');
      expect(pcRam.reduce((sum, range) => sum + range.length, 0)).toBe(meta.memoryBytes - 0x60000);
    });
  }

  it('dirty: several dirty-sync passes', () => {
    const { meta } = loadFixture('dirty');
    expect(meta.queryMigrate.ram?.['dirty-sync-count']).toBeGreaterThanOrEqual(3);
  });

  it('xbzrle: XBZRLE pages were sent', () => {
    const { meta } = loadFixture('xbzrle');
    expect(meta.queryMigrate['xbzrle-cache']?.pages).toBeGreaterThan(0);
  });

  it('compress: compressed pages were sent', () => {
    const { meta } = loadFixture('compress');
    expect(meta.queryMigrate.compression?.pages).toBeGreaterThan(0);
    expect(meta.destinationCapabilities.compress).toBe(true);
  });

  it('block: disk bytes were transferred', async () => {
    const fixture = loadFixture('block');
    const { meta } = fixture;
    expect(meta.disk).not.toBeNull();
    expect(meta.diskProgress?.transferred).toBeGreaterThan(0);
    expect((await stat(fixture.sourceDisk)).size).toBe(meta.disk?.sizeBytes);
  });

  it('q35-dimm: the dimm is its own RAMBlock range above 4 GiB', () => {
    const { meta } = loadFixture('q35-dimm');
    const dimm = meta.memoryLayout.find((range) => range.idstr === 'mem1');
    expect(dimm?.length).toBe(64 * 1048576);
    expect(dimm?.guestPhysAddr).toBeGreaterThanOrEqual(0x100000000);
  });
});

describe('restore of QEMU’s own stream', () => {
  it('idle: destination RAM equals source RAM', async () => {
    const fixture = loadFixture('idle');
    const restored = await restoreFixture('idle', `cat ${shellQuote(fixture.stream)}`);
    try {
      expect(restored.queryMigrate.status).toBe('completed');
      expect(await firstDifference(fixture.sourceDump, restored.dumpPath)).toBe(-1);
    } finally {
      await restored.cleanup();
    }
  }, 180_000);
});
