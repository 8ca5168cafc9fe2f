/**
 * Without the system's libzstd / liblz4 (MIGSTREAM_SYSTEM_CODECS=0, as on a machine that has
 * neither), the npm bindings run the codecs: the same formats, so containers written either way
 * read either way, through the general path and direct mode alike.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { hasNativeCodec } from '../../src/codecs/registry.js';
import { DirectDecompressor } from '../../src/decompress/direct.js';
import { busyStream } from '../helpers/busy-stream.js';
import { compressBuffer, decompressBuffer } from '../helpers/container.js';

// Read on first use (and by the workers the pools start): set before anything compresses.
process.env.MIGSTREAM_SYSTEM_CODECS = '0';

const stream = busyStream({ pages: 256, iterations: 3 }).bytes;
const dir = mkdtempSync(join(tmpdir(), 'migstream-npm-codecs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the npm codec bindings', () => {
  test('take over zstd and lz4, in both directions and in direct mode', async () => {
    expect(hasNativeCodec(2)).toBe(false);
    expect(hasNativeCodec(1)).toBe(false);
    for (const codec of ['zstd', 'lz4'] as const) {
      const { container } = await compressBuffer(stream, { codec, frameBytes: 64 * 1024 });
      expect((await decompressBuffer(container)).equals(stream)).toBe(true);
      const input = join(dir, `${codec}.msz`);
      const output = join(dir, `${codec}.mig`);
      writeFileSync(input, container);
      const fd = openSync(output, 'w');
      try {
        await new DirectDecompressor().run(input, fd);
      } finally {
        closeSync(fd);
      }
      expect(readFileSync(output).equals(stream), codec).toBe(true);
    }
  });
});
