/**
 * Where the codec uses the addon: RamImage skips all-zero page payloads for pages never
 * written, StreamReport counts re-sent pages with HBitmaps and all-zero normal pages, and
 * DiskImage's chunk tracking (ChunkBitmap) is an HBitmap.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ChunkBitmap } from '../../src/block/chunk-bitmap.js';
import { RamImage } from '../../src/ram/image.js';
import { MemoryPageStore } from '../../src/ram/page-store.js';
import type { RamRecord } from '../../src/ram/records.js';
import { SparseFileStore } from '../../src/ram/sparse-file-store.js';
import { StreamReport } from '../../src/report/stream-report.js';
import { ArgumentError } from '../../src/stream/errors.js';
import type { FramingRecord } from '../../src/stream/records.js';

const PAGE = 4096;
const scratch = mkdtempSync(join(tmpdir(), 'migstream-native-wiring-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const memSize = (blocks: [string, number][]): RamRecord => ({
  type: 'ram-mem-size',
  totalBytes: blocks.reduce((sum, [, n]) => sum + n, 0),
  blocks: blocks.map(([idstr, usedLength]) => ({ idstr, usedLength })),
});
const page = (block: string, offset: number, data: Buffer): RamRecord => ({ type: 'ram-page', block, continued: false, offset, data });
const zero = (block: string, offset: number): RamRecord => ({ type: 'ram-zero', block, continued: true, offset, fill: 0 });
const xbzrle = (block: string, offset: number): RamRecord => ({
  type: 'ram-xbzrle',
  block,
  continued: true,
  offset,
  encoding: 1,
  data: Buffer.from([0, 1, 0x55]),
});
const filled = (byte: number) => Buffer.alloc(PAGE, byte);

describe('RamImage and the zero scan', () => {
  test('an all-zero payload for a page never written is skipped; over written data it is written', () => {
    const store = new MemoryPageStore();
    const image = new RamImage(store, { pageSize: PAGE });
    image.apply(memSize([['pc.ram', 8 * PAGE]]));
    image.apply(page('pc.ram', 0, filled(0)));
    image.apply(page('pc.ram', PAGE, filled(7)));
    image.apply(page('pc.ram', PAGE, filled(0))); // page 1 held data: must become zero
    const unaligned = Buffer.alloc(PAGE + 3).subarray(3); // a zero-copy view at an odd offset
    image.apply(page('pc.ram', 2 * PAGE, unaligned));
    const late = filled(0);
    late[PAGE - 1] = 9; // non-zero in the last byte only
    image.apply(page('pc.ram', 3 * PAGE, late));
    expect(image.stats).toMatchObject({ pages: 5, zeroPayloadsSkipped: 2 });
    const [ram] = image.finish();
    expect(ram!.data.subarray(0, 3 * PAGE).every((b) => b === 0)).toBe(true);
    expect(ram!.data.subarray(3 * PAGE, 4 * PAGE).equals(late)).toBe(true);
  });

  test('a sparse file stays sparse: skipped pages cost no write and no disk blocks', () => {
    const store = new SparseFileStore(join(scratch, 'ram'));
    const image = new RamImage(store, { pageSize: PAGE });
    image.apply(memSize([['pc.ram', 1024 * PAGE]]));
    for (let i = 0; i < 1024; i++) image.apply(page('pc.ram', i * PAGE, i === 512 ? filled(1) : filled(0)));
    const [file] = image.finish();
    expect(image.stats.zeroPayloadsSkipped).toBe(1023);
    expect(store.stats.bytesWritten).toBe(PAGE);
    const bytes = readFileSync(file!.path);
    expect(bytes.length).toBe(1024 * PAGE);
    expect(bytes.subarray(512 * PAGE, 513 * PAGE).equals(filled(1))).toBe(true);
    expect(statSync(file!.path).blocks * 512).toBeLessThan(1024 * PAGE);
  });

  test('XBZRLE over a skipped zero page applies to zero, and marks the page written', () => {
    const store = new MemoryPageStore();
    const image = new RamImage(store, { pageSize: PAGE });
    image.apply(memSize([['pc.ram', 2 * PAGE]]));
    image.apply(page('pc.ram', 0, filled(0)));
    image.apply(xbzrle('pc.ram', 0)); // zrun 0, nzrun 1: byte 0 = 0x55
    image.apply(page('pc.ram', 0, filled(0)));
    const [ram] = image.finish();
    expect(image.stats.zeroPayloadsSkipped).toBe(1);
    expect(ram!.data.every((b) => b === 0)).toBe(true);
  });
});

describe('StreamReport re-send statistics', () => {
  type Rec = FramingRecord | RamRecord;
  const part = (): Rec => ({ type: 'section-resume', kind: 'part', sectionId: 2, idstr: 'ram' });
  const footer = (): Rec => ({ type: 'section-footer', sectionId: 2 });

  function report(records: Rec[], options = {}): ReturnType<StreamReport['summary']> {
    const r = new StreamReport(options);
    for (const record of records) r.add(record, 1);
    return r.summary();
  }

  test('counts distinct pages, pages sent again and re-sends, per block and per iteration', () => {
    const summary = report([
      { type: 'section-start', kind: 'start', sectionId: 2, idstr: 'ram', instanceId: 0, versionId: 4 },
      memSize([
        ['pc.ram', 64 * PAGE],
        ['vga', 4 * PAGE],
      ]),
      footer(),
      part(),
      page('pc.ram', 0, filled(1)),
      page('pc.ram', PAGE, filled(0)), // a normal page that is all zero
      zero('pc.ram', 63 * PAGE),
      page('vga', 3 * PAGE, filled(2)),
      footer(),
      part(),
      page('pc.ram', 0, filled(3)), // again
      xbzrle('pc.ram', 0), // and again
      zero('pc.ram', 2 * PAGE),
      footer(),
      { type: 'section-resume', kind: 'end', sectionId: 2, idstr: 'ram' },
      zero('pc.ram', 63 * PAGE), // again
      footer(),
    ]);
    const ram = summary.ram!;
    expect(ram.resend.pageSize).toBe(PAGE);
    expect(ram.resend.perBlock).toEqual({
      'pc.ram': { pages: 4, resentPages: 2, resends: 3 },
      vga: { pages: 1, resentPages: 0, resends: 0 },
    });
    expect(ram.resend.totals).toEqual({ pages: 5, resentPages: 2, resends: 3 });
    expect(ram.iterations.map((it) => it.resent)).toEqual([0, 0, 2, 1]);
    expect(ram.totals.normalAllZero).toBe(1);
    expect(ram.perBlock['pc.ram']!.normalAllZero).toBe(1);
    expect(ram.iterations[1]!.normalAllZero).toBe(1);
  });

  test('pages follow target-page-bits, and blocks without MEM_SIZE grow as pages arrive', () => {
    const summary = report([
      { type: 'configuration', machineType: 'virt', subsections: [{ name: 'configuration/target-page-bits', version: 1, targetPageBits: 14 }] },
      { type: 'section-start', kind: 'start', sectionId: 2, idstr: 'ram', instanceId: 0, versionId: 4 },
      zero('mach-virt.ram', 0),
      zero('mach-virt.ram', 5 * 16384),
      zero('mach-virt.ram', 1000 * 16384),
      zero('mach-virt.ram', 1000 * 16384),
      footer(),
    ]);
    expect(summary.ram!.resend).toEqual({
      pageSize: 16384,
      totals: { pages: 3, resentPages: 1, resends: 1 },
      perBlock: { 'mach-virt.ram': { pages: 3, resentPages: 1, resends: 1 } },
    });
  });

  test('an absurd target-page-bits leaves the page size alone; a bad pageSize option is an ArgumentError', () => {
    const summary = report([
      { type: 'configuration', machineType: 'pc', subsections: [{ name: 'configuration/target-page-bits', version: 1, targetPageBits: 40 }] },
      { type: 'section-start', kind: 'start', sectionId: 2, idstr: 'ram', instanceId: 0, versionId: 4 },
      zero('pc.ram', 8192),
    ]);
    expect(summary.ram!.resend.pageSize).toBe(4096);
    expect(summary.ram!.resend.totals.pages).toBe(1);
    expect(() => new StreamReport({ pageSize: 1000 })).toThrow(ArgumentError);
  });

  test('the page size can be given for streams that do not announce it', () => {
    const summary = report([zero('b', 0), zero('b', 65536), zero('b', 65536)], { pageSize: 65536 });
    expect(summary.ram).toBeNull(); // no ram section header: no ram report
    const withSection = report([{ type: 'section-start', kind: 'start', sectionId: 2, idstr: 'ram', instanceId: 0, versionId: 4 }, zero('b', 0), zero('b', 65536), zero('b', 65536)], { pageSize: 65536 });
    expect(withSection.ram!.resend.totals).toEqual({ pages: 2, resentPages: 1, resends: 1 });
  });
});

describe('ChunkBitmap over HBitmap', () => {
  test('grows on demand and answers range queries through the levels', () => {
    const chunks = new ChunkBitmap();
    expect(chunks.anySet(0, 2 ** 33)).toBe(false);
    chunks.fill(1_000_000, 1_000_063, true);
    expect(chunks.anySet(0, 999_999)).toBe(false);
    expect(chunks.anySet(0, 1_000_000)).toBe(true);
    expect(chunks.anySet(1_000_064, 2 ** 33)).toBe(false);
    chunks.fill(1_000_000, 1_000_062, false);
    expect(chunks.anySet(0, 1_000_062)).toBe(false);
    expect(chunks.get(1_000_063)).toBe(true);
    chunks.fill(5, 2 ** 40, false); // clearing past the end is fine
    expect(chunks.anySet(0, 2 ** 40)).toBe(false);
  });
});
