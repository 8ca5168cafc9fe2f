import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RamImage } from '../../src/ram/image.js';
import { MemoryPageStore } from '../../src/ram/page-store.js';
import type { RamRecord } from '../../src/ram/records.js';
import { SparseFileStore, blockFileName } from '../../src/ram/sparse-file-store.js';
import { XbzrleError } from '../../src/ram/index.js';
import { ArgumentError } from '../../src/stream/errors.js';
import { PAGE, compressedBytes, delta, eosBytes, memSizeBytes, pageBytes, pattern, xbzrleBytes, zeroBytes, zlibPage } from '../helpers/ram-bytes.js';
import { feed } from './feed.js';

const KB = 1024;
const memSize = (blocks: [string, number][]): RamRecord => ({
  type: 'ram-mem-size',
  totalBytes: blocks.reduce((s, [, n]) => s + n, 0),
  blocks: blocks.map(([idstr, usedLength]) => ({ idstr, usedLength })),
});
const page = (block: string, offset: number, data: Buffer): RamRecord => ({
  type: 'ram-page',
  block,
  continued: false,
  offset,
  data,
});
const zero = (block: string, offset: number, fill = 0): RamRecord => ({
  type: 'ram-zero',
  block,
  continued: true,
  offset,
  fill,
});

/** The expected memory, kept the naive way. */
class Model {
  readonly blocks = new Map<string, Buffer>();
  declare(idstr: string, length: number): void {
    this.blocks.set(idstr, Buffer.alloc(length));
  }
  put(idstr: string, offset: number, data: Buffer): void {
    data.copy(this.blocks.get(idstr)!, offset);
  }
}

describe('RamImage with a MemoryPageStore', () => {
  it('applies pages, zero pages, fills, XBZRLE and compressed pages in order', () => {
    const store = new MemoryPageStore();
    const image = new RamImage(store, { pageSize: PAGE });
    const base = pattern(1);
    const d = delta([
      [10, Buffer.from([1, 2, 3])],
      [100, Buffer.alloc(50, 0xee)],
    ]);
    const expected = Buffer.from(base);
    Buffer.from([1, 2, 3]).copy(expected, 10);
    expected.fill(0xee, 113, 163);

    const records = feed([
      Buffer.concat([
        memSizeBytes([
          { idstr: 'pc.ram', length: 64 * KB },
          { idstr: '/rom@etc/acpi/tables', length: 8 * KB },
        ]),
        pageBytes('pc.ram', 0, base), // page 0
        pageBytes(null, PAGE, pattern(2)), // page 1, zeroed next
        zeroBytes(null, PAGE),
        zeroBytes(null, 2 * PAGE), // never written: skipped
        zeroBytes(null, 3 * PAGE, 0x5a),
        xbzrleBytes(null, 0, d), // on page 0
        xbzrleBytes(null, 4 * PAGE, delta([[1, Buffer.from([9])]])), // never sent: base is zero
        compressedBytes('/rom@etc/acpi/tables', PAGE, zlibPage(pattern(3))),
        eosBytes(),
      ]),
    ]).records;
    for (const r of records) image.apply(r);
    image.apply({ type: 'section-footer' });
    image.apply({ type: 'block-data' });

    const [ram, rom] = image.finish();
    expect(ram?.idstr).toBe('pc.ram');
    expect(ram?.usedLength).toBe(64 * KB);
    const mem = ram!.data;
    expect(mem.subarray(0, PAGE).equals(expected)).toBe(true);
    expect(mem.subarray(PAGE, 3 * PAGE).equals(Buffer.alloc(2 * PAGE))).toBe(true);
    expect(mem.subarray(3 * PAGE, 4 * PAGE).equals(Buffer.alloc(PAGE, 0x5a))).toBe(true);
    const p4 = Buffer.alloc(PAGE);
    p4[1] = 9;
    expect(mem.subarray(4 * PAGE, 5 * PAGE).equals(p4)).toBe(true);
    expect(mem.subarray(5 * PAGE).equals(Buffer.alloc(11 * PAGE))).toBe(true);
    expect(rom?.data.subarray(PAGE).equals(pattern(3))).toBe(true);
    expect(rom?.data.subarray(0, PAGE).equals(Buffer.alloc(PAGE))).toBe(true);
    expect(image.stats).toEqual({ pages: 2, zeroPages: 3, zeroPagesSkipped: 1, zeroPayloadsSkipped: 0, xbzrlePages: 2, compressedPages: 1 });
  });

  it('matches a naive model over random record sequences', () => {
    let seed = 1;
    const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    for (let round = 0; round < 20; round++) {
      const store = new MemoryPageStore();
      const image = new RamImage(store, { pageSize: PAGE });
      const model = new Model();
      const blocks: [string, number][] = [
        ['a', 16 * PAGE],
        ['b', 3 * PAGE],
      ];
      image.apply(memSize(blocks));
      for (const [idstr, n] of blocks) model.declare(idstr, n);
      for (let i = 0; i < 200; i++) {
        const [idstr, length] = blocks[Math.floor(random() * 2)]!;
        const offset = Math.floor(random() * (length / PAGE)) * PAGE;
        const kind = Math.floor(random() * 3);
        if (kind === 0) {
          const data = pattern(Math.floor(random() * 1000));
          image.apply(page(idstr, offset, data));
          model.put(idstr, offset, data);
        } else if (kind === 1) {
          const fill = random() < 0.8 ? 0 : 7;
          image.apply(zero(idstr, offset, fill));
          model.put(idstr, offset, Buffer.alloc(PAGE, fill));
        } else {
          const d = delta([[Math.floor(random() * 100), Buffer.alloc(1 + Math.floor(random() * 50), i)]]);
          image.apply({ type: 'ram-xbzrle', block: idstr, continued: true, offset, encoding: 1, data: d });
          const current = Buffer.from(model.blocks.get(idstr)!.subarray(offset, offset + PAGE));
          const [[zrun, bytes]] = [[d[0]!, d.subarray(2)]] as const;
          bytes.copy(current, zrun);
          model.put(idstr, offset, current);
        }
      }
      for (const result of image.finish()) expect(result.data.equals(model.blocks.get(result.idstr)!)).toBe(true);
    }
  });

  it('resizes blocks named again by MEM_SIZE', () => {
    const store = new MemoryPageStore();
    const image = new RamImage(store, { pageSize: PAGE });
    image.apply(memSize([['pc.ram', 16 * PAGE]]));
    image.apply(page('pc.ram', 15 * PAGE, pattern(1)));
    image.apply(page('pc.ram', 2 * PAGE, pattern(2)));
    image.apply(memSize([['pc.ram', 3 * PAGE]]));
    expect(() => image.apply(zero('pc.ram', 15 * PAGE))).toThrow(ArgumentError);
    image.apply(memSize([['pc.ram', 16 * PAGE]]));
    // Page 15 went with the shrink: a ZERO for it is skipped, and it reads as zero.
    image.apply(zero('pc.ram', 15 * PAGE));
    expect(image.stats.zeroPagesSkipped).toBe(1);
    const [ram] = image.finish();
    expect(ram?.data.subarray(2 * PAGE, 3 * PAGE).equals(pattern(2))).toBe(true);
    expect(ram?.data.subarray(15 * PAGE).equals(Buffer.alloc(PAGE))).toBe(true);
  });

  it('clips the last page of a block that is not page-aligned', () => {
    const store = new MemoryPageStore();
    const image = new RamImage(store, { pageSize: PAGE });
    image.apply(memSize([['odd', PAGE + 100]]));
    image.apply(page('odd', PAGE, pattern(4)));
    image.apply({ type: 'ram-xbzrle', block: 'odd', continued: true, offset: PAGE, encoding: 1, data: delta([[0, Buffer.from([1])]]) });
    const [odd] = image.finish();
    expect(odd?.data.length).toBe(PAGE + 100);
    const expected = Buffer.from(pattern(4).subarray(0, 100));
    expected[0] = 1;
    expect(odd?.data.subarray(PAGE).equals(expected)).toBe(true);
  });

  it('rejects records it cannot place', () => {
    const image = new RamImage(new MemoryPageStore(), { pageSize: PAGE });
    expect(() => image.apply(page('pc.ram', 0, pattern(1)))).toThrow(/no MEM_SIZE record declared/);
    image.apply(memSize([['pc.ram', 4 * PAGE]]));
    expect(() => image.apply(page('pc.ram', 4 * PAGE, pattern(1)))).toThrow(ArgumentError);
    expect(() => image.apply(page('pc.ram', 100, pattern(1)))).toThrow(ArgumentError);
    expect(() => image.apply(page('pc.ram', 0, Buffer.alloc(100)))).toThrow(ArgumentError);
    expect(() => image.apply({ type: 'ram-xbzrle', block: 'pc.ram', continued: true, offset: 0, encoding: 1, data: Buffer.from([0]) })).toThrow(XbzrleError);
    expect(() => new RamImage(new MemoryPageStore(), { pageSize: 1000 })).toThrow(ArgumentError);
  });
});

describe('SparseFileStore', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const dir = mkdtempSync(join(tmpdir(), 'migstream-ram-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('names files after the RAMBlock ids', () => {
    expect(blockFileName('pc.ram')).toBe('pc.ram');
    expect(blockFileName('0000:00:02.0/vga.vram')).toBe('0000:00:02.0_vga.vram');
    expect(blockFileName('/rom@etc/acpi/tables')).toBe('rom@etc_acpi_tables');
    expect(blockFileName('mem1')).toBe('mem1');
    expect(blockFileName('..')).toBe('block_..');
    expect(blockFileName('/')).toBe('block_');
  });

  it('writes one sparse file per block and an index', () => {
    const dir = join(tmp(), 'out');
    const store = new SparseFileStore(dir);
    const image = new RamImage(store, { pageSize: PAGE });
    const big = 256 * 1024 * 1024;
    image.apply(
      memSize([
        ['pc.ram', big],
        ['0000:00:02.0/vga.vram', 16 * PAGE],
        ['/rom@etc/acpi/tables', 32 * PAGE],
        ['mem1', 4 * PAGE],
        ['a/b', PAGE],
        ['a_b', PAGE],
        ['index.json', PAGE],
      ]),
    );
    image.apply(page('pc.ram', big - PAGE, pattern(1)));
    image.apply(page('0000:00:02.0/vga.vram', 0, pattern(2)));
    image.apply(zero('mem1', PAGE, 0x11));
    const results = image.finish();
    expect(results.map((r) => r.file)).toEqual(['pc.ram', '0000:00:02.0_vga.vram', 'rom@etc_acpi_tables', 'mem1', 'a_b', 'a_b~2', 'index.json~2']);
    for (const r of results) expect(r.path).toBe(join(dir, r.file));
    expect(readdirSync(dir).sort()).toEqual([...results.map((r) => r.file), 'index.json'].sort());
    const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as unknown;
    expect(index).toEqual(results.map((r) => ({ idstr: r.idstr, file: r.file, length: r.usedLength })));

    const ram = statSync(join(dir, 'pc.ram'));
    expect(ram.size).toBe(big);
    expect(ram.blocks * 512).toBeLessThan(1024 * 1024); // sparse
    const ramFile = readFileSync(join(dir, 'pc.ram'));
    expect(ramFile.subarray(big - PAGE).equals(pattern(1))).toBe(true);
    expect(ramFile.subarray(0, 1024 * 1024).equals(Buffer.alloc(1024 * 1024))).toBe(true);
    expect(readFileSync(join(dir, 'mem1')).equals(Buffer.concat([Buffer.alloc(PAGE), Buffer.alloc(PAGE, 0x11), Buffer.alloc(2 * PAGE)]))).toBe(true);
    expect(statSync(join(dir, 'rom@etc_acpi_tables')).size).toBe(32 * PAGE);
  });

  it('coalesces contiguous page writes', () => {
    const store = new SparseFileStore(tmp(), { coalesceBytes: 16 * PAGE });
    const image = new RamImage(store, { pageSize: PAGE });
    image.apply(
      memSize([
        ['pc.ram', 64 * PAGE],
        ['mem1', 8 * PAGE],
      ]),
    );
    for (let i = 0; i < 40; i++) image.apply(page('pc.ram', i * PAGE, pattern(i)));
    image.apply(page('mem1', 0, pattern(100)));
    image.apply(page('mem1', 2 * PAGE, pattern(101)));
    const [ram, mem1] = image.finish();
    // 40 pages in runs of 16 (16 + 16 + 8), then mem1's two non-contiguous pages.
    expect(store.stats.writeCalls).toBe(5);
    expect(store.stats.bytesWritten).toBe(42 * PAGE);
    const data = readFileSync(ram!.path);
    for (let i = 0; i < 40; i++) expect(data.subarray(i * PAGE, (i + 1) * PAGE).equals(pattern(i))).toBe(true);
    expect(
      readFileSync(mem1!.path)
        .subarray(2 * PAGE, 3 * PAGE)
        .equals(pattern(101)),
    ).toBe(true);
  });

  it('writes zeros over data, applies XBZRLE to pages read back, and skips zeros never written', () => {
    const store = new SparseFileStore(tmp());
    const image = new RamImage(store, { pageSize: PAGE });
    image.apply(memSize([['pc.ram', 8 * PAGE]]));
    image.apply(page('pc.ram', 0, pattern(1)));
    image.apply(page('pc.ram', PAGE, pattern(2)));
    // Still in the coalescing buffer: the zero page and the delta must see it.
    image.apply(zero('pc.ram', 0));
    image.apply({ type: 'ram-xbzrle', block: 'pc.ram', continued: true, offset: PAGE, encoding: 1, data: delta([[4, Buffer.from([0xaa, 0xbb])]]) });
    image.apply(zero('pc.ram', 5 * PAGE));
    const [ram] = image.finish();
    const data = readFileSync(ram!.path);
    expect(data.subarray(0, PAGE).equals(Buffer.alloc(PAGE))).toBe(true);
    const p1 = Buffer.from(pattern(2));
    p1[4] = 0xaa;
    p1[5] = 0xbb;
    expect(data.subarray(PAGE, 2 * PAGE).equals(p1)).toBe(true);
    expect(image.stats.zeroPagesSkipped).toBe(1);
    expect(data.length).toBe(8 * PAGE);
  });

  it('refuses work after finish or close', () => {
    const store = new SparseFileStore(tmp());
    store.declareBlock('pc.ram', PAGE);
    store.write('pc.ram', 0, pattern(1));
    store.close();
    expect(() => store.write('pc.ram', 0, pattern(1))).toThrow(ArgumentError);
    expect(() => store.finish()).toThrow(ArgumentError);
  });
});
