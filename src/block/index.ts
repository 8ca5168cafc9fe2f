/** Public API of the `block` section: records, codec and the disk image sink. */
export * from './flags.js';
export * from './records.js';
export { blockCodec, MAX_BLOCK_SECTOR } from './codec.js';
export { ChunkBitmap } from './chunk-bitmap.js';
export {
  DiskImage,
  type DiskImageFile,
  type DiskImageOptions,
  type ImageMode,
  type ImageTarget,
} from './disk-image.js';
