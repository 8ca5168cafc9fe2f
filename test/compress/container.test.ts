/**
 * The container's building blocks: XXH32 against the reference vectors, frame headers, uleb128,
 * cut lists, and the reader's frame checks.
 */
import { describe, expect, test } from 'vitest';
import { ChecksumChain, Xxh32Stream, xxh32 } from '../../src/container/checksum.js';
import { ContainerReader } from '../../src/container/reader.js';
import { ContainerMagicError, CorruptFrameError, FrameOrderError, TruncatedContainerError } from '../../src/container/errors.js';
import { CONTAINER_MAGIC, FRAME_HEADER_LENGTH, FrameKind, WRITTEN_CHECKSUM, decodeFrameHeader, encodeEnd, encodeFrameHeader, encodePreamble, readUleb, writeUleb } from '../../src/container/format.js';
import { CutListBuilder, parseCutList } from '../../src/container/cut-list.js';
import { randomPieces } from '../helpers/container.js';

describe('XXH32', () => {
  // Reference values from the xxHash project (xxhsum -H32 / the spec's sanity checks).
  test.each([
    ['', 0x02cc5d05],
    ['a', 0x550d7456],
    ['abc', 0x32d153ff],
    ['Nobody inspects the spammish repetition', 0xe2293b2f],
  ])('xxh32(%j)', (text, expected) => {
    expect(xxh32(Buffer.from(text, 'latin1'))).toBe(expected);
  });

  test('unaligned views and the streaming form agree with the one-shot hash', () => {
    const data = Buffer.alloc(100_003);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 23;
    const whole = xxh32(data);
    expect(xxh32(Buffer.concat([Buffer.alloc(1), data]).subarray(1))).toBe(whole);
    for (const seed of [1, 2, 3]) {
      const stream = new Xxh32Stream();
      for (const piece of randomPieces(data, seed, 37)) stream.update(piece);
      expect(stream.digest()).toBe(whole);
      expect(stream.length).toBe(data.length);
    }
  });

  test('the checksum chain depends on every frame and its order', () => {
    const a = new ChecksumChain();
    a.add(1);
    a.add(2);
    const b = new ChecksumChain();
    b.add(2);
    b.add(1);
    expect(a.value).not.toBe(b.value);
  });
});

describe('frame header and varints', () => {
  test('a header round-trips and its checksum catches any flipped bit', () => {
    const header = { kind: FrameKind.PAYLOAD, codec: 2, flags: 0, number: 7, rawLength: 4194304, storedLength: 123456, rawChecksum: 0xdeadbeef, storedChecksum: 0x12345678 };
    const bytes = encodeFrameHeader(header);
    expect(bytes.length).toBe(FRAME_HEADER_LENGTH);
    expect(decodeFrameHeader(bytes)).toEqual({ header, valid: true });
    for (let bit = 0; bit < FRAME_HEADER_LENGTH * 8; bit++) {
      const damaged = Buffer.from(bytes);
      damaged[bit >> 3]! ^= 1 << (bit & 7);
      expect(decodeFrameHeader(damaged).valid, `bit ${bit}`).toBe(false);
    }
  });

  test('uleb128 round-trips up to 2^53 and rejects runaway encodings', () => {
    for (const value of [0, 1, 127, 128, 16383, 16384, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
      const out: number[] = [];
      writeUleb(out, value);
      expect(readUleb(Uint8Array.from(out), 0, out.length)).toEqual([value, out.length]);
    }
    expect(readUleb(Uint8Array.from([0x80, 0x80]), 0, 2)).toBeUndefined();
    expect(readUleb(Uint8Array.from(new Array(10).fill(0xff)), 0, 10)).toBeUndefined();
  });

  test('cut lists parse back, and inconsistent ones are refused', () => {
    const cuts = new CutListBuilder(4096);
    cuts.page(9);
    cuts.span(8, 1 << 20);
    cuts.ref(17, 3, 0xcafe0001);
    const structure = Buffer.alloc(9 + 8 + 17 + 5);
    const raw = Buffer.concat([cuts.encode(), structure]);
    const parsed = parseCutList(raw, 4096);
    if (typeof parsed === 'string') throw new Error(parsed);
    expect(parsed.cuts.count).toBe(3);
    expect([...parsed.cuts.tags]).toEqual([0, 2, 1]);
    expect([...parsed.cuts.gaps]).toEqual([9, 8, 17]);
    expect([...parsed.cuts.args]).toEqual([0, 1 << 20, 3]);
    expect(parsed.cuts.checks[2]).toBe(0xcafe0001);
    expect(parsed.payloadBytes).toBe(4096 + (1 << 20));
    expect(raw.length - parsed.structureOffset).toBe(structure.length);
    expect(parseCutList(Buffer.concat([cuts.encode(), Buffer.alloc(3)]), 4096)).toMatch(/structure bytes/);
    expect(parseCutList(Buffer.from([5, 0]), 4096)).toMatch(/exceeds|uleb/);
    expect(parseCutList(Buffer.from([1, 3]), 4096)).toMatch(/unknown tag 3/);
  });
});

function frame(kind: number, number: number, raw: Buffer): Buffer {
  const checksum = WRITTEN_CHECKSUM.of(raw);
  const header = encodeFrameHeader({ kind, codec: 0, flags: 0, number, rawLength: raw.length, storedLength: raw.length, rawChecksum: checksum, storedChecksum: checksum });
  return Buffer.concat([header, raw]);
}

describe('ContainerReader', () => {
  const info = Buffer.from('{}');
  const body = Buffer.alloc(1000, 7);
  const end = encodeEnd({ streamBytes: 1000, frames: 2, streamChecksum: 0 });
  const file = Buffer.concat([encodePreamble(), frame(FrameKind.HEADER, 0, info), frame(FrameKind.DATA, 1, body), frame(FrameKind.END, 2, end)]);
  const dataOffset = 12 + FRAME_HEADER_LENGTH + info.length;

  function read(bytes: Buffer, pieceSize = 7): ReturnType<ContainerReader['push']> {
    const reader = new ContainerReader();
    const frames = [];
    for (let at = 0; at < bytes.length; at += pieceSize) frames.push(...reader.push(bytes.subarray(at, at + pieceSize)));
    reader.end();
    return frames;
  }

  test('frames come out with their numbers and offsets whatever the chunking', () => {
    for (const size of [1, 5, 28, 1000, 1 << 20]) {
      const frames = read(file, size);
      expect(frames.map((f) => [f.kind, f.number, f.offset])).toEqual([
        [FrameKind.HEADER, 0, 12],
        [FrameKind.DATA, 1, dataOffset],
        [FrameKind.END, 2, dataOffset + FRAME_HEADER_LENGTH + body.length],
      ]);
      expect(frames[1]!.stored.equals(body)).toBe(true);
    }
  });

  test('a wrong magic, version or flag is refused, with a hint for a raw QEMU stream', () => {
    const qemu = Buffer.concat([Buffer.from('QEVM\0\0\0\x03', 'latin1'), Buffer.alloc(100)]);
    expect(() => read(qemu)).toThrow(/QEMU migration stream/);
    expect(() => read(qemu)).toThrow(ContainerMagicError);
    const version = Buffer.from(file);
    version[9] = 3;
    expect(() => read(version)).toThrow(/container version 3/);
    version[9] = 0;
    expect(() => read(version)).toThrow(/container version 0/);
    expect(CONTAINER_MAGIC.length).toBe(8);
  });

  test('damage names the frame number and the offset of its header', () => {
    const header = Buffer.from(file);
    header[dataOffset + 5]! ^= 0x10;
    expect(() => read(header)).toThrow(CorruptFrameError);
    expect(() => read(header)).toThrow(`container frame 1 at offset ${dataOffset} (0x${dataOffset.toString(16)}): frame header fails its checksum`);

    const swapped = Buffer.concat([encodePreamble(), frame(FrameKind.HEADER, 0, info), frame(FrameKind.DATA, 2, body), frame(FrameKind.DATA, 1, body)]);
    expect(() => read(swapped)).toThrow(FrameOrderError);
    expect(() => read(swapped)).toThrow(/container frame 1 \(DATA\) at offset \d+ .*found frame number 2/);

    const noHeader = Buffer.concat([encodePreamble(), frame(FrameKind.DATA, 0, body)]);
    expect(() => read(noHeader)).toThrow(/first frame is DATA/);

    const after = Buffer.concat([file, Buffer.from([0])]);
    expect(() => read(after)).toThrow(/data after the END frame/);
  });

  test('every truncation is reported, inside a frame or between frames', () => {
    for (let cut = 0; cut < file.length; cut++) {
      let error: unknown;
      try {
        read(file.subarray(0, cut), 64);
      } catch (caught) {
        error = caught;
      }
      expect(error, `cut at ${cut}`).toBeInstanceOf(TruncatedContainerError);
    }
  });
});
