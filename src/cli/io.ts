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

export function cannotOpen(verb: 'read' | 'write', path: string, error: unknown): UsageError {
  return new UsageError(`cannot ${verb} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
}

export const TERMINAL_REFUSAL = 'refusing to write a binary stream to a terminal (redirect stdout or give an output file)';

export function openInput(path: string | undefined): Input {
  if (path === undefined || path === '-') {
    return { name: 'stdin', stream: process.stdin, size: null };
  }
  let size: number | null = null;
  try {
    const stat = statSync(path);
    if (stat.isFile()) size = stat.size;
  } catch (error) {
    throw cannotOpen('read', path, error);
  }
  return { name: path, stream: createReadStream(path, { highWaterMark: READ_CHUNK }), size };
}

/** A binary output; refuses to write a migration stream to a terminal. */
export function openOutput(path: string | undefined): { name: string; stream: Writable } {
  if (path === undefined || path === '-') {
    if (process.stdout.isTTY) {
      throw new UsageError(TERMINAL_REFUSAL);
    }
    return { name: 'stdout', stream: process.stdout };
  }
  return { name: path, stream: createWriteStream(path) };
}
