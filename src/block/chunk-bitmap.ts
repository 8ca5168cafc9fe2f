/**
 * Growable bitset with one bit per chunk (one mig-block-size chunk of a drive in DiskImage: 1 MiB
 * in QEMU, 4 KiB to 16 MiB in patched builds): an HBitmap at the chunk's granularity, so "is any
 * chunk in this range written?" skips empty stretches a level at a time instead of walking every
 * chunk. A drive of 1 TiB needs 128 KiB at 1 MiB chunks, 32 MiB at 4 KiB. Bits past the current
 * size read as clear; setting one grows the map (doubling, up to HBitmap.MAX_GRANULES = 2^41
 * chunks: chunk indexes of byte offsets up to 2^53 reach 2^41 at 4 KiB chunks).
 */
import { HBitmap } from '../native.js';
import { checkBlockSize } from './block-size.js';
import { BLK_MIG_BLOCK_SIZE } from './flags.js';

export class ChunkBitmap {
  private readonly map: HBitmap;

  /** @param chunkSize bytes per bit (the stream's chunk size; default QEMU's 1 MiB). */
  constructor(chunkSize: number = BLK_MIG_BLOCK_SIZE) {
    this.map = new HBitmap(0, { granularity: checkBlockSize(chunkSize, 'ChunkBitmap chunk size') });
  }

  /** Bytes per bit. */
  get chunkSize(): number {
    return this.map.granularity;
  }

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
