/**
 * Inputs the fuzzer (npm run fuzz, target "wire") found mishandled, each kept as a case:
 * every one of them failed before its fix.
 */
import { describe, expect, test } from 'vitest';
import { deflateRawSync } from 'node:zlib';
import { CODEC_IDS, decompressBytes, decompressFrame } from '../../src/codecs/registry.js';
import { ProtocolError } from '../../src/tls/errors.js';
import { FrameParser, FrameReader, FrameType, MAX_FRAME_BYTES, encodeDataHeader } from '../../src/tls/wire.js';

describe('hostile transport frames', () => {
  test('an empty DATA frame split across two reads is one frame (was a TypeError in FrameParser)', () => {
    const frame = encodeDataHeader(5, 0, CODEC_IDS.none, 0);
    const parser = new FrameParser();
    expect(parser.push(frame.subarray(0, 10))).toEqual([]);
    const frames = parser.push(frame.subarray(10));
    expect(frames).toHaveLength(1);
    expect(frames[0]).toMatchObject({ type: FrameType.DATA, seq: 5, rawLength: 0 });
    expect(parser.pending).toBe(0);
  });

  test('a DATA frame announcing more raw bytes than a frame may hold is refused before anything is allocated', () => {
    const frame = Buffer.concat([encodeDataHeader(0, 0, CODEC_IDS.lz4, 4), Buffer.from([0xff, 0xff, 0xff, 0xff])]);
    frame.writeUInt32BE(0xffffffff, 13);
    expect(() => new FrameParser(3).push(frame)).toThrow(ProtocolError);
    expect(() => new FrameParser(3).push(frame)).toThrow(`channel 3: DATA frame announces 4294967295 raw bytes, more than ${MAX_FRAME_BYTES}`);
    const reader = new FrameReader();
    reader.target().set(frame.subarray(0, 5));
    reader.filled(5);
    reader.target().set(frame.subarray(5, 18));
    reader.filled(13);
    // The socket parser reads the payload (bounded by the frame length) before it decodes the header.
    reader.target().set(frame.subarray(18));
    expect(() => reader.filled(4)).toThrow(ProtocolError);
  });

  test("zlib bytes that inflate past the announced length are a codec error, not node:zlib's RangeError", async () => {
    const bomb = deflateRawSync(Buffer.alloc(1 << 20));
    const error = await decompressBytes(CODEC_IDS.zlib, bomb, 4096).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(RangeError);
    expect((error as Error).message).toBe('inflates to more than the announced 4096 bytes');
  });

  test('decompressFrame gives exactly the announced bytes or fails, whatever the stored bytes claim', async () => {
    const raw = Buffer.alloc(64 * 1024, 7);
    for (const codec of [CODEC_IDS.lz4, CODEC_IDS.zstd, CODEC_IDS.zlib]) {
      const { compressBytes } = await import('../../src/codecs/registry.js');
      const stored = await compressBytes(codec, 1, raw);
      expect((await decompressFrame(codec, stored, raw.length)).equals(raw)).toBe(true);
      await expect(decompressFrame(codec, stored, 4096)).rejects.toThrow();
    }
  });
});
