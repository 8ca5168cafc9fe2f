/**
 * Re-seals a mutated container: recomputes each frame header's checksum and the stored
 * checksum of its bytes (and the raw one where codec none makes them the same), as a forger
 * would. Without it nearly every mutation stops at the first checksum; with it the mutations
 * reach the HEADER JSON, META cuts, the codecs, the page window and the END checks.
 */
import { dataChecksum } from '../src/container/checksum.js';
import { CODEC_IDS } from '../src/codecs/registry.js';
import { FRAME_HEADER_LENGTH, PREAMBLE_LENGTH, decodeFrameHeader, encodeFrameHeader } from '../src/container/format.js';

/** Offsets of the frame headers, as far as the lengths hold. */
export function frameHeaderOffsets(container: Buffer): number[] {
  const offsets: number[] = [];
  for (let at = PREAMBLE_LENGTH; at + FRAME_HEADER_LENGTH <= container.length;) {
    offsets.push(at);
    at += FRAME_HEADER_LENGTH + container.readUInt32BE(at + 12);
  }
  return offsets;
}

/** The frame at header offset `at` given another kind (1 HEADER … 5 END). */
export function relabel(container: Buffer, at: number, kind: number): Buffer {
  const out = Buffer.from(container);
  out[at] = kind;
  return out;
}

export function reseal(container: Buffer): Buffer {
  if (container.length < PREAMBLE_LENGTH) return container;
  const version = container.readUInt16BE(8);
  if (version !== 1 && version !== 2) return container;
  const checksum = dataChecksum(version);
  const out = Buffer.from(container);
  for (let at = PREAMBLE_LENGTH; at + FRAME_HEADER_LENGTH <= out.length;) {
    const { header } = decodeFrameHeader(out.subarray(at, at + FRAME_HEADER_LENGTH));
    const start = at + FRAME_HEADER_LENGTH;
    if (start + header.storedLength > out.length) break;
    const storedChecksum = checksum.of(out.subarray(start, start + header.storedLength));
    const rawChecksum = header.codec === CODEC_IDS.none ? storedChecksum : header.rawChecksum;
    encodeFrameHeader({ ...header, storedChecksum, rawChecksum }).copy(out, at);
    at = start + header.storedLength;
  }
  return out;
}
