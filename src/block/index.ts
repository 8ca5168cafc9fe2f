/** Public API of the `block` section: records, codec and the disk image sink. */
export * from './flags.js';
export * from './records.js';
export { blockCodec, createBlockCodec, MAX_BLOCK_SECTOR, type BlockCodecOptions } from './codec.js';
export { BLOCK_SIZES, DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, checkBlockSize, formatBlockSize, isBlockSize } from './block-size.js';
export { ChunkBitmap } from './chunk-bitmap.js';
export { DiskImage, type DiskImageFile, type DiskImageOptions, type ImageMode, type ImageTarget } from './disk-image.js';
