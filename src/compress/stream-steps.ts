/**
 * What the compressor plans segments from, step by step: stream bytes, the records they
 * complete and where each record ends. Either the bytes come in and the decoder gives the
 * records (decodedSteps), or records come in and the encoder gives the bytes (encodedSteps:
 * compaction's records, compressed without being encoded to a stream and decoded again). In
 * both the spans are measured, never recomputed.
 */
import { createDecoder, createEncoder, type MigrationRecord } from '../codec.js';
import { asBuffer } from '../bytes/transfer.js';

export interface StreamStep {
  /** Stream bytes that arrived with this step, in order. */
  readonly bytes: readonly Buffer[];
  readonly records: readonly MigrationRecord[];
  /** Stream offset where each record ends, index for index. */
  readonly ends: readonly number[];
  /** The stream's TARGET_PAGE_SIZE as known after this step. */
  readonly pageSize: number;
}

/** Records of a QEMU stream, in batches, and its page size once they reached the configuration. */
export interface RecordSource {
  records(): AsyncIterable<readonly MigrationRecord[]>;
  readonly pageSize: number;
}

/** Bytes in, decoded once; `blockSize`: the block section's chunk size, when given (--mig-block-size). */
export async function* decodedSteps(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, blockSize?: number): AsyncGenerator<StreamStep> {
  const decoder = createDecoder(blockSize === undefined ? {} : { blockSize });
  for await (const chunk of input) {
    const bytes = asBuffer(chunk);
    const records = decoder.push(bytes);
    yield { bytes: [bytes], records, ends: decoder.recordEnds, pageSize: decoder.parameters.pageSize };
  }
  const records = decoder.end();
  yield { bytes: [], records, ends: decoder.recordEnds, pageSize: decoder.parameters.pageSize };
}

/** Records in, encoded once: each span is what the encoder wrote for the record. */
export async function* encodedSteps(source: RecordSource): AsyncGenerator<StreamStep> {
  const encoder = createEncoder(1 << 20);
  let offset = 0;
  for await (const records of source.records()) {
    const ends: number[] = [];
    for (const record of records) {
      const before = encoder.pending;
      encoder.write(record);
      offset += encoder.pending - before;
      ends.push(offset);
    }
    yield { bytes: encoder.take(), records, ends, pageSize: source.pageSize };
  }
}
