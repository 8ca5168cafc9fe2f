/**
 * Errors of the ram page codecs, in the DecodeError family of src/stream/errors.ts:
 *
 *   DecodeError
 *   ├── XbzrleError     an XBZRLE delta that xbzrle_decode_buffer would reject  (ERR_XBZRLE)
 *   └── ZlibPageError   a COMPRESS_PAGE payload that is not one zlib page       (ERR_ZLIB_PAGE)
 *
 * The codec raises them with the record's stream offset and section. Used on their own
 * (decodeXbzrle, inflatePage, RamImage) they know no stream offset: `offset` is then 0 unless
 * the caller passes one, and the message names the delta position.
 */
import { registerErrorClasses } from '../errors.js';
import { DecodeError, type SectionRef } from '../stream/errors.js';

/** Where a page payload came from, when known. */
export interface PayloadLocation {
  /** Stream offset of the record. */
  offset?: number;
  section?: SectionRef | undefined;
  /** e.g. 'ram record', 'XBZRLE delta of pc.ram+0x1000'. */
  context?: string;
}

export class XbzrleError extends DecodeError {
  /** Byte position in the delta where decoding failed. */
  readonly deltaOffset: number;
  constructor(problem: string, deltaOffset: number, where: PayloadLocation = {}) {
    super('ERR_XBZRLE', `${problem} at byte ${deltaOffset} of the XBZRLE delta`, {
      offset: where.offset ?? 0,
      section: where.section,
      context: where.context ?? 'XBZRLE delta',
      actual: deltaOffset,
    });
    this.deltaOffset = deltaOffset;
  }
}

export class ZlibPageError extends DecodeError {
  constructor(problem: string, where: PayloadLocation = {}, cause?: unknown) {
    super('ERR_ZLIB_PAGE', problem, {
      offset: where.offset ?? 0,
      section: where.section,
      context: where.context ?? 'compressed page',
      cause,
    });
  }
}

/** This folder's catalogued classes (src/error-classes.ts gathers every folder's). */
export const RAM_ERROR_CLASSES = { XbzrleError, ZlibPageError } as const;

registerErrorClasses(RAM_ERROR_CLASSES);
