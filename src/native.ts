/**
 * Typed wrappers over the C++ addon (native/): the HBitmap multi-level dirty bitmap, the
 * zero-page scan and page hashing, XXH32, the zstd / lz4 codecs into reused buffers and the
 * compressor's payload ring with its dedup window.
 *
 *   const dirty = new HBitmap(guestBytes / 4096, { granularity: 4096 });
 *   dirty.set(page, 1);
 *   for (const { start, length } of dirty.dirtyAreas()) …
 *   const zero = findZeroPages(batch, 4096);          // Uint8Array, 1 per all-zero page
 *   const hashes = hashPages(batch, 4096);            // BigUint64Array, XXH64 per page
 *
 * Every entry point checks its arguments here and throws an ArgumentError (code ERR_ARGUMENT)
 * before the addon runs; the addon checks them again and throws the same class, so no call can
 * read or write outside the memory it was given. The addon allocates nothing: bitmap storage
 * is an ArrayBuffer allocated here, so the garbage collector accounts for it and frees it.
 *
 * The addon is loaded on first use, once per thread (each worker_thread loads its own copy
 * with its own state); a missing build is a NativeAddonError naming the fix.
 */
export { NativeAddonError, nativeBinding, type NativeBinding } from './native/binding.js';
export { HBitmap, type DirtyArea, type HBitmapOptions } from './native/hbitmap.js';
export { MAX_PAGE_SIZE, findZeroPages, hash64, hashPages, isAllZero, type BytesLike } from './native/pages.js';
export { limitUnsent, readerGone, socketDescriptor, widenPipe, writeRanges } from './native/fd.js';
export { NativePayloadRing } from './native/ring.js';
export {
  codecLibraries,
  frameDecodeAsync,
  lz4CompressInto,
  lz4DecompressInto,
  xxh32Native,
  xxh64Low32Native,
  zstdCompressInto,
  zstdDecompressInto,
  type CodecLibraries,
  type FrameCheck,
} from './native/codec.js';
