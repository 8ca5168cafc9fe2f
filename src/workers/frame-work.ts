/**
 * One frame's worth of work in a worker: compress and checksum (pack), or check and decompress
 * (unpack). Pure functions of their arguments; worker.ts and direct.ts call them.
 */
import { copyBytes } from '../native/ring.js';
import { dataChecksum } from '../container/checksum.js';
import { CODEC_IDS, compressBytes, compressInto, decompressFrame, hasNativeCodec, type CodecId } from '../codecs/registry.js';
import { WRITTEN_CHECKSUM } from '../container/format.js';
import type { FailureReply, PackedFrame, StoredFrame } from './protocol.js';
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

/**
 * Checks and decompresses one frame; a FailureReply when it is damaged. `into` (exactly
 * rawLength bytes) receives the bytes when a native codec runs; otherwise the result is a new
 * buffer (or, for codec none, the stored bytes themselves).
 */
export async function unpack(frame: StoredFrame, which?: 'meta' | 'payload', into?: Buffer): Promise<Buffer | FailureReply> {
  const checksum = dataChecksum(frame.checksum);
  const storedActual = checksum.of(frame.stored);
  if (storedActual !== frame.storedChecksum) {
    return { ok: false, kind: 'stored-checksum', message: 'stored bytes fail their checksum', actual: storedActual, frame: which };
  }
  let raw: Buffer;
  try {
    raw = await decompressFrame(frame.codec, frame.stored, frame.rawLength, into);
  } catch (error) {
    return { ok: false, kind: 'codec', message: (error as Error).message, frame: which };
  }
  // For codec none the stored checksum was the raw one: checked above.
  if (frame.codec !== CODEC_IDS.none) {
    const rawActual = checksum.of(raw);
    if (rawActual !== frame.rawChecksum) {
      return { ok: false, kind: 'raw-checksum', message: 'decompressed bytes fail their checksum', actual: rawActual, frame: which };
    }
  }
  return raw;
}

