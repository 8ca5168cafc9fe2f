/**
 * Bytes received and not yet parsed, as a list of the chunks the socket gave: a read copies
 * only when it straddles chunks (src/stream/reader.ts does the same for the stream), and bulk
 * data is copied once, from the chunks straight into the caller's buffer.
 *
 * A chunk may be lent: the socket reads into one buffer it reuses (client.ts, `onread`), so
 * whatever of the last chunk is still queued when the parser returns is copied (`keepLent`);
 * bytes are copied that way at most once, and only the few a header or a small payload left.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private head = 0;
  private total = 0;
  /** The last chunk pushed is lent by its owner and must be copied before it is reused. */
  private lastLent = false;

  get available(): number {
    return this.total;
  }

  push(chunk: Uint8Array, lent = false): void {
    this.keepLent();
    if (chunk.length === 0) return;
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.total += chunk.length;
    this.lastLent = lent;
  }

  /** Copies what is still queued of a lent chunk, so its owner may reuse it. */
  keepLent(): void {
    if (!this.lastLent) return;
    this.lastLent = false;
    const last = this.chunks.length - 1;
    if (last < 0) return;
    const from = last === 0 ? this.head : 0;
    this.chunks[last] = Buffer.from(this.chunks[last]!.subarray(from));
    if (last === 0) this.head = 0;
  }

  /** The next `n` bytes (n ≤ available), consumed: a view when they lie in one chunk. */
  take(n: number): Buffer {
    if (n > this.total) throw new RangeError(`take(${n}) with ${this.total} bytes queued`);
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.head >= n) {
      const view = first.subarray(this.head, this.head + n);
      this.consume(n);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    this.copyInto(out, 0, n);
    return out;
  }

  /** The next 4 bytes as a big-endian u32, not consumed (available ≥ 4). */
  peekUInt32BE(): number {
    const first = this.chunks[0]!;
    if (first.length - this.head >= 4) return first.readUInt32BE(this.head);
    let value = 0;
    let got = 0;
    for (let i = 0, at = this.head; got < 4; i++, at = 0) {
      const chunk = this.chunks[i]!;
      for (; at < chunk.length && got < 4; at++, got++) value = value * 256 + chunk[at]!;
    }
    return value;
  }

  /** Moves min(n, available) bytes into `dest` at `at`; returns how many. */
  copyInto(dest: Uint8Array, at: number, n: number): number {
    let copied = 0;
    while (copied < n && this.total > 0) {
      const chunk = this.chunks[0]!;
      const step = Math.min(n - copied, chunk.length - this.head);
      dest.set(chunk.subarray(this.head, this.head + step), at + copied);
      copied += step;
      this.consume(step);
    }
    return copied;
  }

  /** Everything queued, consumed (what the handshake leaves to the transmission phase). */
  drain(): Buffer {
    return this.take(this.total);
  }

  private consume(n: number): void {
    this.total -= n;
    let left = n;
    while (left > 0) {
      const chunk = this.chunks[0]!;
      const inChunk = chunk.length - this.head;
      if (left < inChunk) {
        this.head += left;
        return;
      }
      left -= inChunk;
      this.chunks.shift();
      this.head = 0;
    }
  }
}
