/**
 * Next-dirty-area iteration over a 16 Mi-bit map (a 64 GiB guest at 4 KiB pages): HBitmap
 * against a linear scan with the `bitset` package and a plain JS scan over 32-bit words.
 *
 *   npm run bench:hbitmap
 *
 * Six maps: 0.1%, 1% and 50% of the bits set, clustered (runs of 1..512 bits, as a guest
 * dirties whole buffers) or scattered (every bit on its own with that probability). Every task
 * walks the whole map and collects every dirty area (start, length); the results are checked
 * to agree before timing. Target (docs/design.md): HBitmap ≥ 100x the bitset scan at 0.1%.
 */
import BitSet from 'bitset';
import { Bench } from 'tinybench';
import { HBitmap } from '../src/native.js';
import { prng } from './random-data.js';

const BITS = 16 * 1024 * 1024;

/** The map as bytes, bit i = byte i/8 bit i%8 (HBitmap.export's format). */
function makeMap(density: number, clustered: boolean, seed: number): Uint8Array {
  const bytes = new Uint8Array(BITS / 8);
  const random = prng(seed);
  const setBit = (i: number) => {
    bytes[i >>> 3]! |= 1 << (i & 7);
  };
  if (clustered) {
    // Runs of 1..512 bits with gaps drawn so the expected density is as asked.
    const meanRun = 256.5;
    const meanGap = (meanRun * (1 - density)) / density;
    for (let at = Math.floor(random() * 2 * meanGap); at < BITS;) {
      const run = 1 + Math.floor(random() * 512);
      for (let i = at; i < Math.min(BITS, at + run); i++) setBit(i);
      at += run + 1 + Math.floor(random() * 2 * meanGap);
    }
  } else {
    for (let i = 0; i < BITS; i++) if (random() < density) setBit(i);
  }
  return bytes;
}

interface Areas {
  count: number;
  total: number;
  checksum: number;
}

const record = (areas: Areas, start: number, length: number) => {
  areas.count++;
  areas.total += length;
  areas.checksum += start + 3 * length; // exact: stays below 2^53
};

const fresh = (): Areas => ({ count: 0, total: 0, checksum: 0 });

function hbitmapBatch(map: HBitmap, batch: Float64Array): Areas {
  const areas = fresh();
  let from = 0;
  for (;;) {
    const n = map.fillDirtyAreas(batch, from);
    for (let i = 0; i < n; i++) record(areas, batch[2 * i]!, batch[2 * i + 1]!);
    if (n < batch.length / 2) return areas;
    from = batch[2 * n - 2]! + batch[2 * n - 1]!;
  }
}

function hbitmapEach(map: HBitmap): Areas {
  const areas = fresh();
  for (let area = map.nextDirtyArea(0); area !== null; area = map.nextDirtyArea(area.start + area.length)) {
    record(areas, area.start, area.length);
  }
  return areas;
}

/** The linear scan: every bit through BitSet.get. */
function bitsetScan(set: InstanceType<typeof BitSet>): Areas {
  const areas = fresh();
  let start = -1;
  for (let i = 0; i < BITS; i++) {
    if (set.get(i) === 1) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      record(areas, start, i - start);
      start = -1;
    }
  }
  if (start >= 0) record(areas, start, BITS - start);
  return areas;
}

/** A plain JS scan: skip zero words, find run ends with count-trailing-zeros tricks. */
function wordScan(words: Uint32Array): Areas {
  const areas = fresh();
  const ctz = (x: number) => 31 - Math.clz32(x & -x);
  let start = -1;
  for (let w = 0; w < words.length; w++) {
    const word = words[w]!;
    const base = w * 32;
    if (start < 0) {
      if (word === 0) continue;
    } else if (word === 0xffffffff) {
      continue;
    }
    let bit = 0;
    while (bit < 32) {
      if (start < 0) {
        const rest = word >>> bit;
        if (rest === 0) break;
        bit += ctz(rest);
        start = base + bit;
      } else {
        const rest = ~word >>> bit;
        if (rest === 0) break;
        bit += ctz(rest);
        record(areas, start, base + bit - start);
        start = -1;
      }
    }
  }
  if (start >= 0) record(areas, start, BITS - start);
  return areas;
}

const cases: [string, number, boolean][] = [
  ['0.1% clustered', 0.001, true],
  ['0.1% scattered', 0.001, false],
  ['1% clustered', 0.01, true],
  ['1% scattered', 0.01, false],
  ['50% clustered', 0.5, true],
  ['50% scattered', 0.5, false],
];

const summary: Record<string, Record<string, number>> = {};
console.log(`next-dirty-area iteration over ${BITS / 2 ** 20} Mi bits (ms per full walk; speed-up vs the bitset scan)`);
for (const [name, density, clustered] of cases) {
  const bytes = makeMap(density, clustered, 0x5eed + Math.round(density * 1e4) + (clustered ? 1 : 0));
  const map = new HBitmap(BITS, { granularity: 4096 });
  map.import(bytes);
  const words = new Uint32Array(bytes.buffer.slice(0));
  const set = new BitSet();
  // Bit by bit: BitSet.setRange (5.3.0) drops a range's last word when it ends at bit 31.
  for (const { start, length } of map.dirtyAreas()) for (let i = start; i < start + length; i++) set.set(i, 1);
  const batch = new Float64Array(2 * 1024);

  const expected = hbitmapBatch(map, batch);
  for (const [label, got] of [
    ['nextDirtyArea', hbitmapEach(map)],
    ['bitset', bitsetScan(set)],
    ['words', wordScan(words)],
  ] as const) {
    if (got.count !== expected.count || got.total !== expected.total || got.checksum !== expected.checksum) {
      throw new Error(`${name}: ${label} found ${JSON.stringify(got)}, HBitmap ${JSON.stringify(expected)}`);
    }
  }

  let sink = 0;
  const bench = new Bench({ time: 600, iterations: 8, warmupTime: 150, warmupIterations: 2 });
  bench
    .add('bitset linear scan', () => {
      sink += bitsetScan(set).count;
    })
    .add('JS word scan', () => {
      sink += wordScan(words).count;
    })
    .add('HBitmap nextDirtyArea', () => {
      sink += hbitmapEach(map).count;
    })
    .add('HBitmap fillDirtyAreas', () => {
      sink += hbitmapBatch(map, batch).count;
    });
  await bench.run();
  if (sink < 0) console.log(sink);

  const times: Record<string, number> = {};
  for (const task of bench.tasks) {
    if (task.result.state !== 'completed') throw new Error(`task ${task.name} did not complete`);
    times[task.name] = task.result.period;
  }
  const base = times['bitset linear scan']!;
  console.log(`\n${name}: ${expected.total} bits set (${((100 * expected.total) / BITS).toFixed(2)}%), ${expected.count} areas`);
  const width = Math.max(...Object.keys(times).map((n) => n.length));
  for (const [task, ms] of Object.entries(times)) {
    const ratio = task === 'bitset linear scan' ? 'baseline' : `${(base / ms).toFixed(1)}x faster than bitset`;
    console.log(`  ${task.padEnd(width)}  ${ms.toFixed(3).padStart(9)} ms  ${ratio}`);
  }
  summary[name] = times;
}
if (process.env.BENCH_JSON) console.log(JSON.stringify(summary));
