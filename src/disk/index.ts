/** The disk path (docs/disk.md): the disk stream, pass planning, source, sink, consistency check. */
export { DiskError, DiskExtentError, DiskMismatchError, DiskSizeError, type ChunkDifference, type DiskErrorContext } from './errors.js';
export type { DiskEndRecord, DiskRecord, DiskStreamHeader, SubBlockDeltaRecord } from './records.js';
export {
  DISK_STREAM_MAGIC,
  DISK_STREAM_VERSION,
  DiskStreamDecoder,
  DiskStreamEncoder,
  FrameKind,
  SUB_BLOCK_SIZE,
  encodeDiskHeader,
  encodedRecordLength,
  presenceBytes,
  type DiskStreamDecoderOptions,
} from './disk-stream.js';
export { BASE_ALLOCATION, chunkCount, chunkRunBatches, chunkRuns, dirtyBitmapContext, extentSelector, planChunks, plannedBytes, type ChunkRun, type PlanOptions } from './pass-plan.js';
export { ChunkEncoder, recordBytes, type ChunkEncoderOptions, type ChunkRecord } from './chunk-encoder.js';
export { DiskSource, type DiskSourceOptions, type EmitRecord, type PassStats } from './source.js';
export { DiskSink, type DiskSinkOptions, type SinkStats } from './sink.js';
export { MISMATCHES_SHOWN, checkDiskConsistency, compareChunkHashes, hashDrive, type ConsistencyOptions, type ConsistencyReport, type HashComparison, type HashDriveOptions } from './consistency.js';
export { addBitmap, addExport, deleteExport, findDriveNode, removeBitmap, rotateBitmap, startNbdServer, stopNbdServer, type DriveNode, type ExportOptions } from './qmp-block.js';
