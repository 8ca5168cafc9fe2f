/**
 * Page hashing over 256 MiB of 4 KiB pages: hashPages (XXH64 per page, one call) against
 * node:crypto's SHA-1 and MD5 per page and memory bandwidth as a plain copy. Also the
 * container's frame checksums over 4 MiB frames: version 1's XXH32 against version 2's low half
 * of XXH64 (src/container/checksum.ts), the reason for version 2.
 *
 *   npm run bench:hash
 *
 * MB/s are of the 256 MiB input (random bytes; XXH64 does the same work for any content).
 */
import { createHash, randomFillSync } from 'node:crypto';
import { Bench } from 'tinybench';
import { xxh32, xxh64Low32 } from '../src/container/checksum.js';
import { hashPages } from '../src/native.js';
import { printThroughput } from './report.js';

const PAGE = 4096;
const BYTES = 256 * 1024 * 1024;
const PAGES = BYTES / PAGE;
const FRAME = 4 * 1024 * 1024;

function frameChecksums(checksum: (frame: Uint8Array) => number): number {
  let sum = 0;
  for (let at = 0; at < BYTES; at += FRAME) sum ^= checksum(data.subarray(at, at + FRAME));
  return sum;
}

const data = randomFillSync(Buffer.alloc(BYTES));
const sink = Buffer.allocUnsafe(BYTES).fill(1);
const out = new BigUint64Array(PAGES);
// The same bytes at an odd address: the hash must not care about alignment.
const unaligned = Buffer.alloc(BYTES + 1).subarray(1);
data.copy(unaligned);

let last: Buffer = Buffer.alloc(0);
let folded = 0;
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
  .add('container v1 frame checksum (XXH32, 4 MiB frames)', () => {
    folded ^= frameChecksums(xxh32);
  })
  .add('container v2 frame checksum (XXH64 low 32, 4 MiB frames)', () => {
    folded ^= frameChecksums(xxh64Low32);
  })
  .add('crypto md5 per page', () => {
    for (let at = 0; at < BYTES; at += PAGE)
      last = createHash('md5')
        .update(data.subarray(at, at + PAGE))
        .digest();
  })
  .add('crypto sha1 per page', () => {
    for (let at = 0; at < BYTES; at += PAGE)
      last = createHash('sha1')
        .update(data.subarray(at, at + PAGE))
        .digest();
  });
await bench.run();
if (last.length === 0 || folded === -1) throw new Error('no digest');
const summary = printThroughput(`hashing ${PAGES} pages of ${PAGE} bytes (256 MiB)`, bench, BYTES, 'copy');
if (process.env.BENCH_JSON) console.log(JSON.stringify(summary));
