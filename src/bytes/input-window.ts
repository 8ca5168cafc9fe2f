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

  /**
   * Copies the bytes of [from, to) except the ranges cut out of them, (offset from `from`,
   * length) pairs in order, into `into` at `at`: a segment's structure bytes. One pass over the
   * chunks; the short gaps between pages (record headers) are copied byte by byte, which costs
   * less than a view and a copy call each.
   */
  copyExcept(from: number, to: number, cuts: Float64Array, into: Uint8Array, at: number): number {
    if (from < this.start || to > this.end) throw new RangeError(`input window holds ${this.start}..${this.end}, not ${from}..${to}`);
    const chunks = this.chunks;
    let index = 0;
    let chunkStart = this.start;
    const copy = (a: number, b: number): void => {
      while (a < b) {
        let chunk = chunks[index]!;
        while (chunkStart + chunk.length <= a) {
          chunkStart += chunk.length;
          chunk = chunks[++index]!;
        }
        const s = a - chunkStart;
        const e = Math.min(b - chunkStart, chunk.length);
        if (e - s <= 32) {
          for (let i = s; i < e; i++) into[at++] = chunk[i]!;
        } else {
          into.set(chunk.subarray(s, e), at);
          at += e - s;
        }
        a = chunkStart + e;
      }
    };
    let next = from;
    for (let i = 0; i < cuts.length; i += 2) {
      const cutStart = from + cuts[i]!;
      copy(next, cutStart);
      next = cutStart + cuts[i + 1]!;
    }
    copy(next, to);
    return at;
  }

  /** Forgets chunks that end at or before `offset`. */
  dropBefore(offset: number): void {
    while (this.chunks.length > 0 && this.start + this.chunks[0]!.length <= offset) {
      this.start += this.chunks.shift()!.length;
    }
  }
}
