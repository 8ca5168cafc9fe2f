/**
 * Chunks read from the source drive into disk-stream records (pure; the native zero scan and
 * page hashing are computation, not I/O).
 *
 * - A whole chunk is a `block` section record made with QEMU's rule (migration/block.c,
 *   blk_send): ZERO_BLOCK when the zero-blocks capability is on and the whole chunk buffer is
 *   zero (buffer_is_zero over BLK_MIG_BLOCK_SIZE bytes, the last chunk's padding included; ours
 *   is zeros), else DEVICE_BLOCK with the chunk's bytes. blk_send then flushes the QEMUFile after
 *   a zero block; here every record is handed on as soon as it is made, so there is nothing to
 *   hold back.
 * - With sub-block deltas on, the encoder keeps an 8-byte hash (XXH64) of every 4 KiB sub-block
 *   as the destination last received it: at first the hash of a zero sub-block (the first copy
 *   zeroes what it does not send, zero(); or the destination is blank), then of every chunk
 *   sent. A chunk dirtied again is compared sub-block by sub-block: only the changed ones go, in
 *   one delta record, unless they are so many that the whole chunk costs no more; an unchanged
 *   chunk (rewritten with the same bytes) sends nothing.
 *   A hash collision would leave a sub-block stale; the consistency check after the last pass
 *   (consistency.ts) compares the drives themselves.
 */
import { BDRV_SECTOR_SIZE } from '../block/flags.js';
import type { BlockDataRecord, BlockZeroRecord } from '../block/records.js';
import { hashPages, isAllZero } from '../native.js';
import { ArgumentError } from '../stream/errors.js';
import { FRAME_HEADER_BYTES, SUB_BLOCK_SIZE, presenceBytes } from './disk-stream.js';
import type { DiskStreamHeader, SubBlockDeltaRecord } from './records.js';

export type ChunkRecord = BlockDataRecord | BlockZeroRecord | SubBlockDeltaRecord;

export interface ChunkEncoderOptions {
  /** Send all-zero chunks as ZERO_BLOCK (QEMU's zero-blocks capability). Default true. */
  readonly zeroBlocks?: boolean;
  /** Keep sub-block hashes and send deltas for chunks sent before. Default false. */
  readonly deltas?: boolean;
}

/** XXH64 of a zero sub-block: what every sub-block of a blank destination hashes to. */
let zeroHash: bigint | undefined;
function zeroSubBlockHash(): bigint {
  zeroHash ??= hashPages(Buffer.alloc(SUB_BLOCK_SIZE), SUB_BLOCK_SIZE)[0]!;
  return zeroHash;
}

export class ChunkEncoder {
  readonly zeroBlocks: boolean;
  readonly deltas: boolean;
  /** Hash of every sub-block as last sent; only with deltas. */
  private readonly sent: BigUint64Array | undefined;
  private readonly perChunk: number;
  private readonly scratch: BigUint64Array;

  constructor(
    readonly header: DiskStreamHeader,
    options: ChunkEncoderOptions = {},
  ) {
    this.zeroBlocks = options.zeroBlocks ?? true;
    this.deltas = options.deltas ?? false;
    this.perChunk = Math.max(1, header.chunkSize / SUB_BLOCK_SIZE);
    this.scratch = new BigUint64Array(this.perChunk);
    if (this.deltas) {
      if (header.size % SUB_BLOCK_SIZE !== 0) {
        throw new ArgumentError(`sub-block deltas need a drive size that is a multiple of ${SUB_BLOCK_SIZE}; ${JSON.stringify(header.device)} has ${header.size} bytes`);
      }
      this.sent = new BigUint64Array(header.size / SUB_BLOCK_SIZE).fill(zeroSubBlockHash());
    }
  }

  /** Bytes of the drive in chunk `index` (the last one may be short). */
  chunkLength(index: number): number {
    return Math.min(this.header.chunkSize, this.header.size - index * this.header.chunkSize);
  }

  /**
   * The record for chunk `index` whose bytes are `data` (chunkSize bytes; past the drive's end,
   * zeros). `delta` asks for a sub-block delta against what was sent before (ignored without
   * the deltas option). Returns undefined when a delta finds nothing changed.
   */
  encode(index: number, data: Buffer, delta: boolean): ChunkRecord | undefined {
    const { chunkSize, device } = this.header;
    if (data.length !== chunkSize) throw new ArgumentError(`chunk ${index}: ${data.length} bytes, the chunk size is ${chunkSize}`);
    const offset = index * chunkSize;
    const sector = offset / BDRV_SECTOR_SIZE;
    if (this.sent === undefined) return this.whole(device, sector, data);

    const inDrive = this.chunkLength(index);
    const subBlocks = inDrive / SUB_BLOCK_SIZE;
    const hashes = hashPages(data.subarray(0, inDrive), SUB_BLOCK_SIZE, this.scratch);
    const first = offset / SUB_BLOCK_SIZE;
    const changed: number[] = [];
    for (let i = 0; i < subBlocks; i++) if (hashes[i] !== this.sent[first + i]) changed.push(i);
    this.sent.set(hashes.subarray(0, subBlocks), first);
    if (!delta) return this.whole(device, sector, data);
    if (changed.length === 0) return undefined;
    // A delta costs its offset, bitmap and sub-blocks; a whole chunk its word, name and data.
    const deltaBytes = 8 + presenceBytes(chunkSize) + changed.length * SUB_BLOCK_SIZE;
    const wholeBytes = this.zeroBlocks && isAllZero(data) ? 9 + device.length : 9 + device.length + chunkSize;
    if (deltaBytes >= wholeBytes) return this.whole(device, sector, data);
    const out = Buffer.allocUnsafe(changed.length * SUB_BLOCK_SIZE);
    changed.forEach((sub, i) => data.copy(out, i * SUB_BLOCK_SIZE, sub * SUB_BLOCK_SIZE, (sub + 1) * SUB_BLOCK_SIZE));
    return { type: 'disk-delta', offset, indexes: changed, data: out };
  }

  /**
   * The record for chunk `index` when the source reads it as zeros without reading it (the first
   * copy, where base:allocation says ZERO): it zeroes the destination's copy, whatever that held,
   * so its sub-blocks are a blank destination's again.
   */
  zero(index: number): BlockDataRecord | BlockZeroRecord {
    const { chunkSize, device } = this.header;
    const offset = index * chunkSize;
    if (this.sent !== undefined) {
      const first = offset / SUB_BLOCK_SIZE;
      this.sent.fill(zeroSubBlockHash(), first, first + this.chunkLength(index) / SUB_BLOCK_SIZE);
    }
    const sector = offset / BDRV_SECTOR_SIZE;
    return this.zeroBlocks ? { type: 'block-zero', device, sector } : { type: 'block-data', device, sector, data: Buffer.alloc(chunkSize) };
  }

  /** blk_send: ZERO_BLOCK when zero-blocks is on and the whole buffer is zero, else the data. */
  private whole(device: string, sector: number, data: Buffer): BlockDataRecord | BlockZeroRecord {
    if (this.zeroBlocks && isAllZero(data)) return { type: 'block-zero', device, sector };
    return { type: 'block-data', device, sector, data };
  }
}

/** Frame bytes of a record (the disk stream's cost of it), for the statistics of a pass. */
export function recordBytes(record: ChunkRecord, header: DiskStreamHeader): number {
  switch (record.type) {
    case 'block-zero':
      return FRAME_HEADER_BYTES + 9 + record.device.length;
    case 'block-data':
      return FRAME_HEADER_BYTES + 9 + record.device.length + record.data.length;
    case 'disk-delta':
      return FRAME_HEADER_BYTES + 8 + presenceBytes(header.chunkSize) + record.data.length;
  }
}
