import { describe, expect, it } from 'vitest';
import { ramCodec } from '../../src/ram/codec.js';
import type { RamRecord } from '../../src/ram/records.js';
import { ByteReader, NEED_MORE } from '../../src/stream/reader.js';
import { F, compressedBytes, delta, eosBytes, memSizeBytes, pageBytes, pattern, word, xbzrleBytes, zeroBytes, zlibPage } from '../helpers/ram-bytes.js';
import { context, ctx, encode, feed, prng, shape, splitAt } from './feed.js';

/** Decodes `bytes` in one piece, checks it was consumed whole, and that it re-encodes exactly. */
function roundTrip(bytes: Buffer, options: Parameters<typeof feed>[1] = {}): RamRecord[] {
  const { records, leftover } = feed([bytes], options);
  expect(leftover).toBe(0);
  expect(encode(records).toString('hex')).toBe(bytes.toString('hex'));
  expect(records.reduce((sum, r) => sum + ramCodec.encodedLength(r), 0)).toBe(bytes.length);
  return records;
}

const MB = 1 << 20;
const SETUP = memSizeBytes([
  { idstr: 'pc.ram', length: 128 * MB },
  { idstr: '/rom@etc/acpi/tables', length: 128 * 1024 },
  { idstr: '0000:00:02.0/vga.vram', length: 16 * MB },
]);
const P1 = pattern(1);
const P2 = pattern(2);

describe('ramCodec', () => {
  it('is the "ram" section codec', () => {
    expect(ramCodec.idstr).toBe('ram');
    expect([...ramCodec.recordTypes].sort()).toEqual(['ram-compressed', 'ram-eos', 'ram-hook', 'ram-mem-size', 'ram-multifd-flush', 'ram-page', 'ram-xbzrle', 'ram-zero'].sort());
  });

  it('decodes and re-encodes every record kind', () => {
    const d = delta([
      [0, Buffer.from([1, 2, 3])],
      [200, Buffer.from([9])],
    ]);
    const z = zlibPage(P2);
    const bytes = Buffer.concat([
      SETUP,
      pageBytes('pc.ram', 0x1000, P1),
      pageBytes(null, 0x2000, P2),
      zeroBytes(null, 0x3000),
      zeroBytes('0000:00:02.0/vga.vram', 0, 0xab),
      xbzrleBytes('pc.ram', 0x1000, d),
      xbzrleBytes(null, 0x5000, Buffer.alloc(0)),
      compressedBytes(null, 0x6000, z),
      compressedBytes('/rom@etc/acpi/tables', 0x1f000, z),
      word(0, F.MULTIFD_FLUSH),
      word(0, F.HOOK),
      eosBytes(),
    ]);
    const records = roundTrip(bytes);
    expect(shape(records)).toEqual([
      {
        type: 'ram-mem-size',
        totalBytes: 144 * MB + 128 * 1024,
        blocks: [
          { idstr: 'pc.ram', usedLength: 128 * MB },
          { idstr: '/rom@etc/acpi/tables', usedLength: 128 * 1024 },
          { idstr: '0000:00:02.0/vga.vram', usedLength: 16 * MB },
        ],
      },
      { type: 'ram-page', block: 'pc.ram', continued: false, offset: 0x1000, data: P1.toString('hex') },
      { type: 'ram-page', block: 'pc.ram', continued: true, offset: 0x2000, data: P2.toString('hex') },
      { type: 'ram-zero', block: 'pc.ram', continued: true, offset: 0x3000, fill: 0 },
      { type: 'ram-zero', block: '0000:00:02.0/vga.vram', continued: false, offset: 0, fill: 0xab },
      { type: 'ram-xbzrle', block: 'pc.ram', continued: false, offset: 0x1000, encoding: 1, data: d.toString('hex') },
      { type: 'ram-xbzrle', block: 'pc.ram', continued: true, offset: 0x5000, encoding: 1, data: '' },
      { type: 'ram-compressed', block: 'pc.ram', continued: true, offset: 0x6000, data: z.toString('hex') },
      { type: 'ram-compressed', block: '/rom@etc/acpi/tables', continued: false, offset: 0x1f000, data: z.toString('hex') },
      { type: 'ram-multifd-flush' },
      { type: 'ram-hook', flags: F.HOOK, addr: 0 },
      { type: 'ram-eos' },
    ]);
  });

  it('hands out page payloads as views of the input', () => {
    const input = Buffer.concat([pageBytes('pc.ram', 0, P1), eosBytes()]);
    const [page] = feed([input]).records;
    expect(page?.type).toBe('ram-page');
    if (page?.type !== 'ram-page') return;
    expect(page.data.buffer).toBe(input.buffer);
  });

  it('ends the body at EOS, and at a hook word with EOS', () => {
    const { records, ends } = feed([Buffer.concat([zeroBytes('pc.ram', 0), eosBytes(), word(0, F.HOOK | F.EOS), word(0, F.HOOK)])]);
    expect(records.map((r) => r.type)).toEqual(['ram-zero', 'ram-eos', 'ram-hook', 'ram-hook']);
    expect(ends).toEqual([1, 2]);
  });

  it('reads the block name of a hook word with page flags, as ram_load_precopy does', () => {
    const bytes = Buffer.concat([SETUP, word(0x4000, F.HOOK | F.PAGE), Buffer.from([6]), Buffer.from('pc.ram'), word(0x5000, F.HOOK | F.ZERO | F.CONTINUE), zeroBytes(null, 0x6000)]);
    const records = roundTrip(bytes);
    expect(records.slice(1)).toEqual([
      { type: 'ram-hook', flags: F.HOOK | F.PAGE, addr: 0x4000, block: 'pc.ram' },
      { type: 'ram-hook', flags: F.HOOK | F.ZERO | F.CONTINUE, addr: 0x5000, block: 'pc.ram' },
      { type: 'ram-zero', block: 'pc.ram', continued: true, offset: 0x6000, fill: 0 },
    ]);
  });

  it('keeps the stray bits QEMU ignores on EOS, MEM_SIZE and MULTIFD_FLUSH', () => {
    const bytes = Buffer.concat([
      memSizeBytes([{ idstr: 'pc.ram', length: 8192 }], undefined, F.MEM_SIZE | F.CONTINUE),
      eosBytes(F.CONTINUE),
      eosBytes(0x7000),
      eosBytes(0x1_0000_0000n | BigInt(F.CONTINUE)),
      word(0x3000, F.MULTIFD_FLUSH | F.CONTINUE),
    ]);
    const records = roundTrip(bytes);
    expect(records).toEqual([
      { type: 'ram-mem-size', totalBytes: 8192, blocks: [{ idstr: 'pc.ram', usedLength: 8192 }], strayContinue: true },
      { type: 'ram-eos', strayContinue: true },
      { type: 'ram-eos', strayAddr: 0x7000 },
      { type: 'ram-eos', strayAddr: 0x1_0000_0000, strayContinue: true },
      { type: 'ram-multifd-flush', strayAddr: 0x3000, strayContinue: true },
    ]);
  });

  it('resolves names as C strings and keeps the bytes sent', () => {
    const sent = 'pc.ram\0junk';
    const bytes = Buffer.concat([memSizeBytes([{ idstr: sent, length: 8192 }]), pageBytes(sent, 0x1000, P1), zeroBytes(null, 0)]);
    const records = roundTrip(bytes);
    expect(records[0]).toEqual({
      type: 'ram-mem-size',
      totalBytes: 8192,
      blocks: [{ idstr: 'pc.ram', usedLength: 8192, wireName: sent }],
    });
    expect(records[1]).toMatchObject({ block: 'pc.ram', wireName: sent, continued: false });
    expect(records[2]).toEqual({ type: 'ram-zero', block: 'pc.ram', continued: true, offset: 0, fill: 0 });
  });

  it('accepts names before any MEM_SIZE without checking offsets', () => {
    const records = roundTrip(Buffer.concat([zeroBytes('mem1', 0x7fff_f000), zeroBytes(null, 0)]));
    expect(records.map((r) => 'block' in r && r.block)).toEqual(['mem1', 'mem1']);
  });

  it('works with other target page sizes', () => {
    const big = 65536;
    const page = pattern(7, big);
    const bytes = Buffer.concat([memSizeBytes([{ idstr: 'ppc.ram', length: 4 * big }]), pageBytes('ppc.ram', 3 * big, page), word(big, 0x400 | F.HOOK), eosBytes()]);
    const records = roundTrip(bytes, { ctx: context({ pageSize: big }) });
    expect(records[1]).toMatchObject({ offset: 3 * big, continued: false });
    expect(records[2]).toEqual({ type: 'ram-hook', flags: 0x400 | F.HOOK, addr: big });
  });
});

describe('MEM_SIZE', () => {
  it('reads several blocks, including a zero-length one', () => {
    const blocks = [
      { idstr: 'pc.ram', length: 512 * MB },
      { idstr: 'pc.bios', length: 256 * 1024 },
      { idstr: 'empty', length: 0 },
      { idstr: 'mem1', length: 4096 },
    ];
    const [record] = roundTrip(Buffer.concat([memSizeBytes(blocks), eosBytes()]));
    expect(record).toEqual({
      type: 'ram-mem-size',
      totalBytes: 512 * MB + 256 * 1024 + 4096,
      blocks: blocks.map((b) => ({ idstr: b.idstr, usedLength: b.length })),
    });
  });

  it('reads an empty list', () => {
    expect(roundTrip(Buffer.concat([memSizeBytes([]), eosBytes()]))).toEqual([{ type: 'ram-mem-size', totalBytes: 0, blocks: [] }, { type: 'ram-eos' }]);
  });

  it('reads mr_addr with x-ignore-shared', () => {
    const shared = context({ capabilities: ['x-ignore-shared'] });
    const blocks = [
      { idstr: 'pc.ram', length: 512 * MB, mrAddr: 0 },
      { idstr: 'mem1', length: 1 << 30, mrAddr: 0x1_0000_0000 },
      { idstr: 'vga.vram', length: 16 * MB, mrAddr: 0xfd00_0000 },
    ];
    const [record] = roundTrip(Buffer.concat([memSizeBytes(blocks), eosBytes()]), { ctx: shared });
    expect(record).toMatchObject({
      blocks: blocks.map((b) => ({ idstr: b.idstr, usedLength: b.length, mrAddr: b.mrAddr })),
    });
  });

  it('detects page_size after used_length (postcopy with huge pages)', () => {
    const blocks = [
      { idstr: 'pc.ram', length: 1 << 30, pageSize: 2 * MB },
      { idstr: 'pc.bios', length: 256 * 1024 },
      { idstr: 'mem1', length: 1 << 30, pageSize: 1 << 30 },
    ];
    const [record] = roundTrip(Buffer.concat([memSizeBytes(blocks), eosBytes()]));
    expect(record).toEqual({
      type: 'ram-mem-size',
      totalBytes: 2 * 2 ** 30 + 256 * 1024,
      blocks: [
        { idstr: 'pc.ram', usedLength: 1 << 30, pageSize: 2 * MB },
        { idstr: 'pc.bios', usedLength: 256 * 1024 },
        { idstr: 'mem1', usedLength: 1 << 30, pageSize: 1 << 30 },
      ],
    });
  });

  it('tells page_size from an mr_addr that looks like one, with x-ignore-shared', () => {
    const shared = context({ capabilities: ['x-ignore-shared'] });
    const G = 1 << 30;
    const cases = [
      // mr_addr 1 GiB, no page size; then another block, then the last one.
      [
        { idstr: 'a', length: 4096, mrAddr: G },
        { idstr: 'b', length: 4096, pageSize: 2 * MB, mrAddr: G },
        { idstr: 'c', length: 4096, mrAddr: 0x4000 },
      ],
      [
        { idstr: 'a', length: 4096, pageSize: 16384, mrAddr: 0 },
        { idstr: 'b', length: 4096, pageSize: G, mrAddr: 8192 },
      ],
      [{ idstr: 'last', length: 4096, pageSize: 2 * MB, mrAddr: G }],
      [{ idstr: 'last', length: 4096, mrAddr: 2 * MB }],
    ];
    for (const blocks of cases) {
      const [record] = roundTrip(Buffer.concat([memSizeBytes(blocks), eosBytes()]), { ctx: shared });
      expect(record).toEqual({
        type: 'ram-mem-size',
        totalBytes: blocks.reduce((s, b) => s + b.length, 0),
        blocks: blocks.map(({ idstr, length, pageSize, mrAddr }) => (pageSize === undefined ? { idstr, usedLength: length, mrAddr } : { idstr, usedLength: length, pageSize, mrAddr })),
      });
    }
  });

  it('waits for the look-ahead bytes before deciding', () => {
    const bytes = Buffer.concat([memSizeBytes([{ idstr: 'pc.ram', length: 8192 }]), eosBytes()]);
    // Without the EOS word the decoder cannot tell whether a page_size follows.
    expect(feed([bytes.subarray(0, bytes.length - 8)]).records).toEqual([]);
    expect(feed([bytes]).records).toHaveLength(2);
  });

  it('lets a later MEM_SIZE resize a block', () => {
    const bytes = Buffer.concat([memSizeBytes([{ idstr: 'pc.ram', length: 8192 }]), zeroBytes('pc.ram', 0x1000), memSizeBytes([{ idstr: 'pc.ram', length: 16384 }]), zeroBytes(null, 0x3000)]);
    expect(roundTrip(bytes)).toHaveLength(4);
  });
});

describe('CONTINUE tracking', () => {
  it('follows the last named block across records and MEM_SIZE', () => {
    const bytes = Buffer.concat([
      SETUP,
      zeroBytes('0000:00:02.0/vga.vram', 0),
      zeroBytes(null, 0x1000),
      pageBytes('pc.ram', 0, P1),
      eosBytes(),
      zeroBytes(null, 0x2000),
      memSizeBytes([{ idstr: 'pc.ram', length: 128 * MB }]),
      xbzrleBytes(null, 0, delta([[1, Buffer.from([5])]])),
    ]);
    const records = roundTrip(bytes);
    expect(records.map((r) => ('continued' in r ? `${r.block}${r.continued ? '+' : ''}` : r.type))).toEqual([
      'ram-mem-size',
      '0000:00:02.0/vga.vram',
      '0000:00:02.0/vga.vram+',
      'pc.ram',
      'ram-eos',
      'pc.ram+',
      'ram-mem-size',
      'pc.ram+',
    ]);
  });

  it('keeps the previous block when a named record is cut short', () => {
    const decoder = ramCodec.newDecoder();
    feed([Buffer.concat([SETUP, zeroBytes('pc.ram', 0)])], { decoder });
    // The vga.vram record is incomplete: the decoder must not switch blocks.
    const cut = feed([pageBytes('0000:00:02.0/vga.vram', 0, P1).subarray(0, 40)], { decoder });
    expect(cut.records).toEqual([]);
    const next = feed([zeroBytes(null, 0x1000)], { decoder });
    expect(next.records).toEqual([{ type: 'ram-zero', block: 'pc.ram', continued: true, offset: 0x1000, fill: 0 }]);
  });

  it('keeps the block list when a MEM_SIZE is cut short', () => {
    const decoder = ramCodec.newDecoder();
    feed(
      [
        memSizeBytes([
          { idstr: 'pc.ram', length: 8192 },
          { idstr: 'mem1', length: 4096 },
        ]).subarray(0, 30),
      ],
      {
        decoder,
      },
    );
    // No list was committed, so any name is still accepted.
    expect(feed([zeroBytes('other', 0)], { decoder }).records).toHaveLength(1);
  });

  it('gives each decoder its own CONTINUE block', () => {
    feed([zeroBytes('pc.ram', 0)]);
    expect(() => feed([zeroBytes(null, 0)])).toThrow(/no RAMBlock has been named/);
  });
});

describe('chunked input', () => {
  const d = delta([
    [10, Buffer.from([1, 2])],
    [0x100, pattern(3).subarray(0, 200)],
  ]);
  const small = Buffer.concat([
    memSizeBytes([
      { idstr: 'pc.ram', length: 64 * 1024, pageSize: 2 * MB },
      { idstr: 'mem1', length: 8192 },
    ]),
    zeroBytes('pc.ram', 0),
    pageBytes(null, 0x1000, P1),
    xbzrleBytes(null, 0x1000, d),
    compressedBytes('mem1', 0x1000, zlibPage(P2)),
    zeroBytes(null, 0, 7),
    word(0, F.HOOK | F.PAGE),
    Buffer.from([6]),
    Buffer.from('pc.ram'),
    eosBytes(),
  ]);
  const whole = feed([small]).records;

  it('decodes the reference input whole', () => {
    expect(whole.map((r) => r.type)).toEqual(['ram-mem-size', 'ram-zero', 'ram-page', 'ram-xbzrle', 'ram-compressed', 'ram-zero', 'ram-hook', 'ram-eos']);
    expect(encode(whole).equals(small)).toBe(true);
  });

  it('gives the same records at every split point', () => {
    for (let cut = 0; cut <= small.length; cut++) {
      const { records, leftover } = feed(splitAt(small, [cut]));
      expect(leftover).toBe(0);
      expect(shape(records)).toEqual(shape(whole));
    }
  });

  it('gives the same records one byte at a time', () => {
    const bytes = [...small].map((b) => Buffer.from([b]));
    expect(shape(feed(bytes).records)).toEqual(shape(whole));
  });

  it('gives the same records for random chunkings', () => {
    const random = prng(42);
    for (let round = 0; round < 200; round++) {
      const cuts = new Set<number>();
      const n = 1 + Math.floor(random() * 12);
      for (let i = 0; i < n; i++) cuts.add(Math.floor(random() * small.length));
      const { records } = feed(
        splitAt(
          small,
          [...cuts].sort((a, b) => a - b),
        ),
      );
      expect(shape(records)).toEqual(shape(whole));
    }
  });

  it('leaves a cut record unread', () => {
    const { records, leftover } = feed([small.subarray(0, small.length - 3)]);
    expect(records).toHaveLength(whole.length - 1);
    expect(leftover).toBe(5);
  });

  it('re-encodes in chunks of any writer size', () => {
    for (const size of [64, 4096, 4097, 1 << 20]) expect(encode(whole, size).equals(small)).toBe(true);
  });

  it('returns NEED_MORE, not an error, for every proper prefix', () => {
    for (let end = 0; end < 8; end++) {
      const reader = new ByteReader();
      reader.push(small.subarray(0, end));
      reader.mark();
      let error: unknown;
      try {
        ramCodec.newDecoder().read(reader, ctx);
      } catch (e) {
        error = e;
      }
      expect(error).toBe(NEED_MORE);
    }
  });
});
