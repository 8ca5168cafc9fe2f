/**
 * Big-endian reader over a list of input chunks, for push-based decoding.
 *
 * Bytes arrive in chunks of any size (a pipe gives 64 KiB, a test gives one byte at a time).
 * Reads take from the cursor across chunk boundaries and copy only when a read straddles two
 * chunks; a read that fits in one chunk returns a zero-copy view.
 *
 * A read past the available bytes throws the NEED_MORE sentinel. The decoder calls `mark()`
 * before each record and `rewind()` when NEED_MORE arrives, so a record is either read whole or
 * not at all, and it tries again when more bytes are pushed.
 */

/** Thrown (not an Error: no stack capture) when a read needs bytes not yet pushed. */
export const NEED_MORE: unique symbol = Symbol('migstream.needMore');

const EMPTY = Buffer.alloc(0);

export class ByteReader {
  private chunks: Buffer[] = [];
  /** Chunks that are copies made by ownRetained(), not caller memory. */
  private readonly owned = new WeakSet<Buffer>();
  /** Index in `chunks` of the chunk holding the cursor. */
  private head = 0;
  /** Cursor position inside chunks[head]. */
  private pos = 0;
  /** Bytes available from the cursor to the end of the last chunk. */
  private avail = 0;
  /** Absolute stream offset of chunks[head][0]. */
  private headOffset = 0;

  private markHead = 0;
  private markPos = 0;
  private markAvail = 0;
  private markHeadOffset = 0;

  /** Appends a chunk. The reader keeps a reference; callers must not reuse the memory. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.avail += chunk.length;
  }

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

  /** Absolute offset of the cursor in the stream. */
  get offset(): number {
    return this.headOffset + this.pos;
  }

  /** Bytes that can be read without NEED_MORE. */
  get available(): number {
    return this.avail;
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

  /** Forgets chunks wholly before the cursor so they can be collected. */
  dropConsumed(): void {
    if (this.head > 0) {
      this.chunks.splice(0, this.head);
      this.head = 0;
      this.markHead = 0;
      this.markPos = this.pos;
      this.markAvail = this.avail;
      this.markHeadOffset = this.headOffset;
    }
  }

  private advanceChunk(): void {
    this.headOffset += this.chunks[this.head]!.length;
    this.head++;
    this.pos = 0;
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
  peekU8(ahead = 0): number {
    if (this.avail <= ahead) throw NEED_MORE;
    let index = this.head;
    let at = this.pos + ahead;
    let chunk = this.chunks[index]!;
    while (at >= chunk.length) {
      at -= chunk.length;
      chunk = this.chunks[++index]!;
    }
    return chunk[at]!;
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
    if (length === 0) return EMPTY;
    if (this.avail < length) throw NEED_MORE;
    const chunk = this.chunks[this.head]!;
    if (this.pos + length <= chunk.length) {
      const view = chunk.subarray(this.pos, this.pos + length);
      this.pos += length;
      this.avail -= length;
      if (this.pos === chunk.length) this.advanceChunk();
      return view;
    }
    const out = Buffer.allocUnsafe(length);
    let filled = 0;
    while (filled < length) {
      const current = this.chunks[this.head]!;
      const take = Math.min(length - filled, current.length - this.pos);
      current.copy(out, filled, this.pos, this.pos + take);
      filled += take;
      this.pos += take;
      if (this.pos === current.length) this.advanceChunk();
    }
    this.avail -= length;
    return out;
  }

  skip(length: number): void {
    if (this.avail < length) throw NEED_MORE;
    let left = length;
    while (left > 0) {
      const current = this.chunks[this.head]!;
      const take = Math.min(left, current.length - this.pos);
      left -= take;
      this.pos += take;
      if (this.pos === current.length) this.advanceChunk();
    }
    this.avail -= length;
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
