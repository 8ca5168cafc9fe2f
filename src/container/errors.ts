/**
 * Errors of the container (compressed stream).
 *
 *   DecodeError (src/stream/errors.ts)
 *   └── ContainerError               bytes that are not a valid container      (ERR_CONTAINER_*)
 *       ├── ContainerMagicError      not a container / unknown version         (ERR_CONTAINER_MAGIC)
 *       ├── CorruptFrameError        checksum, length, codec or layout wrong   (ERR_CONTAINER_CORRUPT)
 *       ├── FrameOrderError          frame number or kind out of sequence      (ERR_CONTAINER_ORDER)
 *       └── TruncatedContainerError  the file ends before the END frame        (ERR_CONTAINER_TRUNCATED)
 *
 * Every ContainerError names the frame (its number, counted from 0 in file order) and the byte
 * offset of the frame's header in the container file, e.g.
 * "container frame 17 (PAYLOAD) at offset 4194368 (0x400040): raw bytes fail their checksum".
 */
import { registerErrorClasses, type CodeUnder } from '../errors.js';
import { DecodeError, type DecodeErrorDetails } from '../stream/errors.js';

export interface FrameRef {
  /** Frame number: its position in the file, counted from 0 (the HEADER frame). */
  readonly frame: number;
  /** Byte offset of the frame header in the container. */
  readonly offset: number;
  /** Kind name when known, e.g. "PAYLOAD". */
  readonly kind?: string | undefined;
}

export interface ContainerErrorDetails {
  expected?: string | undefined;
  actual?: unknown;
  cause?: unknown;
}

function details(where: FrameRef | { offset: number; context: string }, extra: ContainerErrorDetails): DecodeErrorDetails {
  const context = 'frame' in where ? `container frame ${where.frame}${where.kind ? ` (${where.kind})` : ''}` : where.context;
  return { offset: where.offset, context, ...extra };
}

/** The problem of a container that stops right after its 12-byte preamble, for both readers. */
export const AFTER_PREAMBLE = 'the input ends after the preamble, before the HEADER frame';

export class ContainerError extends DecodeError {
  /** The frame number, or undefined for the file preamble. */
  readonly frame: number | undefined;
  constructor(code: CodeUnder<'ContainerError'>, problem: string, where: FrameRef | { offset: number; context: string }, extra: ContainerErrorDetails = {}) {
    super(code, problem, details(where, extra));
    this.frame = 'frame' in where ? where.frame : undefined;
  }
}

export class ContainerMagicError extends ContainerError {
  constructor(problem: string, offset: number, extra: ContainerErrorDetails = {}) {
    super('ERR_CONTAINER_MAGIC', problem, { offset, context: 'container preamble' }, extra);
  }
}

export class CorruptFrameError extends ContainerError {
  constructor(problem: string, where: FrameRef, extra: ContainerErrorDetails = {}) {
    super('ERR_CONTAINER_CORRUPT', problem, where, extra);
  }
}

export class FrameOrderError extends ContainerError {
  constructor(problem: string, where: FrameRef, extra: ContainerErrorDetails = {}) {
    super('ERR_CONTAINER_ORDER', problem, where, extra);
  }
}

export class TruncatedContainerError extends ContainerError {
  constructor(problem: string, where: FrameRef, extra: ContainerErrorDetails = {}) {
    super('ERR_CONTAINER_TRUNCATED', problem, where, extra);
  }
}

/** This folder's catalogued classes (src/error-classes.ts gathers every folder's). */
export const CONTAINER_ERROR_CLASSES = { ContainerMagicError, CorruptFrameError, FrameOrderError, TruncatedContainerError } as const;

registerErrorClasses(CONTAINER_ERROR_CLASSES);
