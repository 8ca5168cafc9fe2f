import { describe, expect, it } from 'vitest';
import { ramCodec } from '../../src/ram/codec.js';
import { XbzrleError } from '../../src/ram/errors.js';
import type { RamRecord } from '../../src/ram/records.js';
import { BadMagicError, DecodeError, EncodeError, FramingError, LimitExceededError, UnknownFlagError } from '../../src/stream/errors.js';
import { ByteWriter } from '../../src/stream/writer.js';
import { F, PAGE, be16, be32, be64, compressedBytes, eosBytes, header, memSizeBytes, name, pageBytes, pattern, word, xbzrleBytes, zeroBytes } from '../helpers/ram-bytes.js';
import { context, feed, thrown } from './feed.js';

const SETUP = memSizeBytes([
  { idstr: 'pc.ram', length: 1 << 20 },
  { idstr: 'mem1', length: 8192 },
]);

/** Decodes `prefix` then `bad`, expects a DecodeError at the start of `bad`. */
function failAt<T extends DecodeError>(kind: abstract new (...args: never[]) => T, bad: Buffer, prefix: Buffer = SETUP, ctx = context()): T {
  const error = thrown(() => feed([Buffer.concat([prefix, bad])], { ctx }));
  expect(error).toBeInstanceOf(kind);
  const decodeError = error as T;
  expect(decodeError.offset).toBe(prefix.length);
  expect(decodeError.section).toEqual({ id: 2, name: 'ram' });
  expect(decodeError.message).toContain(`offset ${prefix.length} (0x${prefix.length.toString(16)})`);
  return decodeError;
}

describe('flags ram_load_precopy rejects', () => {
  it('rejects unknown flags and combinations', () => {
    const words = [
      0, // no flag at all
      F.FULL, // obsolete
      F.CONTINUE, // CONTINUE alone
      0x400,
      0x800,
      F.EOS | F.ZERO,
      F.MEM_SIZE | F.EOS,
      F.MULTIFD_FLUSH | F.EOS,
      F.XBZRLE | F.COMPRESS_PAGE,
    ];
    for (const flags of words) {
      const error = failAt(UnknownFlagError, word(0x1000, flags));
      expect(error.actual).toBe(flags);
      expect(error.code).toBe('ERR_UNKNOWN_FLAG');
    }
  });

  it('rejects two page kinds at once even with a valid name', () => {
    const error = failAt(UnknownFlagError, Buffer.concat([word(0, F.ZERO | F.PAGE), name('pc.ram'), Buffer.alloc(PAGE)]));
    expect(error.message).toMatch(/ZERO\|PAGE/);
  });

  it('rejects words that are not safe integers', () => {
    failAt(LimitExceededError, word(0x20_0000_0000_0000n, F.EOS));
    failAt(LimitExceededError, word(0xffff_ffff_ffff_f000n, F.PAGE));
    // 2^53 - 4096 is the largest offset; it is past any block, so try it before MEM_SIZE.
    const ok = feed([zeroBytes('x', 0x1f_ffff_ffff_f000)]).records[0];
    expect(ok).toMatchObject({ offset: 2 ** 53 - 4096 });
  });

  it('rejects a used_length or mr_addr that is not a safe integer', () => {
    const big = Buffer.concat([word(0x1000, F.MEM_SIZE), name('pc.ram'), be64(0x20_0000_0000_0000n)]);
    failAt(LimitExceededError, big, Buffer.alloc(0));
    const shared = context({ capabilities: ['x-ignore-shared'] });
    const mr = memSizeBytes([{ idstr: 'pc.ram', length: 4096, mrAddr: 0 }]);
    mr.writeUInt32BE(0xffff_ffff, mr.length - 8);
    failAt(LimitExceededError, mr, Buffer.alloc(0), shared);
  });
});

describe('blocks ram_block_from_stream rejects', () => {
  it('rejects CONTINUE before any block was named', () => {
    for (const bytes of [zeroBytes(null, 0), pageBytes(null, 0, pattern(1)), word(0, F.HOOK | F.PAGE | F.CONTINUE)]) {
      failAt(FramingError, bytes);
      failAt(FramingError, bytes, Buffer.alloc(0));
    }
  });

  it('rejects a block name not in the MEM_SIZE list', () => {
    const error = failAt(FramingError, zeroBytes('pc.rom', 0));
    expect(error.message).toContain('"pc.rom"');
    expect(error.expected).toContain('pc.ram, mem1');
  });

  it('rejects an empty block name, before and after MEM_SIZE', () => {
    failAt(FramingError, zeroBytes('', 0));
    failAt(FramingError, zeroBytes('', 0), Buffer.alloc(0));
    failAt(FramingError, zeroBytes('\0pc.ram', 0));
  });

  it('rejects an offset past used_length (host_from_ram_block_offset)', () => {
    const error = failAt(LimitExceededError, zeroBytes('mem1', 8192));
    expect(error.message).toMatch(/past the end of RAMBlock "mem1"/);
    failAt(LimitExceededError, zeroBytes(null, 0x10000), Buffer.concat([SETUP, zeroBytes('mem1', 4096)]));
    expect(feed([Buffer.concat([SETUP, zeroBytes('mem1', 4096)])]).records).toHaveLength(2);
  });

  it('checks offsets against the size of the latest MEM_SIZE', () => {
    const resized = Buffer.concat([SETUP, zeroBytes('mem1', 0), memSizeBytes([{ idstr: 'mem1', length: 4096 }])]);
    failAt(LimitExceededError, zeroBytes(null, 4096), resized);
  });
});

describe('MEM_SIZE lists ram_load_precopy rejects', () => {
  it('rejects lengths that overshoot the total', () => {
    const bytes = memSizeBytes(
      [
        { idstr: 'pc.ram', length: 8192 },
        { idstr: 'mem1', length: 8192 },
      ],
      12288,
    );
    const error = failAt(FramingError, bytes, Buffer.alloc(0));
    expect(error.message).toMatch(/exceeds the 4096 bytes left/);
  });

  it('rejects an empty block name', () => {
    failAt(FramingError, memSizeBytes([{ idstr: '', length: 4096 }]), Buffer.alloc(0));
  });
});

describe('payloads ram_load_precopy rejects', () => {
  it('rejects a COMPRESS_PAGE length above compressBound(4096) = 4110', () => {
    const ok = Buffer.concat([header('pc.ram', 0, F.COMPRESS_PAGE), be32(4110), Buffer.alloc(4110)]);
    expect(feed([Buffer.concat([SETUP, ok])]).records).toHaveLength(2);
    const error = failAt(LimitExceededError, Buffer.concat([header('pc.ram', 0, F.COMPRESS_PAGE), be32(4111)]));
    expect(error.actual).toBe(4111);
    failAt(LimitExceededError, Buffer.concat([header('pc.ram', 0, F.COMPRESS_PAGE), be32(0xffff_ffff)]));
    // With 64 KiB pages the bound is compressBound(65536) = 65569.
    const big = context({ pageSize: 65536 });
    const setup64 = memSizeBytes([{ idstr: 'pc.ram', length: 1 << 20 }]);
    failAt(LimitExceededError, Buffer.concat([header('pc.ram', 0, F.COMPRESS_PAGE), be32(65570)]), setup64, big);
    expect(feed([Buffer.concat([setup64, compressedBytes('pc.ram', 0, Buffer.alloc(65569))])], { ctx: big }).records).toHaveLength(2);
  });

  it('rejects an XBZRLE length above the page size (load_xbzrle "len overflow")', () => {
    const error = failAt(LimitExceededError, Buffer.concat([header('pc.ram', 0, F.XBZRLE), Buffer.from([1]), be16(4097)]));
    expect(error.actual).toBe(4097);
  });

  it('rejects a wrong XBZRLE encoding byte (load_xbzrle "wrong compression")', () => {
    for (const encoding of [0, 2, 0xff]) {
      const error = failAt(BadMagicError, xbzrleBytes('pc.ram', 0, Buffer.from([0, 1, 7]), encoding));
      expect(error.actual).toBe(encoding);
    }
  });

  it('rejects an XBZRLE delta that xbzrle_decode_buffer rejects', () => {
    const bad = [
      Buffer.from([0]), // one byte left for a run
      Buffer.from([0x80, 0x80, 0x01]), // uleb128 longer than two bytes
      Buffer.from([0, 1, 7, 0, 1, 7]), // empty zero run after the first
      Buffer.from([0x80, 0x21, 1, 7]), // zero run 4224 past the page
      Buffer.from([0, 0, 5]), // empty changed run
      Buffer.from([0xff, 0x1f, 2, 1, 2]), // changed run past the page end
      Buffer.from([0, 5, 1, 2]), // changed run past the delta end
    ];
    for (const delta of bad) {
      const error = failAt(XbzrleError, xbzrleBytes('pc.ram', 0, delta));
      expect(error).toBeInstanceOf(DecodeError);
      expect(error.code).toBe('ERR_XBZRLE');
    }
  });
});

describe('encoder checks', () => {
  const page = pattern(1);
  const bad: RamRecord[] = [
    { type: 'ram-page', block: 'pc.ram', continued: false, offset: 0x1001, data: page },
    { type: 'ram-page', block: 'pc.ram', continued: false, offset: -4096, data: page },
    { type: 'ram-page', block: 'pc.ram', continued: false, offset: 2 ** 53, data: page },
    { type: 'ram-page', block: '', continued: false, offset: 0, data: page },
    { type: 'ram-page', block: 'x'.repeat(256), continued: false, offset: 0, data: page },
    { type: 'ram-page', block: 'pc.ram\u0100', continued: false, offset: 0, data: page },
    { type: 'ram-zero', block: 'pc.ram', continued: true, offset: 0, fill: 256 },
    { type: 'ram-xbzrle', block: 'pc.ram', continued: true, offset: 0, encoding: 1, data: Buffer.alloc(0x10000) },
    { type: 'ram-eos', strayAddr: 5 },
    { type: 'ram-hook', flags: F.PAGE, addr: 0 },
    { type: 'ram-hook', flags: F.HOOK | 0x400, addr: 0x400 },
    { type: 'ram-mem-size', totalBytes: 8192, blocks: [{ idstr: 'pc.ram', usedLength: 4096 }] },
    {
      type: 'ram-mem-size',
      totalBytes: 4096,
      blocks: [
        { idstr: 'a', usedLength: 4096 },
        { idstr: 'b', usedLength: 0 },
      ],
    },
    { type: 'ram-mem-size', totalBytes: 4096, blocks: [{ idstr: 'a', usedLength: 4096, pageSize: 1000 }] },
    { type: 'ram-mem-size', totalBytes: 100, blocks: [{ idstr: 'a', usedLength: 100 }] },
    { type: 'bogus' } as unknown as RamRecord,
  ];
  for (const record of bad) {
    it(`refuses ${JSON.stringify(record, (k, v: unknown) => (k === 'data' ? '…' : v)).slice(0, 100)}`, () => {
      expect(() => ramCodec.encode(record, new ByteWriter())).toThrow(EncodeError);
    });
  }

  it('writes nothing it would not read back', () => {
    const records: RamRecord[] = [
      { type: 'ram-eos', strayAddr: 0x2000, strayContinue: true },
      { type: 'ram-hook', flags: F.HOOK | F.EOS, addr: 0x1000 },
    ];
    const writer = new ByteWriter();
    for (const r of records) ramCodec.encode(r, writer);
    expect(writer.takeBuffer()).toEqual(Buffer.concat([eosBytes(0x2000 | F.CONTINUE), word(0x1000, F.HOOK | F.EOS)]));
  });
});
