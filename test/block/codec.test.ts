import { describe, expect, it } from 'vitest';
import { MAX_BLOCK_SIZE } from '../../src/block/block-size.js';
import { MAX_BLOCK_SECTOR, blockCodec, createBlockCodec } from '../../src/block/codec.js';
import type { BlockRecord } from '../../src/block/records.js';
import { EncodeError, FramingError, LimitExceededError, UnknownFlagError } from '../../src/stream/errors.js';
import { ByteReader, NEED_MORE } from '../../src/stream/reader.js';
import { ByteWriter } from '../../src/stream/writer.js';
import { F, MIB, chunk, dataBytes, eosBytes, progressBytes, word, zeroBytes } from '../helpers/block-bytes.js';
import { FOOTER, ctx, encode, feed, prng, splitAt } from './feed.js';

/** Records without their payloads, for readable comparisons. */
function shape(records: readonly BlockRecord[]): unknown[] {
  return records.map((r) => (r.type === 'block-data' ? { ...r, data: `${r.data.length} bytes` } : r));
}

/**
 * Decodes `bytes` in one piece, checks it was consumed whole, and that it re-encodes exactly.
 * The body is closed as block_save_* close it (an EOS, unless `closed` says its last record
 * holds EOS already, then the footer), since a data chunk's size is settled by what follows it.
 */
function roundTrip(bytes: Buffer, closed = false): BlockRecord[] {
  const tail = closed ? FOOTER : Buffer.concat([eosBytes(), FOOTER]);
  const fed = feed([bytes, tail]);
  expect(fed.leftover).toBe(0);
  if (!closed) expect(fed.records.at(-1)).toEqual({ type: 'block-eos' });
  const records = closed ? fed.records : fed.records.slice(0, -1);
  expect(encode(records).equals(bytes)).toBe(true);
  expect(records.reduce((sum, r) => sum + blockCodec.encodedLength(r), 0)).toBe(bytes.length);
  return records;
}

function decodeError(bytes: Buffer, before = Buffer.alloc(0)): unknown {
  try {
    feed([Buffer.concat([before, bytes])]);
  } catch (error) {
    return error;
  }
  throw new Error('expected a decode error');
}

const DISK = 'drive-virtio-disk0';
const A = chunk(1);
const B = chunk(2);

describe('blockCodec records', () => {
  it('is the "block" section codec', () => {
    expect(blockCodec.idstr).toBe('block');
    const types = [...blockCodec.recordTypes].sort();
    expect(types).toEqual(['block-data', 'block-eos', 'block-progress', 'block-zero']);
  });

  it('decodes a data chunk and re-encodes it byte for byte', () => {
    const [record] = roundTrip(dataBytes(DISK, 4096, A));
    expect(record).toMatchObject({ type: 'block-data', device: DISK, sector: 4096 });
    expect(record).not.toHaveProperty('flags');
    expect(record?.type === 'block-data' && record.data.equals(A)).toBe(true);
  });

  it('decodes a zero chunk', () => {
    expect(roundTrip(zeroBytes(DISK, 2048))).toEqual([{ type: 'block-zero', device: DISK, sector: 2048 }]);
  });

  it.each([0, 57, 100])('decodes progress %i %%', (percent) => {
    expect(roundTrip(progressBytes(percent))).toEqual([{ type: 'block-progress', percent }]);
  });

  it('decodes EOS', () => {
    expect(roundTrip(eosBytes(), true)).toEqual([{ type: 'block-eos' }]);
  });

  it('keeps device names byte for byte (latin1, up to 255 bytes)', () => {
    const odd = 'd\u00e9v\u00ff\u0001';
    expect(roundTrip(zeroBytes(odd, 0))).toEqual([{ type: 'block-zero', device: odd, sector: 0 }]);
    const long = 'x'.repeat(255);
    expect(roundTrip(zeroBytes(long, 0))).toEqual([{ type: 'block-zero', device: long, sector: 0 }]);
  });

  // block_load's if/else-if chain: DEVICE_BLOCK first, then PROGRESS, then EOS; it stops after
  // any record with EOS. Combinations of the four known flags are kept exactly.
  it.each([
    ['DEVICE_BLOCK|EOS', dataBytes(DISK, 0, A, F.DEVICE_BLOCK | F.EOS), 'block-data', 0x03, true],
    ['DEVICE_BLOCK|PROGRESS', dataBytes(DISK, 0, A, 0x05), 'block-data', 0x05, false],
    ['DEVICE_BLOCK|ZERO_BLOCK|EOS', zeroBytes(DISK, 0, 0x0b), 'block-zero', 0x0b, true],
    ['PROGRESS|EOS', progressBytes(100, 0x06), 'block-progress', 0x06, true],
    ['PROGRESS|ZERO_BLOCK', progressBytes(3, 0x0c), 'block-progress', 0x0c, false],
    ['EOS|ZERO_BLOCK', eosBytes(0x0a), 'block-eos', 0x0a, true],
  ] as const)('accepts %s as QEMU does and keeps the bits', (_name, bytes, type, flags, ends) => {
    const records = roundTrip(bytes, ends);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ type, flags });
    expect(blockCodec.newDecoder().endsBody(records[0]!)).toBe(ends);
  });

  it('keeps the ignored upper bits of an EOS word', () => {
    expect(roundTrip(eosBytes(F.EOS, 12345), true)).toEqual([{ type: 'block-eos', sector: 12345 }]);
  });

  it('decodes a multi-record body ending in EOS, as block_save_iterate/complete write it', () => {
    const bytes = Buffer.concat([progressBytes(0), dataBytes(DISK, 0, A), zeroBytes(DISK, 2048), progressBytes(50), dataBytes('ide0-hd1', 4096, B), progressBytes(100), eosBytes()]);
    const records = roundTrip(bytes, true);
    expect(shape(records)).toEqual([
      { type: 'block-progress', percent: 0 },
      { type: 'block-data', device: DISK, sector: 0, data: `${MIB} bytes` },
      { type: 'block-zero', device: DISK, sector: 2048 },
      { type: 'block-progress', percent: 50 },
      { type: 'block-data', device: 'ide0-hd1', sector: 4096, data: `${MIB} bytes` },
      { type: 'block-progress', percent: 100 },
      { type: 'block-eos' },
    ]);
    const decoder = blockCodec.newDecoder();
    expect(records.map((r) => decoder.endsBody(r))).toEqual([false, false, false, false, false, false, true]);
  });

  it('hands out data as a view of the input when it sits in one chunk', () => {
    const input = Buffer.concat([dataBytes(DISK, 0, A), eosBytes(), FOOTER]);
    const [record] = feed([input]).records;
    expect(record?.type === 'block-data' && record.data.buffer).toBe(input.buffer);
  });

  it('encodes data without copying it (ByteWriter passes 1 MiB through)', () => {
    const writer = new ByteWriter();
    blockCodec.encode({ type: 'block-data', device: DISK, sector: 0, data: A }, writer);
    expect(writer.take().some((part) => part.buffer === A.buffer)).toBe(true);
  });

  it('accepts the largest sector and the largest percentage', () => {
    expect(roundTrip(zeroBytes(DISK, MAX_BLOCK_SECTOR))).toEqual([{ type: 'block-zero', device: DISK, sector: MAX_BLOCK_SECTOR }]);
    expect(MAX_BLOCK_SECTOR * 512 + MAX_BLOCK_SIZE).toBeLessThanOrEqual(Number.MAX_SAFE_INTEGER);
    expect((MAX_BLOCK_SECTOR + 1) * 512 + MAX_BLOCK_SIZE).toBeGreaterThan(Number.MAX_SAFE_INTEGER);
    const max = Number.MAX_SAFE_INTEGER;
    expect(roundTrip(progressBytes(max))).toEqual([{ type: 'block-progress', percent: max }]);
  });
});

describe('blockCodec chunked input', () => {
  const small = Buffer.concat([progressBytes(0), zeroBytes(DISK, 0), zeroBytes('hd1', 2048, 0x0b), progressBytes(7), eosBytes()]);
  const smallRecords = feed([small]).records;

  it('gives the same records for every single and double split of a small body', () => {
    for (let i = 0; i <= small.length; i++) {
      expect(feed(splitAt(small, [i])).records).toEqual(smallRecords);
      for (let j = i; j <= small.length; j++) {
        const { records, leftover } = feed(splitAt(small, [i, j]));
        expect(leftover).toBe(0);
        expect(records).toEqual(smallRecords);
      }
    }
  });

  it('gives the same records one byte at a time', () => {
    const bytes = [...small].map((byte) => Buffer.from([byte]));
    expect(feed(bytes)).toMatchObject({ records: smallRecords, leftover: 0 });
  });

  const withData = Buffer.concat([progressBytes(1), dataBytes(DISK, 0, A), zeroBytes(DISK, 2048), dataBytes(DISK, 4096, B, F.DEVICE_BLOCK | F.EOS)]);
  // The footer after the body: what settles the first chunk's size ends with it.
  const withFooter = Buffer.concat([withData, FOOTER]);
  const dataRecords = feed([withFooter]).records;

  /** Every offset outside the payloads, the 40 bytes around each payload edge, and a stride inside. */
  function interestingSplits(): number[] {
    const out = new Set<number>();
    const payloads: Array<[number, number]> = [];
    let at = 0;
    for (const record of dataRecords) {
      const length = encode([record]).length;
      if (record.type === 'block-data') payloads.push([at + length - MIB, at + length]);
      at += length;
    }
    for (let i = 0; i <= withFooter.length; i++) {
      const inside = payloads.find(([start, end]) => i > start + 20 && i < end - 20);
      if (inside === undefined || (i - inside[0]) % 4093 === 0) out.add(i);
    }
    return [...out];
  }

  it('gives the same records for splits everywhere that matters in a body with data', () => {
    const splits = interestingSplits();
    expect(splits.length).toBeGreaterThan(500);
    const expected = encode(dataRecords);
    for (const i of splits) {
      const { records, leftover } = feed(splitAt(withFooter, [i]));
      expect(leftover).toBe(0);
      expect(shape(records)).toEqual(shape(dataRecords));
      expect(encode(records).equals(expected)).toBe(true);
    }
  });

  it('gives the same records for random chunkings', () => {
    const random = prng(0xb10c);
    for (let run = 0; run < 30; run++) {
      const scale = [256, 8192, 3 * MIB][run % 3]!;
      const cuts: number[] = [];
      for (let at = 0; ;) {
        at += 1 + Math.floor(random() * scale);
        if (at >= withFooter.length) break;
        cuts.push(at);
      }
      const { records, leftover } = feed(splitAt(withFooter, cuts));
      expect(leftover).toBe(0);
      expect(encode(records).equals(withData)).toBe(true);
    }
  });

  it('reports a cut-short record as NEED_MORE (left over), never as a crash', () => {
    for (let cut = 0; cut < small.length; cut++) {
      const { records, leftover } = feed([small.subarray(0, cut)]);
      expect(smallRecords.slice(0, records.length)).toEqual(records);
      expect(encode(records).length + leftover).toBe(cut);
    }
    // Inside the progress word, then inside the data record's word, name and payload.
    const data = 8;
    const name = data + 9 + DISK.length;
    for (const cut of [1, 7, data + 1, data + 8, data + 9, name, name + 1, withData.length - 1]) {
      const { records, leftover } = feed([withData.subarray(0, cut)]);
      expect(leftover).toBeGreaterThan(0);
      expect(encode(records).length + leftover).toBe(cut);
    }
  });

  it('throws NEED_MORE from read() itself, leaving the rewound reader as it was', () => {
    const reader = new ByteReader();
    reader.push(dataBytes(DISK, 0, A).subarray(0, 100));
    reader.mark();
    let thrown: unknown;
    try {
      blockCodec.newDecoder().read(reader, ctx);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBe(NEED_MORE);
    reader.rewind();
    expect(reader.offset).toBe(0);
    expect(reader.available).toBe(100);
  });
});

describe('blockCodec errors', () => {
  const lead = Buffer.concat([progressBytes(5), zeroBytes(DISK, 0)]);

  it.each([
    ['0x0', 0x00],
    ['0x8 (ZERO_BLOCK alone)', 0x08],
    ['0x10', 0x10],
    ['0x18', 0x18],
    ['0x1f0', 0x1f0],
    ['DEVICE_BLOCK|0x10 (bits block_load ignores)', 0x11],
    ['EOS|0x100 (bits block_load ignores)', 0x102],
  ])('rejects flags %s like block_load ("Unknown block migration flags")', (_name, flags) => {
    const error = decodeError(word(77, flags), lead);
    expect(error).toBeInstanceOf(UnknownFlagError);
    expect(error).toMatchObject({
      code: 'ERR_UNKNOWN_FLAG',
      offset: lead.length,
      section: ctx.section,
      actual: flags,
    });
    expect(String((error as Error).message)).toContain(`0x${flags.toString(16)}`);
    expect(String((error as Error).message)).toContain('section 3 "block"');
  });

  it('names the error from the word alone, before the rest of the record arrives', () => {
    expect(decodeError(word(MAX_BLOCK_SECTOR + 1, F.DEVICE_BLOCK))).toBeInstanceOf(LimitExceededError);
  });

  it.each([
    ['a sector past 2^53 bytes', word(MAX_BLOCK_SECTOR + 1, F.DEVICE_BLOCK | F.ZERO_BLOCK)],
    ['a negative sector (top bit set)', word(1n << 54n, F.DEVICE_BLOCK)],
    ['the largest word', word((1n << 55n) - 1n, F.DEVICE_BLOCK)],
    ['an absurd percentage', word(1n << 53n, F.PROGRESS)],
    ['an absurd EOS value', word(1n << 54n, F.EOS)],
  ])('rejects %s with LimitExceededError', (_name, bytes) => {
    const error = decodeError(Buffer.concat([bytes, Buffer.from([3]), Buffer.from('hd0')]), lead);
    expect(error).toBeInstanceOf(LimitExceededError);
    expect(error).toMatchObject({ code: 'ERR_LIMIT', offset: lead.length, section: ctx.section });
  });

  it('rejects an empty device name, which no drive has', () => {
    const error = decodeError(zeroBytes('', 0), lead);
    expect(error).toBeInstanceOf(FramingError);
    expect(error).toMatchObject({ offset: lead.length, section: ctx.section });
  });
});

describe('blockCodec encode errors', () => {
  const bad: Array<[string, BlockRecord]> = [
    ['data shorter than 4 KiB', { type: 'block-data', device: DISK, sector: 0, data: Buffer.alloc(4095) }],
    ['data not a power of two', { type: 'block-data', device: DISK, sector: 0, data: Buffer.alloc(3 * 4096) }],
    ['data past 16 MiB', { type: 'block-data', device: DISK, sector: 0, data: Buffer.alloc(32 * MIB) }],
    ['empty device', { type: 'block-zero', device: '', sector: 0 }],
    ['long device', { type: 'block-zero', device: 'x'.repeat(256), sector: 0 }],
    ['non-latin1 device', { type: 'block-zero', device: 'disk\u20ac', sector: 0 }],
    ['negative sector', { type: 'block-zero', device: DISK, sector: -1 }],
    ['fractional sector', { type: 'block-zero', device: DISK, sector: 1.5 }],
    ['sector too large', { type: 'block-zero', device: DISK, sector: MAX_BLOCK_SECTOR + 1 }],
    ['percent too large', { type: 'block-progress', percent: 2 ** 53 }],
    ['data flags with ZERO_BLOCK', { type: 'block-data', device: DISK, sector: 0, data: A, flags: 0x09 }],
    ['zero flags without ZERO_BLOCK', { type: 'block-zero', device: DISK, sector: 0, flags: 0x01 }],
    ['progress flags with DEVICE_BLOCK', { type: 'block-progress', percent: 1, flags: 0x05 }],
    ['EOS flags with PROGRESS', { type: 'block-eos', flags: 0x06 }],
    ['flags past 9 bits', { type: 'block-eos', flags: 0x202 }],
  ];
  it.each(bad)('refuses %s', (_name, record) => {
    expect(() => encode([record])).toThrow(EncodeError);
  });
});

describe('createBlockCodec', () => {
  it('holds data records to its blockSize', () => {
    const sized = createBlockCodec({ blockSize: 64 * 1024 });
    const writer = new ByteWriter();
    sized.encode({ type: 'block-data', device: DISK, sector: 0, data: chunk(3, 64 * 1024) }, writer);
    expect(writer.takeBuffer().length).toBe(9 + DISK.length + 64 * 1024);
    expect(() => sized.encode({ type: 'block-data', device: DISK, sector: 0, data: A }, new ByteWriter())).toThrow(/expected 65536 \(the encoder's mig-block-size\)/);
  });

  it('refuses a size that is not a chunk size', () => {
    expect(() => createBlockCodec({ blockSize: 3000 })).toThrow(/power of two from 4 KiB to 16 MiB/);
    expect(() => createBlockCodec({ blockSize: 32 * MIB })).toThrow(/power of two/);
  });
});
