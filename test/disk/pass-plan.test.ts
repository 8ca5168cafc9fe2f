/**
 * Pass planning (src/disk/pass-plan.ts): extents of a dirty bitmap or of base:allocation into
 * chunks, walked with the HBitmap's next-dirty-area search; extents that do not describe the
 * drive are DiskExtentErrors naming the offset.
 */
import { describe, expect, test } from 'vitest';
import { BASE_ALLOCATION, DiskExtentError, chunkRunBatches, chunkRuns, dirtyBitmapContext, planChunks, plannedBytes } from '../../src/disk/index.js';
import { HBitmap } from '../../src/native/hbitmap.js';

const KIB = 1024;
const MIB = 1024 * KIB;
const context = { drive: 'disk0', peer: 'unix:/x export "e"' };
const dirty = dirtyBitmapContext('b1');

function plan(extents: { offset: number; length: number; flags: number }[], size: number, chunkSize: number, metaContext = dirty) {
  return planChunks(extents, { size, chunkSize, metaContext, context });
}

describe('planning', () => {
  test('dirty extents at 64 KiB granularity into 1 MiB chunks: a chunk is read when any byte of it is dirty', () => {
    const size = 8 * MIB;
    const map = plan(
      [
        { offset: 0, length: 64 * KIB, flags: 1 },
        { offset: 64 * KIB, length: 2 * MIB - 64 * KIB, flags: 0 },
        { offset: 2 * MIB, length: 64 * KIB, flags: 1 },
        { offset: 2 * MIB + 64 * KIB, length: MIB, flags: 0 },
        { offset: 3 * MIB + 64 * KIB, length: 2 * MIB - 64 * KIB, flags: 1 },
        { offset: 5 * MIB, length: 3 * MIB, flags: 0 },
      ],
      size,
      MIB,
    );
    expect([...map]).toEqual([0, 2, 3, 4]);
    expect([...chunkRuns(map, size)]).toEqual([
      { firstChunk: 0, chunks: 1, offset: 0, length: MIB },
      { firstChunk: 2, chunks: 3, offset: 2 * MIB, length: 3 * MIB },
    ]);
    expect([...chunkRuns(map, size, 2)].map((r) => [r.firstChunk, r.chunks])).toEqual([
      [0, 1],
      [2, 2],
      [4, 1],
    ]);
  });

  test('the same extents into 64 KiB chunks read only the dirty granules', () => {
    const size = 4 * MIB;
    const map = plan(
      [
        { offset: 0, length: 3 * MIB, flags: 0 },
        { offset: 3 * MIB, length: 128 * KIB, flags: 1 },
        { offset: 3 * MIB + 128 * KIB, length: MIB - 128 * KIB, flags: 0 },
      ],
      size,
      64 * KIB,
    );
    expect([...map]).toEqual([48, 49]);
    expect(plannedBytes(map, size)).toBe(128 * KIB);
  });

  test("base:allocation reads every extent that is not ZERO (a HOLE without ZERO reads a backing file's data)", () => {
    const size = 4 * MIB;
    const map = plan(
      [
        { offset: 0, length: MIB, flags: 0 }, // data
        { offset: MIB, length: MIB, flags: 3 }, // hole, zero
        { offset: 2 * MIB, length: MIB, flags: 1 }, // hole, not zero
        { offset: 3 * MIB, length: MIB, flags: 2 }, // allocated zeros
      ],
      size,
      MIB,
      BASE_ALLOCATION,
    );
    expect([...map]).toEqual([0, 2]);
  });

  test('the last chunk of a drive that is not a multiple of the chunk is clipped', () => {
    const size = 2 * MIB + 8 * KIB;
    const map = plan(
      [
        { offset: 0, length: 2 * MIB, flags: 0 },
        { offset: 2 * MIB, length: 8 * KIB, flags: 1 },
      ],
      size,
      MIB,
    );
    expect([...chunkRuns(map, size)]).toEqual([{ firstChunk: 2, chunks: 1, offset: 2 * MIB, length: 8 * KIB }]);
  });

  test('a 2^24-chunk drive (1 TiB at 64 KiB) with 0.1 % dirty walks in runs', () => {
    const chunk = 64 * KIB;
    const chunks = 2 ** 24;
    const size = chunks * chunk;
    const extents: { offset: number; length: number; flags: number }[] = [];
    let at = 0;
    for (let i = 0; i < 16_777; i++) {
      const dirtyAt = (i * 1000 + 7) * chunk;
      extents.push({ offset: at, length: dirtyAt - at, flags: 0 }, { offset: dirtyAt, length: chunk, flags: 1 });
      at = dirtyAt + chunk;
    }
    extents.push({ offset: at, length: size - at, flags: 0 });
    const map = plan(extents, size, chunk);
    expect(map.count()).toBe(16_777);
    expect([...chunkRuns(map, size)].length).toBe(16_777);
  });
});

describe('extents that do not describe the drive', () => {
  const size = 4 * MIB;
  test("past the drive's end", () => {
    const error = (() => {
      try {
        plan(
          [
            { offset: 0, length: 3 * MIB, flags: 0 },
            { offset: 3 * MIB, length: 2 * MIB, flags: 1 },
          ],
          size,
          MIB,
        );
      } catch (e) {
        return e as DiskExtentError;
      }
      throw new Error('planned');
    })();
    expect(error).toBeInstanceOf(DiskExtentError);
    expect(error.code).toBe('ERR_DISK_EXTENTS');
    expect(error.offset).toBe(3 * MIB);
    expect(error.message).toBe(`disk "disk0" (nbd unix:/x export "e"): extents of ${dirty} at offset ${3 * MIB} (0x300000): an extent of ${2 * MIB} bytes runs past the drive's end at ${size}`);
  });

  test('a gap, an overlap, a zero length, short of the end (wrong length)', () => {
    expect(() =>
      plan(
        [
          { offset: 0, length: MIB, flags: 0 },
          { offset: 2 * MIB, length: 2 * MIB, flags: 0 },
        ],
        size,
        MIB,
      ),
    ).toThrow(/at offset 1048576 .*leaves a gap/);
    expect(() =>
      plan(
        [
          { offset: 0, length: 2 * MIB, flags: 0 },
          { offset: MIB, length: 3 * MIB, flags: 0 },
        ],
        size,
        MIB,
      ),
    ).toThrow(/overlaps/);
    expect(() => plan([{ offset: 0, length: 0, flags: 0 }], size, MIB)).toThrow(/an extent of length 0/);
    expect(() => plan([{ offset: 0, length: 3 * MIB, flags: 1 }], size, MIB)).toThrow(/the extents end at 3145728, short of the drive's 4194304 bytes/);
  });
});

describe('chunkRuns across the native batches', () => {
  test('thousands of runs, long ones cut at maxChunks: the same runs as HBitmap.dirtyAreas, clipped to the drive', () => {
    const chunks = 100_000;
    const chunkSize = 65536;
    const size = chunks * chunkSize - 4096; // the last chunk is short
    const map = new HBitmap(chunks, { granularity: chunkSize });
    for (let i = 0; i < 3000; i++) map.set(i * 29, 1 + (i % 7));
    map.set(chunks - 50, 50);
    for (const maxChunks of [Infinity, 3]) {
      const expected = [...map.dirtyAreas(0, maxChunks)].map(({ start, length }) => [start, length]);
      expect(expected.length).toBeGreaterThan(2048);
      const runs = [...chunkRuns(map, size, maxChunks)];
      expect(runs.map((r) => [r.firstChunk, r.chunks])).toEqual(expected);
      const last = runs.at(-1)!;
      expect(last.offset + last.length).toBe(size);
      // The batches a dirty pass walks: the same pairs, at most 1024 a batch, none empty. Each
      // batch is a view the next one overwrites: copied as it comes.
      const batches: number[][] = [];
      for (const batch of chunkRunBatches(map, maxChunks)) batches.push(Array.from(batch));
      expect(batches.every((pairs) => pairs.length > 0 && pairs.length <= 2048)).toBe(true);
      const pairs = batches.flat();
      expect(Array.from({ length: pairs.length / 2 }, (_, i) => [pairs[2 * i], pairs[2 * i + 1]])).toEqual(expected);
    }
    expect([...chunkRunBatches(new HBitmap(chunks, { granularity: chunkSize }))]).toEqual([]);
  });
});
