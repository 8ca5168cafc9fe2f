/**
 * Real-QEMU checks of the container: a fixture's stream is compressed by `migstream compress`
 * reading stdin (as `migrate "exec:…"` feeds it), and a destination QEMU loads it through
 * `-incoming "exec:migstream decompress FILE"`; its RAM (and disk) must equal the source's.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, describe, expect, test } from 'vitest';
import { firstDifference, loadFixture, restoreFixture, shellQuote } from './qemu.js';

export const BIN = join(import.meta.dirname, '../../bin/migstream');

export interface RestoreCase {
  fixture: string;
  /** Extra compress options, e.g. ['-c', 'lz4', '--compact']. */
  compress: string[];
}

/** Runs `migstream compress ARGS` with `inputPath` on stdin and its stdout into `outputPath`. */
export async function compressFile(inputPath: string, outputPath: string, args: string[]): Promise<string> {
  const child = spawn(process.execPath, [BIN, 'compress', ...args, '-o', outputPath], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  await pipeline(createReadStream(inputPath), child.stdin);
  const status = await exited;
  if (status !== 0) throw new Error(`migstream compress ${args.join(' ')} exited with ${status}: ${stderr}`);
  return stderr;
}

export function decompressCommand(containerPath: string): string {
  return `${shellQuote(process.execPath)} ${shellQuote(BIN)} decompress --quiet ${shellQuote(containerPath)}`;
}

export function restoreSuite(cases: readonly RestoreCase[]): void {
  describe('restore through -incoming "exec:migstream decompress"', () => {
    const scratch = mkdtempSync(join(tmpdir(), 'migstream-compress-restore-'));
    afterAll(() => rmSync(scratch, { recursive: true, force: true }));

    for (const { fixture: name, compress } of cases) {
      test(`${name} (compress ${compress.join(' ')}): destination RAM${name === 'block' ? ' and disk' : ''} equal the source's`, async () => {
        const fixture = loadFixture(name);
        const container = join(scratch, `${name}${compress.join('')}.msz`);
        await compressFile(fixture.stream, container, compress);
        const restored = await restoreFixture(name, decompressCommand(container), { resume: false });
        try {
          expect(restored.queryMigrate.status).toBe('completed');
          expect(await firstDifference(fixture.sourceDump, restored.dumpPath)).toBe(-1);
          if (fixture.meta.disk) expect(await firstDifference(fixture.sourceDisk, restored.diskPath!)).toBe(-1);
        } finally {
          await restored.cleanup();
          rmSync(container, { force: true });
        }
      }, 300_000);
    }
  });
}

/** Copies a file (for tests that damage a copy). */
export async function copyTo(from: string, to: string): Promise<void> {
  await pipeline(createReadStream(from), createWriteStream(to));
}
