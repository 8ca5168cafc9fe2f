/**
 * One frame's worth of work in a worker: compress and checksum (pack), or check and decompress
 * (unpack). Pure functions of their arguments; worker.ts and worker-direct.ts call them.
 */
import { xxh32 } from './checksum.js';
import { CODEC_IDS, compressBytes, decompressBytes, type CodecId } from './codecs.js';
import type { FailureReply, PackedFrame, StoredFrame } from './protocol.js';
import { transferable } from './transfer.js';

/** Compresses `raw` (which may be scratch or shared memory: never handed out as it is). */
export async function pack(codec: CodecId, level: number, raw: Uint8Array, transfer: ArrayBuffer[]): Promise<PackedFrame> {
  const rawChecksum = xxh32(raw);
  if (codec !== CODEC_IDS.none) {
    const packed = await compressBytes(codec, level, raw);
    // Incompressible frames (random pages) are stored as they are: no decompression later.
    if (packed.length < raw.length) {
      const [stored, buffers] = transferable(packed);
      transfer.push(...buffers);
      return { codec, stored, rawLength: raw.length, rawChecksum, storedChecksum: xxh32(packed) };
    }
  }
  const copy = Buffer.allocUnsafeSlow(raw.length);
  copy.set(raw);
  transfer.push(copy.buffer as ArrayBuffer);
  return { codec: CODEC_IDS.none, stored: copy, rawLength: raw.length, rawChecksum, storedChecksum: rawChecksum };
}

/** Checks and decompresses one frame; a FailureReply when it is damaged. */
export async function unpack(frame: StoredFrame, which?: 'meta' | 'payload'): Promise<Buffer | FailureReply> {
  const storedActual = xxh32(frame.stored);
  if (storedActual !== frame.storedChecksum) {
    return { ok: false, kind: 'stored-checksum', message: 'stored bytes fail their checksum', actual: storedActual, frame: which };
  }
  let raw: Buffer;
  try {
    raw = await decompressBytes(frame.codec, frame.stored, frame.rawLength);
  } catch (error) {
    return { ok: false, kind: 'codec', message: (error as Error).message, frame: which };
  }
  // For codec none the stored checksum was the raw one: checked above.
  if (frame.codec !== CODEC_IDS.none) {
    const rawActual = xxh32(raw);
    if (rawActual !== frame.rawChecksum) {
      return { ok: false, kind: 'raw-checksum', message: 'decompressed bytes fail their checksum', actual: rawActual, frame: which };
    }
  }
  return raw;
}

