/**
 * The seam between the stream framing (src/stream) and the section bodies that are
 * self-describing (src/ram for "ram", src/block for "block").
 *
 * The top-level decoder reads section headers and footers; between them it hands the reader to
 * the body codec registered for the section's idstr, one record at a time, until the codec says
 * a record ended the body (the EOS flag of ram and block). Sections with no registered codec are
 * framed by their footer and passed through as opaque bytes.
 */
import type { SectionRef } from './errors.js';
import type { ByteReader } from './reader.js';
import type { ByteWriter } from './writer.js';

/** Every record has a string discriminant. */
export interface BaseRecord {
  readonly type: string;
}

export type SectionPhase = 'start' | 'part' | 'end' | 'full';

/** Facts about the stream that body codecs need, learnt from the configuration section. */
export interface StreamParameters {
  /** TARGET_PAGE_SIZE of the source: 4096 on x86 unless the configuration says otherwise. */
  pageSize: number;
  /** Capabilities validated by the configuration section (e.g. "x-ignore-shared"). */
  capabilities: readonly string[];
  /**
   * The `block` section's chunk size (mig-block-size): given (DecoderOptions.blockSize), or set
   * by the block codec once it found it at the first data chunk; undefined until then.
   */
  blockSize?: number;
  /** Where `blockSize` came from: the caller ('option') or the stream itself ('stream'). */
  blockSizeSource?: 'option' | 'stream';
  /** Whether sections end with a footer (DecoderOptions.sectionFooters; undefined: true). */
  sectionFooters?: boolean;
}

export interface SectionContext {
  readonly section: SectionRef;
  /** version_id from the section's START/FULL header. */
  readonly versionId: number;
  readonly phase: SectionPhase;
  readonly params: StreamParameters;
}

/** Per-stream decoding state of one section kind (e.g. the CONTINUE block of `ram`). */
export interface SectionBodyDecoder<R extends BaseRecord> {
  /**
   * Reads one record at the reader's cursor. When the bytes are incomplete the reader throws
   * NEED_MORE; let it through, and change no state before the whole record has been read (the
   * decoder rewinds and calls again later). Invalid bytes throw a DecodeError whose offset is
   * `reader.markOffset` and whose section is `ctx.section`.
   */
  read(reader: ByteReader, ctx: SectionContext): R;
  /** True when `record` is the last of the section body (the footer follows). */
  endsBody(record: R): boolean;
}

export interface SectionCodec<R extends BaseRecord> {
  /** idstr of the section this codec handles, e.g. "ram". */
  readonly idstr: string;
  /** Discriminants of the records this codec produces, for encoder dispatch. */
  readonly recordTypes: readonly R['type'][];
  newDecoder(): SectionBodyDecoder<R>;
  /** Writes the exact bytes of `record`; throws EncodeError for an unwritable record. */
  encode(record: R, writer: ByteWriter): void;
  /** Number of bytes `encode` writes for `record` (for statistics, without encoding). */
  encodedLength(record: R): number;
}
