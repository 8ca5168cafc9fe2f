/**
 * The whole exec: round trip with a live guest: `migrate "exec:migstream compress …"` saves a
 * running VM, `-incoming "exec:migstream decompress …"` restores it, and the destination's RAM
 * (and, for block migration, its disk) equals the paused source's. One boot per case: every
 * fixture scenario but q35-dimm, the dirtying guest with and without --compact, over lz4, zstd
 * and zlib, with the default threads and with -j 1.
 *
 * Before restoring, the decompressed stream is inspected to show the save carried what its
 * scenario is for (re-sent pages, XBZRLE deltas, legacy zlib pages, disk chunks), so a save
 * that happened not to exercise them cannot pass unnoticed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { findScenario } from '../fixtures/scenarios.js';
import { BIN, decompressCommand } from '../helpers/compress-restore.js';
import { liveSave } from '../helpers/live-save.js';
import { firstDifference, restoreFixture, shellQuote } from '../helpers/qemu.js';

const scratch = mkdtempSync(join(tmpdir(), 'migstream-live-save-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface LiveCase {
  scenario: string;
  /** `migstream compress` options. */
  compress: string[];
}

const CASES: readonly LiveCase[] = [
  { scenario: 'idle', compress: ['-c', 'zstd'] },
  { scenario: 'dirty', compress: ['-c', 'lz4', '--compact'] },
  { scenario: 'dirty', compress: ['-c', 'zlib', '-j', '1'] },
  { scenario: 'xbzrle', compress: ['-c', 'lz4'] },
  { scenario: 'compress', compress: ['-c', 'zlib'] },
  { scenario: 'block', compress: ['-c', 'zstd', '-j', '1'] },
];

/** The members of `migstream inspect --json` checked here. */
interface InspectReport {
  complete: boolean;
  totalBytes: number;
  ram: {
    blocks: { usedLength: number }[];
    totals: { xbzrle: number; compressed: number };
    resend: { totals: { resentPages: number } };
  };
  block: { devices: { name: string; dataChunks: number; zeroChunks: number }[] } | null;
}

/** `migstream inspect --json` of the stream the container gives back. */
function inspectContainer(container: string): InspectReport {
  const node = shellQuote(process.execPath);
  const output = execFileSync('bash', ['-o', 'pipefail', '-c', `${decompressCommand(container)} | ${node} ${shellQuote(BIN)} inspect --json -`], {
    maxBuffer: 64 << 20,
  });
  return JSON.parse(output.toString()) as InspectReport;
}

describe('live save through exec:migstream compress, restore through exec:migstream decompress', () => {
  for (const { scenario: name, compress } of CASES) {
    const scenario = findScenario(name);
    const compact = compress.includes('--compact');
    test(`${name} guest (compress ${compress.join(' ')}): destination RAM${scenario.disk ? ' and disk' : ''} equal the source's`, async () => {
      const dir = mkdtempSync(join(scratch, `${name}-`));
      try {
        const saved = await liveSave(name, dir, (out) => [process.execPath, BIN, 'compress', '--quiet', ...compress, '-o', out].map(shellQuote).join(' '));
        expect(saved.queryMigrate.status).toBe('completed');

        const report = inspectContainer(saved.outPath);
        expect(report.complete).toBe(true);
        const ramBytes = report.ram.blocks.reduce((sum, block) => sum + block.usedLength, 0);
        if (compact) {
          // Each page once, with its final content: no re-sends, no deltas, smaller than RAM.
          expect(report.ram.resend.totals.resentPages).toBe(0);
          expect(report.ram.totals.xbzrle).toBe(0);
          expect(report.totalBytes).toBeLessThan(ramBytes);
        } else if (scenario.converge) {
          // QEMU's own stream of a busy guest: several passes, pages sent again.
          expect(saved.queryMigrate.ram?.['dirty-sync-count']).toBeGreaterThanOrEqual(3);
          expect(report.ram.resend.totals.resentPages).toBeGreaterThan(0);
        }
        if (scenario.capabilities.xbzrle && !compact) expect(report.ram.totals.xbzrle).toBeGreaterThan(0);
        if (scenario.capabilities.compress) expect(report.ram.totals.compressed).toBeGreaterThan(0);
        if (scenario.disk) {
          const device = report.block?.devices.find((d) => d.name === scenario.disk!.driveId);
          expect(device, `block device ${scenario.disk.driveId} in the stream`).toBeDefined();
          expect(device!.dataChunks).toBeGreaterThan(0);
          expect((device!.dataChunks + device!.zeroChunks) * 1048576).toBeGreaterThanOrEqual(scenario.disk.sizeMiB * 1048576);
        }

        const restored = await restoreFixture(name, decompressCommand(saved.outPath), { resume: true });
        try {
          expect(restored.queryMigrate.status).toBe('completed');
          expect(await firstDifference(saved.dumpPath, restored.dumpPath)).toBe(-1);
          if (scenario.disk) {
            expect(saved.diskPath).toBeDefined();
            expect(restored.diskPath).toBeDefined();
            expect(await firstDifference(saved.diskPath!, restored.diskPath!)).toBe(-1);
          }
        } finally {
          await restored.cleanup();
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }, 600_000);
  }
});
