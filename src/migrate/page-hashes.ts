/**
 * The final RAM a stream carried, kept as one XXH64 per page instead of the pages themselves:
 * 8 bytes per 4 KiB, so `--verify` can compare a paused VM's memory with what the stream said
 * without writing a copy of the RAM anywhere.
 *
 * It is a PageStore, so RamImage drives it and every record kind keeps the meaning RamImage
 * gives it (ram_load_precopy). Only XBZRLE needs a page's old bytes back: give `content` a real
 * store when the stream may carry XBZRLE, otherwise such a record is refused with a clear error
 * instead of a wrong hash.
 */
import { hashPages } from '../native.js';
import type { PageStore, RamBlockImage } from '../ram/page-store.js';
import { ArgumentError } from '../stream/errors.js';

export interface PageHashBlock extends RamBlockImage {
  /** One XXH64 per page, the last page zero-padded when the block ends inside it. */
  readonly hashes: BigUint64Array;
}

export class PageHashStore implements PageStore<PageHashBlock> {
  private readonly blocks = new Map<string, { length: number; hashes: BigUint64Array }>();
  private readonly zeroHash: bigint;
  private readonly padded: Buffer;
  private readonly one = new BigUint64Array(1);

  constructor(
    readonly pageSize: number,
    private readonly content?: PageStore,
  ) {
    if (!(Number.isInteger(pageSize) && pageSize >= 512 && (pageSize & (pageSize - 1)) === 0)) {
      throw new ArgumentError(`PageHashStore: pageSize ${String(pageSize)} is not a power of two`);
    }
    this.padded = Buffer.alloc(pageSize);
    this.zeroHash = hashPages(this.padded, pageSize)[0]!;
  }

  /** XXH64 of an all-zero page: what every page never written hashes to. */
  get zeroPageHash(): bigint {
    return this.zeroHash;
  }

  declareBlock(idstr: string, length: number): void {
    const pages = Math.ceil(length / this.pageSize);
    const hashes = new BigUint64Array(pages).fill(this.zeroHash);
    const old = this.blocks.get(idstr);
    // Resizable blocks (ACPI tables, ROMs) keep the pages that still fit. A block cut inside a
    // page keeps that page's old hash; only pc.ram and DIMMs are compared, and they never resize.
    if (old !== undefined) hashes.set(old.hashes.subarray(0, Math.min(old.hashes.length, pages)));
    this.blocks.set(idstr, { length, hashes });
    this.content?.declareBlock(idstr, length);
  }

  write(idstr: string, offset: number, data: Uint8Array): void {
    const block = this.block(idstr);
    if (offset % this.pageSize !== 0 || data.length > this.pageSize) {
      throw new ArgumentError(`PageHashStore: writes are single pages, got ${data.length} bytes at ${offset} of "${idstr}"`);
    }
    let page: Uint8Array = data;
    if (data.length < this.pageSize) {
      this.padded.fill(0).set(data);
      page = this.padded;
    }
    hashPages(page, this.pageSize, this.one);
    block.hashes[offset / this.pageSize] = this.one[0]!;
    this.content?.write(idstr, offset, data);
  }

  read(idstr: string, offset: number, into: Uint8Array): void {
    if (this.content === undefined) {
      throw new ArgumentError(`PageHashStore: the page at ${offset} of "${idstr}" is needed back (an XBZRLE delta), but only its hash is kept; verify with a content store`);
    }
    this.content.read(idstr, offset, into);
  }

  /** The hashes of a block, live (they change as records are applied). */
  hashesOf(idstr: string): BigUint64Array {
    return this.block(idstr).hashes;
  }

  finish(): PageHashBlock[] {
    this.content?.finish();
    return [...this.blocks].map(([idstr, { length, hashes }]) => ({ idstr, usedLength: length, hashes }));
  }

  private block(idstr: string): { length: number; hashes: BigUint64Array } {
    const block = this.blocks.get(idstr);
    if (block === undefined) throw new ArgumentError(`PageHashStore: no block "${idstr}"`);
    return block;
  }
}
