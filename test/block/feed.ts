/** The block body decoder over chunked input (see test/helpers/feed.ts). */
import { blockCodec } from '../../src/block/codec.js';
import type { BlockRecord } from '../../src/block/records.js';
import type { SectionContext } from '../../src/stream/section-codec.js';
import { encodeBody, feedBody, type Fed } from '../helpers/feed.js';

export { prng, splitAt } from '../helpers/feed.js';

export const ctx: SectionContext = {
  section: { id: 3, name: 'block' },
  versionId: 1,
  phase: 'part',
  params: { pageSize: 4096, capabilities: [] },
};

export function feed(chunks: readonly Buffer[]): Fed<BlockRecord> {
  return feedBody(blockCodec.newDecoder(), chunks, ctx);
}

export function encode(records: readonly BlockRecord[], chunkSize?: number): Buffer {
  return encodeBody(blockCodec, records, chunkSize);
}
