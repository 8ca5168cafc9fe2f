/**
 * The interop checks every real-QEMU fixture goes through (one test file per fixture, so
 * vitest runs them in parallel):
 *  - decoding QEMU's stream and encoding the records gives back the identical bytes;
 *  - a destination QEMU loads it through `-incoming "exec:migstream copy …"` (decoded and
 *    re-encoded live) and its RAM, and disk for block migration, equal the source's;
 *  - `migstream extract-ram` rebuilds every RAMBlock range equal to the source's RAM;
 *  - `migstream inspect --json` counts agree with the source's query-migrate.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { createDecoder, createEncoder, decode, encodedLength } from '../../src/codec.js';
import { DeviceFieldCollector } from '../../src/report/device-fields.js';
import { createReadStream } from 'node:fs';
import { compareDumpWithRamBlock, firstDifference, loadFixture, restoreFixture, shellQuote } from './qemu.js';

const BIN = join(import.meta.dirname, '../../bin/migstream');
const CHUNK = 1024 * 1024;

/** Decodes the file in 1 MiB reads and compares the re-encoded bytes with it as they come. */
interface RecodeResult {
  bytes: number;
  records: number;
  mismatchAt: number;
  /** Bytes of the XBZRLE records less their 8-byte word, as QEMU counts xbzrle-cache.bytes. */
  xbzrleCountedBytes: number;
}

function recodeMatches(path: string): RecodeResult {
  const decoder = createDecoder();
  const encoder = createEncoder();
  const fd = openSync(path, 'r');
  const original = openSync(path, 'r');
  let compared = 0;
  let records = 0;
  let bytes = 0;
  let xbzrleCountedBytes = 0;
  const check = (chunks: Buffer[]): number => {
    for (const chunk of chunks) {
      const expected = Buffer.allocUnsafe(chunk.length);
      const n = readSync(original, expected, 0, chunk.length, compared);
      if (n !== chunk.length || !expected.equals(chunk)) return compared;
      compared += chunk.length;
    }
    return -1;
  };
  try {
    for (;;) {
      const chunk = Buffer.allocUnsafe(CHUNK);
      const n = readSync(fd, chunk, 0, CHUNK, null);
      bytes += n;
      const decoded = n === 0 ? decoder.end() : decoder.push(chunk.subarray(0, n));
      records += decoded.length;
      for (const record of decoded) {
        encoder.write(record);
        if (record.type === 'ram-xbzrle') xbzrleCountedBytes += encodedLength(record) - 8;
      }
      const at = check(encoder.take());
      if (at >= 0) return { bytes, records, mismatchAt: at, xbzrleCountedBytes };
      if (n === 0) break;
    }
    return { bytes, records, mismatchAt: compared === bytes ? -1 : compared, xbzrleCountedBytes };
  } finally {
    closeSync(fd);
    closeSync(original);
  }
}

function migstream(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

export function interopSuite(name: string, options: { resume?: boolean } = {}): void {
  describe(`real QEMU fixture "${name}"`, () => {
    const fixture = loadFixture(name);
    const scratch = mkdtempSync(join(tmpdir(), `migstream-interop-${name}-`));
    afterAll(() => rmSync(scratch, { recursive: true, force: true }));

    test('decode then encode gives the identical bytes', () => {
      const result = recodeMatches(fixture.stream);
      expect(result.bytes).toBe(fixture.meta.streamBytes);
      expect(result.records).toBeGreaterThan(100);
      expect(result.mismatchAt).toBe(-1);
      const xbzrle = fixture.meta.queryMigrate['xbzrle-cache'];
      if (xbzrle !== undefined) {
        // save_xbzrle_page: bytes += record bytes - 8 per delta sent, + a page per overflow.
        expect(result.xbzrleCountedBytes + xbzrle.overflow * 4096).toBe(xbzrle.bytes);
      }
    });

    test('a destination QEMU loads it through exec:migstream copy with identical RAM', async () => {
      const command = `${shellQuote(process.execPath)} ${shellQuote(BIN)} copy --quiet ${shellQuote(fixture.stream)}`;
      const restored = await restoreFixture(name, command, { resume: options.resume ?? true });
      try {
        expect(restored.queryMigrate.status).toBe('completed');
        expect(await firstDifference(fixture.sourceDump, restored.dumpPath)).toBe(-1);
        if (fixture.meta.disk) {
          expect(restored.diskPath).toBeDefined();
          expect(await firstDifference(fixture.sourceDisk!, restored.diskPath!)).toBe(-1);
        }
      } finally {
        await restored.cleanup();
      }
    }, 300_000);

    test('extract-ram equals the source RAM over every mapped range', async () => {
      const out = join(scratch, 'ram');
      const result = migstream(['extract-ram', fixture.stream, '-o', out, '--json']);
      expect(result.status, result.stderr).toBe(0);
      const extracted = JSON.parse(result.stdout) as { blocks: { idstr: string; path: string; usedLength: number }[] };
      const files = new Map(extracted.blocks.map((block) => [block.idstr, block.path]));
      const mapped = new Set(fixture.meta.memoryLayout.map((range) => range.idstr));
      expect(mapped.size).toBeGreaterThan(0);
      for (const idstr of mapped) {
        expect(files.has(idstr), `block ${idstr} extracted`).toBe(true);
        expect(await compareDumpWithRamBlock(fixture.sourceDump, fixture.meta.memoryLayout, idstr, files.get(idstr)!)).toBeNull();
      }
    }, 120_000);

    test('every device-state section splits exactly into the fields its vmdesc describes', async () => {
      const collector = new DeviceFieldCollector();
      for await (const record of decode(createReadStream(fixture.stream))) collector.add(record);
      const devices = collector.result();
      expect(devices).not.toBeNull();
      expect(devices!.length).toBeGreaterThan(30);
      expect(devices!.filter((device) => !device.exact).map((device) => `${device.idstr}: ${device.problem}`)).toEqual([]);
      const cpu = devices!.find((device) => device.idstr === 'cpu');
      expect(cpu?.fields.length).toBeGreaterThan(50);
    });

    test('inspect counts agree with query-migrate', () => {
      const result = migstream(['inspect', '--json', fixture.stream]);
      expect(result.status, result.stderr).toBe(0);
      const report = JSON.parse(result.stdout);
      expect(report.complete).toBe(true);
      expect(report.totalBytes).toBe(fixture.meta.streamBytes);
      expect(report.vmdesc?.devices).toBe(report.devices.length);
      const info = fixture.meta.queryMigrate;
      expect(report.ram.totals.normal).toBe(info.ram?.normal);
      if (info.compression === undefined) {
        expect(report.ram.totals.zero).toBe(info.ram?.duplicate);
      } else {
        // QEMU 7.2 counts a compress thread's last page twice (update_compress_thread_counts
        // after flush_compressed_data), so its figures may run ahead by a few per section.
        const slack = 8 * report.ram.totals.iterations;
        expect(report.ram.totals.compressed).toBeGreaterThan(0);
        expect(Math.abs(report.ram.totals.compressed - info.compression.pages)).toBeLessThanOrEqual(slack);
        expect(Math.abs(report.ram.totals.zero - (info.ram?.duplicate ?? 0))).toBeLessThanOrEqual(slack);
      }
      const xbzrle = info['xbzrle-cache'];
      if (xbzrle !== undefined) {
        // save_xbzrle_page counts every cache hit in xbzrle-cache.pages: deltas sent, pages
        // found unchanged (nothing sent) and overflows (sent as normal pages). Only the
        // first kind is an XBZRLE record.
        expect(report.ram.totals.xbzrle).toBeGreaterThan(0);
        expect(report.ram.totals.xbzrle).toBeLessThanOrEqual(xbzrle.pages - xbzrle.overflow);
      }
      const blockNames = new Set(report.ram.blocks.map((b: { idstr: string }) => b.idstr));
      for (const range of fixture.meta.memoryLayout) expect(blockNames.has(range.idstr)).toBe(true);
      if (fixture.meta.disk) {
        const device = report.block.devices.find((d: { name: string }) => d.name === fixture.meta.disk!.driveId);
        expect(device).toBeDefined();
        expect((device.dataChunks + device.zeroChunks) * CHUNK).toBeGreaterThanOrEqual(fixture.meta.disk.sizeBytes);
        expect(device.zeroChunks).toBeGreaterThan(0);
      }
    });
  });
}

/** Raw bytes of a fixture's stream, for tests that damage it. */
export function fixtureStream(name: string): Buffer {
  return readFileSync(loadFixture(name).stream);
}
