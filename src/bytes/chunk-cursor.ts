/**
 * A cursor over a list of input chunks, by stream offset: the one chunk list that the stream's
 * ByteReader, the container reader, the compressor's input window and the transport's frame
 * parser build on.
 *
 * Bytes arrive in chunks of any size (a pipe gives 64 KiB, a test one byte at a time). A read
 * that lies in one chunk returns a zero-copy view; one that straddles chunks is copied once.
 * Chunks wholly before the cursor stay referenced until dropConsumed(), so a reader may go
 * back to a mark (ByteReader); subclasses may also read ahead of the cursor without consuming
 * (InputWindow copies a segment's ranges, then moves the cursor past them).
 *
 * Reads do not check `available`: the caller does (ByteReader throws NEED_MORE, the container
 * reader waits for more input), so the hot paths check once.
 */

const EMPTY = Buffer.alloc(0);

export class ChunkCursor {
  protected chunks: Buffer[] = [];
  /** Index in `chunks` of the chunk holding the cursor. */
  protected head = 0;
  /** Cursor position inside chunks[head]. */
  protected pos = 0;
  /** Bytes available from the cursor to the end of the last chunk. */
  protected avail = 0;
  /** Absolute stream offset of chunks[head][0]. */
  protected headOffset = 0;

  /** Appends a chunk. The cursor keeps a reference; callers must not reuse the memory. */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.avail += chunk.length;
  }

  /** Absolute offset of the cursor in the stream. */
  get offset(): number {
    return this.headOffset + this.pos;
  }

  /** Bytes from the cursor to the end of what was pushed. */
  get available(): number {
    return this.avail;
  }

  /** Bytes from the cursor to the end of its chunk: a read of at most this many is a view. */
  get contiguous(): number {
    const chunk = this.chunks[this.head];
    return chunk === undefined ? 0 : chunk.length - this.pos;
  }

  /** Forgets chunks wholly before the cursor so they can be collected. */
  dropConsumed(): void {
    if (this.head > 0) {
      this.chunks.splice(0, this.head);
      this.head = 0;
    }
  }

  protected advanceChunk(): void {
    this.headOffset += this.chunks[this.head]!.length;
    this.head++;
    this.pos = 0;
  }

  /** Byte `ahead` bytes past the cursor, without consuming (ahead < available). */
  peekU8(ahead = 0): number {
    let index = this.head;
    let at = this.pos + ahead;
    let chunk = this.chunks[index]!;
    while (at >= chunk.length) {
      at -= chunk.length;
      chunk = this.chunks[++index]!;
    }
    return chunk[at]!;
  }

  /** Big-endian u32 at the cursor, without consuming (4 <= available). */
  peekU32(): number {
    const chunk = this.chunks[this.head]!;
    if (this.pos + 4 <= chunk.length) return chunk.readUInt32BE(this.pos);
    return ((this.peekU8(0) << 24) | (this.peekU8(1) << 16) | (this.peekU8(2) << 8) | this.peekU8(3)) >>> 0;
  }

  /**
   * The next `length` bytes (length <= available): a view when they lie in one chunk and no
   * `into` is given, else copied into `into` (or a new buffer).
   */
  read(length: number, into?: Buffer): Buffer {
    if (length === 0) return into ?? EMPTY;
    const chunk = this.chunks[this.head]!;
    if (into === undefined && this.pos + length <= chunk.length) {
      const view = chunk.subarray(this.pos, this.pos + length);
      this.pos += length;
      this.avail -= length;
      if (this.pos === chunk.length) this.advanceChunk();
      return view;
    }
    const out = into ?? Buffer.allocUnsafe(length);
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

  /** Moves the cursor `length` bytes on (length <= available). */
  skip(length: number): void {
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
}
