/**
 * One frame's worth of compression, in a worker (src/workers/worker.ts): checksum and compress
 * (pack). A pure function of its arguments; its reading half is src/decompress/unpack-frame.ts.
 */
import { copyBytes } from '../native/ring.js';
import { CODEC_IDS, compressBytes, compressInto, hasNativeCodec, type CodecId } from '../codecs/registry.js';
import { WRITTEN_CHECKSUM } from '../container/format.js';
import type { PackedFrame } from '../workers/protocol.js';
import { BufferPool } from '../bytes/buffer-pool.js';
import { transferable } from '../bytes/transfer.js';

/** The codec's output when no output buffer was lent, before it is copied into one of its exact length. */
const packScratch = new BufferPool(1);
const checksumOf = WRITTEN_CHECKSUM.of;

/**
 * Compresses `raw` (which may be scratch or shared memory: never handed out as it is). The
 * stored bytes go into `out` when it is lent (a buffer of at least raw.length bytes from the
 * frame emitter's pool, handed back with the reply), else into a new buffer; `transfer` gets
 * the buffer they lie in.
 */
export async function pack(codec: CodecId, level: number, raw: Uint8Array, transfer: ArrayBuffer[], out?: Uint8Array): Promise<PackedFrame> {
  const rawChecksum = checksumOf(raw);
  const lent = out !== undefined && out.byteLength >= raw.length && out.buffer instanceof ArrayBuffer ? out : undefined;
  if (hasNativeCodec(codec) && raw.length > 0) {
    // Stored bytes must be fewer than the raw ones, so raw.length - 1 bytes of room tell
    // whether the codec shrinks them.
    if (lent !== undefined) {
      transfer.push(lent.buffer as ArrayBuffer);
      const n = compressInto(codec, level, raw, lent.subarray(0, raw.length - 1));
      if (n >= 0) {
        const stored = lent.subarray(0, n);
        return { codec, stored, rawLength: raw.length, rawChecksum, storedChecksum: checksumOf(stored) };
      }
      return storedAsIs(raw, lent.subarray(0, raw.length), rawChecksum);
    }
    // Into reused scratch, then copied into a buffer of the stored length that leaves with the
    // reply: a buffer of the raw length would count all its bytes against V8's external memory
    // in the main thread, whose GC would then run twice as often.
    const scratch = packScratch.take(raw.length - 1);
    const n = compressInto(codec, level, raw, scratch);
    const copy = Buffer.allocUnsafeSlow(n >= 0 ? n : raw.length);
    transfer.push(copy.buffer as ArrayBuffer);
    if (n >= 0) copy.set(scratch.subarray(0, n));
    packScratch.give(scratch.buffer as ArrayBuffer);
    if (n >= 0) return { codec, stored: copy, rawLength: raw.length, rawChecksum, storedChecksum: checksumOf(copy) };
    return storedAsIs(raw, copy, rawChecksum);
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
  const copy = lent?.subarray(0, raw.length) ?? Buffer.allocUnsafeSlow(raw.length);
  transfer.push(copy.buffer as ArrayBuffer);
  return storedAsIs(raw, copy, rawChecksum);
}

/** `raw` copied into `into` (raw.length bytes) as a frame stored without a codec. */
function storedAsIs(raw: Uint8Array, into: Uint8Array, rawChecksum: number): PackedFrame {
  // `raw` may be the compressor's shared payload ring: memcpy, not TypedArray#set.
  if (raw.buffer instanceof SharedArrayBuffer) copyBytes(into, 0, raw);
  else into.set(raw);
  return { codec: CODEC_IDS.none, stored: into, rawLength: raw.length, rawChecksum, storedChecksum: rawChecksum };
}
