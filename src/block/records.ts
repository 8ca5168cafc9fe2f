/**
 * Records of the `block` section body (QEMU 7.2 migration/block.c).
 *
 * One record per `be64 word`. block_load dispatches on the word's flag bits in a fixed order
 * (DEVICE_BLOCK, then PROGRESS, then EOS) and ends the body after any record whose flags hold
 * EOS, so combinations such as DEVICE_BLOCK|EOS are valid: that record is a data chunk and the
 * last record of the body. QEMU also ignores flag bits it does not know (0x10–0x100) once one
 * of those three is set, and ignores the upper bits of an EOS word.
 *
 * QEMU's source only ever sends the canonical flags (the `CANONICAL_FLAGS` below) with EOS on a
 * word of its own. Records keep the optional `flags` (and, for EOS, `sector`) only when the
 * stream differed, so that decoding and re-encoding gives the same bytes.
 */
import { BLK_MIG_FLAG_DEVICE_BLOCK, BLK_MIG_FLAG_EOS, BLK_MIG_FLAG_PROGRESS, BLK_MIG_FLAG_ZERO_BLOCK } from './flags.js';

/** A chunk of a drive (blk_send without ZERO_BLOCK): mig-block-size bytes, 1 MiB in QEMU. */
export interface BlockDataRecord {
  readonly type: 'block-data';
  /** Drive name as sent (bytes read as latin1), e.g. "drive-virtio-disk0". */
  readonly device: string;
  /** First 512-byte sector of the chunk. */
  readonly sector: number;
  /**
   * The whole chunk as sent: the stream's chunk size (BLK_MIG_BLOCK_SIZE, 1 MiB, in QEMU; the
   * mig-block-size of patched builds), so `data.length` is the size. For the last chunk of a
   * drive, the bytes past the drive's end are padding (uninitialised memory of the source). May
   * be a view into the decoder's input: copy it before keeping it past the input's lifetime.
   */
  readonly data: Buffer;
  /** All 9 flag bits of the word; omitted when DEVICE_BLOCK only. */
  readonly flags?: number;
}

/** A chunk that is all zero (DEVICE_BLOCK|ZERO_BLOCK, zero-blocks capability): no data follows. */
export interface BlockZeroRecord {
  readonly type: 'block-zero';
  readonly device: string;
  readonly sector: number;
  /** All 9 flag bits of the word; omitted when DEVICE_BLOCK|ZERO_BLOCK only. */
  readonly flags?: number;
}

/** Bulk-phase progress, printed by the destination as "Completed N %". */
export interface BlockProgressRecord {
  readonly type: 'block-progress';
  /** `word >> 9`; QEMU sends 0–100. */
  readonly percent: number;
  /** All 9 flag bits of the word; omitted when PROGRESS only. */
  readonly flags?: number;
}

/** End of the section body. */
export interface BlockEosRecord {
  readonly type: 'block-eos';
  /** All 9 flag bits of the word; omitted when EOS only. */
  readonly flags?: number;
  /** `word >> 9`, which block_load ignores; omitted when 0 (QEMU sends 0). */
  readonly sector?: number;
}

export type BlockRecord = BlockDataRecord | BlockZeroRecord | BlockProgressRecord | BlockEosRecord;
export type BlockRecordType = BlockRecord['type'];

export const BLOCK_RECORD_TYPES: readonly BlockRecordType[] = ['block-data', 'block-zero', 'block-progress', 'block-eos'];

/** The flags QEMU's source writes for each record type (blk_send, block_save_*). */
export const CANONICAL_FLAGS: Readonly<Record<BlockRecordType, number>> = {
  'block-data': BLK_MIG_FLAG_DEVICE_BLOCK,
  'block-zero': BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK,
  'block-progress': BLK_MIG_FLAG_PROGRESS,
  'block-eos': BLK_MIG_FLAG_EOS,
};

/**
 * The record type block_load reads for these flag bits, or undefined when it fails with
 * "Unknown block migration flags". Mirrors its if/else-if chain.
 */
export function classifyBlockFlags(flags: number): BlockRecordType | undefined {
  if (flags & BLK_MIG_FLAG_DEVICE_BLOCK) {
    return flags & BLK_MIG_FLAG_ZERO_BLOCK ? 'block-zero' : 'block-data';
  }
  if (flags & BLK_MIG_FLAG_PROGRESS) return 'block-progress';
  if (flags & BLK_MIG_FLAG_EOS) return 'block-eos';
  return undefined;
}

/** The flag bits `record` is written with. */
export function blockRecordFlags(record: BlockRecord): number {
  return record.flags ?? CANONICAL_FLAGS[record.type];
}

/** True when block_load stops after this record (its flags hold EOS). */
export function endsBlockBody(record: BlockRecord): boolean {
  return (blockRecordFlags(record) & BLK_MIG_FLAG_EOS) !== 0;
}

const TYPES: ReadonlySet<string> = new Set(BLOCK_RECORD_TYPES);

/** Narrows any record of the stream to a block record. */
export function isBlockRecord(record: { readonly type: string }): record is BlockRecord {
  return TYPES.has(record.type);
}
