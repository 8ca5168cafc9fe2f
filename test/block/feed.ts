/** Drives the block body decoder over chunked input the way src/stream's decoder does. */
import { blockCodec } from '../../src/block/codec.js';
import type { BlockRecord } from '../../src/block/records.js';
import { NEED_MORE, ByteReader } from '../../src/stream/reader.js';
import type { SectionContext } from '../../src/stream/section-codec.js';
import { ByteWriter } from '../../src/stream/writer.js';

export const ctx: SectionContext = {
  section: { id: 3, name: 'block' },
  versionId: 1,
  phase: 'part',
  params: { pageSize: 4096, capabilities: [] },
};

export interface Fed {
  records: BlockRecord[];
  /** Bytes left unread when the input ran out (a record cut short). */
  leftover: number;
}

/** Pushes each chunk, reads every complete record, rewinds on NEED_MORE. */
export function feed(chunks: readonly Buffer[]): Fed {
  const decoder = blockCodec.newDecoder();
  const reader = new ByteReader();
  const records: BlockRecord[] = [];
  for (const chunk of chunks) {
    reader.push(chunk);
    for (;;) {
      reader.mark();
      let record: BlockRecord;
      try {
        record = decoder.read(reader, ctx);
      } catch (error) {
        if (error === NEED_MORE) {
          reader.rewind();
          break;
        }
        throw error;
      }
      records.push(record);
      reader.dropConsumed();
    }
  }
  return { records, leftover: reader.available };
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

export function encode(records: readonly BlockRecord[], chunkSize?: number): Buffer {
  const writer = new ByteWriter(chunkSize);
  for (const record of records) blockCodec.encode(record, writer);
  return writer.takeBuffer();
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
