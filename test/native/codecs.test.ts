/**
 * XXH32 and XXH64's low 32 bits, the zstd / lz4 codecs into caller buffers, the frame check on libuv's pool and the
 * compressor's payload ring (src/native/codec.ts, src/native/ring.ts): against the TypeScript
 * XXH32 and published values, against the npm codec bindings (same formats both ways), and
 * with bad arguments and damaged input.
 */
import { createRequire } from 'node:module';
import { describe, expect, test } from 'vitest';
import { xxh32, xxh64Low32, xxh64Slow } from '../../src/container/checksum.js';
import {
  NativePayloadRing,
  codecLibraries,
  frameDecodeAsync,
  hash64,
  lz4CompressInto,
  lz4DecompressInto,
  nativeBinding,
  xxh32Native,
  xxh64Low32Native,
  zstdCompressInto,
  zstdDecompressInto,
} from '../../src/native.js';
import { copyBytes } from '../../src/native/ring.js';
import { ArgumentError } from '../../src/stream/errors.js';
import { prng } from '../helpers/feed.js';
import { expectArgumentError } from '../helpers/argument-error.js';

const require = createRequire(import.meta.url);

/** Compressible bytes: text-like runs with some noise. */
function sample(length: number, seed: number): Buffer {
  const random = prng(seed);
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) out[i] = random() < 0.9 ? 97 + (i % 13) : Math.floor(random() * 256);
  return out;
}

describe('the system codec libraries', () => {
  test('are loaded (libzstd and liblz4 are dependencies of dpkg and apt)', () => {
    const { zstd, lz4 } = codecLibraries();
    expect(zstd).toBeGreaterThanOrEqual(10400);
    expect(lz4).toBeGreaterThan(0);
  });
});

describe('xxh32', () => {
  test('published values (xxhsum -H32) and the TypeScript loop, at every length and alignment', () => {
    expect(xxh32Native(Buffer.alloc(0))).toBe(0x02cc5d05);
    expect(xxh32Native(Buffer.from('abc'))).toBe(0x32d153ff);
    const data = sample(5000, 1);
    for (const length of [0, 1, 3, 4, 15, 16, 17, 31, 32, 255, 256, 257, 4096, 5000 - 7]) {
      for (const offset of [0, 1, 3, 7]) {
        const view = data.subarray(offset, offset + length);
        // The module's xxh32 hands inputs from 256 bytes on to the addon: compare with a loop
        // over a copy split below that size.
        expect(xxh32Native(view), `length ${length}, offset ${offset}`).toBe(xxh32(view));
      }
    }
    expect(xxh32Native(Buffer.from('abc'), 1)).not.toBe(0x32d153ff);
  });

  test('rejects what is not bytes', () => {
    expectArgumentError(() => xxh32Native('abc' as unknown as Uint8Array), /Uint8Array/);
    expectArgumentError(() => xxh32Native(Buffer.alloc(1), -1), /seed/);
    expectArgumentError(() => nativeBinding().xxh32(new Uint16Array(2) as unknown as Uint8Array, 0), /Uint8Array/);
  });
});

describe('xxh64Low32 (container version 2)', () => {
  test('the low half of XXH64: published values, the addon against the TypeScript BigInt version', () => {
    // xxhsum -H1 of "" and "abc": ef46db3751d8e999, 44bc2cf5ad770999.
    expect(xxh64Low32Native(Buffer.alloc(0))).toBe(0x51d8e999);
    expect(xxh64Low32Native(Buffer.from('abc'))).toBe(0xad770999);
    const data = sample(5000, 4);
    for (const length of [0, 1, 3, 4, 7, 8, 9, 31, 32, 33, 63, 64, 100, 4096, 5000 - 7]) {
      for (const offset of [0, 1, 5]) {
        const view = data.subarray(offset, offset + length);
        const slow = Number(xxh64Slow(view) & 0xffff_ffffn);
        expect(xxh64Low32Native(view), `length ${length}, offset ${offset}`).toBe(slow);
        expect(xxh64Low32(view)).toBe(slow);
        if (length > 0) expect(BigInt(slow)).toBe(hash64(view) & 0xffff_ffffn);
      }
    }
  });

  test('rejects what is not bytes', () => {
    expectArgumentError(() => xxh64Low32Native('abc' as unknown as Uint8Array), /Uint8Array/);
    expectArgumentError(() => nativeBinding().xxh64Low32(new Uint16Array(2) as unknown as Uint8Array), /Uint8Array/);
  });
});

describe('zstd and lz4 into caller buffers', () => {
  const raw = sample(300_000, 2);

  test('zstd: round trip, and the npm binding reads our frames and we read its', async () => {
    const out = Buffer.alloc(raw.length);
    const n = zstdCompressInto(raw, out, 1);
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(raw.length / 2);
    const back = Buffer.alloc(raw.length);
    expect(zstdDecompressInto(out.subarray(0, n), back)).toBe(raw.length);
    expect(back.equals(raw)).toBe(true);
    const npm = require('@mongodb-js/zstd/bindings.js') as { compress(d: Buffer, l: number): Promise<Buffer>; decompress(d: Buffer): Promise<Buffer> };
    expect((await npm.decompress(out.subarray(0, n))).equals(raw)).toBe(true);
    const theirs = await npm.compress(raw, 3);
    back.fill(0);
    expect(zstdDecompressInto(theirs, back)).toBe(raw.length);
    expect(back.equals(raw)).toBe(true);
  });

  test('lz4: blocks the npm binding (lz4_flex, after its u32 length) reads, and the other way', () => {
    const out = Buffer.alloc(raw.length);
    const n = lz4CompressInto(raw, out);
    expect(n).toBeGreaterThan(0);
    const framed = Buffer.alloc(4 + n);
    framed.writeUInt32LE(raw.length, 0);
    out.copy(framed, 4, 0, n);
    const npm = require('lz4-napi') as { compressSync(d: Buffer): Buffer; uncompressSync(d: Buffer): Buffer };
    expect(npm.uncompressSync(framed).equals(raw)).toBe(true);
    const back = Buffer.alloc(raw.length);
    expect(lz4DecompressInto(npm.compressSync(raw).subarray(4), back)).toBe(raw.length);
    expect(back.equals(raw)).toBe(true);
  });

  test('-1 when the output does not fit (random bytes do not shrink)', () => {
    const next = prng(9);
    const random = Buffer.from(Array.from({ length: 10_000 }, () => Math.floor(next() * 256)));
    expect(zstdCompressInto(random, Buffer.alloc(random.length - 1), 3)).toBe(-1);
    expect(lz4CompressInto(random, Buffer.alloc(random.length - 1))).toBe(-1);
    expect(zstdCompressInto(raw, Buffer.alloc(10), 1)).toBe(-1);
  });

  test('damaged input, or more output than room, is an Error (not an ArgumentError)', () => {
    const out = Buffer.alloc(raw.length);
    const z = zstdCompressInto(raw, out, 1);
    const damaged = Buffer.from(out.subarray(0, z));
    damaged[z >> 1]! ^= 0xff;
    const back = Buffer.alloc(raw.length);
    for (const fn of [
      () => zstdDecompressInto(Buffer.from('not a zstd frame at all'), back),
      () => zstdDecompressInto(out.subarray(0, z), Buffer.alloc(raw.length - 1)),
      () => lz4DecompressInto(Buffer.from([0xff, 0xff, 0xff, 0xff]), back),
    ]) {
      let caught: unknown;
      try {
        fn();
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(Error);
      expect(caught).not.toBeInstanceOf(ArgumentError);
    }
    // Damage inside the frame either fails or gives other bytes; the frame checksums catch it.
    try {
      zstdDecompressInto(damaged, back);
      expect(back.equals(raw)).toBe(false);
    } catch (error) {
      expect(error).toBeInstanceOf(Error);
    }
  });

  test('bad arguments are ArgumentErrors, in TypeScript and in the addon', () => {
    const a = Buffer.alloc(100);
    expectArgumentError(() => zstdCompressInto(a, a.subarray(50), 1), /overlap/);
    expectArgumentError(() => zstdCompressInto(a, Buffer.alloc(10), 23), /level/);
    expectArgumentError(() => zstdCompressInto(a, Buffer.alloc(10), 1.5), /level/);
    expectArgumentError(() => lz4CompressInto([1, 2] as unknown as Uint8Array, a), /source/);
    expectArgumentError(() => nativeBinding().zstdCompress(a, a, 1), /overlap/);
    expectArgumentError(() => nativeBinding().zstdCompress(a, Buffer.alloc(10), 99), /level/);
    expectArgumentError(() => nativeBinding().lz4Decompress(a, new Float64Array(2) as unknown as Uint8Array), /Uint8Array/);
  });
});

describe('frameDecodeAsync: one frame checked and decompressed on the thread pool', () => {
  const raw = sample(200_000, 3);
  const zstdStored = (() => {
    const out = Buffer.alloc(raw.length);
    return Buffer.from(out.subarray(0, zstdCompressInto(raw, out, 1)));
  })();
  const lz4Stored = (() => {
    const out = Buffer.alloc(raw.length);
    const n = lz4CompressInto(raw, out.subarray(4));
    out.writeUInt32LE(raw.length, 0);
    return Buffer.from(out.subarray(0, 4 + n));
  })();

  test('ok: the raw bytes, for zstd and lz4, several at once, with either checksum', async () => {
    const outs = [Buffer.alloc(raw.length), Buffer.alloc(raw.length), Buffer.alloc(raw.length), Buffer.alloc(raw.length)];
    const checks = await Promise.all([
      frameDecodeAsync(2, zstdStored, outs[0]!, xxh32(zstdStored), xxh32(raw), 1),
      frameDecodeAsync(1, lz4Stored, outs[1]!, xxh32(lz4Stored), xxh32(raw), 1),
      frameDecodeAsync(2, zstdStored, outs[2]!, xxh64Low32(zstdStored), xxh64Low32(raw), 2),
      frameDecodeAsync(1, lz4Stored, outs[3]!, xxh64Low32(lz4Stored), xxh64Low32(raw), 2),
    ]);
    for (const check of checks) expect(check.status).toBe(0);
    for (const out of outs) expect(out.equals(raw)).toBe(true);
  });

  test('each failure, with the checksum computed or the codec message', async () => {
    const out = Buffer.alloc(raw.length);
    const stored = await frameDecodeAsync(2, zstdStored, out, (xxh32(zstdStored) ^ 1) >>> 0, xxh32(raw), 1);
    expect(stored).toMatchObject({ status: 1, actual: xxh32(zstdStored) });
    const rawSum = await frameDecodeAsync(2, zstdStored, out, xxh32(zstdStored), (xxh32(raw) ^ 1) >>> 0, 1);
    expect(rawSum).toMatchObject({ status: 3, actual: xxh32(raw) });
    // Version 1's checksums do not pass as version 2's, nor the other way round.
    const v1AsV2 = await frameDecodeAsync(2, zstdStored, out, xxh32(zstdStored), xxh32(raw), 2);
    expect(v1AsV2).toMatchObject({ status: 1, actual: xxh64Low32(zstdStored) });
    const rawV2 = await frameDecodeAsync(1, lz4Stored, out, xxh64Low32(lz4Stored), xxh32(raw), 2);
    expect(rawV2).toMatchObject({ status: 3, actual: xxh64Low32(raw) });
    const short = await frameDecodeAsync(2, zstdStored, Buffer.alloc(raw.length - 1), xxh32(zstdStored), xxh32(raw), 1);
    expect(short.status).toBe(2);
    expect(short.message).toMatch(/zstd/);
    const announced = Buffer.from(lz4Stored);
    announced.writeUInt32LE(raw.length + 1, 0);
    const lz4 = await frameDecodeAsync(1, announced, out, xxh32(announced), xxh32(raw), 1);
    expect(lz4).toMatchObject({ status: 2, message: expect.stringMatching(/announces/) });
  });

  test('bad arguments throw at the call', () => {
    const out = Buffer.alloc(10);
    expectArgumentError(() => void frameDecodeAsync(0, zstdStored, out, 0, 0, 1), /codec/);
    expectArgumentError(() => void frameDecodeAsync(2, zstdStored, out, -1, 0, 1), /storedChecksum/);
    expectArgumentError(() => void frameDecodeAsync(2, zstdStored, out, 0, 0, 3 as 1), /checksum/);
    expectArgumentError(() => void nativeBinding().frameDecode(3, zstdStored, out, 0, 0, 1), /codec/);
    expectArgumentError(() => void nativeBinding().frameDecode(2, out, out, 0, 0, 1), /overlap/);
    expectArgumentError(() => void nativeBinding().frameDecode(2, zstdStored, out, 0, 0, 0), /checksum/);
    expectArgumentError(() => void nativeBinding().frameDecode(2, zstdStored, out, 0, 0, 3), /checksum/);
    // @ts-expect-error: the checksum argument is missing
    expectArgumentError(() => void nativeBinding().frameDecode(2, zstdStored, out, 0, 0), /6 arguments/);
  });
});

describe('the payload ring and its dedup window', () => {
  const PAGE = 4096;

  function page(seed: number): Buffer {
    return Buffer.alloc(PAGE, seed & 0xff).fill(seed >> 8, 0, 8);
  }

  test('finds a page equal to one of the last W stored, with its checksum, and stores the rest', () => {
    const W = 8;
    const ring = new NativePayloadRing(W * PAGE + 4 * PAGE, PAGE, W);
    let at = 0;
    const store = (p: Buffer): number => {
      const distance = ring.storePage(at, p);
      if (distance === 0) {
        expect(Buffer.from(ring.bytes.subarray(at, at + PAGE)).equals(p)).toBe(true);
        at += PAGE;
      }
      return distance;
    };
    for (let i = 0; i < 8; i++) expect(store(page(i))).toBe(0);
    expect(ring.count).toBe(8);
    expect(store(page(3))).toBe(5);
    expect(ring.checksum).toBe(xxh64Low32(page(3)));
    expect(store(page(7))).toBe(1);
    // Page 0 is 8 stored pages back (still in the window); storing one more pushes it out.
    expect(store(page(0))).toBe(8);
    expect(store(page(100))).toBe(0);
    expect(store(page(0))).toBe(0);
    // The copy of page 0 just stored is found again.
    expect(store(page(0))).toBe(1);
    ring.reset();
    expect(ring.count).toBe(0);
    expect(store(page(100))).toBe(0);
  });

  test('a page whose ring bytes were overwritten is not a candidate', () => {
    // A ring of 3 pages, a window of 8: page 0 is in the window but no longer in the ring.
    const ring = new NativePayloadRing(3 * PAGE, PAGE, 8);
    for (let i = 0; i < 4; i++) expect(ring.storePage(i * PAGE, page(i))).toBe(0);
    expect(ring.storePage(4 * PAGE, page(0))).toBe(0);
    expect(ring.storePage(5 * PAGE, page(3))).toBe(2);
  });

  test('without a window it only copies', () => {
    const ring = new NativePayloadRing(4 * PAGE, PAGE, 0);
    expect(ring.storePage(0, page(1))).toBe(0);
    expect(ring.storePage(PAGE, page(1))).toBe(0);
    ring.copy(2 * PAGE, Buffer.from('disk chunk'));
    expect(Buffer.from(ring.bytes.subarray(2 * PAGE, 2 * PAGE + 10)).toString()).toBe('disk chunk');
  });

  test('copyBytes is memcpy, also out of shared memory', () => {
    const shared = new Uint8Array(new SharedArrayBuffer(64)).fill(7);
    const out = Buffer.alloc(70);
    copyBytes(out, 3, shared);
    expect(out.subarray(3, 67).every((b) => b === 7)).toBe(true);
    expect(out[2]).toBe(0);
    expectArgumentError(() => copyBytes(out, 10, shared), /exceed/);
  });

  test('bad arguments are ArgumentErrors', () => {
    const ring = new NativePayloadRing(4 * PAGE, PAGE, 2);
    expectArgumentError(() => ring.storePage(0, Buffer.alloc(PAGE - 1)), /page/);
    expectArgumentError(() => ring.copy(-1, Buffer.alloc(1)), /at/);
    expectArgumentError(() => ring.copy(3 * PAGE + 1, Buffer.alloc(PAGE)), /exceed/);
    expectArgumentError(() => new NativePayloadRing(100, PAGE, 1), /ringBytes/);
    const b = nativeBinding();
    const table = new Uint8Array(64);
    const positions = new Float64Array(2);
    const sum = new Uint32Array(1);
    // A page that would wrap around the end of the ring.
    expectArgumentError(() => b.dedupStore(ring.bytes, table, positions, PAGE, 0, 3 * PAGE + 8, Buffer.alloc(PAGE), sum), /does not fit/);
    expectArgumentError(() => b.dedupStore(ring.bytes, new Uint8Array(96), positions, PAGE, 0, 0, Buffer.alloc(PAGE), sum), /power of two/);
    expectArgumentError(() => b.dedupStore(ring.bytes, table, positions, PAGE, 0, 0, ring.bytes.subarray(0, PAGE), sum), /overlap/);
    expectArgumentError(() => b.dedupStore(ring.bytes, table, new Float64Array(0), PAGE, 0, 0, Buffer.alloc(PAGE), sum), /empty/);
  });
});
