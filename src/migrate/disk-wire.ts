/**
 * The disk connection on the destination's control port (`migrate --disk` / `incoming --disk`),
 * pure codec. One connection per drive:
 *
 *   source                                         destination
 *   {"type":"disk-stream",index,drive,size,…}\n ─▶  opens its drive's writable NBD export
 *                                              ◀─  {"type":"disk-ready"}\n  (or disk-refused)
 *   disk stream bytes (docs/format.md "Disk stream"):
 *   header, BLOCK / DELTA frames … END          ─▶  applied as they come; at END: FLUSH
 *                                              ◀─  {"type":"disk-applied",…}\n
 *   {"type":"disk-hashes",…}\n                  ─▶  ◀─ {"type":"disk-hashes",…}\n
 *   each side compares the two lists itself (consistency.ts compareChunkHashes)
 *
 * The source writes nothing after END until `disk-applied` came, so the destination's decoder
 * never sees a byte past END from a peer of ours. Hashes are XXH64 per HASH_CHUNK_BYTES of the
 * drive, little-endian u64s in base64: 8 bytes a MiB, 11 MB of line for a 1 TiB drive, bounded
 * by the size the opening line announced.
 */
import { checkBlockSize } from '../block/block-size.js';
import { VerdictProtocolError } from './errors.js';

/** The consistency check's granule: one hash per MiB of drive. */
export const HASH_CHUNK_BYTES = 1024 * 1024;
/** The largest drive a disk stream may announce (1 PiB); a 1 TiB drive's hash line is 11 MB. */
const MAX_DRIVE_BYTES = 2 ** 50;

export interface DiskOpenMessage {
  type: 'disk-stream';
  /** The drive's place in `migrate --disk` (matched to the same place in `incoming --disk`). */
  index: number;
  /** The source's name of the drive (for messages). */
  drive: string;
  /** The source drive's size and the stream's chunk size (mig-block-size). */
  size: number;
  chunkSize: number;
}

export type DiskReply =
  | { type: 'disk-ready' }
  | { type: 'disk-refused'; reason: string }
  | { type: 'disk-applied'; records: number; bytesWritten: number; bytesZeroed: number }
  | { type: 'disk-hashes'; chunkSize: number; hashes: BigUint64Array };

export type DiskMessage = DiskOpenMessage | DiskReply;

const count = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;

/** Checks the fields of a `disk-stream` line (decodeVerdict hands it here). */
export function decodeDiskOpen(v: Record<string, unknown>): DiskOpenMessage {
  if (!count(v.index) || v.index > 255) throw new VerdictProtocolError('a disk stream names no drive index 0..255');
  if (typeof v.drive !== 'string' || v.drive.length === 0 || v.drive.length > 255) throw new VerdictProtocolError('a disk stream names no drive');
  if (!count(v.size) || v.size === 0 || v.size > MAX_DRIVE_BYTES) throw new VerdictProtocolError(`a disk stream must announce a drive size of 1..2^50 bytes`);
  if (!count(v.chunkSize)) throw new VerdictProtocolError('a disk stream announces no chunk size');
  try {
    checkBlockSize(v.chunkSize, 'chunk size');
  } catch {
    throw new VerdictProtocolError(`a disk stream's chunk size ${v.chunkSize} is not a power of two from 4 KiB to 16 MiB`);
  }
  return { type: 'disk-stream', index: v.index, drive: v.drive, size: v.size, chunkSize: v.chunkSize };
}

/** Hash list entries for a drive of `size` bytes. */
export function hashCount(size: number): number {
  return Math.ceil(size / HASH_CHUNK_BYTES);
}

/** The longest disk line a drive of `size` bytes can need (its hash list), plus room for the rest. */
export function maxDiskLine(size: number): number {
  return Math.ceil((hashCount(size) * 8) / 3) * 4 + 4096;
}

export function encodeDiskMessage(message: DiskMessage): Buffer {
  if (message.type !== 'disk-hashes') return Buffer.from(`${JSON.stringify(message)}\n`);
  const bytes = Buffer.alloc(message.hashes.length * 8);
  for (let i = 0; i < message.hashes.length; i++) bytes.writeBigUInt64LE(message.hashes[i]!, i * 8);
  return Buffer.from(`${JSON.stringify({ type: 'disk-hashes', chunkSize: message.chunkSize, count: message.hashes.length, hashes: bytes.toString('base64') })}\n`);
}

/** One reply line of a drive of `size` bytes → a message, or VerdictProtocolError naming what is wrong. */
export function decodeDiskReply(line: string, size: number): DiskReply {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new VerdictProtocolError('a disk line is not JSON');
  }
  const v = value as Record<string, unknown>;
  if (typeof v !== 'object' || v === null) throw new VerdictProtocolError('a disk line is not a JSON object');
  switch (v.type) {
    case 'disk-ready':
      return { type: 'disk-ready' };
    case 'disk-refused':
      if (typeof v.reason !== 'string') throw new VerdictProtocolError('a disk refusal gives no reason');
      return { type: 'disk-refused', reason: v.reason.slice(0, 1000) };
    case 'disk-applied':
      if (!count(v.records) || !count(v.bytesWritten) || !count(v.bytesZeroed)) throw new VerdictProtocolError('a disk-applied line has no counts');
      return { type: 'disk-applied', records: v.records, bytesWritten: v.bytesWritten, bytesZeroed: v.bytesZeroed };
    case 'disk-hashes': {
      const expected = hashCount(size);
      if (v.chunkSize !== HASH_CHUNK_BYTES) throw new VerdictProtocolError(`disk hashes of ${String(v.chunkSize)}-byte chunks, not ${HASH_CHUNK_BYTES}`);
      if (v.count !== expected || typeof v.hashes !== 'string') throw new VerdictProtocolError(`disk hashes for ${String(v.count)} chunks; a drive of ${size} bytes has ${expected}`);
      const bytes = Buffer.from(v.hashes, 'base64');
      if (bytes.length !== expected * 8) throw new VerdictProtocolError(`disk hashes of ${bytes.length} bytes for ${expected} chunks`);
      const hashes = new BigUint64Array(expected);
      for (let i = 0; i < expected; i++) hashes[i] = bytes.readBigUInt64LE(i * 8);
      return { type: 'disk-hashes', chunkSize: HASH_CHUNK_BYTES, hashes };
    }
    default:
      throw new VerdictProtocolError(`unknown disk line type ${JSON.stringify(v.type)}`);
  }
}
