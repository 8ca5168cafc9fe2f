/**
 * Decode throughput on real QEMU streams, against a plain in-process copy of the same bytes.
 *
 *   npm run bench:decode [-- STREAM…]   (default: every .cache/fixtures/<name>/stream.mig)
 *
 * The input is cut into 1 MiB chunks, as a pipe read with a large buffer delivers it; every
 * task walks all chunks.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Bench } from 'tinybench';
import { createDecoder, createEncoder } from '../src/codec.js';
import { printThroughput } from './report.js';

const CHUNK = 1024 * 1024;

function defaultStreams(): string[] {
  const root = '.cache/fixtures';
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .map((name) => join(root, name, 'stream.mig'))
    .filter((path) => existsSync(path));
}

function chunksOf(data: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < data.length; at += CHUNK) chunks.push(data.subarray(at, at + CHUNK));
  return chunks;
}

const paths = process.argv.slice(2).length > 0 ? process.argv.slice(2) : defaultStreams();
if (paths.length === 0) {
  console.error('no streams: pass paths, or run the tests once to build .cache/fixtures');
  process.exit(2);
}

const summary: Record<string, Record<string, number>> = {};
for (const path of paths) {
  const data = readFileSync(path);
  const chunks = chunksOf(data);
  const sink = Buffer.allocUnsafe(CHUNK);
  const bench = new Bench({ time: 1500, warmupTime: 300 });
  bench
    // Two plain copies of the same bytes: into fresh memory, as reading the stream into new
    // buffers does (the baseline), and into one reused, cache-warm buffer (an upper bound).
    .add('copy', () => {
      for (const chunk of chunks) Buffer.from(chunk);
    })
    .add('copy (reused buffer)', () => {
      for (const chunk of chunks) chunk.copy(sink);
    })
    .add('decode', () => {
      const decoder = createDecoder();
      let records = 0;
      for (const chunk of chunks) records += decoder.push(chunk).length;
      records += decoder.end().length;
      if (records === 0) throw new Error('no records');
    })
    .add('decode+encode', () => {
      const decoder = createDecoder();
      const encoder = createEncoder();
      for (const chunk of chunks) {
        for (const record of decoder.push(chunk)) encoder.write(record);
        encoder.take();
      }
      for (const record of decoder.end()) encoder.write(record);
      encoder.take();
    });
  await bench.run();
  summary[path] = printThroughput(`${path} (${(data.length / 1e6).toFixed(1)} MB)`, bench, data.length, 'copy');
}
if (process.env.BENCH_JSON) console.log(JSON.stringify(summary));
