/**
 * Big-endian writer that fills large slabs and hands out finished chunks.
 *
 * Encoding a page copies its 4 KiB into the current slab; output chunks are slab views of
 * about `chunkSize` bytes, so consumers see few, large writes (as a pipe wants).
 */
export class ByteWriter {
  private slab: Buffer;
  private pos = 0;
  private start = 0;
  private readonly done: Buffer[] = [];
  private doneBytes = 0;

  constructor(private readonly chunkSize = 256 * 1024) {
    this.slab = Buffer.allocUnsafe(chunkSize);
  }

  /** Bytes written and not yet taken. */
  get pending(): number {
    return this.doneBytes + (this.pos - this.start);
  }

  private reserve(length: number): void {
    if (this.pos + length <= this.slab.length) return;
    this.seal();
    this.slab = Buffer.allocUnsafe(Math.max(this.chunkSize, length));
    this.pos = 0;
    this.start = 0;
  }

  private seal(): void {
    if (this.pos > this.start) {
      this.done.push(this.slab.subarray(this.start, this.pos));
      this.doneBytes += this.pos - this.start;
      this.start = this.pos;
    }
  }

  u8(value: number): void {
    this.reserve(1);
    this.slab[this.pos++] = value;
  }

  u16(value: number): void {
    this.reserve(2);
    this.slab.writeUInt16BE(value, this.pos);
    this.pos += 2;
  }

  u32(value: number): void {
    this.reserve(4);
    this.slab.writeUInt32BE(value >>> 0, this.pos);
    this.pos += 4;
  }

  /** Writes a non-negative safe integer as be64. */
  u64(value: number): void {
    this.reserve(8);
    const high = Math.floor(value / 0x1_0000_0000);
    this.slab.writeUInt32BE(high >>> 0, this.pos);
    this.slab.writeUInt32BE((value - high * 0x1_0000_0000) >>> 0, this.pos + 4);
    this.pos += 8;
  }

  bytes(data: Uint8Array): void {
    if (data.length > this.chunkSize) {
      // Large payloads (1 MiB block chunks) go out as their own chunk without a copy.
      this.seal();
      this.done.push(Buffer.from(data.buffer, data.byteOffset, data.length));
      this.doneBytes += data.length;
      return;
    }
    this.reserve(data.length);
    this.slab.set(data, this.pos);
    this.pos += data.length;
  }

  /** Writes `u8 len, bytes` of a short ASCII/UTF-8 id string (idstr, device name). */
  shortString(text: string): void {
    const encoded = Buffer.from(text, 'latin1');
    if (encoded.length > 255) throw new RangeError(`id string longer than 255 bytes: ${text.slice(0, 40)}…`);
    this.u8(encoded.length);
    this.bytes(encoded);
  }

  /** Takes everything written so far as a list of chunks. */
  take(): Buffer[] {
    this.seal();
    const out = this.done.splice(0, this.done.length);
    this.doneBytes = 0;
    return out;
  }

  /**
   * Hands everything written so far to `consume`, then writes over the same memory: `consume`
   * must be finished with the chunks when it returns (e.g. a synchronous write).
   */
  drainTo(consume: (chunks: Buffer[]) => void): void {
    consume(this.take());
    this.pos = 0;
    this.start = 0;
  }

  /** Takes everything written so far as one buffer. */
  takeBuffer(): Buffer {
    const parts = this.take();
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }
}
