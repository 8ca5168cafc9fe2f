/**
 * The worker pool and the ordered pipeline: order restored, frames in flight bounded (a slow
 * writer holds the reader back), and a failing worker stops everything with a clear error.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, test } from 'vitest';
import { Compressor } from '../../src/compress/compressor.js';
import { Decompressor } from '../../src/decompress/piped.js';
import { WorkerError } from '../../src/workers/errors.js';
import { OrderedQueue } from '../../src/workers/ordered-queue.js';
import { WorkerPool } from '../../src/workers/pool.js';
import { busyStream } from '../helpers/busy-stream.js';
import { compressBuffer, pieces } from '../helpers/container.js';

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('OrderedQueue', () => {
  test('consumes in the order tasks were added, whatever order they finish in', async () => {
    const seen: number[] = [];
    const queue = new OrderedQueue<number>(3, (value) => void seen.push(value));
    for (let i = 0; i < 10; i++) await queue.add(delay((10 - i) * 3).then(() => i));
    await queue.drain();
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test('never holds more than `limit` unconsumed tasks, and waits for a slow consumer', async () => {
    let started = 0;
    let consumed = 0;
    let most = 0;
    const queue = new OrderedQueue<number>(2, async () => {
      await delay(5);
      consumed++;
    });
    for (let i = 0; i < 12; i++) {
      started++;
      most = Math.max(most, started - consumed);
      await queue.add(Promise.resolve(i));
    }
    await queue.drain();
    expect(consumed).toBe(12);
    expect(most).toBeLessThanOrEqual(3);
  });

  test('a failed task fails the consumer side in order', async () => {
    const queue = new OrderedQueue<number>(4, () => {});
    await queue.add(Promise.resolve(1));
    await queue.add(Promise.reject(new Error('frame 2 broke')));
    await expect(queue.drain()).rejects.toThrow('frame 2 broke');
  });
});

describe('bounded memory', () => {
  test('a slow writer holds back reading: input read ahead stays within the frames in flight', async () => {
    const data = busyStream({ pages: 1024, iterations: 4, disk: false }).bytes;
    const frameBytes = 64 * 1024;
    let pulled = 0;
    let written = 0;
    let ahead = 0;
    const input = function* (): Generator<Buffer> {
      for (const piece of pieces(data, 16 * 1024)) {
        pulled += piece.length;
        ahead = Math.max(ahead, pulled - written);
        yield piece;
      }
    };
    const compressor = new Compressor({ codec: 'none', threads: 2, frameBytes, maxInFlight: 3, dedupWindowPages: 0 });
    for await (const chunk of compressor.compress(input())) {
      written += chunk.length;
      await delay(1);
    }
    expect(written).toBeGreaterThan(data.length);
    // In flight: 3 segments queued + 1 being built + the one being written, each about one frame.
    expect(ahead).toBeLessThan(6 * (frameBytes + 16 * 1024));
  });

  test('the decompressor reads no further ahead either', async () => {
    const data = busyStream({ pages: 1024, iterations: 4, disk: false }).bytes;
    const { container } = await compressBuffer(data, { codec: 'none', frameBytes: 64 * 1024 });
    let pulled = 0;
    let written = 0;
    let ahead = 0;
    const input = function* (): Generator<Buffer> {
      for (const piece of pieces(container, 16 * 1024)) {
        pulled += piece.length;
        ahead = Math.max(ahead, pulled - written);
        yield piece;
      }
    };
    for await (const chunk of new Decompressor({ threads: 2, maxInFlight: 3 }).decompress(input())) {
      written += chunk.length;
      await delay(1);
    }
    expect(written).toBe(data.length);
    expect(ahead).toBeLessThan(7 * (64 * 1024 + 16 * 1024));
  });
});

describe('failures', () => {
  const dir = mkdtempSync(join(tmpdir(), 'migstream-pool-'));

  test('a worker that exits fails every pending and later request with a WorkerError', async () => {
    const entry = join(dir, 'exit-worker.mjs');
    writeFileSync(entry, "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', () => process.exit(3));\n");
    const pool = new WorkerPool(2, pathToFileURL(entry));
    try {
      const job = pool.run({ op: 'compress', codec: 0, level: 0, raw: new Uint8Array(4) });
      await expect(job).rejects.toThrow(WorkerError);
      await expect(job).rejects.toThrow(/worker thread \d exited unexpectedly \(exit code 3\)/);
      await expect(pool.run({ op: 'compress', codec: 0, level: 0, raw: new Uint8Array(4) })).rejects.toThrow(WorkerError);
    } finally {
      await pool.close();
    }
  });

  test('a worker that throws is reported with its message', async () => {
    const entry = join(dir, 'throw-worker.mjs');
    writeFileSync(entry, "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', () => { throw new Error('codec library crashed'); });\n");
    const pool = new WorkerPool(1, pathToFileURL(entry));
    try {
      await expect(pool.run({ op: 'compress', codec: 0, level: 0, raw: new Uint8Array(4) })).rejects.toThrow(/worker thread 0 failed: codec library crashed/);
    } finally {
      await pool.close();
    }
  });

  test('an input that fails midway stops the compressor with that error, workers closed', async () => {
    const data = busyStream().bytes;
    const input = function* (): Generator<Buffer> {
      yield data.subarray(0, 1_000_000);
      throw new Error('source VM went away');
    };
    await expect(compressBuffer(data, { frameBytes: 64 * 1024 }, input())).rejects.toThrow('source VM went away');
  });

  test('a reader that stops early closes the pipeline cleanly', async () => {
    const data = busyStream().bytes;
    const { container } = await compressBuffer(data, { frameBytes: 64 * 1024 });
    for await (const chunk of new Decompressor({ threads: 2 }).decompress(pieces(container, 4096))) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
  });

  test('bad thread counts and frame sizes are argument errors', () => {
    expect(() => new WorkerPool(0)).toThrow(/1\.\.256/);
    expect(() => new Compressor({ frameBytes: 10 })).toThrow(/frame size/);
    expect(() => new Compressor({ codec: 'zstd', level: 99 })).toThrow(/zstd level/);
    expect(() => new Compressor({ codec: 'brotli' as never })).toThrow(/unknown codec/);
  });
});
