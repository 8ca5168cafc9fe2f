/**
 * What the disk stream carries (docs/format.md, "Disk stream"): a header naming the drive, its
 * size and the chunk size, then records: QEMU `block` section records (a whole chunk, or
 * ZERO_BLOCK), migstream's own sub-block delta, and an end record.
 */
import type { BlockDataRecord, BlockZeroRecord } from '../block/records.js';

/** The stream's first bytes, decoded. */
export interface DiskStreamHeader {
  /** The drive's name, as in every block record (QEMU's drive id on the source). */
  readonly device: string;
  /** The source drive's size in bytes. */
  readonly size: number;
  /** Bytes per chunk: the mig-block-size of the block records (4 KiB to 16 MiB). */
  readonly chunkSize: number;
  /** Bytes per sub-block of a delta: 4096 in version 1. */
  readonly subBlockSize: number;
}

/**
 * A chunk dirtied again, sent as the sub-blocks whose content changed since the copy last sent
 * (issue 16 item 3). `indexes` are sub-block numbers within the chunk, ascending; `data` holds
 * their bytes in that order, `subBlockSize` each.
 */
export interface SubBlockDeltaRecord {
  readonly type: 'disk-delta';
  /** Byte offset of the chunk in the drive (a multiple of the chunk size). */
  readonly offset: number;
  readonly indexes: readonly number[];
  readonly data: Buffer;
}

/** The last record: how many records came before it. */
export interface DiskEndRecord {
  readonly type: 'disk-end';
  readonly records: number;
}

/** A record of the disk stream. */
export type DiskRecord = BlockDataRecord | BlockZeroRecord | SubBlockDeltaRecord | DiskEndRecord;
