/** Public API of the container: compressor, decompressor, compaction, codecs and errors. */
export { Compressor, DEFAULT_DEDUP_WINDOW_PAGES, DEFAULT_FRAME_BYTES, type CompressOptions, type CompressStats } from './compressor.js';
export { Decompressor, type DecompressOptions, type DecompressStats } from '../decompress/piped.js';
export { CODECS, codecByName, resolveLevel, type CodecInfo, type CodecName } from '../codecs/registry.js';
export { ContainerReader, type Frame as ContainerFrame } from '../container/reader.js';
export {
  CONTAINER_MAGIC,
  CONTAINER_VERSION,
  FrameKind,
  frameKindName,
  type ContainerEnd,
  type ContainerInfo,
} from '../container/format.js';
export {
  ContainerError,
  ContainerMagicError,
  CorruptFrameError,
  FrameOrderError,
  TruncatedContainerError,
  WorkerError,
  type FrameRef,
} from '../container/errors.js';
export { WorkerPool, defaultThreads } from '../workers/pool.js';
export { xxh32, Xxh32Stream } from '../container/checksum.js';
export { SegmentPlanner, type SegmentPlan } from './planner.js';
export { DedupIndex, PageWindow, xxh32PageHasher, type PageHasher } from './dedup-index.js';
export { Compactor, compactedBytes, type CompactStats, type ByteSource } from '../ram/compact.js';
