/**
 * Where bytes come from and go to: a path or "-" for stdin/stdout.
 */
import { createReadStream, statSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { isatty } from 'node:tty';
import { MigstreamError, registerErrorClasses } from '../errors.js';
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

/** A file that cannot be opened: an I/O failure of the run (exit 1), naming the path. */
export class CannotOpenError extends MigstreamError {
  constructor(verb: 'read' | 'write', path: string, error: unknown) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'ENOENT (no such file or directory)' : code === 'EACCES' ? 'EACCES (permission denied)' : (code ?? (error as Error).message);
    super('ERR_OPEN', `cannot ${verb} ${path}: ${why}`, { cause: error });
  }
}
registerErrorClasses({ CannotOpenError });

export function cannotOpen(verb: 'read' | 'write', path: string, error: unknown): CannotOpenError {
  return new CannotOpenError(verb, path, error);
}

export const NO_INPUT_ON_TERMINAL = 'no input: give a FILE, or pipe a stream into stdin';

/** Reading a stream from a terminal would only wait for typing: refused as a usage error. */
export function refuseTerminalInput(): void {
  if (isatty(0)) throw new UsageError(NO_INPUT_ON_TERMINAL);
}

export const TERMINAL_REFUSAL = 'refusing to write a binary stream to a terminal (redirect stdout or give an output file)';

export function openInput(path: string | undefined): Input {
  if (path === undefined || path === '-') {
    refuseTerminalInput();
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
