/**
 * One frame's worth of decompression: check and decompress (unpack). A pure function of its
 * arguments; the workers (src/workers/worker.ts) and direct mode (direct.ts) call it.
 */
import { CODEC_IDS, decompressFrame } from '../codecs/registry.js';
import { dataChecksum } from '../container/checksum.js';
import type { FailureReply, StoredFrame } from '../workers/protocol.js';

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
