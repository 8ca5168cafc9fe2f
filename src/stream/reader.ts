/**
 * Big-endian reader over a list of input chunks (src/bytes/chunk-cursor.ts), for push-based
 * decoding.
 *
 * Bytes arrive in chunks of any size (a pipe gives 64 KiB, a test gives one byte at a time).
 * Reads take from the cursor across chunk boundaries and copy only when a read straddles two
 * chunks; a read that fits in one chunk returns a zero-copy view.
 *
 * A read past the available bytes throws the NEED_MORE sentinel. The decoder calls `mark()`
 * before each record and `rewind()` when NEED_MORE arrives, so a record is either read whole or
 * not at all, and it tries again when more bytes are pushed.
 */

import { ChunkCursor } from '../bytes/chunk-cursor.js';

/** Thrown (not an Error: no stack capture) when a read needs bytes not yet pushed. */
export const NEED_MORE: unique symbol = Symbol('migstream.needMore');

export class ByteReader extends ChunkCursor {
  /** Chunks that are copies made by ownRetained(), not caller memory. */
  private readonly owned = new WeakSet<Buffer>();

  private markHead = 0;
  private markPos = 0;
  private markAvail = 0;
  private markHeadOffset = 0;

  /** Puts bytes back in front of the cursor (used after a scan that took everything). */
  unshift(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.dropConsumed();
    if (this.pos > 0) {
      this.chunks[0] = this.chunks[0]!.subarray(this.pos);
      this.headOffset += this.pos;
      this.pos = 0;
    }
    this.chunks.unshift(chunk);
    this.headOffset -= chunk.length;
    this.avail += chunk.length;
  }

  mark(): void {
    this.markHead = this.head;
    this.markPos = this.pos;
    this.markAvail = this.avail;
    this.markHeadOffset = this.headOffset;
  }

  /** Returns the cursor to the last mark(). */
  rewind(): void {
    this.head = this.markHead;
    this.pos = this.markPos;
    this.avail = this.markAvail;
    this.headOffset = this.markHeadOffset;
  }

  /** Offset of the last mark(): where the record being read starts. */
  get markOffset(): number {
    return this.markHeadOffset + this.markPos;
  }

  /** Forgets chunks wholly before the cursor so they can be collected (the mark moves to the cursor). */
  override dropConsumed(): void {
    if (this.head > 0) {
      super.dropConsumed();
      this.markHead = 0;
      this.markPos = this.pos;
      this.markAvail = this.avail;
      this.markHeadOffset = this.headOffset;
    }
  }

  u8(): number {
    if (this.avail < 1) throw NEED_MORE;
    const chunk = this.chunks[this.head]!;
    const value = chunk[this.pos++]!;
    this.avail--;
    if (this.pos === chunk.length) this.advanceChunk();
    return value;
  }

  /** Byte `ahead` bytes past the cursor, without consuming. */
  override peekU8(ahead = 0): number {
    if (this.avail <= ahead) throw NEED_MORE;
    return super.peekU8(ahead);
  }

  u16(): number {
    const chunk = this.chunks[this.head];
    if (chunk !== undefined && this.pos + 2 < chunk.length) {
      const value = chunk.readUInt16BE(this.pos);
      this.pos += 2;
      this.avail -= 2;
      return value;
    }
    if (this.avail < 2) throw NEED_MORE;
    return (this.u8() << 8) | this.u8();
  }

  u32(): number {
    const chunk = this.chunks[this.head];
    if (chunk !== undefined && this.pos + 4 < chunk.length) {
      const value = chunk.readUInt32BE(this.pos);
      this.pos += 4;
      this.avail -= 4;
      return value;
    }
    if (this.avail < 4) throw NEED_MORE;
    return ((this.u8() << 24) | (this.u8() << 16) | (this.u8() << 8) | this.u8()) >>> 0;
  }

  /** Next `length` bytes: a view when they sit in one chunk, else a copy. */
  bytes(length: number): Buffer {
    if (this.avail < length) throw NEED_MORE;
    return this.read(length);
  }

  override skip(length: number): void {
    if (this.avail < length) throw NEED_MORE;
    super.skip(length);
  }

  /**
   * Copies the unread bytes that still point into pushed chunks, so the caller may reuse the
   * memory of those chunks. Each byte is copied at most once.
   */
  ownRetained(): void {
    this.dropConsumed();
    for (let i = 0; i < this.chunks.length; i++) {
      const chunk = this.chunks[i]!;
      if (this.owned.has(chunk)) continue;
      const start = i === 0 ? this.pos : 0;
      const copy = Buffer.from(chunk.subarray(start));
      this.owned.add(copy);
      this.chunks[i] = copy;
      if (i === 0) {
        this.headOffset += start;
        this.pos = 0;
      }
    }
    this.mark();
  }

  /** Consumes and returns up to `max` available bytes as views, in order. */
  take(max: number): Buffer[] {
    const out: Buffer[] = [];
    let left = max;
    while (this.avail > 0 && left > 0) {
      const current = this.chunks[this.head]!;
      const length = Math.min(left, current.length - this.pos);
      out.push(current.subarray(this.pos, this.pos + length));
      this.avail -= length;
      left -= length;
      this.pos += length;
      if (this.pos === current.length) this.advanceChunk();
    }
    return out;
  }
}
