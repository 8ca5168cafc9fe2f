/**
 * Compress then decompress gives back the input byte for byte: every codec, one and several
 * workers, small frames (many segments), dedup, raw mode, any chunking of either side.
 */
import { describe, expect, test } from 'vitest';
import { decodeBuffer } from '../../src/codec.js';
import { CODECS, type CodecName } from '../../src/codecs/registry.js';
import { ContainerReader } from '../../src/container/reader.js';
import { FrameKind } from '../../src/container/format.js';
import { xxh32PageHasher } from '../../src/compress/dedup-index.js';
import { busyStream } from '../helpers/busy-stream.js';
import { compressBuffer, decompressBuffer, randomPieces } from '../helpers/container.js';
import { sampleStream } from '../helpers/sample-stream.js';

const busy = busyStream().bytes;
const sample = sampleStream().bytes;
const SMALL = 64 * 1024;

function frameKinds(container: Buffer): number[] {
  const reader = new ContainerReader();
  const kinds = reader.push(container).map((f) => f.kind);
  reader.end();
  return kinds;
}

describe('round trip', () => {
  for (const codec of CODECS.map((c) => c.name)) {
    for (const threads of [1, 3]) {
      test(`${codec}, ${threads} worker${threads > 1 ? 's' : ''}: busy stream in small frames`, async () => {
        const { container, compressor } = await compressBuffer(busy, { codec: codec as CodecName, threads, frameBytes: SMALL });
        expect(compressor.stats.bytesIn).toBe(busy.length);
        if (codec !== 'none') expect(container.length).toBeLessThan(busy.length / 2);
        const kinds = frameKinds(container);
        expect(kinds.filter((k) => k === FrameKind.PAYLOAD).length).toBeGreaterThan(20);
        expect(kinds[0]).toBe(FrameKind.HEADER);
        expect(kinds.at(-1)).toBe(FrameKind.END);
        const back = await decompressBuffer(container, { threads });
        expect(back.equals(busy)).toBe(true);
      });
    }
  }

  test('the hand-built sample stream (one segment, every record kind)', async () => {
    for (const codec of ['zstd', 'lz4'] as const) {
      const { container } = await compressBuffer(sample, { codec });
      expect((await decompressBuffer(container)).equals(sample)).toBe(true);
    }
  });

  test('any chunking of the input and of the container', async () => {
    for (const seed of [1, 2]) {
      const { container } = await compressBuffer(busy, { codec: 'lz4', frameBytes: SMALL }, randomPieces(busy, seed, 9000));
      const back = await decompressBuffer(container, {}, randomPieces(container, seed + 10, 5000));
      expect(back.equals(busy)).toBe(true);
    }
  });

  test('zstd levels change the output, not the stream', async () => {
    const sizes = [];
    for (const level of [-5, 1, 9]) {
      const { container } = await compressBuffer(busy, { codec: 'zstd', level, frameBytes: SMALL });
      sizes.push(container.length);
      expect((await decompressBuffer(container)).equals(busy)).toBe(true);
    }
    expect(new Set(sizes).size).toBe(3);
  });

  test('dedup stores repeated pages as references and resolves them', async () => {
    const plain = await compressBuffer(busy, { codec: 'none', frameBytes: SMALL, dedupWindowPages: 0 });
    expect(plain.compressor.stats.refs).toBe(0);
    const dedup = await compressBuffer(busy, { codec: 'none', frameBytes: SMALL, dedupWindowPages: 4096 });
    expect(dedup.compressor.stats.refs).toBeGreaterThan(20);
    expect(dedup.container.length).toBeLessThan(plain.container.length - dedup.compressor.stats.refs * 4000);
    expect((await decompressBuffer(dedup.container)).equals(busy)).toBe(true);
    // A window of 2 pages still decompresses: references only reach inside it.
    const tight = await compressBuffer(busy, { codec: 'zstd', frameBytes: SMALL, dedupWindowPages: 2 });
    expect((await decompressBuffer(tight.container)).equals(busy)).toBe(true);
  });

  test('dedup is on by default in QEMU mode, with the 16384-page window', async () => {
    const { container, compressor } = await compressBuffer(busy, { codec: 'zstd', frameBytes: SMALL });
    expect(compressor.stats.refs).toBeGreaterThan(20);
    const info = JSON.parse(new ContainerReader().push(container)[0]!.stored.toString('utf8')) as { dedupWindowPages: number; level: number };
    expect(info.dedupWindowPages).toBe(16384);
    expect(info.level).toBe(3);
  });

  test('the TypeScript dedup index finds the same references as the native window', async () => {
    const native = await compressBuffer(busy, { codec: 'lz4', frameBytes: SMALL, dedupWindowPages: 64 });
    const typescript = await compressBuffer(busy, { codec: 'lz4', frameBytes: SMALL, dedupWindowPages: 64, pageHasher: xxh32PageHasher });
    expect(typescript.compressor.stats.refs).toBe(native.compressor.stats.refs);
    expect(typescript.compressor.stats.pages).toBe(native.compressor.stats.pages);
    expect((await decompressBuffer(typescript.container)).equals(busy)).toBe(true);
  });

  test('zero pages stay QEMU records: their bytes are in META, not PAYLOAD', async () => {
    const { compressor } = await compressBuffer(busy, { codec: 'none' });
    const records = decodeBuffer(busy);
    expect(compressor.stats.pages + compressor.stats.refs).toBe(records.filter((r) => r.type === 'ram-page').length);
  });

  test('raw mode compresses any bytes, including non-streams and the empty input', async () => {
    const dump = Buffer.concat([Buffer.alloc(300_000), busy.subarray(0, 500_000)]);
    for (const data of [dump, Buffer.alloc(0)]) {
      const { container } = await compressBuffer(data, { mode: 'raw', frameBytes: SMALL });
      expect((await decompressBuffer(container)).equals(data)).toBe(true);
    }
    expect(frameKinds((await compressBuffer(dump, { mode: 'raw', frameBytes: SMALL })).container)).toContain(FrameKind.DATA);
  });

  test('a damaged QEMU stream fails compression with the decoder error', async () => {
    const damaged = Buffer.from(busy.subarray(0, busy.length - 100));
    await expect(compressBuffer(damaged)).rejects.toThrow(/ends inside a record|truncated|stream ends/i);
    await expect(compressBuffer(Buffer.from('not a stream at all'))).rejects.toThrow(/magic/);
  });
});
