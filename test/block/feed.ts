/**
 * The block body decoder over chunked input, the way src/stream's decoder drives it: records
 * until one ends the body, then the section footer (`0x7e be32 id`, read here when present),
 * then the next body. The decoder needs what follows a first data chunk (the next records, or the footer
 * after an EOS) to settle the chunk size, so bodies given to it end with their footer.
 */
import { blockCodec } from '../../src/block/codec.js';
import type { BlockRecord } from '../../src/block/records.js';
import { ByteReader, NEED_MORE } from '../../src/stream/reader.js';
import type { SectionContext } from '../../src/stream/section-codec.js';
import { encodeBody } from '../helpers/feed.js';

export { prng, splitAt } from '../helpers/feed.js';

export const SECTION = { id: 3, name: 'block' } as const;

/** A fresh context: the block codec writes the chunk size it found into `params`. */
export function context(blockSize?: number): SectionContext {
  return {
    section: SECTION,
    versionId: 1,
    phase: 'part',
    params: { pageSize: 4096, capabilities: [], ...(blockSize === undefined ? {} : { blockSize, blockSizeSource: 'option' as const }) },
  };
}

/** QEMU's 1 MiB, given. */
export const ctx: SectionContext = context(1 << 20);

/** The section footer of SECTION: `0x7e be32 3` (save_section_footer). */
export const FOOTER = Buffer.from([0x7e, 0, 0, 0, SECTION.id]);

export interface Fed {
  records: BlockRecord[];
  /** Bytes left unread when the input ran out (a record cut short). */
  leftover: number;
  /** The context after the run: `params.blockSize` holds the size found. */
  ctx: SectionContext;
}

/**
 * Pushes each chunk and reads every complete record and footer. `blockSize`: given to the
 * decoder (default 1 MiB), or 'find' to leave it to the stream.
 */
export function feed(chunks: readonly Buffer[], blockSize: number | 'find' = 1 << 20): Fed {
  const context_ = context(blockSize === 'find' ? undefined : blockSize);
  const decoder = blockCodec.newDecoder();
  const reader = new ByteReader();
  const records: BlockRecord[] = [];
  let footerNext = false;
  for (const chunk of chunks) {
    reader.push(chunk);
    for (;;) {
      reader.mark();
      try {
        // After a body's end: its footer, if there is one (tests also put records right after).
        if (footerNext && reader.peekU8() === 0x7e) {
          reader.u8();
          const id = reader.u32();
          if (id !== SECTION.id) throw new Error(`footer of section ${id} at ${reader.markOffset}`);
          footerNext = false;
        } else {
          const record = decoder.read(reader, context_);
          records.push(record);
          footerNext = decoder.endsBody(record);
        }
      } catch (error) {
        if (error === NEED_MORE) {
          reader.rewind();
          break;
        }
        throw error;
      }
      reader.dropConsumed();
    }
  }
  return { records, leftover: reader.available, ctx: context_ };
}

export function encode(records: readonly BlockRecord[], chunkSize?: number): Buffer {
  return encodeBody(blockCodec, records, chunkSize);
}
