/** In-memory helpers for container tests: compress and decompress whole buffers. */
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Compressor, type CompressOptions } from '../../src/compress/compressor.js';
import { Decompressor, type DecompressOptions } from '../../src/decompress/piped.js';
import { DirectDecompressor } from '../../src/decompress/direct.js';

/** `data` cut into pieces of `size` bytes (the last may be shorter). */
export function* pieces(data: Buffer, size = 1 << 20): Generator<Buffer> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

/** `data` cut at random places (seeded), to exercise every boundary of the parsers. */
export function* randomPieces(data: Buffer, seed: number, max = 100_000): Generator<Buffer> {
  let x = seed >>> 0 || 1;
  for (let at = 0; at < data.length;) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const size = 1 + ((x >>> 0) % max);
    yield data.subarray(at, at + size);
    at += size;
  }
}

export async function compressBuffer(data: Buffer, options: CompressOptions = {}, chunks?: Iterable<Buffer> | AsyncIterable<Buffer>): Promise<{ container: Buffer; compressor: Compressor }> {
  const compressor = new Compressor({ threads: 2, ...options });
  const out: Buffer[] = [];
  for await (const piece of compressor.compress(chunks ?? pieces(data))) out.push(piece);
  return { container: Buffer.concat(out), compressor };
}

export async function decompressBuffer(container: Buffer, options: DecompressOptions = {}, chunks?: Iterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const piece of new Decompressor({ threads: 2, ...options }).decompress(chunks ?? pieces(container))) out.push(piece);
  return Buffer.concat(out);
}

/** Decompresses, collecting what was written before the error; the error is returned, not thrown. */
export async function decompressUntilError(container: Buffer, options: DecompressOptions = {}): Promise<{ written: number; error: unknown }> {
  let written = 0;
  try {
    for await (const piece of new Decompressor({ threads: 2, ...options }).decompress(pieces(container, 65536))) written += piece.length;
  } catch (error) {
    return { written, error };
  }
  return { written, error: undefined };
}

/**
 * Direct mode (docs/container.md: a container file into a descriptor), through files in `dir`:
 * what it wrote, and the error it stopped with, if any.
 */
export async function decompressDirect(container: Buffer, dir: string): Promise<{ output: Buffer; error: unknown }> {
  const input = join(dir, 'in.msz');
  const output = join(dir, 'out.mig');
  writeFileSync(input, container);
  const fd = openSync(output, 'w');
  let error: unknown;
  try {
    await new DirectDecompressor().run(input, fd);
  } catch (caught) {
    error = caught;
  } finally {
    closeSync(fd);
  }
  return { output: readFileSync(output), error };
}
