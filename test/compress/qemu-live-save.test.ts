/**
 * The whole exec: round trip with a live guest: `migrate "exec:migstream compress …"` saves a
 * running VM, `-incoming "exec:migstream decompress …"` restores it, and the destination's RAM
 * equals the paused source's. Two boots only: the idle guest (zstd) and the dirtying guest
 * (lz4 with --compact, which spools QEMU's pipe and compacts it). The other scenarios restore
 * from their fixture streams (qemu-restore-*.test.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { BIN, decompressCommand } from '../helpers/compress-restore.js';
import { liveSave } from '../helpers/live-save.js';
import { firstDifference, restoreFixture, shellQuote } from '../helpers/qemu.js';

const scratch = mkdtempSync(join(tmpdir(), 'migstream-live-save-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function compress(args: string): (out: string) => string {
  return (out) => `${shellQuote(process.execPath)} ${shellQuote(BIN)} compress --quiet ${args} -o ${shellQuote(out)}`;
}

describe('live save through exec:migstream compress, restore through exec:migstream decompress', () => {
  for (const [name, args] of [
    ['idle', '-c zstd'],
    ['dirty', '-c lz4 --compact'],
  ] as const) {
    test(`${name} guest (${args})`, async () => {
      const dir = mkdtempSync(join(scratch, `${name}-`));
      const saved = await liveSave(name, dir, compress(args));
      expect(saved.queryMigrate.status).toBe('completed');
      if (name === 'dirty') {
        // The compacted stream (before lz4) is no larger than the RAM it describes.
        const report = JSON.parse(
          execFileSync('/bin/sh', ['-c', `${decompressCommand(saved.outPath)} | ${shellQuote(process.execPath)} ${shellQuote(BIN)} inspect --json -`], {
            maxBuffer: 64 << 20,
          }).toString(),
        ) as { totalBytes: number; ram: { blocks: { usedLength: number }[] } };
        const ram = report.ram.blocks.reduce((sum, block) => sum + block.usedLength, 0);
        expect(report.totalBytes).toBeLessThan(ram);
      }
      const restored = await restoreFixture(name, decompressCommand(saved.outPath), { resume: name === 'idle' });
      try {
        expect(restored.queryMigrate.status).toBe('completed');
        expect(await firstDifference(saved.dumpPath, restored.dumpPath)).toBe(-1);
      } finally {
        await restored.cleanup();
        rmSync(dir, { recursive: true, force: true });
      }
    }, 600_000);
  }
});
