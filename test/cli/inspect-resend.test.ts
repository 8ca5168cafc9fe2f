/**
 * `migstream inspect` re-send statistics (one HBitmap per RAMBlock for pages seen, one for pages
 * seen again): on the hand-built sample stream through bin/migstream, and on real QEMU streams,
 * where a busy guest re-dirties pages between passes and an idle one hardly does.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { inspectStream } from '../../src/cli/inspect.js';
import { sampleStream } from '../helpers/sample-stream.js';
import { loadFixture } from '../helpers/qemu.js';

const BIN = join(import.meta.dirname, '../../bin/migstream');
const dir = mkdtempSync(join(tmpdir(), 'migstream-inspect-resend-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function inspect(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, 'inspect', ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('inspect re-send statistics', () => {
  const path = join(dir, 'sample.mig');
  writeFileSync(path, sampleStream().bytes);

  test('--json: distinct pages, pages sent again and re-sends per RAMBlock and per iteration', () => {
    const result = inspect(['--json', path]);
    expect(result.status, result.stderr).toBe(0);
    const ram = JSON.parse(result.stdout).ram;
    // pc.ram: pages 0-7 sent; page 1 again as XBZRLE and page 0 again as ZERO in PART 2.
    expect(ram.resend).toEqual({
      pageSize: 4096,
      totals: { pages: 9, resentPages: 2, resends: 2 },
      perBlock: {
        'pc.ram': { pages: 8, resentPages: 2, resends: 2 },
        '/rom@etc/acpi/tables': { pages: 1, resentPages: 0, resends: 0 },
      },
    });
    expect(ram.iterations.map((it: { resent: number }) => it.resent)).toEqual([0, 0, 2, 0]);
    expect(ram.totals.normalAllZero).toBe(0);
  });

  test('text: a re-sent line and columns in the block and iteration tables', () => {
    const result = inspect([path]);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/re-sent +2 of 9 pages sent more than once \(22\.2%\), 2 sends beyond the first/);
    expect(result.stdout).toMatch(/pages sent +re-sent/);
    expect(result.stdout).toMatch(/pc\.ram .* 8 +2\n/);
    expect(result.stdout).toMatch(/0 normal pages all zero/);
  });

  test('real QEMU streams: the busy guest re-sends pages, the idle one few', async () => {
    const dirty = await inspectStream(loadFixture('dirty').stream);
    const idle = await inspectStream(loadFixture('idle').stream);
    for (const result of [dirty, idle]) {
      const { totals, resend } = result.ram!;
      // Every page record is a send: records − distinct pages = re-sends.
      expect(resend.totals.resends).toBe(totals.normal + totals.zero + totals.xbzrle + totals.compressed - resend.totals.pages);
      expect(resend.perBlock['pc.ram']!.pages).toBeGreaterThan(60_000);
    }
    const dirtyRam = dirty.ram!.resend.perBlock['pc.ram']!;
    const idleRam = idle.ram!.resend.perBlock['pc.ram']!;
    // The dirty guest rewrites an 8 MiB buffer (2048 pages) for the whole migration.
    expect(dirtyRam.resentPages).toBeGreaterThan(1000);
    expect(dirtyRam.resends).toBeGreaterThan(2 * dirtyRam.resentPages);
    expect(idleRam.resentPages).toBeLessThan(idleRam.pages / 100);
    expect(idleRam.resentPages).toBeLessThan(dirtyRam.resentPages / 10);
    // Re-sends come in the later iterations, after a dirty-bitmap sync.
    expect(dirty.ram!.iterations[1]!.resent).toBe(0);
    expect(dirty.ram!.iterations.at(-1)!.resent).toBeGreaterThan(0);
  });
});
