/**
 * The real QEMU 7.2 block fixture (.cache/fixtures/block: `migrate -b` of a 32 MiB raw disk with
 * zero-blocks, recorded by test/fixtures/global-setup.ts) through the chunk-size paths, without
 * QEMU: found as 1 MiB, decoded the same with 1 MiB given, refused with another size given, and
 * the disk image written from it equals the source disk.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DiskImage } from '../../src/block/disk-image.js';
import { createDecoder, createEncoder } from '../../src/codec.js';
import { FramingError } from '../../src/stream/errors.js';

const DIR = '.cache/fixtures/block';
const MIB = 1 << 20;
const meta = JSON.parse(readFileSync(join(DIR, 'meta.json'), 'utf8')) as { disk: { driveId: string; sizeBytes: number } };

/** The stream in 1 MiB reads, as the CLI reads it. */
function* pieces(): Generator<Buffer> {
  const fd = openSync(join(DIR, 'stream.mig'), 'r');
  try {
    for (;;) {
      const buffer = Buffer.allocUnsafe(MIB);
      const n = readSync(fd, buffer, 0, MIB, null);
      if (n === 0) return;
      yield buffer.subarray(0, n);
    }
  } finally {
    closeSync(fd);
  }
}

describe('the QEMU 7.2 block fixture and the chunk size', () => {
  it.each([
    ['found from the stream', undefined, 'stream'],
    ['given', MIB, 'option'],
  ] as const)('decodes as 1 MiB chunks (%s), re-encodes identically, and gives the source disk', (_name, blockSize, source) => {
    const decoder = createDecoder(blockSize === undefined ? {} : { blockSize });
    const encoder = createEncoder(1 << 21, { blockSize: MIB });
    const input = createHash('sha256');
    const output = createHash('sha256');
    const dir = mkdtempSync(join(tmpdir(), 'migstream-fixture-'));
    try {
      const image = new DiskImage(dir, { blockSize: MIB, sizes: { [meta.disk.driveId]: meta.disk.sizeBytes } });
      let data = 0;
      const handle = (records: ReturnType<typeof decoder.push>): void => {
        for (const record of records) {
          if (record.type === 'block-data') data++;
          image.apply(record);
          encoder.write(record);
        }
        encoder.drainTo((chunks) => {
          for (const chunk of chunks) output.update(chunk);
        });
      };
      for (const piece of pieces()) {
        input.update(piece);
        handle(decoder.push(piece));
      }
      handle(decoder.end());
      expect(decoder.parameters).toMatchObject({ blockSize: MIB, blockSizeSource: source });
      expect(data).toBeGreaterThan(0);
      expect(output.digest('hex')).toBe(input.digest('hex'));
      const [file] = image.finish();
      expect(readFileSync(file!.path).equals(readFileSync(join(DIR, 'source-disk.raw')))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([4096, 65536, 16 * MIB])('refuses %i-byte chunks given, at the first data chunk of section "block"', (blockSize) => {
    const decoder = createDecoder({ blockSize });
    let error: unknown;
    try {
      for (const piece of pieces()) decoder.push(piece);
      decoder.end();
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(FramingError);
    expect(error).toMatchObject({ section: { name: 'block' } });
    expect(String((error as Error).message)).toContain(`mig-block-size ${blockSize}`);
  });
});
