/**
 * The input chunks a segment still needs, by stream offset: the compressor copies a closed
 * segment's byte range out of them, then drops what lies before the next segment.
 */
export class InputWindow {
  private readonly chunks: Buffer[] = [];
  /** Stream offset of chunks[0]. */
  private start = 0;
  private end = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.end += chunk.length;
  }

  /** Copies stream bytes [from, to) into `into` (which has at least to - from bytes). */
  copy(from: number, to: number, into: Uint8Array): void {
    if (from < this.start || to > this.end) throw new RangeError(`input window holds ${this.start}..${this.end}, not ${from}..${to}`);
    let offset = this.start;
    let at = 0;
    for (const chunk of this.chunks) {
      const chunkEnd = offset + chunk.length;
      if (chunkEnd > from && offset < to) {
        const a = Math.max(from, offset) - offset;
        const b = Math.min(to, chunkEnd) - offset;
        into.set(chunk.subarray(a, b), at);
        at += b - a;
      }
      if (chunkEnd >= to) break;
      offset = chunkEnd;
    }
  }

  /** Forgets chunks that end at or before `offset`. */
  dropBefore(offset: number): void {
    while (this.chunks.length > 0 && this.start + this.chunks[0]!.length <= offset) {
      this.start += this.chunks.shift()!.length;
    }
  }
}
