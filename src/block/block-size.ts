/**
 * The chunk size of the `block` section (mig-block-size).
 *
 * QEMU 7.2 fixes it at BLK_MIG_BLOCK_SIZE (1 MiB, migration/block.c); builds patched with a
 * `mig-block-size` migration parameter (CEC's shows `mig-block-size: 65536`) send chunks of
 * another power of two. Nothing in the stream announces it: blk_send writes the word, the name
 * and exactly that many bytes, and block_load reads them back with the same constant. So the
 * decoder takes it as an option, or finds it from the stream (codec.ts, `findBlockSize`).
 */
import { ArgumentError } from '../stream/errors.js';
import { BLK_MIG_BLOCK_SIZE } from './flags.js';

/** Smallest chunk accepted: 4 KiB (a page; below it the name and word outweigh the data). */
export const MIN_BLOCK_SIZE = 4096;
/** Largest chunk accepted: 16 MiB. */
export const MAX_BLOCK_SIZE = 16 * 1024 * 1024;
/** QEMU's own, and the size assumed where nothing else is known. */
export const DEFAULT_BLOCK_SIZE = BLK_MIG_BLOCK_SIZE;

/** Every accepted size, smallest first: the order detection tries them in. */
export const BLOCK_SIZES: readonly number[] = (() => {
  const out: number[] = [];
  for (let size = MIN_BLOCK_SIZE; size <= MAX_BLOCK_SIZE; size *= 2) out.push(size);
  return out;
})();

/** Whether `size` is a power of two from 4 KiB to 16 MiB. */
export function isBlockSize(size: unknown): size is number {
  return typeof size === 'number' && Number.isInteger(size) && size >= MIN_BLOCK_SIZE && size <= MAX_BLOCK_SIZE && (size & (size - 1)) === 0;
}

/** Returns `size`, or throws ArgumentError naming `what`. */
export function checkBlockSize(size: unknown, what: string): number {
  if (!isBlockSize(size)) {
    throw new ArgumentError(`${what} must be a power of two from 4 KiB to 16 MiB (4096..16777216), got ${String(size)}`);
  }
  return size;
}

/** "4 KiB", "64 KiB", "1 MiB", "16 MiB". */
export function formatBlockSize(size: number): string {
  return size >= 1 << 20 && size % (1 << 20) === 0 ? `${size / (1 << 20)} MiB` : `${size / 1024} KiB`;
}
