/**
 * Outputs that never look complete after a failure, and never overwrite their own input.
 *
 * A regular file is written under a temporary name in the same directory
 * (`NAME.PID.partial`) and renamed onto NAME only once the command succeeded: a failed,
 * interrupted (SIGINT/SIGTERM/SIGHUP) or cancelled run removes the partial file, and even a
 * `kill -9` leaves only a file whose name says it is partial, never a truncated NAME. Other
 * destinations (stdout, /dev/null, a FIFO, a terminal refused) are written in place: there is
 * nothing to rename onto them.
 *
 * Same-file refusal compares st_dev and st_ino, so a symlink, a hard link or /dev/fd/N naming
 * the input is caught as well as the same path.
 */
import { closeSync, createWriteStream, fchmodSync, fstatSync, openSync, renameSync, statSync, unlinkSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isatty } from 'node:tty';
import type { Writable } from 'node:stream';
import { UsageError } from './args.js';
import type { FileIdentity } from './file-identity.js';
import { TERMINAL_REFUSAL, cannotOpen } from './io.js';

function refuseSame(outputName: string, stats: Stats | null, inputs: readonly (FileIdentity | null)[]): void {
  if (stats === null) return;
  for (const input of inputs) {
    if (input !== null && input.dev === stats.dev && input.ino === stats.ino) {
      throw new UsageError(`the output ${outputName} is the input ${input.name} (same file): refusing to overwrite the input`);
    }
  }
}

// Partial files of this process, removed on a signal or an exit that did not commit them.
const partials = new Set<string>();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let handlersInstalled = false;

function removePartials(): void {
  for (const path of partials) {
    try {
      unlinkSync(path);
    } catch {
      // Already gone: nothing to clean.
    }
  }
  partials.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  removePartials();
  // Die of the same signal, so the parent sees the usual status (130 for SIGINT…).
  for (const s of SIGNALS) process.off(s, onSignal);
  process.kill(process.pid, signal);
}

function track(path: string): void {
  partials.add(path);
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', removePartials);
  // A command with its own SIGTERM policy (send) keeps it: it only listens while it runs.
  for (const signal of SIGNALS) if (process.listenerCount(signal) === 0) process.on(signal, onSignal);
}

export interface OutputFile {
  /** The name the user gave (or "stdout"). */
  readonly name: string;
  readonly fd: number;
  /** A Writable on `fd` that leaves the descriptor open for commit()/discard(). */
  stream(): Writable;
  /** The run succeeded: close, and give the file its name. */
  commit(): void;
  /** The run failed: close, and remove what was written (a no-op after commit). */
  discard(): void;
}

export interface OutputOptions {
  /** The inputs of the run: the output must not be one of them. */
  readonly inputs?: readonly (FileIdentity | null)[];
}

function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

function streamOn(fd: number): Writable {
  return createWriteStream('', { fd, autoClose: false, highWaterMark: 1 << 20 });
}

function inPlace(name: string, fd: number, close: () => void): OutputFile {
  let closed = false;
  const end = (): void => {
    if (closed) return;
    closed = true;
    close();
  };
  return { name, fd, stream: () => streamOn(fd), commit: end, discard: end };
}

/**
 * Opens the output of a run: `undefined` or "-" is stdout (refused on a terminal), anything
 * else a path. Throws UsageError before anything is written when the output is an input.
 */
export function openOutputFile(path: string | undefined, options: OutputOptions = {}): OutputFile {
  const inputs = options.inputs ?? [];
  if (path === undefined || path === '-') {
    if (isatty(1)) throw new UsageError(TERMINAL_REFUSAL);
    let stdout: Stats | null = null;
    try {
      stdout = fstatSync(1);
    } catch {
      // A closed stdout fails on the first write, with EBADF named there.
    }
    refuseSame('stdout', stdout, inputs);
    return inPlace('stdout', 1, () => {});
  }
  const existing = statOrNull(path);
  refuseSame(path, existing, inputs);
  if (existing !== null && existing.isDirectory()) throw new UsageError(`cannot write ${path}: it is a directory`);
  if (existing !== null && !existing.isFile()) {
    // /dev/null, a FIFO, a device: written in place.
    let fd: number;
    try {
      fd = openSync(path, 'w');
    } catch (error) {
      throw cannotOpen('write', path, error);
    }
    return inPlace(path, fd, () => closeSync(fd));
  }
  const partial = join(dirname(path), `${basename(path)}.${process.pid}.partial`);
  let fd: number;
  try {
    fd = openSync(partial, 'wx');
  } catch (error) {
    throw cannotOpen('write', path, error);
  }
  track(partial);
  // An overwritten file keeps its permissions, as it would with a plain open(O_TRUNC).
  if (existing !== null) fchmodSync(fd, existing.mode & 0o7777);
  let state: 'open' | 'committed' | 'discarded' = 'open';
  return {
    name: path,
    fd,
    stream: () => streamOn(fd),
    commit() {
      if (state !== 'open') return;
      state = 'committed';
      closeSync(fd);
      renameSync(partial, path);
      partials.delete(partial);
    },
    discard() {
      if (state !== 'open') return;
      state = 'discarded';
      closeSync(fd);
      try {
        unlinkSync(partial);
      } catch {
        // Removed by someone else: nothing to clean.
      }
      partials.delete(partial);
    },
  };
}

/** Runs `write` on the output; commits it when `write` resolves, discards it when it throws. */
export async function writeOutput<T>(output: OutputFile, write: (output: OutputFile) => Promise<T> | T): Promise<T> {
  let result: T;
  try {
    result = await write(output);
  } catch (error) {
    output.discard();
    throw error;
  }
  output.commit();
  return result;
}
