/**
 * Block streams with chunks of 4 KiB, 64 KiB, 1 MiB and 16 MiB (mig-block-size), built by hand
 * (test/helpers/block-bytes.ts, test/helpers/stream-bytes.ts), through the whole-stream codec:
 * decoded with the size given and found from the stream, re-encoded to the same bytes, written
 * into a disk image equal to the disk; a wrong size given is refused at the first chunk.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DiskImage } from '../../src/block/disk-image.js';
import { createDecoder, createEncoder, decodeBuffer, encodeBuffer, type MigrationRecord } from '../../src/codec.js';
import { DecodeError, FramingError, TruncatedStreamError } from '../../src/stream/errors.js';
import { F, KIB, MIB, SIZES, chunk, dataBytes, eosBytes, progressBytes, qemuBodies, zeroBytes, type Disk } from '../helpers/block-bytes.js';
import { Bytes, configuration, footer, header, sectionStart } from '../helpers/stream-bytes.js';
import { prng, splitAt } from './feed.js';

const BLOCK_SECTION = 3;
const DISK = 'drive-virtio-disk0';

/** header, configuration, the block section (START, PARTs, END; each body then its footer), EOF. */
function stream(bodies: readonly Buffer[]): Buffer {
  const b = configuration(header(new Bytes()), 'pc-i440fx-7.2');
  bodies.forEach((body, i) => {
    if (i === 0) sectionStart(b, 1, BLOCK_SECTION, 'block', 0, 1);
    else b.u8(i === bodies.length - 1 ? 0x03 : 0x02).be32(BLOCK_SECTION);
    footer(b.raw(body), BLOCK_SECTION);
  });
  return b.u8(0x00).build();
}

/** A disk of `chunks` chunks and a half (the last chunk runs past the end), some of them zero. */
function disk(chunkSize: number, chunks: number, seed = 1): Disk {
  const size = chunks * chunkSize + chunkSize / 2;
  const content = Buffer.alloc(size);
  for (let i = 0; i <= chunks; i++) {
    if (i % 3 === 1) continue; // every third chunk stays zero
    chunk(seed + i, chunkSize).copy(content, i * chunkSize);
  }
  return { device: DISK, size, content };
}

/** Offset of the first data record in a stream built by `stream` (a START body is EOS alone). */
function firstDataOffset(bytes: Buffer): number {
  const name = Buffer.from([DISK.length, ...Buffer.from(DISK)]);
  const at = bytes.indexOf(name);
  return at - 8;
}

const built = new Map<number, { disk: Disk; bytes: Buffer }>();
/** The stream of each size, once: disks sized so that a wrong size of up to 1 MiB is read whole. */
function sample(size: number): { disk: Disk; bytes: Buffer } {
  let out = built.get(size);
  if (out === undefined) {
    const chunks = size >= MIB ? 3 : Math.ceil((2 * MIB) / size);
    const d = disk(size, size === 16 * MIB ? 2 : chunks, size);
    out = { disk: d, bytes: stream(qemuBodies([d], size, { zeroBlocks: true, perPart: 5 })) };
    built.set(size, out);
  }
  return out;
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function writeImage(records: readonly MigrationRecord[], blockSize: number, size: number): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'migstream-blocksize-'));
  dirs.push(dir);
  const image = new DiskImage(dir, { blockSize, sizes: { [DISK]: size } });
  for (const record of records) image.apply(record);
  const [file] = image.finish();
  return readFileSync(file!.path);
}

function decodeError(bytes: Buffer, blockSize?: number): unknown {
  try {
    decodeBuffer(bytes, blockSize === undefined ? {} : { blockSize });
  } catch (error) {
    return error;
  }
  throw new Error('expected a decode error');
}

describe.each(SIZES.map((size) => [size >= MIB ? `${size / MIB} MiB` : `${size / KIB} KiB`, size] as const))('a block stream with %s chunks', (_label, size) => {
  it('decodes with the size found from the stream, says so, re-encodes identically, makes the disk', () => {
    const { disk: d, bytes } = sample(size);
    const decoder = createDecoder();
    const records = [...decoder.push(bytes), ...decoder.end()];
    expect(decoder.parameters).toMatchObject({ blockSize: size, blockSizeSource: 'stream' });
    const data = records.filter((r) => r.type === 'block-data');
    expect(data.length).toBeGreaterThan(0);
    for (const r of data) expect(r.type === 'block-data' && r.data.length).toBe(size);
    expect(records.some((r) => r.type === 'block-zero')).toBe(true);
    expect(encodeBuffer(records).equals(bytes)).toBe(true);
    const encoder = createEncoder(undefined, { blockSize: size });
    for (const r of records) encoder.write(r);
    expect(Buffer.concat(encoder.take()).equals(bytes)).toBe(true);
    expect(writeImage(records, size, d.size).equals(d.content)).toBe(true);
  });

  it('decodes the same with the size given', () => {
    const { bytes } = sample(size);
    const decoder = createDecoder({ blockSize: size });
    const records = [...decoder.push(bytes), ...decoder.end()];
    expect(decoder.parameters).toMatchObject({ blockSize: size, blockSizeSource: 'option' });
    expect(encodeBuffer(records).equals(bytes)).toBe(true);
  });

  it('refuses every wrong size given, at the first data chunk, naming its offset and the section', () => {
    const { bytes } = sample(size);
    const offset = firstDataOffset(bytes);
    for (const wrong of SIZES) {
      if (wrong === size) continue;
      const error = decodeError(bytes, wrong);
      // A size past what follows the first chunk cannot be checked before the input ends.
      if (offset + wrong > bytes.length) {
        expect(error).toBeInstanceOf(TruncatedStreamError);
        expect(error).toMatchObject({ offset, section: { id: BLOCK_SECTION, name: 'block' } });
        continue;
      }
      expect(error, `${wrong} on ${size}`).toBeInstanceOf(FramingError);
      expect(error).toMatchObject({ code: 'ERR_FRAMING', offset, section: { id: BLOCK_SECTION, name: 'block' } });
      expect(String((error as Error).message)).toContain(`mig-block-size ${wrong}`);
    }
  });

  it('never hands out a chunk before its size is settled (a wrong size gives no records past the START)', () => {
    const { bytes } = sample(size);
    const wrong = size === 4 * KIB ? 64 * KIB : 4 * KIB;
    const decoder = createDecoder({ blockSize: wrong });
    const seen: MigrationRecord[] = [];
    expect(() => {
      for (const piece of splitAt(bytes, [1000, 5000, 70_000])) seen.push(...decoder.push(piece));
    }).toThrow(FramingError);
    expect(seen.some((r) => r.type === 'block-data')).toBe(false);
  });
});

describe('finding the chunk size: every split point and chunking', () => {
  // 4 KiB chunks: a stream small enough to cut everywhere.
  const d = disk(4 * KIB, 4, 77);
  const bytes = stream(qemuBodies([d], 4 * KIB, { zeroBlocks: true, perPart: 2 }));
  const whole = decodeBuffer(bytes);

  it('gives the same records and bytes at every split point', () => {
    const types = whole.map((r) => r.type).join();
    for (let split = 1; split < bytes.length; split++) {
      const decoder = createDecoder();
      const records = [...decoder.push(bytes.subarray(0, split)), ...decoder.push(bytes.subarray(split)), ...decoder.end()];
      if (records.map((r) => r.type).join() !== types || !encodeBuffer(records).equals(bytes) || decoder.parameters.blockSize !== 4 * KIB) {
        expect.fail(`split at ${split} decodes differently`);
      }
    }
  });

  it('gives the same records one byte at a time', () => {
    const decoder = createDecoder();
    const records: MigrationRecord[] = [];
    for (let i = 0; i < bytes.length; i++) records.push(...decoder.push(bytes.subarray(i, i + 1)));
    records.push(...decoder.end());
    expect(encodeBuffer(records).equals(bytes)).toBe(true);
  });

  it('finds 1 MiB over input in pieces of at most 7 bytes without probing again per piece', () => {
    // Each try resumes where the last one ran out of bytes: a probe per piece would take minutes.
    const { bytes: big } = sample(MIB);
    const random = prng(7);
    const decoder = createDecoder();
    const records: MigrationRecord[] = [];
    const started = performance.now();
    for (let at = 0; at < big.length;) {
      const length = 1 + Math.floor(random() * 7);
      records.push(...decoder.push(big.subarray(at, at + length)));
      at += length;
    }
    records.push(...decoder.end());
    expect(decoder.parameters.blockSize).toBe(MIB);
    expect(encodeBuffer(records).equals(big)).toBe(true);
    expect(performance.now() - started).toBeLessThan(20_000);
  });

  it('gives the same records for random chunkings of a 64 KiB stream', () => {
    const { bytes: big } = sample(64 * KIB);
    const random = prng(64);
    for (let run = 0; run < 12; run++) {
      const cuts: number[] = [];
      for (let at = 0; ;) {
        at += 1 + Math.floor(random() * [300, 9000, 200_000][run % 3]!);
        if (at >= big.length) break;
        cuts.push(at);
      }
      const decoder = createDecoder();
      const records = splitAt(big, cuts).flatMap((piece) => decoder.push(piece));
      records.push(...decoder.end());
      expect(decoder.parameters.blockSize).toBe(64 * KIB);
      expect(encodeBuffer(records).equals(big)).toBe(true);
    }
  });
});

describe('finding the chunk size: what follows the first chunk', () => {
  const size = 64 * KIB;
  const A = chunk(5, size);
  /** One PART body, then END, with `first` as the START body's records. */
  const withBody = (body: Buffer): Buffer => stream([eosBytes(), body, Buffer.concat([progressBytes(100), eosBytes()])]);

  it.each([
    ['another data chunk', Buffer.concat([dataBytes(DISK, 0, A), dataBytes(DISK, 128, chunk(6, size)), eosBytes()])],
    ['a zero chunk', Buffer.concat([dataBytes(DISK, 0, A), zeroBytes(DISK, 128), eosBytes()])],
    ['a progress word', Buffer.concat([dataBytes(DISK, 0, A), progressBytes(40), eosBytes()])],
    ['the EOS and the footer', Buffer.concat([dataBytes(DISK, 0, A), eosBytes()])],
    ['the footer (DEVICE_BLOCK|EOS)', dataBytes(DISK, 0, A, F.DEVICE_BLOCK | F.EOS)],
    ['another drive', Buffer.concat([dataBytes(DISK, 0, A), dataBytes('ide0-hd1', 0, chunk(7, size)), eosBytes()])],
  ])('finds 64 KiB when the chunk is followed by %s', (_name, body) => {
    const bytes = withBody(body);
    const decoder = createDecoder();
    const records = [...decoder.push(bytes), ...decoder.end()];
    expect(decoder.parameters.blockSize).toBe(size);
    expect(encodeBuffer(records).equals(bytes)).toBe(true);
  });

  it('takes the smallest size after which the records parse: data that looks like a record can mislead it', () => {
    // A 64 KiB chunk whose bytes at 4 KiB are a progress word, an EOS and the footer: with 4 KiB
    // chunks that reads as a whole body. Found as 4 KiB, and the stream then fails further on
    // (the rest of the chunk is no section header); the size given decodes it.
    const tricky = Buffer.from(A);
    Buffer.concat([progressBytes(3), eosBytes(), Buffer.from([0x7e, 0, 0, 0, BLOCK_SECTION])]).copy(tricky, 4 * KIB);
    const bytes = withBody(Buffer.concat([dataBytes(DISK, 0, tricky), eosBytes()]));
    const error = decodeError(bytes);
    expect(error).toBeInstanceOf(DecodeError);
    expect((error as DecodeError).offset).toBeGreaterThan(firstDataOffset(bytes) + 4 * KIB);
    expect(encodeBuffer(decodeBuffer(bytes, { blockSize: size })).equals(bytes)).toBe(true);
  });

  it('refuses a chunk after which no size from 4 KiB to 16 MiB parses, naming the chunk', () => {
    // The record after the chunk is damaged (flags 0x10), and 16 MiB of bytes follow so that
    // every size is tried.
    const bytes = withBody(Buffer.concat([dataBytes(DISK, 0, A), Buffer.alloc(16 * MIB + 64 * KIB, 0x10), eosBytes()]));
    const error = decodeError(bytes);
    expect(error).toBeInstanceOf(FramingError);
    expect(error).toMatchObject({ offset: firstDataOffset(bytes), section: { id: BLOCK_SECTION, name: 'block' } });
    expect(String((error as Error).message)).toMatch(/no chunk size from 4 KiB to 16 MiB/);
  });

  it('needs no data chunk: a stream of zero chunks decodes without a size', () => {
    const bytes = withBody(Buffer.concat([zeroBytes(DISK, 0), zeroBytes(DISK, 128), eosBytes()]));
    const decoder = createDecoder();
    const records = [...decoder.push(bytes), ...decoder.end()];
    expect(decoder.parameters.blockSize).toBeUndefined();
    expect(encodeBuffer(records).equals(bytes)).toBe(true);
  });

  it('refuses a size that is not a chunk size as a bad argument', () => {
    expect(() => createDecoder({ blockSize: 1000 })).toThrow(/power of two from 4 KiB to 16 MiB/);
    expect(() => createDecoder({ blockSize: 32 * MIB })).toThrow(/power of two/);
    expect(() => createEncoder(undefined, { blockSize: 3 * 4096 })).toThrow(/power of two/);
  });
});
