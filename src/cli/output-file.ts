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
import { closeSync, fchmodSync, fstatSync, openSync, renameSync, statSync, unlinkSync, write, writev, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isatty } from 'node:tty';
import { Writable } from 'node:stream';
import { MigstreamError, registerErrorClasses } from '../errors.js';
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

/**
 * A Writable on `fd` that never closes it: fs.WriteStream closes its descriptor when a
 * pipeline destroys it after an error, even with autoClose off, and the descriptor number may
 * belong to another file by the time commit()/discard() closes it.
 */
function streamOn(fd: number): Writable {
  const writeFully = (chunk: Buffer, done: (error?: Error | null) => void): void => {
    let offset = 0;
    const next = (): void => {
      if (offset >= chunk.length) return done();
      write(fd, chunk, offset, chunk.length - offset, null, (error, written) => {
        if (error) return done(error);
        offset += written;
        next();
      });
    };
    next();
  };
  // Buffered chunks go out in one writev(2); what a short write left goes chunk by chunk.
  const writeAllOf = (chunks: Buffer[], done: (error?: Error | null) => void): void => {
    writev(fd, chunks, null, (error, written) => {
      if (error) return done(error);
      const rest: Buffer[] = [];
      for (const chunk of chunks) {
        if (written >= chunk.length) written -= chunk.length;
        else {
          rest.push(chunk.subarray(written));
          written = 0;
        }
      }
      const step = (index: number): void => (index >= rest.length ? done() : writeFully(rest[index]!, (e) => (e ? done(e) : step(index + 1))));
      step(0);
    });
  };
  return new Writable({
    highWaterMark: 1 << 20,
    write: (chunk: Buffer, _encoding, done) => writeFully(chunk, done),
    writev: (entries, done) =>
      writeAllOf(
        entries.map((entry) => entry.chunk as Buffer),
        done,
      ),
  });
}

function inPlace(name: string, fd: number, close: () => void, stream: () => Writable = () => streamOn(fd)): OutputFile {
  let closed = false;
  const end = (): void => {
    if (closed) return;
    closed = true;
    close();
  };
  return { name, fd, stream, commit: end, discard: end };
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
    // process.stdout copes with a pipe Node made non-blocking (EAGAIN); descriptor writers
    // (writeAll) wait it out themselves.
    return inPlace(
      'stdout',
      1,
      () => {},
      () => process.stdout,
    );
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

/** A write to the output failed for want of room: the message names the output. */
export class OutputFullError extends MigstreamError {
  constructor(name: string, code: string, options?: { cause?: unknown }) {
    super('ERR_OUTPUT_FULL', `cannot write ${name}: ${code} (${code === 'EFBIG' ? 'file too large' : 'no space left on the device'})`, options);
  }
}
registerErrorClasses({ OutputFullError });

const NO_ROOM = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);

/** `error` as OutputFullError naming `name` when it says the output has no room, else itself. */
export function describeWriteError(name: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code !== undefined && NO_ROOM.has(code) ? new OutputFullError(name, code, { cause: error }) : error;
}

/** Runs `write` on the output; commits it when `write` resolves, discards it when it throws. */
export async function writeOutput<T>(output: OutputFile, write: (output: OutputFile) => Promise<T> | T): Promise<T> {
  let result: T;
  try {
    result = await write(output);
  } catch (error) {
    output.discard();
    throw describeWriteError(output.name, error);
  }
  output.commit();
  return result;
}
