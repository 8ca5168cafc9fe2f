/**
 * migstream: decoder, byte-exact encoder and tools for QEMU's live-migration stream.
 *
 *   import { decode, encode, createDecoder, RamImage, SparseFileStore } from 'migstream';
 *   import { HBitmap, findZeroPages, hashPages } from 'migstream';   // native addon
 */
export {
  createDecodeStream,
  createDecoder,
  createEncodeStream,
  createEncoder,
  decode,
  decodeBuffer,
  encode,
  encodeBuffer,
  encodedLength,
  type BodyRecord,
  type MigrationRecord,
} from './codec.js';
export * from './stream/errors.js';
export * from './stream/records.js';
export { StreamDecoder, type DecoderOptions } from './stream/decoder.js';
export { StreamEncoder, framingRecordLength } from './stream/encoder.js';
export { DecodeTransform, EncodeTransform, decodeWith, encodeWith } from './stream/adapters.js';
export { ByteReader, NEED_MORE } from './stream/reader.js';
export { ByteWriter } from './stream/writer.js';
export type * from './stream/section-codec.js';
export * from './stream/vmstate.js';
export * from './ram/index.js';
export * from './block/index.js';
export {
  StreamReport,
  type RamCounts,
  type RamIteration,
  type RamResend,
  type StreamReportOptions,
  type StreamSummary,
} from './report/stream-report.js';
export {
  HBitmap,
  MAX_PAGE_SIZE,
  NativeAddonError,
  findZeroPages,
  hash64,
  hashPages,
  isAllZero,
  type BytesLike,
  type DirtyArea,
  type HBitmapOptions,
} from './native.js';
export * from './tls/index.js';
export * from './compress/index.js';
export * from './migrate/index.js';
