/**
 * Where bytes come from and go to: a path or "-" for stdin/stdout.
 */
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { UsageError } from './args.js';

export interface Input {
  readonly name: string;
  readonly stream: Readable;
  /** Size in bytes when the input is a regular file, for progress. */
  readonly size: number | null;
}

const READ_CHUNK = 1024 * 1024;

export function openInput(path: string | undefined): Input {
  if (path === undefined || path === '-') {
    return { name: 'stdin', stream: process.stdin, size: null };
  }
  let size: number | null = null;
  try {
    const stat = statSync(path);
    if (stat.isFile()) size = stat.size;
  } catch (error) {
    throw new UsageError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  return { name: path, stream: createReadStream(path, { highWaterMark: READ_CHUNK }), size };
}

/** A binary output; refuses to write a migration stream to a terminal. */
export function openOutput(path: string | undefined): { name: string; stream: Writable } {
  if (path === undefined || path === '-') {
    if (process.stdout.isTTY) {
      throw new UsageError('refusing to write a binary stream to a terminal (redirect stdout or give an output file)');
    }
    return { name: 'stdout', stream: process.stdout };
  }
  return { name: path, stream: createWriteStream(path) };
}
