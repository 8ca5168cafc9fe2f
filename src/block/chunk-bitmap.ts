/**
 * Growable bitset with one bit per chunk (1 MiB of a drive in DiskImage): an HBitmap at 1 MiB
 * granularity, so "is any chunk in this range written?" skips empty stretches a level at a
 * time instead of walking every chunk. A drive of 1 TiB needs 128 KiB. Bits past the current
 * size read as clear; setting one grows the map (doubling, up to HBitmap.MAX_GRANULES chunks,
 * 2 EiB of drive: chunk indexes of byte offsets up to 2^53 reach only 2^33).
 */
import { HBitmap } from '../native.js';
import { BLK_MIG_BLOCK_SIZE } from './flags.js';

export class ChunkBitmap {
  private readonly map = new HBitmap(0, { granularity: BLK_MIG_BLOCK_SIZE });

  /** Whether `index` is set. */
  get(index: number): boolean {
    return index >= 0 && index < this.map.size && this.map.get(index);
  }

  /** Whether any bit in `first..last` (inclusive) is set. */
  anySet(first: number, last: number): boolean {
    const end = Math.min(last + 1, this.map.size);
    return first < end && this.map.nextSet(Math.max(0, first), end) >= 0;
  }

  /** Sets (`value` true) or clears every bit in `first..last` (inclusive). */
  fill(first: number, last: number, value: boolean): void {
    if (last < first) return;
    if (value) {
      this.grow(last);
      this.map.set(first, last - first + 1);
      return;
    }
    const end = Math.min(last + 1, this.map.size);
    if (first < end) this.map.reset(first, end - first);
  }

  private grow(index: number): void {
    const size = this.map.size;
    if (index < size) return;
    this.map.resize(Math.min(HBitmap.MAX_GRANULES, Math.max(index + 1, 2 * size, 64)));
  }
}
