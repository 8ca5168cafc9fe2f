/**
 * The disk stream (docs/format.md "Disk stream"): the encoder's bytes equal the independent
 * builder's (test/helpers/disk-bytes.ts), decoding gives the records back at every split
 * point, the BLOCK payloads are QEMU block records, and damaged streams fail with a DecodeError
 * naming the offset.
 */
import { describe, expect, test } from 'vitest';
import { feed, FOOTER } from '../block/feed.js';
import { eosBytes } from '../helpers/block-bytes.js';
import { blockFrame, deltaFrame, endFrame, frameBytes, headerBytes, zeroFrame, SUB } from '../helpers/disk-bytes.js';
import { DiskStreamDecoder, DiskStreamEncoder, type DiskRecord, type DiskStreamHeader } from '../../src/disk/index.js';
import { DecodeError } from '../../src/stream/errors.js';

const KIB = 1024;

function pattern(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return out;
}

/** A 200 KiB drive (the last 64 KiB chunk holds 8 KiB) with one record of each kind. */
const header: DiskStreamHeader = { device: 'disk0', size: 200 * KIB, chunkSize: 64 * KIB, subBlockSize: 4096 };
const chunk0 = pattern(64 * KIB, 1);
const sub2 = pattern(SUB, 2);
const sub3 = pattern(SUB, 3);
const sub15 = pattern(SUB, 15);
const lastSub = pattern(SUB, 4);
const records: DiskRecord[] = [
  { type: 'block-data', device: 'disk0', sector: 0, data: chunk0 },
  { type: 'block-zero', device: 'disk0', sector: (64 * KIB) / 512 },
  { type: 'disk-delta', offset: 128 * KIB, indexes: [2, 3, 15], data: Buffer.concat([sub2, sub3, sub15]) },
  { type: 'disk-delta', offset: 192 * KIB, indexes: [1], data: lastSub },
  { type: 'disk-end', records: 4 },
];

const expected = Buffer.concat([
  headerBytes({ device: 'disk0', size: 200 * KIB, chunkSize: 64 * KIB }),
  blockFrame('disk0', 0, chunk0),
  zeroFrame('disk0', 64 * KIB),
  deltaFrame(64 * KIB, 128 * KIB, [
    [2, sub2],
    [3, sub3],
    [15, sub15],
  ]),
  deltaFrame(64 * KIB, 192 * KIB, [[1, lastSub]]),
  endFrame(4),
]);

function encodeAll(h: DiskStreamHeader, list: readonly DiskRecord[]): Buffer {
  const encoder = new DiskStreamEncoder(h);
  return Buffer.concat([encoder.start(), ...list.flatMap((r) => encoder.encode(r))]);
}

/** Records with their data as hex strings: vitest compares strings fast, Buffers byte by byte. */
function summary(list: readonly DiskRecord[]): unknown[] {
  return list.map((r) => ('data' in r ? { ...r, data: r.data.toString('hex') } : r));
}

function decodeAll(pieces: readonly Buffer[]): { header: DiskStreamHeader | undefined; records: DiskRecord[] } {
  const decoder = new DiskStreamDecoder();
  const out: DiskRecord[] = [];
  for (const piece of pieces) out.push(...decoder.push(piece));
  decoder.end();
  return { header: decoder.header, records: out };
}

function decodeError(bytes: Buffer): DecodeError {
  try {
    decodeAll([bytes]);
  } catch (error) {
    expect(error).toBeInstanceOf(DecodeError);
    return error as DecodeError;
  }
  throw new Error('decoded');
}

describe('disk stream bytes', () => {
  test('the header is the table of docs/format.md, offset by offset', () => {
    const bytes = headerBytes({ device: 'disk0', size: 200 * KIB, chunkSize: 64 * KIB });
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('MIGSDISK');
    expect(bytes.toString('hex')).toBe('4d49475344495348'.replace('48', '4b') + '0001' + '0000' + '00010000' + '00001000' + '0000000000032000' + '05' + Buffer.from('disk0').toString('hex'));
    expect(bytes.length).toBe(29 + 5);
  });

  test("the encoder writes exactly the builder's bytes", () => {
    expect(encodeAll(header, records).equals(expected)).toBe(true);
  });

  test('a delta frame in exact hex: offset, presence bitmap, sub-blocks', () => {
    const frame = deltaFrame(64 * KIB, 128 * KIB, [
      [0, Buffer.alloc(SUB, 0xaa)],
      [9, Buffer.alloc(SUB, 0xbb)],
    ]);
    expect(frame.subarray(0, 5 + 8 + 2).toString('hex')).toBe('02' + (8 + 2 + 2 * SUB).toString(16).padStart(8, '0') + '0000000000020000' + '0102');
  });

  test("the BLOCK payloads, followed by an EOS, are a `block` section body QEMU's block_load reads (the block codec)", () => {
    const encoder = new DiskStreamEncoder(header);
    const blocks = records.filter((r) => r.type === 'block-data' || r.type === 'block-zero');
    const payloads = blocks.map((r) => encoder.encode(r)).map((parts) => Buffer.concat(parts).subarray(5));
    const fed = feed([Buffer.concat([...payloads, eosBytes(), FOOTER])], 64 * KIB);
    expect(fed.leftover).toBe(0);
    expect(fed.records.slice(0, 2)).toEqual(blocks);
    expect(fed.records[2]).toEqual({ type: 'block-eos' });
  });
});

describe('decoding', () => {
  test('gives the header and records back', () => {
    const { header: h, records: r } = decodeAll([expected]);
    expect(h).toEqual(header);
    expect(summary(r)).toEqual(summary(records));
  });

  test('at every split point', () => {
    for (let at = 0; at <= expected.length; at += at < 200 || at > expected.length - 200 ? 1 : 997) {
      const { records: r } = decodeAll([expected.subarray(0, at), expected.subarray(at)]);
      expect(summary(r)).toEqual(summary(records));
    }
  });

  test('byte by byte over the headers and the small frames, and in 3 pieces at every pair of frame edges', () => {
    const small = Buffer.concat([headerBytes({ device: 'd', size: 8 * KIB, chunkSize: 4 * KIB }), zeroFrame('d', 0), deltaFrame(4 * KIB, 4 * KIB, [[0, pattern(SUB, 9)]]), endFrame(2)]);
    const pieces = [...small].map((b) => Buffer.from([b]));
    const { records: r } = decodeAll(pieces);
    expect(r).toEqual([
      { type: 'block-zero', device: 'd', sector: 0 },
      { type: 'disk-delta', offset: 4 * KIB, indexes: [0], data: pattern(SUB, 9) },
      { type: 'disk-end', records: 2 },
    ]);
    // Edges of the header and of every frame, and a byte either side.
    const edges = [0, 34, 35, 40, 53, 54, 59, 60, 61, 70, 71, 72, 4167, 4168, 4172, 4173, 4181, 4182].filter((at) => at <= small.length);
    for (const a of edges) {
      for (const b of edges.filter((at) => at >= a)) {
        expect(decodeAll([small.subarray(0, a), small.subarray(a, b), small.subarray(b)]).records).toEqual(r);
      }
    }
  });

  test('reuseBuffers: a frame spanning chunks is gathered into a buffer that comes back once released, and only then', () => {
    // Three chunk records, the bytes pushed 16 KiB at a time, as a socket gives them.
    const chunks = [pattern(64 * KIB, 5), pattern(64 * KIB, 6), pattern(64 * KIB, 7)];
    const list: DiskRecord[] = chunks.map((data, i) => ({ type: 'block-data', device: 'disk0', sector: (i * 64 * KIB) / 512, data }));
    const bytes = encodeAll(header, [...list, { type: 'disk-end', records: 3 }]);
    const decoder = new DiskStreamDecoder({ copy: false, reuseBuffers: true });
    const out: DiskRecord[] = [];
    const arrays: ArrayBufferLike[] = [];
    for (let at = 0; at < bytes.length; at += 16 * KIB) {
      for (const record of decoder.push(bytes.subarray(at, at + 16 * KIB))) {
        out.push(record);
        if (record.type !== 'block-data') continue;
        // What arrived is right, whatever buffer it is in.
        expect(record.data.equals(chunks[out.length - 1]!)).toBe(true);
        arrays.push(record.data.buffer);
        // Released before the next one: records 0 and 1 share a buffer; record 1 is kept, so 2 gets another.
        if (out.length === 1) decoder.release(record);
      }
    }
    expect(decoder.complete).toBe(true);
    expect(out.map((r) => r.type)).toEqual(['block-data', 'block-data', 'block-data', 'disk-end']);
    expect(arrays[1]).toBe(arrays[0]);
    expect(arrays[2]).not.toBe(arrays[1]);
    // Not one of the pushed pieces' memory.
    expect(arrays[0]).not.toBe(bytes.buffer);
    // A frame that lies in one pushed chunk stays a view of it (nothing to gather), and releasing it is a no-op.
    const whole = new DiskStreamDecoder({ copy: false, reuseBuffers: true });
    const input = Buffer.from(bytes);
    const [first] = whole.push(input);
    expect(first!.type === 'block-data' && first!.data.buffer).toBe(input.buffer);
    whole.release(first!);
  });

  test('copies record data out of the pushed chunks by default', () => {
    const input = Buffer.from(expected);
    const decoder = new DiskStreamDecoder();
    const out = decoder.push(input);
    input.fill(0);
    expect((out[0] as { data: Buffer }).data.equals(chunk0)).toBe(true);
  });
});

describe('damaged streams', () => {
  const h = headerBytes({ device: 'disk0', size: 200 * KIB, chunkSize: 64 * KIB });
  const hl = h.length;

  test('a wrong magic, version, flags, chunk or sub-block size, empty name', () => {
    expect(decodeError(headerBytes({ device: 'disk0', size: 1, chunkSize: 4096, magic: 'QEVMQEVM' })).code).toBe('ERR_BAD_MAGIC');
    const v2 = decodeError(headerBytes({ device: 'disk0', size: 1, chunkSize: 4096, version: 2 }));
    expect([v2.code, v2.offset]).toEqual(['ERR_BAD_MAGIC', 8]);
    expect(decodeError(headerBytes({ device: 'disk0', size: 1, chunkSize: 4096, flags: 1 })).code).toBe('ERR_UNKNOWN_FLAG');
    expect(decodeError(headerBytes({ device: 'disk0', size: 1, chunkSize: 3000 })).offset).toBe(12);
    expect(decodeError(headerBytes({ device: 'disk0', size: 1, chunkSize: 4096, subBlockSize: 512 })).offset).toBe(16);
    expect(decodeError(headerBytes({ device: '', size: 1, chunkSize: 4096 })).code).toBe('ERR_FRAMING');
  });

  test('an unknown frame kind, a hostile length (refused before its bytes arrive)', () => {
    const unknown = decodeError(Buffer.concat([h, frameBytes(0x09, Buffer.alloc(3))]));
    expect([unknown.code, unknown.offset]).toEqual(['ERR_UNKNOWN_FLAG', hl]);
    const decoder = new DiskStreamDecoder();
    const hostile = Buffer.concat([h, Buffer.from([0x02, 0xff, 0xff, 0xff, 0xff])]);
    expect(() => decoder.push(hostile)).toThrow(/frame of 4294967295 bytes/);
  });

  test('a BLOCK record of another drive, with unknown flags, off a chunk boundary, past the drive, with a wrong length', () => {
    expect(decodeError(Buffer.concat([h, blockFrame('disk1', 0, chunk0)])).message).toMatch(/drive "disk1"/);
    const eosInside = Buffer.concat([h, frameBytes(0x01, Buffer.concat([eosBytes(), Buffer.from([5]), Buffer.from('disk0')]))]);
    expect(decodeError(eosInside).code).toBe('ERR_UNKNOWN_FLAG');
    expect(decodeError(Buffer.concat([h, zeroFrame('disk0', 4096)])).message).toMatch(/a chunk at byte 4096/);
    expect(decodeError(Buffer.concat([h, zeroFrame('disk0', 256 * KIB)])).message).toMatch(/a chunk at byte 262144/);
    const short = blockFrame('disk0', 0, Buffer.alloc(4096));
    const error = decodeError(Buffer.concat([h, short]));
    expect([error.code, error.offset]).toEqual(['ERR_FRAMING', hl + 5]);
    expect(error.message).toMatch(/4096 bytes after the name/);
  });

  test("a delta with no sub-block, past the drive's end, with data of the wrong length", () => {
    expect(decodeError(Buffer.concat([h, deltaFrame(64 * KIB, 0, [])])).message).toMatch(/no sub-block/);
    // The last chunk (192 KiB..200 KiB) has two sub-blocks inside the drive.
    expect(decodeError(Buffer.concat([h, deltaFrame(64 * KIB, 192 * KIB, [[2, Buffer.alloc(SUB)]])])).message).toMatch(/sub-block 2 of a chunk with 2/);
    const frame = deltaFrame(64 * KIB, 0, [[1, Buffer.alloc(SUB)]]);
    const cut = Buffer.concat([frame.subarray(0, 1), Buffer.from([0, 0, 0x10, 0x09]), frame.subarray(5, 5 + 0x1009)]);
    expect(decodeError(Buffer.concat([h, cut])).message).toMatch(/4095 bytes of data for 1 sub-blocks/);
  });

  test('an END with the wrong count, bytes after END, no END', () => {
    expect(decodeError(Buffer.concat([h, zeroFrame('disk0', 0), endFrame(2)])).message).toMatch(/END counts 2 records, 1 arrived/);
    expect(decodeError(Buffer.concat([h, endFrame(0), Buffer.from([1])])).message).toMatch(/after the END/);
    const truncated = decodeError(Buffer.concat([h, zeroFrame('disk0', 0)]));
    expect(truncated.code).toBe('ERR_TRUNCATED');
  });
});

describe('the encoder refuses what would not decode', () => {
  test('another drive, a chunk of another size, a delta off the chunk or out of order, a wrong END count', () => {
    const encoder = (): DiskStreamEncoder => new DiskStreamEncoder(header);
    expect(() => encoder().encode({ type: 'block-zero', device: 'disk1', sector: 0 })).toThrow(/drive "disk1"/);
    expect(() => encoder().encode({ type: 'block-data', device: 'disk0', sector: 0, data: Buffer.alloc(4096) })).toThrow(/chunk of 4096 bytes/);
    expect(() => encoder().encode({ type: 'disk-delta', offset: 4096, indexes: [0], data: Buffer.alloc(SUB) })).toThrow(/not the start of a chunk/);
    expect(() => encoder().encode({ type: 'disk-delta', offset: 0, indexes: [3, 1], data: Buffer.alloc(2 * SUB) })).toThrow(/out of order/);
    expect(() => encoder().encode({ type: 'disk-end', records: 1 })).toThrow(/END counts 1/);
  });
});
