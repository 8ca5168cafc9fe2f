export * from './stream/errors.js';
export * from './stream/records.js';
export { ByteReader, NEED_MORE } from './stream/reader.js';
export { ByteWriter } from './stream/writer.js';
export type * from './stream/section-codec.js';
