/**
 * The input chunks a segment still needs, by stream offset: the compressor copies a closed
 * segment's byte range out of them, then drops what lies before the next segment. A
 * ChunkCursor whose cursor stays at the oldest byte still needed.
 */
import { ChunkCursor } from './chunk-cursor.js';

export class InputWindow extends ChunkCursor {
  /** Copies stream bytes [from, to) into `into` (which has at least to - from bytes). */
  copy(from: number, to: number, into: Uint8Array): void {
    this.copyExcept(from, to, NO_CUTS, into, 0);
  }

  /**
   * Copies the bytes of [from, to) except the ranges cut out of them, (offset from `from`,
   * length) pairs in order, into `into` at `at`: a segment's structure bytes. One pass over the
   * chunks; the short gaps between pages (record headers) are copied byte by byte, which costs
   * less than a view and a copy call each.
   */
  copyExcept(from: number, to: number, cuts: Float64Array, into: Uint8Array, at: number): number {
    const held = this.offset;
    if (from < held || to > held + this.avail) throw new RangeError(`input window holds ${held}..${held + this.avail}, not ${from}..${to}`);
    const chunks = this.chunks;
    let index = this.head;
    let chunkStart = this.headOffset;
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

  /** Forgets the bytes before `offset` (chunks that end at or before it go). */
  dropBefore(offset: number): void {
    if (offset > this.offset) this.skip(Math.min(offset - this.offset, this.avail));
    this.dropConsumed();
  }
}

const NO_CUTS = new Float64Array(0);
