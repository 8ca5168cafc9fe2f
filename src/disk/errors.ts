/**
 * Errors of the disk path (src/disk). Each names the drive and the peer it is about (the NBD
 * export, `unix:/path export "name"`) and, where one is to blame, the byte offset.
 *
 *   MigstreamError
 *   └── DiskError                base of this folder: `drive`, `peer`
 *       ├── DiskExtentError      a block status answer that does not describe the drive:
 *       │                        extents out of range, overlapping, leaving a gap, or not
 *       │                        adding up to the length asked              (ERR_DISK_EXTENTS)
 *       ├── DiskSizeError        a drive of the wrong size: the destination's export smaller
 *       │                        than the source, or a drive resized mid-run (ERR_DISK_SIZE)
 *       └── DiskMismatchError    the consistency check found chunks that differ; keeps their
 *                                count and the first ones                   (ERR_DISK_MISMATCH)
 *
 * Bytes of the disk stream that do not decode are DecodeErrors (src/stream/errors.ts), with the
 * byte offset, as for every other stream; NBD failures stay NbdErrors (src/nbd/errors.ts), which
 * name the peer and the request already.
 */
import { hex } from '../bytes/hex.js';
import { MigstreamError, registerErrorClasses, type CodeUnder } from '../errors.js';

export interface DiskErrorContext {
  /** The drive (QEMU's drive id or node name). */
  readonly drive: string;
  /** The NBD export read or written, `unix:/path export "name"`, when there is one. */
  readonly peer?: string | undefined;
}

function where(context: DiskErrorContext): string {
  return `disk ${JSON.stringify(context.drive)}${context.peer !== undefined ? ` (nbd ${context.peer})` : ''}`;
}

export class DiskError extends MigstreamError {
  readonly drive: string;
  readonly peer: string | undefined;
  constructor(code: CodeUnder<'DiskError'>, message: string, context: DiskErrorContext, options?: { cause?: unknown }) {
    super(code, `${where(context)}: ${message}`, options);
    this.drive = context.drive;
    this.peer = context.peer;
  }
}

export class DiskExtentError extends DiskError {
  /** The meta context the extents came from (`base:allocation`, `qemu:dirty-bitmap:NAME`). */
  readonly metaContext: string;
  /** The byte offset where the extents went wrong. */
  readonly offset: number;
  constructor(problem: string, metaContext: string, offset: number, context: DiskErrorContext) {
    super('ERR_DISK_EXTENTS', `extents of ${metaContext} at offset ${offset} (${hex(offset)}): ${problem}`, context);
    this.metaContext = metaContext;
    this.offset = offset;
  }
}

export class DiskSizeError extends DiskError {
  /** The size the drive should have (the source's), and the size found. */
  readonly expectedSize: number;
  readonly actualSize: number;
  constructor(problem: string, expectedSize: number, actualSize: number, context: DiskErrorContext) {
    super('ERR_DISK_SIZE', `${problem} (${actualSize} bytes, expected ${expectedSize})`, context);
    this.expectedSize = expectedSize;
    this.actualSize = actualSize;
  }
}

/** A chunk whose hashes differ: its index and first byte. */
export interface ChunkDifference {
  readonly chunk: number;
  readonly offset: number;
}

export class DiskMismatchError extends DiskError {
  /** How many chunks differ. */
  readonly count: number;
  /** The first chunks that differ, in order (at most 8). */
  readonly first: readonly ChunkDifference[];
  readonly chunkSize: number;
  constructor(count: number, first: readonly ChunkDifference[], chunkSize: number, context: DiskErrorContext & { readonly destination: string }) {
    const shown = first.map((d) => `chunk ${d.chunk} at ${hex(d.offset)}`).join(', ');
    super('ERR_DISK_MISMATCH', `${count} chunk(s) of ${chunkSize} bytes differ from the destination (nbd ${context.destination}); first: ${shown}`, context);
    this.count = count;
    this.first = first;
    this.chunkSize = chunkSize;
  }
}

/** This folder's catalogued classes (src/error-classes.ts gathers every folder's). */
export const DISK_ERROR_CLASSES = { DiskExtentError, DiskSizeError, DiskMismatchError } as const;

registerErrorClasses(DISK_ERROR_CLASSES);
