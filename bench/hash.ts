/**
 * Page hashing over 256 MiB of 4 KiB pages: hashPages (XXH64 per page, one call) against
 * node:crypto's SHA-1 and MD5 per page and memory bandwidth as a plain copy.
 *
 *   npm run bench:hash
 *
 * MB/s are of the 256 MiB input (random bytes; XXH64 does the same work for any content).
 */
import { createHash, randomFillSync } from 'node:crypto';
import { Bench } from 'tinybench';
import { hashPages } from '../src/native.js';
import { printThroughput } from './report.js';

const PAGE = 4096;
const BYTES = 256 * 1024 * 1024;
const PAGES = BYTES / PAGE;

const data = randomFillSync(Buffer.alloc(BYTES));
const sink = Buffer.allocUnsafe(BYTES).fill(1);
const out = new BigUint64Array(PAGES);
// The same bytes at an odd address: the hash must not care about alignment.
const unaligned = Buffer.alloc(BYTES + 1).subarray(1);
data.copy(unaligned);

let last: Buffer = Buffer.alloc(0);
const bench = new Bench({ time: 1500, iterations: 5, warmupTime: 300, warmupIterations: 1 });
bench
  .add('copy', () => {
    data.copy(sink);
  })
  .add('hashPages (XXH64)', () => {
    hashPages(data, PAGE, out);
  })
  .add('hashPages, unaligned view', () => {
    hashPages(unaligned, PAGE, out);
  })
  .add('crypto md5 per page', () => {
    for (let at = 0; at < BYTES; at += PAGE) last = createHash('md5').update(data.subarray(at, at + PAGE)).digest();
  })
  .add('crypto sha1 per page', () => {
    for (let at = 0; at < BYTES; at += PAGE) last = createHash('sha1').update(data.subarray(at, at + PAGE)).digest();
  });
await bench.run();
if (last.length === 0) throw new Error('no digest');
const summary = printThroughput(`hashing ${PAGES} pages of ${PAGE} bytes (256 MiB)`, bench, BYTES, 'copy');
if (process.env.BENCH_JSON) console.log(JSON.stringify(summary));
