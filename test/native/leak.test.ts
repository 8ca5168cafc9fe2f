/**
 * No leaks under repeated create/destroy: millions of addon calls (HBitmaps created, used and
 * dropped; page scans; calls that throw) while resident memory is sampled. After a warm-up
 * round, RSS must stay flat: a leak of even a few bytes per call would show as tens of MB.
 * (sharp's test/leak runs its native tests under a leak checker; RSS is the portable check.)
 */
import { describe, expect, test } from 'vitest';
import { HBitmap, findZeroPages, hashPages, isAllZero, nativeBinding } from '../../src/native.js';

const ROUNDS = 8;
const PER_ROUND = 64_000;

interface Tally {
  calls: number;
  bitmaps: number;
}

function churn(round: number, page: Uint8Array, zeroOut: Uint8Array, hashOut: BigUint64Array, tally: Tally): void {
  const raw = nativeBinding();
  let checksum = 0;
  const areas = new Float64Array(16);
  for (let i = 0; i < PER_ROUND; i++) {
    const size = 1 + ((i * 7919 + round) % 20_000);
    const map = new HBitmap(size, { granularity: 4096 });
    const other = new HBitmap(size, { granularity: 4096 });
    const at = (i * 104_729) % size;
    map.set(at, Math.min(size - at, 1 + (i % 200)));
    other.set(size - 1);
    checksum += map.nextSet(0) + map.nextZero(at) + map.countRange(0, size);
    checksum += map.fillDirtyAreas(areas, 0, 16);
    checksum += map.merge(other);
    if (i % 16 === 0) {
      const copy = new HBitmap(size);
      copy.import(map.export());
      copy.resize(size + 64);
      checksum += copy.count();
      tally.calls += 5; // constructor, export, import, resize (size query and copy)
      tally.bitmaps++;
    }
    map.reset(0, size);
    other.clear();
    tally.calls += 11; // 2 constructors, 2 sets, 3 searches, areas, merge, reset, clear
    tally.bitmaps += 2;
    checksum += findZeroPages(page, 4096, zeroOut)[0]! + (isAllZero(page.subarray(0, 4096)) ? 1 : 0);
    hashPages(page, 4096, hashOut);
    tally.calls += 3;
    // Errors thrown from inside the addon allocate their message and error object there
    // (every 4th round: a thrown error costs microseconds, mostly its stack trace).
    if (i % 4 === 0) {
      try {
        raw.hbSet(new ArrayBuffer(8), size, 0, 1);
      } catch {
        tally.calls++;
      }
    }
  }
  if (!(checksum > 0)) throw new Error('the work was optimised away');
}

describe('no leaks under repeated create/destroy', () => {
  test(`${ROUNDS} rounds of ${PER_ROUND} bitmaps and page scans, RSS flat`, () => {
    const page = new Uint8Array(4 * 4096);
    page[5000] = 1;
    const zeroOut = new Uint8Array(4);
    const hashOut = new BigUint64Array(4);
    const rss: number[] = [];
    const tally: Tally = { calls: 0, bitmaps: 0 };
    const started = performance.now();
    for (let round = 0; round < ROUNDS; round++) {
      churn(round, page, zeroOut, hashOut, tally);
      rss.push(process.memoryUsage().rss);
    }
    const seconds = (performance.now() - started) / 1000;
    const mb = rss.map((bytes) => Math.round(bytes / 2 ** 20));
    console.log(`leak: ${(tally.calls / 1e6).toFixed(2)} M addon calls, ${(tally.bitmaps / 1e6).toFixed(2)} M bitmaps created and dropped in ${seconds.toFixed(1)} s; RSS per round (MiB): ${mb.join(' ')}`);
    expect(tally.calls).toBeGreaterThan(7_000_000);
    expect(tally.bitmaps).toBeGreaterThan(1_000_000);
    // After the first round (heap and allocator warm-up), growth stays within noise.
    const settled = rss.slice(1);
    expect(Math.max(...settled) - settled[0]!).toBeLessThan(24 * 2 ** 20);
  }, 60_000);
});
