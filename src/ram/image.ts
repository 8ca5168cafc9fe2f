/**
 * RamImage rebuilds the final RAM of every RAMBlock from `ram` records, in stream order, the
 * way QEMU's destination does (ram_load_precopy), into a PageStore.
 *
 *   MEM_SIZE       declares (or resizes) each block
 *   PAGE           writes the page; an all-zero payload for a page never written is skipped
 *                  like a ZERO record (a producer without zero-page detection, such as QEMU
 *                  7.2's multifd, sends zero pages this way), so the sparse file stays sparse
 *   ZERO fill 0    skipped while the page was never written (the store reads it as zero; QEMU's
 *                  ram_handle_compressed likewise skips already-zero memory), else written
 *   ZERO fill n    writes the page full of n
 *   XBZRLE         reads the page back, applies the delta, writes it (a page never sent is
 *                  taken as its current content, zero)
 *   COMPRESS_PAGE  inflates and writes the page
 * Other records (any `type`) are ignored, so a whole stream's records can be fed in.
 *
 * Written pages (those that may hold non-zero bytes) are tracked in one HBitmap per block, one
 * bit per page. Everything is synchronous; finish() returns the store's block list directly.
 */
import { HBitmap, isAllZero } from '../native.js';
import { ArgumentError } from '../stream/errors.js';
import type { BaseRecord } from '../stream/section-codec.js';
import type { PageStore, RamBlockImage } from './page-store.js';
import type { RamCompressedRecord, RamMemSizeRecord, RamPageLikeRecord, RamPageRecord, RamRecord, RamXbzrleRecord, RamZeroRecord } from './records.js';
import { decodeXbzrle } from './xbzrle.js';
import { inflatePage } from './zlib-page.js';

export interface RamImageOptions {
  /** TARGET_PAGE_SIZE of the stream (StreamParameters.pageSize). */
  pageSize: number;
}

export interface RamImageStats {
  pages: number;
  zeroPages: number;
  /** ZERO records with fill 0 for pages never written: nothing to do. */
  zeroPagesSkipped: number;
  /** PAGE records (counted in `pages`) whose all-zero payload went to a page never written. */
  zeroPayloadsSkipped: number;
  xbzrlePages: number;
  compressedPages: number;
}

interface ImageBlock {
  readonly idstr: string;
  length: number;
  /** Granule i set: page i has been written and may hold non-zero bytes. */
  readonly written: HBitmap;
}

export class RamImage<R extends RamBlockImage = RamBlockImage> {
  readonly stats: RamImageStats = {
    pages: 0,
    zeroPages: 0,
    zeroPagesSkipped: 0,
    zeroPayloadsSkipped: 0,
    xbzrlePages: 0,
    compressedPages: 0,
  };
  private readonly pageSize: number;
  private readonly blocks = new Map<string, ImageBlock>();
  private last: ImageBlock | undefined;
  private readonly scratch: Buffer;
  private readonly zeroPage: Buffer;
  private fillPage: Buffer | undefined;

  constructor(
    private readonly store: PageStore<R>,
    options: RamImageOptions,
  ) {
    const { pageSize } = options;
    if (!(Number.isInteger(pageSize) && pageSize >= 512 && (pageSize & (pageSize - 1)) === 0)) {
      throw new ArgumentError(`RamImage: pageSize ${String(pageSize)} is not a power of two`);
    }
    this.pageSize = pageSize;
    this.scratch = Buffer.alloc(pageSize);
    this.zeroPage = Buffer.alloc(pageSize);
  }

  /** Applies one record; records that are not page or MEM_SIZE records are ignored. */
  apply(record: RamRecord | BaseRecord): void {
    switch (record.type) {
      case 'ram-mem-size':
        this.declare(record as RamMemSizeRecord);
        return;
      case 'ram-page': {
        const page = record as RamPageRecord;
        if (page.data.length !== this.pageSize) {
          throw new ArgumentError(`ram-page of ${page.data.length} bytes, expected ${this.pageSize}`);
        }
        const block = this.target(page);
        this.stats.pages++;
        // Only pages never written are scanned, and the scan stops at the first non-zero bytes.
        if (!this.isWritten(block, page.offset) && isAllZero(page.data)) {
          this.stats.zeroPayloadsSkipped++;
          return;
        }
        this.put(block, page.offset, page.data);
        return;
      }
      case 'ram-zero':
        this.applyZero(record as RamZeroRecord);
        return;
      case 'ram-xbzrle':
        this.applyXbzrle(record as RamXbzrleRecord);
        return;
      case 'ram-compressed': {
        const page = record as RamCompressedRecord;
        const block = this.target(page);
        this.put(block, page.offset, inflatePage(page.data, this.pageSize, { context: where(page) }));
        this.stats.compressedPages++;
        return;
      }
      default:
    }
  }

  /** Completes the store and returns its block list (e.g. files with their paths). */
  finish(): R[] {
    return this.store.finish();
  }

  private declare(record: RamMemSizeRecord): void {
    const pages = (length: number) => Math.ceil(length / this.pageSize);
    for (const { idstr, usedLength } of record.blocks) {
      const known = this.blocks.get(idstr);
      if (known !== undefined && known.length === usedLength) continue;
      if (known !== undefined) {
        // Pages past a shrunken block's end are dropped, and read as zero if it grows again.
        known.written.resize(pages(usedLength));
        known.length = usedLength;
      } else {
        const written = new HBitmap(pages(usedLength), { granularity: this.pageSize });
        this.blocks.set(idstr, { idstr, length: usedLength, written });
      }
      this.store.declareBlock(idstr, usedLength);
    }
  }

  private target(record: RamPageLikeRecord): ImageBlock {
    let block = this.last;
    if (block === undefined || block.idstr !== record.block) {
      block = this.blocks.get(record.block);
      if (block === undefined) {
        throw new ArgumentError(`${record.type} for RAMBlock "${record.block}", which no MEM_SIZE record declared`);
      }
      this.last = block;
    }
    const { offset } = record;
    if (!(Number.isInteger(offset) && offset >= 0 && offset < block.length && offset % this.pageSize === 0)) {
      throw new ArgumentError(`${record.type} at offset ${String(offset)} is not a page of "${block.idstr}" (${block.length} bytes)`);
    }
    return block;
  }

  private isWritten(block: ImageBlock, offset: number): boolean {
    return block.written.get(offset / this.pageSize);
  }

  /** Writes a page (clipped at the block end) and marks it written. */
  private put(block: ImageBlock, offset: number, data: Uint8Array): void {
    const room = block.length - offset;
    this.store.write(block.idstr, offset, data.length <= room ? data : data.subarray(0, room));
    const page = offset / this.pageSize;
    if (!block.written.get(page)) block.written.set(page);
  }

  private applyZero(record: RamZeroRecord): void {
    const block = this.target(record);
    this.stats.zeroPages++;
    if (record.fill === 0) {
      if (!this.isWritten(block, record.offset)) {
        this.stats.zeroPagesSkipped++;
        return;
      }
      this.put(block, record.offset, this.zeroPage);
      return;
    }
    if (this.fillPage === undefined || this.fillPage[0] !== record.fill) {
      this.fillPage = Buffer.alloc(this.pageSize, record.fill);
    }
    this.put(block, record.offset, this.fillPage);
  }

  private applyXbzrle(record: RamXbzrleRecord): void {
    const block = this.target(record);
    const page = this.scratch;
    const room = Math.min(this.pageSize, block.length - record.offset);
    this.store.read(block.idstr, record.offset, page.subarray(0, room));
    page.fill(0, room);
    decodeXbzrle(record.data, page, { context: where(record) });
    this.put(block, record.offset, page);
    this.stats.xbzrlePages++;
  }
}

function where(record: RamPageLikeRecord): string {
  return `${record.type} of ${record.block}+0x${record.offset.toString(16)}`;
}
