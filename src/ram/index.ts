/** Public API of the `ram` section: records, codec, page codecs and the RAM image. */
export * from './flags.js';
export type * from './records.js';
export { RAM_RECORD_TYPES } from './records.js';
export { ramCodec } from './codec.js';
export { RamBodyDecoder } from './decoder.js';
export { encodeRamRecord, ramRecordLength } from './encoder.js';
export { MAX_DETECTED_PAGE_SIZE, MAX_RAM_BLOCKS, MIN_DETECTED_PAGE_SIZE } from './mem-size.js';
export { XbzrleError, ZlibPageError, type PayloadLocation } from './errors.js';
export { XBZRLE_MAX_RUN, decodeXbzrle, encodeXbzrle, scanXbzrle } from './xbzrle.js';
export { DEFAULT_COMPRESS_LEVEL, deflatePage, inflatePage } from './zlib-page.js';
export { RamImage, type RamImageOptions, type RamImageStats } from './image.js';
export { MemoryPageStore, type PageStore, type RamBlockImage, type RamBlockMemory } from './page-store.js';
export { INDEX_FILE, SparseFileStore, blockFileName, type RamBlockFile, type SparseFileStoreOptions } from './sparse-file-store.js';
