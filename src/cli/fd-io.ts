/**
 * Synchronous, blocking reads and writes on file descriptors, for the pass-through commands.
 *
 * A filter between two QEMU pipes does one thing at a time, so plain read(2)/writev(2) calls in
 * a loop beat Node's stream machinery (half the time of a pipeline() on a 130 MB stream) and
 * give backpressure for free: a full pipe blocks the write. Node makes stdio pipes
 * non-blocking once process.stdin/stdout are touched; those calls then return EAGAIN, which is
 * waited out here.
 */
import { closeSync, openSync, readSync, writevSync } from 'node:fs';
import { MigstreamError, registerErrorClasses } from '../errors.js';
import { cannotOpen, refuseTerminalInput } from './io.js';
import { identityOfFd, type FileIdentity } from './file-identity.js';

const sleeper = new Int32Array(new SharedArrayBuffer(4));

function isWouldBlock(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'EAGAIN' || code === 'EWOULDBLOCK';
}

export interface FdInput {
  readonly name: string;
  readonly fd: number;
  /** Which file it is (null for a pipe), so that no output overwrites it. */
  readonly identity: FileIdentity | null;
  close(): void;
}

export function openInputFd(path: string | undefined): FdInput {
  if (path === undefined || path === '-') {
    refuseTerminalInput();
    return { name: 'stdin', fd: 0, identity: identityOfFd(0, 'stdin'), close: () => {} };
  }
  try {
    const fd = openSync(path, 'r');
    return { name: path, fd, identity: identityOfFd(fd, path), close: () => closeSync(fd) };
  } catch (error) {
    throw cannotOpen('read', path, error);
  }
}

/** Reads up to `buffer.length` bytes into `buffer`; returns the filled part (empty at EOF). */
export function readInto(fd: number, buffer: Buffer): Buffer {
  for (;;) {
    try {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      return buffer.subarray(0, n);
    } catch (error) {
      if (!isWouldBlock(error)) throw error;
      Atomics.wait(sleeper, 0, 0, 1);
    }
  }
}

/** The output's reader took no byte for the allowed time (it stopped reading). */
export class OutputStalledError extends MigstreamError {
  constructor(seconds: number) {
    super('ERR_OUTPUT_STALLED', `the output's reader took no byte for ${seconds} s (it stopped reading)`);
  }
}
registerErrorClasses({ OutputStalledError });

/**
 * Writes every byte of `chunks`, in order. With `stallMs`, gives up with OutputStalledError
 * once a non-blocking output (a pipe Node made non-blocking) took nothing for that long: a
 * reader that stops reading must not hold a process forever.
 */
export function writeAll(fd: number, chunks: Buffer[], stallMs?: number): void {
  const pending = chunks.filter((chunk) => chunk.length > 0);
  let blockedSince: number | undefined;
  while (pending.length > 0) {
    let written: number;
    try {
      written = writevSync(fd, pending.slice(0, 1024));
    } catch (error) {
      if (!isWouldBlock(error)) throw error;
      const now = Date.now();
      blockedSince ??= now;
      if (stallMs !== undefined && now - blockedSince >= stallMs) throw new OutputStalledError(stallMs / 1000);
      Atomics.wait(sleeper, 0, 0, 1);
      continue;
    }
    blockedSince = undefined;
    while (written > 0) {
      const head = pending[0]!;
      if (written >= head.length) {
        written -= head.length;
        pending.shift();
      } else {
        pending[0] = head.subarray(written);
        written = 0;
      }
    }
  }
}
