import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DiskImage } from '../../src/block/disk-image.js';
import type { BlockRecord } from '../../src/block/records.js';
import { ArgumentError } from '../../src/stream/errors.js';
import { MIB, chunk } from '../helpers/block-bytes.js';
import { prng } from './feed.js';

const DISK = 'drive-virtio-disk0';
const SECTORS_PER_CHUNK = MIB / 512;

const data = (sector: number, bytes: Buffer, device = DISK): BlockRecord => ({
  type: 'block-data',
  device,
  sector,
  data: bytes,
});
const zero = (sector: number, device = DISK): BlockRecord => ({ type: 'block-zero', device, sector });

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'migstream-block-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function run(records: readonly { type: string }[], sizes?: Record<string, number>) {
  const image = new DiskImage(dir, sizes ? { sizes } : {});
  for (const record of records) image.apply(record);
  return image.finish();
}

describe('DiskImage', () => {
  it('writes data chunks at sector * 512 and sizes the file to the drive', () => {
    const a = chunk(1);
    const b = chunk(2);
    const files = run([data(2 * SECTORS_PER_CHUNK, b), data(0, a)], { [DISK]: 3 * MIB });
    expect(files).toEqual([{ device: DISK, path: join(dir, `${DISK}.raw`), size: 3 * MIB }]);
    const image = readFileSync(files[0]!.path);
    expect(image.length).toBe(3 * MIB);
    expect(image.subarray(0, MIB).equals(a)).toBe(true);
    expect(image.subarray(MIB, 2 * MIB).equals(Buffer.alloc(MIB))).toBe(true);
    expect(image.subarray(2 * MIB).equals(b)).toBe(true);
  });

  it('writes zero chunks over earlier data, and leaves never-written chunks as holes', () => {
    const size = 64 * MIB;
    const records: BlockRecord[] = [data(0, chunk(3)), data(SECTORS_PER_CHUNK, chunk(4)), zero(0)];
    for (let i = 2; i < 64; i++) records.push(zero(i * SECTORS_PER_CHUNK));
    const [file] = run(records, { [DISK]: size });
    const image = readFileSync(file!.path);
    expect(image.length).toBe(size);
    expect(image.subarray(0, MIB).equals(Buffer.alloc(MIB))).toBe(true);
    expect(image.subarray(MIB, 2 * MIB).equals(chunk(4))).toBe(true);
    expect(image.subarray(2 * MIB).equals(Buffer.alloc(size - 2 * MIB))).toBe(true);
    // Sparse where the filesystem supports holes: far less than 64 MiB allocated.
    const { blocks } = statSync(file!.path);
    if (blocks > 0) expect(blocks * 512).toBeLessThan(16 * MIB);
  });

  it('trims the last chunk to the drive size (the padding is not written)', () => {
    const size = MIB + 4096;
    const last = chunk(5);
    const [file] = run([data(0, chunk(6)), data(SECTORS_PER_CHUNK, last)], { [DISK]: size });
    const image = readFileSync(file!.path);
    expect(file!.size).toBe(size);
    expect(image.length).toBe(size);
    expect(image.subarray(MIB).equals(last.subarray(0, 4096))).toBe(true);
  });

  it('grows to cover whole chunks when the size is unknown', () => {
    const files = run([zero(3 * SECTORS_PER_CHUNK), data(SECTORS_PER_CHUNK, chunk(7)), zero(0, 'hd1')]);
    expect(files.map((f) => [f.device, f.size])).toEqual([
      [DISK, 4 * MIB],
      ['hd1', MIB],
    ]);
    const image = readFileSync(files[0]!.path);
    expect(image.subarray(MIB, 2 * MIB).equals(chunk(7))).toBe(true);
    expect(readFileSync(files[1]!.path).equals(Buffer.alloc(MIB))).toBe(true);
  });

  it('ignores records that are not block chunks', () => {
    const image = new DiskImage(dir);
    expect(image.apply({ type: 'block-progress', percent: 3 } as BlockRecord)).toBe(false);
    expect(image.apply({ type: 'block-eos' })).toBe(false);
    expect(image.apply({ type: 'section-footer' })).toBe(false);
    expect(image.apply(zero(0))).toBe(true);
    expect(image.finish()).toHaveLength(1);
  });

  it('follows block_load at the drive end: a zero chunk there is empty, anything past fails', () => {
    const image = new DiskImage(dir, { sizes: { [DISK]: MIB } });
    expect(image.apply(zero(SECTORS_PER_CHUNK))).toBe(true);
    expect(() => image.apply(data(SECTORS_PER_CHUNK, chunk(8)))).toThrow(ArgumentError);
    expect(() => image.apply(zero(SECTORS_PER_CHUNK + 1))).toThrow(ArgumentError);
    image.close();
  });

  it('writes to the paths of a map and refuses drives missing from it', () => {
    const path = join(dir, 'custom.img');
    const image = new DiskImage({ [DISK]: path });
    image.apply(data(0, chunk(9)));
    expect(() => image.apply(zero(0, 'other'))).toThrow(/no image path for drive "other"/);
    expect(image.finish()).toEqual([{ device: DISK, path, size: MIB }]);
    expect(readFileSync(path).equals(chunk(9))).toBe(true);
  });

  it('refuses drive names that are not safe file names in a directory', () => {
    const image = new DiskImage(dir);
    expect(() => image.apply(zero(0, '../escape'))).toThrow(ArgumentError);
    expect(() => image.apply(zero(0, '.hidden'))).toThrow(ArgumentError);
    image.close();
  });

  it('looks the drive up by its name up to a NUL, as block_load does', () => {
    const files = run([zero(0, `${DISK}\0junk`), data(0, chunk(10))]);
    expect(files.map((f) => f.device)).toEqual([DISK]);
  });

  it('update mode keeps existing bytes and always writes zero chunks', () => {
    const path = join(dir, `${DISK}.raw`);
    const base = Buffer.concat([chunk(11), chunk(12), chunk(13)]);
    writeFileSync(path, base);
    const image = new DiskImage(dir, { mode: 'update', sizes: { [DISK]: 3 * MIB } });
    image.apply(zero(SECTORS_PER_CHUNK));
    image.apply(data(2 * SECTORS_PER_CHUNK, chunk(14)));
    expect(image.finish()).toEqual([{ device: DISK, path, size: 3 * MIB }]);
    const expected = Buffer.concat([chunk(11), Buffer.alloc(MIB), chunk(14)]);
    expect(readFileSync(path).equals(expected)).toBe(true);
  });

  it('rejects bad options and use after finish', () => {
    expect(() => new DiskImage(dir, { sizes: { [DISK]: 0 } })).toThrow(ArgumentError);
    expect(() => new DiskImage(dir, { sizes: { [DISK]: 1.5 } })).toThrow(ArgumentError);
    const image = new DiskImage(dir);
    image.finish();
    expect(() => image.apply(zero(0))).toThrow(ArgumentError);
  });

  it('matches a plain byte model under random chunks, zeros and unaligned sectors', () => {
    const random = prng(7);
    for (const size of [6 * MIB + 1536, 5 * MIB]) {
      const model = Buffer.alloc(size);
      const image = new DiskImage(dir, { sizes: { [DISK]: size } });
      for (let op = 0; op < 40; op++) {
        const aligned = random() < 0.6;
        const maxSector = size / 512 - 1;
        const sector = aligned ? Math.floor(random() * Math.ceil(size / MIB)) * SECTORS_PER_CHUNK : Math.floor(random() * maxSector);
        const kind = random();
        const bytes = kind < 0.4 ? chunk(op + 100) : Buffer.alloc(MIB);
        const record = kind < 0.7 ? data(sector, bytes) : zero(sector);
        image.apply(record);
        const offset = sector * 512;
        const written = record.type === 'block-data' ? bytes : Buffer.alloc(MIB);
        written.copy(model, offset, 0, Math.min(MIB, size - offset));
      }
      const [file] = image.finish();
      expect(readFileSync(file!.path).equals(model)).toBe(true);
    }
  });
});
