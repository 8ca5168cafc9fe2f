/**
 * Where bytes come from and go to: a path or "-" for stdin/stdout.
 */
import { createReadStream, statSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { UsageError } from './args.js';
import { identityOfFd, type FileIdentity } from './file-identity.js';

export interface Input {
  readonly name: string;
  readonly stream: Readable;
  /** Size in bytes when the input is a regular file, for progress. */
  readonly size: number | null;
  /** Which file it is (null for a pipe), so that no output overwrites it. */
  readonly identity: FileIdentity | null;
}

const READ_CHUNK = 1024 * 1024;

export function cannotOpen(verb: 'read' | 'write', path: string, error: unknown): UsageError {
  return new UsageError(`cannot ${verb} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
}

export const TERMINAL_REFUSAL = 'refusing to write a binary stream to a terminal (redirect stdout or give an output file)';

export function openInput(path: string | undefined): Input {
  if (path === undefined || path === '-') {
    return { name: 'stdin', stream: process.stdin, size: null, identity: identityOfFd(0, 'stdin') };
  }
  let size: number | null = null;
  let identity: FileIdentity | null = null;
  try {
    const stat = statSync(path);
    if (stat.isFile()) {
      size = stat.size;
      identity = { name: path, dev: stat.dev, ino: stat.ino };
    }
  } catch (error) {
    throw cannotOpen('read', path, error);
  }
  return { name: path, stream: createReadStream(path, { highWaterMark: READ_CHUNK }), size, identity };
}
