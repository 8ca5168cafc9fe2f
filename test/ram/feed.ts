/** The ram body decoder over chunked input (see test/helpers/feed.ts). */
import { ramCodec } from '../../src/ram/codec.js';
import type { RamRecord } from '../../src/ram/records.js';
import type { SectionBodyDecoder, SectionContext } from '../../src/stream/section-codec.js';
import { encodeBody, feedBody, type Fed } from '../helpers/feed.js';

export { prng, splitAt, thrown } from '../helpers/feed.js';

export function context(params: { pageSize?: number; capabilities?: string[] } = {}): SectionContext {
  return {
    section: { id: 2, name: 'ram' },
    versionId: 4,
    phase: 'part',
    params: { pageSize: params.pageSize ?? 4096, capabilities: params.capabilities ?? [] },
  };
}

export const ctx = context();

export function feed(chunks: readonly Buffer[], options: { ctx?: SectionContext; decoder?: SectionBodyDecoder<RamRecord> } = {}): Fed<RamRecord> {
  return feedBody(options.decoder ?? ramCodec.newDecoder(), chunks, options.ctx ?? ctx);
}

export function encode(records: readonly RamRecord[], chunkSize?: number): Buffer {
  return encodeBody(ramCodec, records, chunkSize);
}

/** Records with payloads replaced by their hex, for comparisons. */
export function shape(records: readonly RamRecord[]): unknown[] {
  return records.map((r) => ('data' in r ? { ...r, data: r.data.toString('hex') } : r));
}
