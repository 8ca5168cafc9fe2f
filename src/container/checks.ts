/**
 * Checks of the HEADER and END frames, the kinds a mode allows and a REF cut's page: what
 * docs/container.md asks of a reader, shared by both decompressors (src/decompress).
 */
import { hex32 } from '../bytes/hex.js';
import type { DataChecksum } from './checksum.js';
import { CODEC_IDS } from '../codecs/registry.js';
import { CorruptFrameError, type FrameRef } from './errors.js';
import { FrameKind, MAX_FRAME_BYTES, decodeEnd, frameKindName, type ContainerInfo, type FrameHeader } from './format.js';

/** Largest target page size a container may announce. */
const MAX_PAGE_SIZE = 65536;

type StoredHeader = FrameHeader & { readonly offset: number; readonly stored: Buffer };

/** The HEADER frame's JSON, checked against `checksum` (the container version's). */
export function parseInfo(frame: StoredHeader, ref: FrameRef, checksum: DataChecksum): ContainerInfo {
  if (frame.codec !== CODEC_IDS.none) throw new CorruptFrameError('compressed HEADER frame', ref, { expected: 'codec none' });
  const actual = checksum.of(frame.stored);
  if (actual !== frame.rawChecksum) throw checksumError('HEADER frame fails its checksum', ref, checksum, frame.rawChecksum, actual);
  let parsed: unknown;
  try {
    parsed = JSON.parse(frame.stored.toString('utf8'));
  } catch (error) {
    throw new CorruptFrameError('HEADER frame is not JSON', ref, { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CorruptFrameError('HEADER frame is not a JSON object', ref, { actual: frame.stored.toString('utf8').slice(0, 200) });
  }
  const info = parsed as ContainerInfo;
  // Bounds a reader can live with whatever the file says: page sizes of real targets (x86 4
  // KiB, up to 64 KiB on ppc64/aarch64), frames within MAX_FRAME_BYTES, the compressor's window.
  const pageSizeOk = Number.isInteger(info.pageSize) && info.pageSize >= 512 && info.pageSize <= MAX_PAGE_SIZE && (info.pageSize & (info.pageSize - 1)) === 0;
  const windowOk = Number.isInteger(info.dedupWindowPages) && info.dedupWindowPages >= 0 && info.dedupWindowPages <= 1 << 24;
  const frameOk = Number.isInteger(info.frameBytes) && info.frameBytes > 0 && info.frameBytes <= MAX_FRAME_BYTES;
  if (!pageSizeOk || !windowOk || !frameOk || (info.mode !== 'qemu' && info.mode !== 'raw')) {
    throw new CorruptFrameError('HEADER frame has an invalid mode, pageSize, frameBytes or dedupWindowPages', ref, {
      actual: frame.stored.toString('utf8').slice(0, 200),
    });
  }
  return info;
}

/**
 * The frame kinds the HEADER's mode allows: a qemu-mode container is META/PAYLOAD segments, a
 * raw one DATA frames (compressor.ts writes nothing else). A relabelled frame is refused here,
 * before it can make the segment before it look like one that is not the last: an END frame
 * relabelled DATA would otherwise let the segment holding QEMU's EOF out before any END check.
 */
export function checkKindForMode(kind: number, info: ContainerInfo, ref: FrameRef): void {
  const allowed = info.mode === 'raw' ? kind === FrameKind.DATA : kind === FrameKind.META || kind === FrameKind.PAYLOAD;
  if (kind === FrameKind.END || allowed) return;
  throw new CorruptFrameError(`${frameKindName(kind)} frame in a ${info.mode}-mode container`, ref, {
    expected: info.mode === 'raw' ? 'DATA frames, then END' : 'META and PAYLOAD frames, then END',
  });
}

export function checksumError(problem: string, ref: FrameRef, checksum: DataChecksum, expected: number, actual: number): CorruptFrameError {
  return new CorruptFrameError(problem, ref, { expected: `${checksum.name} ${hex32(expected)}`, actual: hex32(actual) });
}

/**
 * Whether the page a REF cut resolved to is the page the compressor saw: undefined, or what is
 * wrong (both decompressors report it against the META frame).
 */
export function refPageProblem(page: Uint8Array, distance: number, checksum: DataChecksum, expected: number): string | undefined {
  const actual = checksum.of(page);
  if (actual === expected) return undefined;
  return `the page referenced ${distance} stored pages back is not the page the compressor saw: expected ${checksum.name} ${hex32(expected)}, got ${hex32(actual)}`;
}

/**
 * The END frame: its own checksum, its length, the frame count, and the stream it vouches for
 * (`streamBytes` written, `chain` over the frames' raw checksums).
 */
export function checkEnd(frame: FrameHeader, stored: Buffer, ref: FrameRef, checksum: DataChecksum, streamBytes: number, chain: number): void {
  const actual = checksum.of(stored);
  if (actual !== frame.rawChecksum) throw checksumError('END frame fails its checksum', ref, checksum, frame.rawChecksum, actual);
  const end = decodeEnd(stored);
  if (end === undefined) throw new CorruptFrameError(`END frame of ${stored.length} bytes`, ref, { expected: '16 bytes' });
  if (end.frames !== frame.number) {
    throw new CorruptFrameError(`END frame counts ${end.frames} frames before it`, ref, { expected: `${frame.number}`, actual: end.frames });
  }
  if (end.streamBytes !== streamBytes || end.streamChecksum !== chain) {
    throw new CorruptFrameError('the frames are not the ones the compressor wrote', ref, {
      expected: `${end.streamBytes} stream bytes, frame checksum chain ${hex32(end.streamChecksum)}`,
      actual: `${streamBytes} bytes, chain ${hex32(chain)}`,
    });
  }
}
