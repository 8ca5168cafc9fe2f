/**
 * Async-iterable and Node-stream adapters over the push decoder and the encoder.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { StreamDecoder } from './decoder.js';
import type { StreamEncoder } from './encoder.js';
import type { FramingRecord } from './records.js';
import type { BaseRecord } from './section-codec.js';

/** Encoded bytes gathered before a chunk is handed on. */
const FLUSH_BYTES = 1024 * 1024;

function asBuffer(chunk: Uint8Array | string): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'latin1');
  return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** Decodes any async iterable of byte chunks (a Readable is one) into records. */
export async function* decodeWith<B extends BaseRecord>(decoder: StreamDecoder<B>, source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<FramingRecord | B> {
  for await (const chunk of source) {
    yield* decoder.push(asBuffer(chunk));
  }
  yield* decoder.end();
}

/** Encodes records into chunks of about 1 MiB. */
export async function* encodeWith<B extends BaseRecord>(encoder: StreamEncoder<B>, records: AsyncIterable<FramingRecord | B> | Iterable<FramingRecord | B>): AsyncGenerator<Buffer> {
  for await (const record of records) {
    encoder.write(record);
    if (encoder.pending >= FLUSH_BYTES) yield* encoder.take();
  }
  yield* encoder.take();
}

/** Transform: bytes in, records out (readable side in object mode). */
export class DecodeTransform<B extends BaseRecord> extends Transform {
  constructor(private readonly decoder: StreamDecoder<B>) {
    super({ readableObjectMode: true });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      for (const record of this.decoder.push(asBuffer(chunk))) this.push(record);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      for (const record of this.decoder.end()) this.push(record);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }
}

/** Transform: records in (writable side in object mode), bytes out. */
export class EncodeTransform<B extends BaseRecord> extends Transform {
  constructor(private readonly encoder: StreamEncoder<B>) {
    super({ writableObjectMode: true });
  }

  override _transform(record: FramingRecord | B, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.encoder.write(record);
      if (this.encoder.pending >= FLUSH_BYTES) for (const chunk of this.encoder.take()) this.push(chunk);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    for (const chunk of this.encoder.take()) this.push(chunk);
    callback();
  }
}
