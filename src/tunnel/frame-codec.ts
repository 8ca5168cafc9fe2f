/**
 * Compression of the tunnel's STREAM_DATA payloads: each chunk a local socket gave is
 * compressed on its own with the system's liblz4/libzstd through the native addon
 * (src/codecs/registry.ts compressInto, synchronous, so the session machine stays synchronous),
 * and sent raw when that does not make it smaller. The receiver decompresses into exactly the
 * announced raw length (decompressInto), so a payload cannot make it allocate more.
 */
import { CODEC_IDS, compressInto, decompressInto, hasNativeCodec, type CodecId, type CodecInfo } from '../codecs/registry.js';

export interface FrameCodec {
  compress: (raw: Buffer) => { codec: number; payload: Buffer };
  decompress: (codec: number, payload: Buffer, rawLength: number) => Buffer;
}

/** Chunks below this are sent raw: a return-path message or an RPC reply gains nothing. */
const MIN_COMPRESS_BYTES = 512;

/** The tunnel's codec for `codec` at `level`, or why this machine cannot run it. */
export function frameCodec(codec: CodecInfo, level: number): FrameCodec | string {
  if (codec.id !== CODEC_IDS.none && !hasNativeCodec(codec.id)) return `${codec.name} needs the native addon built with the system's lib${codec.name} (scripts/build-native.sh)`;
  let scratch = Buffer.allocUnsafe(0);
  return {
    compress(raw) {
      if (codec.id === CODEC_IDS.none || raw.length < MIN_COMPRESS_BYTES) return { codec: 0, payload: raw };
      if (scratch.length < raw.length) scratch = Buffer.allocUnsafe(raw.length);
      // Room for one byte less than raw: -1 means it would not shrink.
      const stored = compressInto(codec.id, level, raw, scratch.subarray(0, raw.length - 1));
      return stored < 0 ? { codec: 0, payload: raw } : { codec: codec.id, payload: Buffer.from(scratch.subarray(0, stored)) };
    },
    decompress(id, payload, rawLength) {
      if (!hasNativeCodec(id)) throw new Error(`codec ${id} is not available here`);
      const raw = Buffer.allocUnsafe(rawLength);
      decompressInto(id as CodecId, payload, raw);
      return raw;
    },
  };
}
