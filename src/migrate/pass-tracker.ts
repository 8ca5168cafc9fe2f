/**
 * Passes over guest RAM as the stream shows them, and where the guest keeps re-dirtying it.
 *
 * QEMU's page walk (ram_find_and_save_block, find_dirty_block) goes through the RAMBlocks in
 * list order and each block's dirty pages in ascending offset, and wraps to the first block
 * when it completes a round. So within a round every page record is further along the walk
 * than the one before; a record that is not starts the next round. Rounds are what `migrate`
 * reports as passes: pages, zero pages and re-sent (hot) pages each.
 *
 * The heat map counts re-sends per segment of each RAMBlock (fixed count of segments per
 * block, so its size does not grow with the guest). Pure: feed records, read `summary()`.
 */
import { isRamPageRecord, type RamMemSizeRecord } from '../ram/records.js';
import type { BaseRecord } from '../stream/section-codec.js';

export interface PassCounts {
  /** 0 = the first full round. */
  index: number;
  pages: number;
  zeroPages: number;
  /** Pages of this round that an earlier round sent already. */
  resentPages: number;
  /** Stream bytes of the page payloads (4 KiB per normal page, the delta per XBZRLE). */
  payloadBytes: number;
}

export interface HeatSegment {
  block: string;
  /** Byte offset of the segment in its RAMBlock. */
  offset: number;
  length: number;
  /** Page records for pages of this segment beyond each page's first. */
  resends: number;
}

export interface PassSummary {
  passes: PassCounts[];
  /** Hottest segments first; only segments with re-sends. */
  heat: HeatSegment[];
}

interface TrackedBlock {
  readonly index: number;
  readonly length: number;
  readonly pages: number;
  /** One bit per page: sent at least once. */
  readonly seen: Uint8Array;
  readonly resends: Uint32Array;
  readonly segmentBytes: number;
}

export class PassTracker {
  private readonly blocks = new Map<string, TrackedBlock>();
  private readonly passes: PassCounts[] = [];
  private current: PassCounts | undefined;
  /** Walk position of the last page record: block index, then offset. */
  private lastBlock = -1;
  private lastOffset = -1;

  constructor(
    private readonly pageSize: number,
    /** Heat-map segments per RAMBlock. */
    private readonly segmentsPerBlock = 64,
  ) {}

  apply(record: BaseRecord): void {
    if (record.type === 'ram-mem-size') {
      for (const { idstr, usedLength } of (record as RamMemSizeRecord).blocks) this.declare(idstr, usedLength);
      return;
    }
    if (!isRamPageRecord(record)) return;
    const block = this.blocks.get(record.block);
    if (block === undefined) return;
    if (block.index < this.lastBlock || (block.index === this.lastBlock && record.offset <= this.lastOffset) || this.current === undefined) {
      this.current = { index: this.passes.length, pages: 0, zeroPages: 0, resentPages: 0, payloadBytes: 0 };
      this.passes.push(this.current);
    }
    this.lastBlock = block.index;
    this.lastOffset = record.offset;
    const pass = this.current;
    pass.pages++;
    if (record.type === 'ram-zero') pass.zeroPages++;
    else pass.payloadBytes += record.data.length;
    const pageIndex = Math.floor(record.offset / this.pageSize);
    if (pageIndex >= block.pages) return;
    const bit = 1 << (pageIndex & 7);
    if (block.seen[pageIndex >> 3]! & bit) {
      pass.resentPages++;
      block.resends[Math.floor(record.offset / block.segmentBytes)]!++;
    } else {
      block.seen[pageIndex >> 3]! |= bit;
    }
  }

  /** Passes begun so far. */
  get passCount(): number {
    return this.passes.length;
  }

  summary(): PassSummary {
    const heat: HeatSegment[] = [];
    for (const [name, block] of this.blocks) {
      block.resends.forEach((resends, i) => {
        if (resends === 0) return;
        const offset = i * block.segmentBytes;
        heat.push({ block: name, offset, length: Math.min(block.segmentBytes, block.length - offset), resends });
      });
    }
    heat.sort((a, b) => b.resends - a.resends || a.offset - b.offset);
    return { passes: this.passes.map((p) => ({ ...p })), heat };
  }

  private declare(idstr: string, length: number): void {
    if (this.blocks.has(idstr)) return;
    const pages = Math.ceil(length / this.pageSize);
    // Segments are whole pages, so a page never straddles two.
    const segmentBytes = Math.max(1, Math.ceil(pages / this.segmentsPerBlock)) * this.pageSize;
    this.blocks.set(idstr, {
      index: this.blocks.size,
      length,
      pages,
      seen: new Uint8Array(Math.ceil(pages / 8)),
      resends: new Uint32Array(Math.ceil(length / segmentBytes)),
      segmentBytes,
    });
  }
}
