/**
 * Error hierarchy of migstream.
 *
 *   MigstreamError                 base; every error has a stable `code`
 *   ├── DecodeError                bytes that are not a valid migration stream
 *   │   ├── TruncatedStreamError   the input ended inside a record            (ERR_TRUNCATED)
 *   │   ├── BadMagicError          not "QEVM" / unsupported version           (ERR_BAD_MAGIC)
 *   │   ├── UnknownFlagError       flag bits or type byte we do not know      (ERR_UNKNOWN_FLAG)
 *   │   ├── LimitExceededError     a length past any sane bound               (ERR_LIMIT)
 *   │   └── FramingError           footer/section id/CONTINUE inconsistencies (ERR_FRAMING)
 *   ├── VmdescError                a vmdesc JSON not shaped as QEMU writes it (ERR_VMDESC)
 *   ├── EncodeError                a record that cannot be written            (ERR_ENCODE)
 *   └── ArgumentError              bad argument at an API boundary            (ERR_ARGUMENT)
 *
 * The base class, the catalogue of codes (every folder's) and the worker-boundary helpers live
 * in src/errors.ts; MigstreamError is re-exported here, where it used to be defined.
 *
 * A DecodeError always carries the absolute byte `offset` of the record that failed and, when
 * inside a section, the section id and name, so a message reads like
 * "ram record at offset 0x1234 (section 2 "ram"): unknown flags 0x1 in word 0x...".
 */

import { MigstreamError, registerErrorClasses, type CodeUnder } from '../errors.js';

export { MigstreamError };

export interface SectionRef {
  readonly id: number;
  readonly name: string;
}

export interface DecodeErrorDetails {
  /** Absolute byte offset in the input stream where the failing record starts. */
  offset: number;
  /** Section the record belongs to, if any. */
  section?: SectionRef | undefined;
  /** What the decoder was reading, e.g. "ram record", "section header". */
  context: string;
  /** What was expected there. */
  expected?: string | undefined;
  /** The value actually found (number, string…). */
  actual?: unknown;
  cause?: unknown;
}

function describe(details: DecodeErrorDetails, problem: string): string {
  const where = details.section ? ` (section ${details.section.id} "${details.section.name}")` : '';
  const expected = details.expected !== undefined ? `; expected ${details.expected}` : '';
  return `${details.context} at offset ${details.offset} (0x${details.offset.toString(16)})${where}: ${problem}${expected}`;
}

export class DecodeError extends MigstreamError {
  readonly offset: number;
  readonly section: SectionRef | undefined;
  readonly context: string;
  readonly expected: string | undefined;
  readonly actual: unknown;
  constructor(code: CodeUnder<'DecodeError'>, problem: string, details: DecodeErrorDetails) {
    super(code, describe(details, problem), { cause: details.cause });
    this.offset = details.offset;
    this.section = details.section;
    this.context = details.context;
    this.expected = details.expected;
    this.actual = details.actual;
  }
}

export class TruncatedStreamError extends DecodeError {
  constructor(details: DecodeErrorDetails, problem = 'stream ends inside a record') {
    super('ERR_TRUNCATED', problem, details);
  }
}

export class BadMagicError extends DecodeError {
  constructor(problem: string, details: DecodeErrorDetails) {
    super('ERR_BAD_MAGIC', problem, details);
  }
}

export class UnknownFlagError extends DecodeError {
  constructor(problem: string, details: DecodeErrorDetails) {
    super('ERR_UNKNOWN_FLAG', problem, details);
  }
}

export class LimitExceededError extends DecodeError {
  constructor(problem: string, details: DecodeErrorDetails) {
    super('ERR_LIMIT', problem, details);
  }
}

export class FramingError extends DecodeError {
  constructor(problem: string, details: DecodeErrorDetails) {
    super('ERR_FRAMING', problem, details);
  }
}

/** The vmdesc is the sender's JSON: a shape QEMU does not write is refused, naming where. */
export class VmdescError extends MigstreamError {
  /** JSON path of the offending value, e.g. "devices[3].fields[0].size". */
  readonly path: string;
  constructor(path: string, problem: string) {
    super('ERR_VMDESC', `vmdesc ${path}: ${problem}`);
    this.path = path;
  }
}

export class EncodeError extends MigstreamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_ENCODE', message, options);
  }
}

export class ArgumentError extends MigstreamError {
  constructor(message: string) {
    super('ERR_ARGUMENT', message);
  }
}

/** This folder's catalogued classes (src/error-classes.ts gathers every folder's). */
export const STREAM_ERROR_CLASSES = {
  TruncatedStreamError,
  BadMagicError,
  UnknownFlagError,
  LimitExceededError,
  FramingError,
  VmdescError,
  EncodeError,
  ArgumentError,
} as const;

registerErrorClasses(STREAM_ERROR_CLASSES);

export { hex } from '../bytes/hex.js';
