/**
 * The trivially correct reference for HBitmap: one byte per bit, every query a plain loop
 * (QEMU's tests/unit/test-hbitmap.c keeps a similar shadow bitmap).
 */
export class BitModel {
  bits: Uint8Array;

  constructor(size: number) {
    this.bits = new Uint8Array(size);
  }

  get size(): number {
    return this.bits.length;
  }

  set(start: number, count: number): number {
    let added = 0;
    for (let i = start; i < start + count; i++) {
      added += 1 - this.bits[i]!;
      this.bits[i] = 1;
    }
    return added;
  }

  reset(start: number, count: number): number {
    let removed = 0;
    for (let i = start; i < start + count; i++) {
      removed += this.bits[i]!;
      this.bits[i] = 0;
    }
    return removed;
  }

  count(start = 0, count = this.size - start): number {
    let n = 0;
    for (let i = start; i < start + count; i++) n += this.bits[i]!;
    return n;
  }

  nextSet(from: number, end = this.size): number {
    for (let i = from; i < Math.min(end, this.size); i++) if (this.bits[i] === 1) return i;
    return -1;
  }

  nextZero(from: number, end = this.size): number {
    for (let i = from; i < Math.min(end, this.size); i++) if (this.bits[i] === 0) return i;
    return -1;
  }

  /** Runs from `from`, cut into pieces of maxLength (what repeated nextDirtyArea calls give). */
  areas(from = 0, maxLength = Infinity): { start: number; length: number }[] {
    const out: { start: number; length: number }[] = [];
    let at = from;
    for (;;) {
      const start = this.nextSet(at);
      if (start < 0) return out;
      let end = start;
      while (end < this.size && this.bits[end] === 1 && end - start < maxLength) end++;
      out.push({ start, length: end - start });
      at = end;
    }
  }

  /** export()'s format: bit i = byte i/8, bit i%8. */
  pack(): Uint8Array {
    const out = new Uint8Array(Math.ceil(this.size / 8));
    for (let i = 0; i < this.size; i++) if (this.bits[i] === 1) out[i >> 3]! |= 1 << (i & 7);
    return out;
  }
}
