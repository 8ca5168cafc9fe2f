/**
 * Zero-page scan over 256 MiB of 4 KiB pages: findZeroPages against a Buffer.compare loop,
 * the per-page isAllZero call, and memory bandwidth as a plain copy of the same bytes.
 *
 *   npm run bench:zero-scan
 *
 * Inputs: every page zero (the scan must read every byte: the bandwidth-bound case), no page
 * zero with random bytes (rejected after a few bytes), no page zero with one byte set mid-page
 * (half of every page read), and half the pages zero at random. MB/s are of the 256 MiB input.
 */
import { randomFillSync } from 'node:crypto';
import { Bench } from 'tinybench';
import { findZeroPages, isAllZero } from '../src/native.js';
import { printThroughput } from './report.js';

const PAGE = 4096;
const BYTES = 256 * 1024 * 1024;
const PAGES = BYTES / PAGE;

function input(kind: string): Buffer {
  // Written, not just allocated: a fresh zeroed allocation maps every page to the kernel's one
  // shared zero page, which reads from cache at any speed.
  const data = Buffer.allocUnsafe(BYTES).fill(0);
  if (kind === 'all zero') return data;
  if (kind === 'none zero') return randomFillSync(data);
  if (kind === 'none zero, byte mid-page') {
    for (let page = 0; page < PAGES; page++) data[page * PAGE + PAGE / 2] = 1;
    return data;
  }
  // mixed: each page zero or random with probability 1/2
  let seed = 0x2545f491;
  for (let page = 0; page < PAGES; page++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    if (seed & 0x10000) randomFillSync(data, page * PAGE, PAGE);
  }
  return data;
}

const zeroPage = Buffer.alloc(PAGE);
const sink = Buffer.allocUnsafe(BYTES).fill(1);
const out = new Uint8Array(PAGES);
const summary: Record<string, Record<string, number>> = {};
for (const kind of ['all zero', 'none zero', 'none zero, byte mid-page', 'mixed']) {
  const data = input(kind);
  const expected = findZeroPages(data, PAGE).reduce((sum, z) => sum + z, 0);
  let zeros = 0;
  const bench = new Bench({ time: 1000, iterations: 5, warmupTime: 200, warmupIterations: 1 });
  bench
    .add('copy', () => {
      data.copy(sink);
    })
    .add('findZeroPages', () => {
      findZeroPages(data, PAGE, out);
    })
    .add('isAllZero per page', () => {
      zeros = 0;
      for (let at = 0; at < BYTES; at += PAGE) if (isAllZero(data.subarray(at, at + PAGE))) zeros++;
    })
    .add('Buffer.compare loop', () => {
      zeros = 0;
      for (let at = 0; at < BYTES; at += PAGE) if (Buffer.compare(data.subarray(at, at + PAGE), zeroPage) === 0) zeros++;
    });
  await bench.run();
  if (zeros !== expected) throw new Error(`${kind}: ${zeros} zero pages, findZeroPages says ${expected}`);
  summary[kind] = printThroughput(`${kind}: ${PAGES} pages, ${expected} zero (256 MiB)`, bench, BYTES, 'copy');
}
if (process.env.BENCH_JSON) console.log(JSON.stringify(summary));
