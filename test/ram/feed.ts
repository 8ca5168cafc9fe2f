/** Drives the ram body decoder over chunked input the way src/stream's decoder does. */
import { ramCodec } from '../../src/ram/codec.js';
import type { RamRecord } from '../../src/ram/records.js';
import { ByteReader, NEED_MORE } from '../../src/stream/reader.js';
import type { SectionBodyDecoder, SectionContext } from '../../src/stream/section-codec.js';
import { ByteWriter } from '../../src/stream/writer.js';

export function context(params: { pageSize?: number; capabilities?: string[] } = {}): SectionContext {
  return {
    section: { id: 2, name: 'ram' },
    versionId: 4,
    phase: 'part',
    params: { pageSize: params.pageSize ?? 4096, capabilities: params.capabilities ?? [] },
  };
}

export const ctx = context();

export interface Fed {
  records: RamRecord[];
  /** Bytes left unread when the input ran out (a record cut short). */
  leftover: number;
  /** Index in `records` of each record that ended the body. */
  ends: number[];
}

/** Pushes each chunk, reads every complete record, rewinds on NEED_MORE. */
export function feed(
  chunks: readonly Buffer[],
  options: { ctx?: SectionContext; decoder?: SectionBodyDecoder<RamRecord> } = {},
): Fed {
  const decoder = options.decoder ?? ramCodec.newDecoder();
  const context = options.ctx ?? ctx;
  const reader = new ByteReader();
  const records: RamRecord[] = [];
  const ends: number[] = [];
  for (const chunk of chunks) {
    reader.push(chunk);
    for (;;) {
      reader.mark();
      let record: RamRecord;
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

export function encode(records: readonly RamRecord[], chunkSize?: number): Buffer {
  const writer = new ByteWriter(chunkSize);
  for (const record of records) ramCodec.encode(record, writer);
  return writer.takeBuffer();
}

/** Records with payloads replaced by their hex, for comparisons. */
export function shape(records: readonly RamRecord[]): unknown[] {
  return records.map((r) => ('data' in r ? { ...r, data: r.data.toString('hex') } : r));
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
