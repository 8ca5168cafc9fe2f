/** Drives a section body decoder over chunked input the way src/stream's decoder does. */
import { ByteReader, NEED_MORE } from '../../src/stream/reader.js';
import type { BaseRecord, SectionBodyDecoder, SectionCodec, SectionContext } from '../../src/stream/section-codec.js';
import { ByteWriter } from '../../src/stream/writer.js';

export interface Fed<R> {
  records: R[];
  /** Bytes left unread when the input ran out (a record cut short). */
  leftover: number;
  /** Index in `records` of each record that ended the body. */
  ends: number[];
}

/** Pushes each chunk, reads every complete record, rewinds on NEED_MORE. */
export function feedBody<R extends BaseRecord>(decoder: SectionBodyDecoder<R>, chunks: readonly Buffer[], context: SectionContext): Fed<R> {
  const reader = new ByteReader();
  const records: R[] = [];
  const ends: number[] = [];
  for (const chunk of chunks) {
    reader.push(chunk);
    for (;;) {
      reader.mark();
      let record: R;
      try {
        record = decoder.read(reader, context);
      } catch (error) {
        if (error === NEED_MORE) {
          reader.rewind();
          break;
        }
        throw error;
      }
      if (decoder.endsBody(record)) ends.push(records.length);
      records.push(record);
      reader.dropConsumed();
    }
  }
  return { records, leftover: reader.available, ends };
}

export function encodeBody<R extends BaseRecord>(codec: SectionCodec<R>, records: readonly R[], chunkSize?: number): Buffer {
  const writer = new ByteWriter(chunkSize);
  for (const record of records) codec.encode(record, writer);
  return writer.takeBuffer();
}

/** Splits `input` at the given ascending offsets. */
export function splitAt(input: Buffer, cuts: readonly number[]): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (const cut of [...cuts, input.length]) {
    out.push(input.subarray(start, cut));
    start = cut;
  }
  return out;
}

/** Deterministic PRNG (mulberry32) so failures reproduce. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `fn` and returns what it threw. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}
