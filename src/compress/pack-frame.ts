/**
 * One frame's worth of compression, in a worker (src/workers/worker.ts): checksum and compress
 * (pack). A pure function of its arguments; its reading half is src/decompress/unpack-frame.ts.
 */
import { copyBytes } from '../native/ring.js';
import { CODEC_IDS, compressBytes, compressInto, hasNativeCodec, type CodecId } from '../codecs/registry.js';
import { WRITTEN_CHECKSUM } from '../container/format.js';
import type { PackedFrame } from '../workers/protocol.js';
import { Scratch } from '../decompress/splice.js';
import { transferable } from '../bytes/transfer.js';

/** The codec's output, before it is copied into a buffer of its exact length. */
const packScratch = new Scratch();
const checksumOf = WRITTEN_CHECKSUM.of;

/** Compresses `raw` (which may be scratch or shared memory: never handed out as it is). */
export async function pack(codec: CodecId, level: number, raw: Uint8Array, transfer: ArrayBuffer[]): Promise<PackedFrame> {
  const rawChecksum = checksumOf(raw);
  if (hasNativeCodec(codec) && raw.length > 0) {
    // Into reused scratch, then copied into a buffer of the stored length that leaves with the
    // reply: a buffer of the raw length would count all its bytes against V8's external memory
    // in the main thread, whose GC would then run twice as often. Stored bytes must be fewer
    // than the raw ones, so raw.length - 1 bytes of room tell whether the codec shrinks them.
    const scratch = packScratch.get(raw.length - 1);
    const n = compressInto(codec, level, raw, scratch);
    const out = Buffer.allocUnsafeSlow(n >= 0 ? n : raw.length);
    transfer.push(out.buffer as ArrayBuffer);
    if (n >= 0) {
      out.set(scratch.subarray(0, n));
      return { codec, stored: out, rawLength: raw.length, rawChecksum, storedChecksum: checksumOf(out) };
    }
    // `raw` may be the compressor's shared payload ring: memcpy, not TypedArray#set.
    copyBytes(out, 0, raw);
    return { codec: CODEC_IDS.none, stored: out, rawLength: raw.length, rawChecksum, storedChecksum: rawChecksum };
  }
  if (codec !== CODEC_IDS.none) {
    const packed = await compressBytes(codec, level, raw);
    // Incompressible frames (random pages) are stored as they are: no decompression later.
    if (packed.length < raw.length) {
      const [stored, buffers] = transferable(packed);
      transfer.push(...buffers);
      return { codec, stored, rawLength: raw.length, rawChecksum, storedChecksum: checksumOf(packed) };
    }
  }
  const copy = Buffer.allocUnsafeSlow(raw.length);
  if (raw.buffer instanceof SharedArrayBuffer) copyBytes(copy, 0, raw);
  else copy.set(raw);
  transfer.push(copy.buffer as ArrayBuffer);
  return { codec: CODEC_IDS.none, stored: copy, rawLength: raw.length, rawChecksum, storedChecksum: rawChecksum };
}
