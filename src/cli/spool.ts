/**
 * Two-pass commands (compaction) read their input twice: a pipe is first copied to a temporary
 * file next to the output (or in the temp directory), removed afterwards.
 */
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

export interface Spooled {
  readonly path: string;
  remove(): void;
}

export async function spool(input: Readable, outputPath: string | undefined): Promise<Spooled> {
  const base = outputPath === undefined || outputPath === '-' ? tmpdir() : dirname(resolve(outputPath));
  const dir = mkdtempSync(join(base, '.migstream-spool-'));
  const path = join(dir, 'stream.mig');
  const remove = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    await pipeline(input, createWriteStream(path));
  } catch (error) {
    remove();
    throw error;
  }
  return { path, remove };
}

/** A function that opens `path` afresh each time (1 MiB reads). */
export function reopen(path: string): () => Readable {
  return () => createReadStream(path, { highWaterMark: 1024 * 1024 });
}
