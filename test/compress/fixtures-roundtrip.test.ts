/**
 * Every real-QEMU fixture stream through compress and decompress, with each codec, on one
 * worker and on several: the output is the stream, byte for byte. The decompressed bytes are
 * compared with the file as they come, so memory holds only the container.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { describe, expect, test } from 'vitest';
import { Compressor } from '../../src/compress/compressor.js';
import { Decompressor } from '../../src/decompress/piped.js';
import { SCENARIOS } from '../fixtures/scenarios.js';
import { pieces } from '../helpers/container.js';
import { loadFixture } from '../helpers/qemu.js';
import { createReadStream } from 'node:fs';

const MANY = Math.max(2, availableParallelism());

/** Offset of the first byte where `chunks` differ from the file (or where either ends), or -1. */
async function compareWithFile(chunks: AsyncIterable<Buffer>, path: string, size: number): Promise<number> {
  const fd = openSync(path, 'r');
  let at = 0;
  try {
    for await (const chunk of chunks) {
      const expected = Buffer.allocUnsafe(chunk.length);
      const n = readSync(fd, expected, 0, chunk.length, at);
      if (n !== chunk.length || !expected.equals(chunk)) return at;
      at += chunk.length;
    }
    return at === size ? -1 : at;
  } finally {
    closeSync(fd);
  }
}

describe('every fixture stream round-trips through the container', () => {
  for (const { name } of SCENARIOS) {
    for (const codec of ['lz4', 'zstd', 'zlib'] as const) {
      test(`${name}: ${codec} on 1 and ${MANY} workers`, async () => {
        const fixture = loadFixture(name);
        for (const threads of [1, MANY]) {
          const compressor = new Compressor({ codec, threads });
          const parts: Buffer[] = [];
          for await (const part of compressor.compress(createReadStream(fixture.stream, { highWaterMark: 1 << 20 }))) parts.push(part);
          const container = Buffer.concat(parts);
          expect(compressor.stats.bytesIn).toBe(fixture.meta.streamBytes);
          expect(container.length, `${codec} shrinks ${name}`).toBeLessThan(fixture.meta.streamBytes);
          const out = new Decompressor({ threads }).decompress(pieces(container));
          expect(await compareWithFile(out, fixture.stream, fixture.meta.streamBytes), `${codec}, ${threads} threads`).toBe(-1);
        }
      }, 300_000);
    }
  }
});
