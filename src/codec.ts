/**
 * The whole-stream codec: the framing of src/stream with the `ram` and `block` body codecs.
 * This is what the CLI and library users call.
 */
import type { Readable } from 'node:stream';
import { checkBlockSize } from './block/block-size.js';
import { blockCodec, createBlockCodec } from './block/codec.js';
import type { BlockRecord } from './block/records.js';
import { ramCodec } from './ram/codec.js';
import type { RamRecord } from './ram/records.js';
import { DecodeTransform, EncodeTransform, decodeWith, encodeWith } from './stream/adapters.js';
import { StreamDecoder, type DecoderOptions } from './stream/decoder.js';
import { StreamEncoder, framingRecordLength } from './stream/encoder.js';
import type { FramingRecord } from './stream/records.js';
import type { SectionCodec } from './stream/section-codec.js';

/** Records of the self-describing section bodies. */
export type BodyRecord = RamRecord | BlockRecord;
/** Every record a migration stream decodes into. */
export type MigrationRecord = FramingRecord | BodyRecord;

// Each codec only ever sees its own records (dispatch is by idstr and record type).
const codecs = [ramCodec, blockCodec] as readonly SectionCodec<BodyRecord>[];

const codecByRecordType = new Map<string, SectionCodec<BodyRecord>>(codecs.flatMap((codec) => codec.recordTypes.map((type) => [type, codec] as const)));

/** Bytes a record occupies in the stream. */
export function encodedLength(record: MigrationRecord): number {
  const codec = codecByRecordType.get(record.type);
  return codec === undefined ? framingRecordLength(record as FramingRecord) : codec.encodedLength(record as BodyRecord);
}

/** A decoder of whole streams; `options.blockSize` is the block section's chunk size, found from the stream when omitted. */
export function createDecoder(options?: DecoderOptions): StreamDecoder<BodyRecord> {
  if (options?.blockSize !== undefined) checkBlockSize(options.blockSize, 'blockSize');
  return new StreamDecoder(codecs, options);
}

export interface EncoderOptions {
  /** The block section's chunk size (mig-block-size): data records must carry exactly this. */
  blockSize?: number;
}

export function createEncoder(chunkSize?: number, options: EncoderOptions = {}): StreamEncoder<BodyRecord> {
  if (options.blockSize === undefined) return new StreamEncoder(codecs, chunkSize);
  const sized = [ramCodec, createBlockCodec({ blockSize: options.blockSize })] as readonly SectionCodec<BodyRecord>[];
  return new StreamEncoder(sized, chunkSize);
}

/** Decodes a Readable or any (async) iterable of byte chunks into records. */
export function decode(source: Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options?: DecoderOptions): AsyncGenerator<MigrationRecord> {
  return decodeWith(createDecoder(options), source);
}

/** Encodes records into byte chunks of about 1 MiB. */
export function encode(records: AsyncIterable<MigrationRecord> | Iterable<MigrationRecord>): AsyncGenerator<Buffer> {
  return encodeWith(createEncoder(), records);
}

/** Decodes a complete in-memory stream. */
export function decodeBuffer(stream: Buffer, options?: DecoderOptions): MigrationRecord[] {
  const decoder = createDecoder(options);
  return [...decoder.push(stream), ...decoder.end()];
}

/** Encodes records into one buffer. */
export function encodeBuffer(records: Iterable<MigrationRecord>): Buffer {
  const encoder = createEncoder();
  for (const record of records) encoder.write(record);
  return Buffer.concat(encoder.take());
}

/** A Transform with bytes in and records out. */
export function createDecodeStream(options?: DecoderOptions): DecodeTransform<BodyRecord> {
  return new DecodeTransform(createDecoder(options));
}

/** A Transform with records in and bytes out. */
export function createEncodeStream(): EncodeTransform<BodyRecord> {
  return new EncodeTransform(createEncoder());
}
