/**
 * Growable bitset with one bit per chunk (1 MiB of a drive in DiskImage): a drive of 1 TiB
 * needs 128 KiB. Bits past the allocated words read as clear; setting one grows the words.
 */
// Chunk indexes reach 2^33 (byte offsets up to 2^53), past what `>>>` keeps: divide instead.
const wordOf = (index: number): number => Math.floor(index / 32);
const bitOf = (index: number): number => 1 << index % 32;

export class ChunkBitmap {
  private words = new Uint32Array(0);

  /** Whether `index` is set. */
  get(index: number): boolean {
    const word = this.words[wordOf(index)];
    return word !== undefined && (word & bitOf(index)) !== 0;
  }

  /** Whether any bit in `first..last` (inclusive) is set. */
  anySet(first: number, last: number): boolean {
    const stop = Math.min(last, this.words.length * 32 - 1);
    for (let index = first; index <= stop; index++) {
      // Skip whole clear words: a zero scan over a large unwritten range stays cheap.
      if (index % 32 === 0 && this.words[wordOf(index)] === 0) {
        index += 31;
        continue;
      }
      if (this.get(index)) return true;
    }
    return false;
  }

  /** Sets (`value` true) or clears every bit in `first..last` (inclusive). */
  fill(first: number, last: number, value: boolean): void {
    if (last < first) return;
    if (value) this.grow(last);
    const stop = Math.min(last, this.words.length * 32 - 1);
    for (let index = first; index <= stop; index++) {
      const at = wordOf(index);
      const bit = bitOf(index);
      this.words[at] = value ? this.words[at]! | bit : this.words[at]! & ~bit;
    }
  }

  private grow(index: number): void {
    const needed = wordOf(index) + 1;
    if (needed <= this.words.length) return;
    const next = new Uint32Array(Math.max(needed, this.words.length * 2));
    next.set(this.words);
    this.words = next;
  }
}
