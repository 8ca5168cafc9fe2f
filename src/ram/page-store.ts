/**
 * Where a RamImage keeps the RAM it rebuilds: one byte range per RAMBlock. The store only reads
 * and writes bytes; which pages to write is RamImage's business. Calls are synchronous.
 */
import { ArgumentError } from '../stream/errors.js';

/** What a store reports for each block when finished. */
export interface RamBlockImage {
  readonly idstr: string;
  readonly usedLength: number;
}

export interface PageStore<R extends RamBlockImage = RamBlockImage> {
  /** Creates the block with `length` zero bytes, or resizes it keeping what still fits. */
  declareBlock(idstr: string, length: number): void;
  /**
   * Writes `data` at `offset` of a declared block; the range lies inside the block. The store
   * copies or writes the bytes before returning: callers reuse `data`.
   */
  write(idstr: string, offset: number, data: Uint8Array): void;
  /** Fills `into` from `offset`; bytes never written read as zero. */
  read(idstr: string, offset: number, into: Uint8Array): void;
  /** Completes the store (flushes, closes) and lists the blocks in declaration order. */
  finish(): R[];
}

export interface RamBlockMemory extends RamBlockImage {
  readonly data: Buffer;
}

/** Keeps every block in memory; for tests and small guests. */
export class MemoryPageStore implements PageStore<RamBlockMemory> {
  private readonly blocks = new Map<string, Buffer>();

  declareBlock(idstr: string, length: number): void {
    const old = this.blocks.get(idstr);
    const data = Buffer.alloc(length);
    if (old !== undefined) old.copy(data, 0, 0, Math.min(old.length, length));
    this.blocks.set(idstr, data);
  }

  write(idstr: string, offset: number, data: Uint8Array): void {
    this.get(idstr).set(data, offset);
  }

  read(idstr: string, offset: number, into: Uint8Array): void {
    const data = this.get(idstr);
    into.set(data.subarray(offset, offset + into.length));
    into.fill(0, Math.max(0, Math.min(into.length, data.length - offset)));
  }

  /** The current content of a block. */
  get(idstr: string): Buffer {
    const data = this.blocks.get(idstr);
    if (data === undefined) throw new ArgumentError(`MemoryPageStore: no block "${idstr}"`);
    return data;
  }

  finish(): RamBlockMemory[] {
    return [...this.blocks].map(([idstr, data]) => ({ idstr, usedLength: data.length, data }));
  }
}
