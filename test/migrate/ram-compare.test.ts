import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { createDecoder } from '../../src/codec.js';
import { PageHashStore } from '../../src/migrate/page-hashes.js';
import { RamDumpComparer } from '../../src/migrate/ram-compare.js';
import type { DumpRange } from '../../src/qemu/memory.js';
import { RamImage } from '../../src/ram/image.js';
import { MemoryPageStore } from '../../src/ram/page-store.js';
import { ArgumentError } from '../../src/stream/errors.js';
import { loadFixture } from '../helpers/qemu.js';

const PAGE = 4096;

/** The final-RAM page hashes a fixture's stream carries, decoded in 1 MiB reads. */
function streamHashes(path: string, withContent: boolean): PageHashStore {
  const decoder = createDecoder();
  let store: PageHashStore | undefined;
  let image: RamImage | undefined;
  const fd = openSync(path, 'r');
  try {
    for (;;) {
      // A fresh buffer per read: the decoder keeps views of what it has not finished.
      const chunk = Buffer.allocUnsafe(1024 * 1024);
      const n = readSync(fd, chunk, 0, chunk.length, null);
      const records = n === 0 ? decoder.end() : decoder.push(chunk.subarray(0, n));
      for (const record of records) {
        if (record.type === 'ram-mem-size') {
          store ??= new PageHashStore(decoder.parameters.pageSize, withContent ? new MemoryPageStore() : undefined);
          image ??= new RamImage(store, { pageSize: decoder.parameters.pageSize });
        }
        image?.apply(record);
      }
      if (n === 0) break;
    }
  } finally {
    closeSync(fd);
  }
  if (store === undefined) throw new Error(`${path} declared no RAM`);
  return store;
}

/** Feeds `dump` in odd-sized chunks so page and batch boundaries fall inside chunks. */
function compare(store: PageHashStore, ranges: DumpRange[], dump: Buffer) {
  const comparer = new RamDumpComparer(ranges, (id) => store.hashesOf(id), { pageSize: PAGE, keep: 4 });
  for (let at = 0; at < dump.length; at += 777_777) comparer.push(dump.subarray(at, at + 777_777));
  return comparer.finish();
}

describe('verify: stream page hashes against a RAM dump (real QEMU fixtures)', () => {
  for (const name of ['idle', 'dirty', 'q35-dimm'] as const) {
    test(`fixture "${name}": the source's RAM matches every page the stream carried`, () => {
      const fixture = loadFixture(name);
      const store = streamHashes(fixture.stream, false);
      const dump = readFileSync(fixture.sourceDump);
      const result = compare(store, fixture.meta.memoryLayout, dump);
      expect(result.mismatches).toBe(0);
      expect(result.pagesCompared).toBe(dump.length / PAGE);
    });
  }

  test('XBZRLE deltas need the pages back: hashes with a content store match, hashes alone are refused', () => {
    const fixture = loadFixture('xbzrle');
    expect(() => streamHashes(fixture.stream, false)).toThrow(/XBZRLE delta/);
    const store = streamHashes(fixture.stream, true);
    const result = compare(store, fixture.meta.memoryLayout, readFileSync(fixture.sourceDump));
    expect(result.mismatches).toBe(0);
  });

  test('a planted difference is named by RAMBlock, offset and guest-physical address', () => {
    const fixture = loadFixture('q35-dimm');
    const store = streamHashes(fixture.stream, false);
    const ranges = fixture.meta.memoryLayout;
    const dump = readFileSync(fixture.sourceDump);
    // One byte in the second page of the last range (the DIMM) and two pages of pc.ram above 1 MiB.
    const dimm = ranges[ranges.length - 1]!;
    const high = ranges.find((r) => r.guestPhysAddr === 0x100000)!;
    dump[dimm.dumpOffset + PAGE + 100]! ^= 0x40;
    dump[high.dumpOffset + 5 * PAGE]! ^= 1;
    dump[high.dumpOffset + 9 * PAGE + PAGE - 1]! ^= 1;
    const result = compare(store, ranges, dump);
    expect(result.mismatches).toBe(3);
    expect(result.first).toEqual([
      { idstr: 'pc.ram', offset: 0x100000 + 5 * PAGE, guestPhysAddr: 0x100000 + 5 * PAGE },
      { idstr: 'pc.ram', offset: 0x100000 + 9 * PAGE, guestPhysAddr: 0x100000 + 9 * PAGE },
      { idstr: dimm.idstr, offset: PAGE, guestPhysAddr: dimm.guestPhysAddr + PAGE },
    ]);
  });

  test('a dump shorter or longer than its ranges, and ranges the stream lacks, are argument errors', () => {
    const store = new PageHashStore(PAGE);
    store.declareBlock('pc.ram', 4 * PAGE);
    const ranges: DumpRange[] = [{ idstr: 'pc.ram', guestPhysAddr: 0, offsetInBlock: 0, length: 4 * PAGE, dumpOffset: 0 }];
    const short = new RamDumpComparer(ranges, (id) => store.hashesOf(id), { pageSize: PAGE });
    short.push(Buffer.alloc(3 * PAGE));
    expect(() => short.finish()).toThrow(/ended after 12288 of 16384 bytes/);
    const long = new RamDumpComparer(ranges, (id) => store.hashesOf(id), { pageSize: PAGE });
    expect(() => long.push(Buffer.alloc(5 * PAGE))).toThrow(/longer than/);
    expect(() => new RamDumpComparer([{ ...ranges[0]!, idstr: 'mem1' }], () => undefined, { pageSize: PAGE })).toThrow(ArgumentError);
    expect(() => new RamDumpComparer([{ ...ranges[0]!, length: 5 * PAGE }], (id) => store.hashesOf(id), { pageSize: PAGE })).toThrow(/runs past/);
    // Never-written pages are zero pages: an all-zero dump matches a fresh store.
    const zero = new RamDumpComparer(ranges, (id) => store.hashesOf(id), { pageSize: PAGE });
    zero.push(Buffer.alloc(4 * PAGE));
    expect(zero.finish()).toEqual({ pagesCompared: 4, mismatches: 0, first: [] });
  });
});
