/**
 * Compares a VM's memory, read as one dump of guest-physical ranges (pmemsave of each range of
 * guestMemoryLayout, in order), with the page hashes of what a stream carried. Nothing of the
 * dump is kept: each page is hashed as it passes and compared with its RAMBlock page.
 *
 * A push parser (push chunks of any size, then finish()), so it can read a FIFO that QEMU
 * writes, a file, or a test's buffers alike.
 */
import { hashPages } from '../native.js';
import type { DumpRange } from '../qemu/memory.js';
import { ArgumentError } from '../stream/errors.js';

export interface RamMismatch {
  /** RAMBlock the page belongs to, as the stream names it. */
  idstr: string;
  /** Byte offset of the page in its RAMBlock. */
  offset: number;
  /** Guest-physical address of the page. */
  guestPhysAddr: number;
}

export interface RamComparison {
  pagesCompared: number;
  mismatches: number;
  /** The first mismatching pages, in dump order (at most `keep`). */
  first: RamMismatch[];
}

export interface CompareOptions {
  pageSize: number;
  /** How many mismatching pages to name (default 16). */
  keep?: number;
}

/** Pages hashed per native call: 256 KiB batches keep the call overhead negligible. */
const BATCH_PAGES = 64;

export class RamDumpComparer {
  private readonly pageSize: number;
  private readonly keep: number;
  private readonly batch: Buffer;
  private readonly hashes: BigUint64Array;
  private filled = 0;
  /** Dump offset of the first byte of `batch`. */
  private batchStart = 0;
  private readonly result: RamComparison = { pagesCompared: 0, mismatches: 0, first: [] };
  private readonly total: number;

  constructor(
    private readonly ranges: readonly DumpRange[],
    private readonly expected: (idstr: string) => BigUint64Array | undefined,
    options: CompareOptions,
  ) {
    const { pageSize } = options;
    if (!(Number.isInteger(pageSize) && pageSize >= 512 && (pageSize & (pageSize - 1)) === 0)) {
      throw new ArgumentError(`RamDumpComparer: pageSize ${String(pageSize)} is not a power of two`);
    }
    let at = 0;
    for (const range of ranges) {
      if (range.dumpOffset !== at || range.length % pageSize !== 0 || range.offsetInBlock % pageSize !== 0) {
        throw new ArgumentError(`RamDumpComparer: range ${range.idstr}@0x${range.guestPhysAddr.toString(16)} is not page-aligned and in dump order`);
      }
      const hashes = expected(range.idstr);
      if (hashes === undefined) throw new ArgumentError(`RamDumpComparer: the stream carried no RAMBlock "${range.idstr}"`);
      if ((range.offsetInBlock + range.length) / pageSize > hashes.length) {
        throw new ArgumentError(`RamDumpComparer: range ${range.idstr}+0x${range.offsetInBlock.toString(16)} runs past the block the stream carried`);
      }
      at += range.length;
    }
    this.total = at;
    this.pageSize = pageSize;
    this.keep = options.keep ?? 16;
    this.batch = Buffer.alloc(BATCH_PAGES * pageSize);
    this.hashes = new BigUint64Array(BATCH_PAGES);
  }

  /** Dump bytes in order; any chunking. */
  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.batchStart + this.filled + (chunk.length - at) > this.total) {
        throw new ArgumentError(`RamDumpComparer: the dump is longer than the ${this.total} bytes of its ranges`);
      }
      const n = Math.min(chunk.length - at, this.batch.length - this.filled);
      this.batch.set(chunk.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === this.batch.length) this.flush();
    }
  }

  /** The dump ended: it must have covered every range. */
  finish(): RamComparison {
    if (this.batchStart + this.filled !== this.total) {
      throw new ArgumentError(`RamDumpComparer: the dump ended after ${this.batchStart + this.filled} of ${this.total} bytes`);
    }
    this.flush();
    return this.result;
  }

  private flush(): void {
    const pages = this.filled / this.pageSize;
    if (pages === 0) return;
    hashPages(this.batch.subarray(0, this.filled), this.pageSize, this.hashes);
    let range = 0;
    for (let i = 0; i < pages; i++) {
      const dumpOffset = this.batchStart + i * this.pageSize;
      while (dumpOffset >= this.ranges[range]!.dumpOffset + this.ranges[range]!.length) range++;
      const r = this.ranges[range]!;
      const within = dumpOffset - r.dumpOffset;
      const offset = r.offsetInBlock + within;
      this.result.pagesCompared++;
      if (this.expected(r.idstr)![offset / this.pageSize] !== this.hashes[i]) {
        this.result.mismatches++;
        if (this.result.first.length < this.keep) {
          this.result.first.push({ idstr: r.idstr, offset, guestPhysAddr: r.guestPhysAddr + within });
        }
      }
    }
    this.batchStart += this.filled;
    this.filled = 0;
  }
}
