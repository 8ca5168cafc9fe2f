/**
 * Compression of the tunnel's STREAM_DATA payloads, stream by stream: each chunk a local socket
 * gave is compressed on its own with the system's liblz4/libzstd through the native addon
 * (src/codecs/registry.ts compressInto, synchronous, so the session machine stays synchronous),
 * and sent raw when that does not make it smaller. The receiver decompresses into exactly the
 * announced raw length (decompressInto), so a payload cannot make it allocate more.
 *
 * Page-aware on the source side (`pageCacheBytes` > 0): in a QEMU main stream or multifd
 * channel, a guest page sent again goes as its XOR against its earlier copy (page-delta.ts),
 * found by page-finder.ts; the codec byte then carries PAGE_TABLE_FLAG and the payload starts
 * with the page table. Every receiver undoes it, keeping at most `pageCacheLimitBytes` of pages
 * for all streams together.
 */
import { CODEC_IDS, compressInto, decompressInto, hasNativeCodec, type CodecId, type CodecInfo } from '../codecs/registry.js';
import { PAGE_DELTA_BYTES, PAGE_TABLE_FLAG, PageDeltaDecoder, PageDeltaEncoder, decodePageTable, encodePageTable } from './page-delta.js';
import { PageFinder } from './page-finder.js';

/** What a session asks of its codec, per stream (src/tunnel/session.ts). */
export interface StreamCodec {
  compress: (stream: number, raw: Buffer) => { codec: number; payload: Buffer };
  /** Exactly `rawLength` bytes, or throws. */
  decompress: (stream: number, codec: number, payload: Buffer, rawLength: number) => Buffer;
  /** The stream closed: its page caches go. */
  forget: (stream: number) => void;
}

export interface PageDeltaCounts {
  /** Pages sent as deltas against their earlier copy, and pages kept for later deltas. */
  deltaPages: number;
  storedPages: number;
}

export interface FrameCodec extends StreamCodec {
  /** Totals over the streams this side sent page-aware (closed ones included). */
  pageDelta: () => PageDeltaCounts;
}

export interface FrameCodecOptions {
  /** Sending: the page cache each migration stream keeps (0: not page-aware). */
  pageCacheBytes?: number;
  /** Receiving: the most page cache a peer may make this side keep, all streams together. */
  pageCacheLimitBytes?: number;
}

/** Chunks below this are sent raw: a return-path message or an RPC reply gains nothing. */
const MIN_COMPRESS_BYTES = 512;
export const DEFAULT_PAGE_CACHE_BYTES = 64 * 1024 * 1024;
/** Room for a migration with 8 multifd channels at the default cache, and a second one starting. */
export const DEFAULT_PAGE_CACHE_LIMIT_BYTES = 1024 * 1024 * 1024;

interface SendState {
  finder: PageFinder;
  encoder: PageDeltaEncoder;
}

/** The tunnel's codec for `codec` at `level`, or why this machine cannot run it. */
export function frameCodec(codec: CodecInfo, level: number, options: FrameCodecOptions = {}): FrameCodec | string {
  if (codec.id !== CODEC_IDS.none && !hasNativeCodec(codec.id)) return `${codec.name} needs the native addon built with the system's lib${codec.name} (scripts/build-native.sh)`;
  const slots = codec.id === CODEC_IDS.none ? 0 : Math.floor((options.pageCacheBytes ?? 0) / PAGE_DELTA_BYTES);
  const maxSlots = Math.floor((options.pageCacheLimitBytes ?? DEFAULT_PAGE_CACHE_LIMIT_BYTES) / PAGE_DELTA_BYTES);
  const sending = new Map<number, SendState>();
  /** Each stream's decoder holds the slots its first table reserved (maxSlots of the decoder). */
  const receiving = new Map<number, PageDeltaDecoder>();
  const closed: PageDeltaCounts = { deltaPages: 0, storedPages: 0 };
  let scratch = Buffer.allocUnsafe(0);

  /** `raw` compressed, or null when that would not make it smaller. */
  const shrink = (raw: Buffer): Buffer | null => {
    if (scratch.length < raw.length) scratch = Buffer.allocUnsafe(raw.length);
    // Room for one byte less than raw: -1 means it would not shrink.
    const stored = compressInto(codec.id, level, raw, scratch.subarray(0, raw.length - 1));
    return stored < 0 ? null : Buffer.from(scratch.subarray(0, stored));
  };

  const decompressBase = (id: number, payload: Buffer, rawLength: number): Buffer => {
    if (id === CODEC_IDS.none) {
      if (payload.length !== rawLength) throw new Error(`a raw body of ${payload.length} bytes`);
      return Buffer.from(payload);
    }
    if (!hasNativeCodec(id)) throw new Error(`codec ${id} is not available here`);
    const raw = Buffer.allocUnsafe(rawLength);
    decompressInto(id as CodecId, payload, raw);
    return raw;
  };

  return {
    compress(stream, raw) {
      if (codec.id === CODEC_IDS.none) return { codec: 0, payload: raw };
      let state = sending.get(stream);
      if (slots > 0 && state === undefined) sending.set(stream, (state = { finder: new PageFinder(), encoder: new PageDeltaEncoder(slots) }));
      // The finder sees every byte, small chunks too: it follows the stream from its start.
      const spans = state?.finder.push(raw) ?? [];
      if (raw.length < MIN_COMPRESS_BYTES) return { codec: 0, payload: raw };
      if (state !== undefined && spans.length > 0) {
        const { table, body } = state.encoder.encode(raw, spans);
        if (table.entries.length > 0) {
          const packed = shrink(body);
          return { codec: (packed === null ? 0 : codec.id) | PAGE_TABLE_FLAG, payload: Buffer.concat([encodePageTable(table), packed ?? body]) };
        }
      }
      const packed = shrink(raw);
      return packed === null ? { codec: 0, payload: raw } : { codec: codec.id, payload: packed };
    },
    decompress(stream, id, payload, rawLength) {
      if ((id & PAGE_TABLE_FLAG) === 0) return decompressBase(id, payload, rawLength);
      const { table, body } = decodePageTable(payload, rawLength);
      let decoder = receiving.get(stream);
      if (decoder === undefined) {
        // A peer could open many streams: the limit is for all of them together.
        const mib = (slots: number): number => (slots * PAGE_DELTA_BYTES) / 1048576;
        let reservedSlots = 0;
        for (const other of receiving.values()) reservedSlots += other.maxSlots;
        if (table.slots > maxSlots - reservedSlots) {
          throw new RangeError(
            `a page cache of ${table.slots} slots (${mib(table.slots)} MiB) would take this side's page caches to ${mib(reservedSlots + table.slots)} MiB, over its ${mib(maxSlots)} MiB for all streams together (--page-cache)`,
          );
        }
        receiving.set(stream, (decoder = new PageDeltaDecoder(table.slots)));
      }
      return decoder.apply(table, decompressBase(id & ~PAGE_TABLE_FLAG, body, rawLength));
    },
    forget(stream) {
      const state = sending.get(stream);
      if (state !== undefined) {
        closed.deltaPages += state.encoder.deltaPages;
        closed.storedPages += state.encoder.storedPages;
      }
      sending.delete(stream);
      receiving.delete(stream);
    },
    pageDelta() {
      const counts = { ...closed };
      for (const { encoder } of sending.values()) {
        counts.deltaPages += encoder.deltaPages;
        counts.storedPages += encoder.storedPages;
      }
      return counts;
    },
  };
}
