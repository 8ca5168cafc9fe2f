/**
 * Errors raised while driving a real QEMU.
 *
 *   MigstreamError
 *   └── QemuError                    base of everything QEMU-side; no code of its own
 *       ├── QemuLaunchError          process failed to start / exited early  (ERR_QEMU_LAUNCH)
 *       ├── QemuExitedError          process exited while we waited on it    (ERR_QEMU_EXITED)
 *       ├── QemuTimeoutError         a wait on QMP, serial or migration timed out (ERR_QEMU_TIMEOUT)
 *       ├── QmpConnectionError       QMP socket closed or spoke garbage      (ERR_QMP_CONNECTION)
 *       ├── QmpError                 QMP answered a command with "error"     (ERR_QMP)
 *       └── MigrationFailedError     query-migrate ended in "failed"         (ERR_MIGRATION_FAILED)
 */
import { MigstreamError, registerErrorClasses, type CodeUnder } from '../errors.js';

export class QemuError extends MigstreamError {
  constructor(code: CodeUnder<'QemuError'>, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Last lines of a log, for error messages that must show what QEMU said. */
export function tail(text: string, lines = 20): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

export class QemuLaunchError extends QemuError {
  readonly stderr: string;
  constructor(message: string, stderr: string, options?: { cause?: unknown }) {
    super('ERR_QEMU_LAUNCH', stderr ? `${message}\n--- qemu stderr ---\n${tail(stderr)}` : message, options);
    this.stderr = stderr;
  }
}

export class QemuExitedError extends QemuError {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly stderr: string;
  constructor(what: string, exit: { code: number | null; signal: string | null }, stderr: string, detail?: string) {
    const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
    super('ERR_QEMU_EXITED', `QEMU exited (${how}) while ${what}${stderr ? `\n--- qemu stderr ---\n${tail(stderr)}` : ''}${detail ? `\n${detail}` : ''}`);
    this.exitCode = exit.code;
    this.signal = exit.signal;
    this.stderr = stderr;
  }
}

export class QemuTimeoutError extends QemuError {
  readonly timeoutMs: number;
  constructor(what: string, timeoutMs: number, detail?: string) {
    super('ERR_QEMU_TIMEOUT', `timed out after ${timeoutMs} ms ${what}${detail ? `\n${detail}` : ''}`);
    this.timeoutMs = timeoutMs;
  }
}

export class QmpConnectionError extends QemuError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_QMP_CONNECTION', message, options);
  }
}

/** The `error` member of a QMP reply. */
export interface QmpErrorReply {
  class: string;
  desc: string;
}

export class QmpError extends QemuError {
  readonly command: string;
  readonly arguments: Readonly<Record<string, unknown>> | undefined;
  readonly reply: QmpErrorReply;
  constructor(command: string, args: Readonly<Record<string, unknown>> | undefined, reply: QmpErrorReply) {
    super('ERR_QMP', `QMP ${command} failed: ${reply.class}: ${reply.desc}`);
    this.command = command;
    this.arguments = args;
    this.reply = reply;
  }
}

export class MigrationFailedError extends QemuError {
  /** The last query-migrate result, when QEMU was still there to answer. */
  readonly info: Readonly<Record<string, unknown>> | undefined;
  constructor(message: string, info?: Readonly<Record<string, unknown>>, options?: { cause?: unknown }) {
    super('ERR_MIGRATION_FAILED', message, options);
    this.info = info;
  }
}

/** This folder's catalogued classes (src/error-classes.ts gathers every folder's). */
export const QEMU_ERROR_CLASSES = { QemuLaunchError, QemuExitedError, QemuTimeoutError, QmpConnectionError, QmpError, MigrationFailedError } as const;

registerErrorClasses(QEMU_ERROR_CLASSES);
