/**
 * Frames are built in lent buffers (src/compress/frame-emitter.ts): a writer that gives each
 * chunk back once written (Compressor.written) gets the same container bytes as one that does
 * not, while later frames reuse the memory of earlier ones; the one buffer pool and the chunk
 * cursor they stand on.
 */
import { describe, expect, test } from 'vitest';
import { Compressor } from '../../src/compress/compressor.js';
import { CODECS, type CodecName } from '../../src/codecs/registry.js';
import { BufferPool } from '../../src/bytes/buffer-pool.js';
import { ChunkCursor } from '../../src/bytes/chunk-cursor.js';
import { reportingWritten } from '../../src/bytes/written-back.js';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { busyStream } from '../helpers/busy-stream.js';
import { compressBuffer, decompressBuffer } from '../helpers/container.js';

const busy = busyStream().bytes;
const SMALL = 64 * 1024;

function* pieces(bytes: Buffer, size: number): Generator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

/** Compresses `input`, copying each chunk out ("writing" it) and giving it back at once. */
async function compressGivingBack(input: Buffer, codec: CodecName): Promise<{ container: Buffer; reused: number }> {
  // One job in flight: a frame given back is free before the next but one is built.
  const compressor = new Compressor({ codec, threads: 2, frameBytes: SMALL, maxInFlight: 1 });
  const parts: Buffer[] = [];
  const givenBack: Buffer[] = [];
  // Read in 64 KiB chunks, as from a pipe: frames leave between reads.
  for await (const chunk of compressor.compress(pieces(input, SMALL))) {
    parts.push(Buffer.from(chunk));
    compressor.written(chunk);
    givenBack.push(chunk);
  }
  // A buffer lent again went to a worker (transferred): the chunk given back is detached.
  const reused = givenBack.filter((chunk) => chunk.buffer.byteLength === 0).length;
  return { container: Buffer.concat(parts), reused };
}

describe('frames in lent buffers', () => {
  for (const codec of CODECS.map((c) => c.name)) {
    test(`${codec}: giving chunks back changes no byte, and later frames reuse the buffers`, async () => {
      const { container: plain } = await compressBuffer(busy, { codec, threads: 2, frameBytes: SMALL, maxInFlight: 1 });
      const { container, reused } = await compressGivingBack(busy, codec);
      expect(container.equals(plain)).toBe(true);
      expect((await decompressBuffer(container, { threads: 2 })).equals(busy)).toBe(true);
      expect(reused).toBeGreaterThan(10);
    });
  }

  test('a chunk given back twice, or one that is no frame buffer, is ignored', async () => {
    const compressor = new Compressor({ codec: 'none', threads: 1, frameBytes: SMALL });
    const parts: Buffer[] = [];
    for await (const chunk of compressor.compress([busy])) {
      parts.push(Buffer.from(chunk));
      compressor.written(chunk);
      compressor.written(chunk);
      compressor.written(Buffer.from('not a frame'));
    }
    const { container } = await compressBuffer(busy, { codec: 'none', threads: 1, frameBytes: SMALL });
    expect(Buffer.concat(parts).equals(container)).toBe(true);
  });
});

describe('BufferPool', () => {
  test('lends the smallest kept buffer that fits, keeps at most `keep`, dropping the smallest', () => {
    const pool = new BufferPool(2, 16);
    const a = pool.take(100);
    const b = pool.take(10);
    expect(a.length).toBe(100);
    expect(b.length).toBe(10);
    expect(b.buffer.byteLength).toBe(16);
    expect(pool.owns(a) && pool.owns(b)).toBe(true);
    expect(pool.owns(Buffer.alloc(4))).toBe(false);
    pool.give(a.buffer as ArrayBuffer);
    pool.give(b.buffer as ArrayBuffer);
    expect(pool.take(12).buffer).toBe(b.buffer);
    pool.give(b.buffer as ArrayBuffer);
    pool.give(new ArrayBuffer(50)); // full: the 16-byte one goes
    expect(pool.take(40).buffer.byteLength).toBe(50);
    expect(pool.take(90).buffer).toBe(a.buffer);
    expect(pool.take(8).buffer.byteLength).toBe(16); // new: nothing kept
    pool.give(new ArrayBuffer(0)); // detached: dropped
    expect(pool.take(1).buffer.byteLength).toBe(16);
  });
});

describe('ChunkCursor', () => {
  test('reads views within a chunk, copies across chunks, peeks without consuming, at every split', () => {
    const bytes = Buffer.from(Array.from({ length: 40 }, (_, i) => i));
    for (let split = 1; split < bytes.length; split++) {
      const cursor = new ChunkCursor();
      cursor.push(bytes.subarray(0, split));
      cursor.push(bytes.subarray(split));
      expect(cursor.peekU32()).toBe(bytes.readUInt32BE(0));
      expect(cursor.peekU8(split)).toBe(split);
      const first = cursor.read(5);
      expect([...first]).toEqual([0, 1, 2, 3, 4]);
      if (split >= 5) expect(first.buffer).toBe(bytes.buffer);
      cursor.skip(3);
      expect(cursor.offset).toBe(8);
      expect(cursor.available).toBe(32);
      const into = Buffer.alloc(10);
      expect(cursor.read(10, into)).toBe(into);
      expect([...into]).toEqual([8, 9, 10, 11, 12, 13, 14, 15, 16, 17]);
      expect(cursor.contiguous).toBe(split > 18 ? split - 18 : 40 - 18);
      cursor.dropConsumed();
      expect([...cursor.read(22)]).toEqual([...bytes.subarray(18)]);
      expect(cursor.available).toBe(0);
    }
  });
});

describe('reportingWritten', () => {
  test('reports each chunk once its destination wrote it; the container through it is the same', async () => {
    const compressor = new Compressor({ codec: 'zstd', threads: 2, frameBytes: SMALL, maxInFlight: 1 });
    const parts: Buffer[] = [];
    const pending = new Set<Buffer>();
    const dest = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        pending.add(chunk);
        setImmediate(() => {
          parts.push(Buffer.from(chunk));
          pending.delete(chunk);
          done();
        });
      },
    });
    let reported = 0;
    await pipeline(
      compressor.compress(pieces(busy, SMALL)),
      reportingWritten(dest, (chunk) => {
        expect(pending.has(chunk)).toBe(false);
        reported++;
        compressor.written(chunk);
      }),
    );
    const { container } = await compressBuffer(busy, { codec: 'zstd', threads: 2, frameBytes: SMALL, maxInFlight: 1 });
    expect(Buffer.concat(parts).equals(container)).toBe(true);
    expect(reported).toBe(parts.length);
  });

  test("the destination's failure fails the pipeline", async () => {
    const dest = new Writable({ write: (_chunk, _encoding, done) => done(new Error('disk full')) });
    await expect(
      pipeline(
        [Buffer.from('a'), Buffer.from('b')],
        reportingWritten(dest, () => {}),
      ),
    ).rejects.toThrow('disk full');
  });
});
