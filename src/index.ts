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
  type EncoderOptions,
  type MigrationRecord,
} from './codec.js';
export * from './stream/errors.js';
export {
  ERRORS,
  ERROR_FAMILIES,
  isErrorCode,
  serializeError,
  reviveError,
  type CodeOf,
  type CodeUnder,
  type ErrorClassName,
  type ErrorCode,
  type ErrorEntry,
  type ErrorFamilyName,
  type ExitStatus,
  type SerializedError,
} from './errors.js';
/** Every catalogued class by name; importing it makes them all revivable (reviveError). */
export { ERROR_CLASSES } from './error-classes.js';
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
export { StreamReport, type ChunkSizeSource, type RamCounts, type RamIteration, type RamResend, type StreamReportOptions, type StreamSummary } from './report/stream-report.js';
export { HBitmap, MAX_PAGE_SIZE, NativeAddonError, findZeroPages, hash64, hashPages, isAllZero, type BytesLike, type DirtyArea, type HBitmapOptions } from './native.js';
export * from './tls/index.js';
export * from './nbd/index.js';
export * from './disk/index.js';
// Above the codec: the container format, compression, decompression, their workers, and
// compaction (a record transform beside src/ram).
export { CODECS, codecByName, resolveLevel, type CodecInfo, type CodecName } from './codecs/registry.js';
export { CONTAINER_MAGIC, CONTAINER_VERSION, FrameKind, frameKindName, type ContainerEnd, type ContainerInfo } from './container/format.js';
export { ContainerReader, type Frame as ContainerFrame } from './container/reader.js';
export { ContainerError, ContainerMagicError, CorruptFrameError, FrameOrderError, TruncatedContainerError, type FrameRef } from './container/errors.js';
export { xxh32, Xxh32Stream } from './container/checksum.js';
export { PageWindow } from './container/page-window.js';
export { Compressor, DEFAULT_DEDUP_WINDOW_PAGES, DEFAULT_FRAME_BYTES, type CompressOptions, type CompressStats } from './compress/compressor.js';
export { SegmentPlanner, type SegmentPlan } from './compress/planner.js';
export { DedupIndex, xxh32PageHasher, type PageHasher } from './compress/dedup-index.js';
export { Decompressor, type DecompressOptions, type DecompressStats } from './decompress/piped.js';
export { WorkerPool, defaultThreads } from './workers/pool.js';
export { WorkerError } from './workers/errors.js';
export { Compactor, compactedBytes, type CompactStats, type ByteSource } from './ram/compact.js';
export * from './migrate/index.js';
export * from './tunnel/index.js';
export { MultifdChannelReader, MULTIFD_MAGIC, type MultifdEvent, type MultifdInit, type MultifdPacket } from './ram/multifd.js';
// The error classes the folders above do not export (docs/errors.md lists every code).
export { OutputError, ListenError } from './tls/errors.js';
export { QemuError, QemuLaunchError, QemuExitedError, QemuTimeoutError, QmpConnectionError, QmpError, MigrationFailedError } from './qemu/errors.js';
export { DirtyRateError } from './migrate/dirty-rate.js';
export { GuestMemoryReadError } from './migrate/ram-reader.js';
export { SendStatsProtocolError } from './migrate/send-stats-wire.js';
export { PageHashFileError } from './migrate/stream-hashes.js';
export { VerdictChannelError } from './migrate/verdict-channel.js';
export { VerdictProtocolError } from './migrate/verdict-wire.js';
export { UsageError } from './cli/args.js';
export { CannotOpenError } from './cli/io.js';
export { OutputStalledError } from './cli/fd-io.js';
export { OutputFullError } from './cli/output-file.js';
