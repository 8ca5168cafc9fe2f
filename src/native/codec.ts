/**
 * XXH32 and the zstd / lz4 codecs of the native addon, into buffers the caller owns and reuses:
 *
 *   const n = zstdCompressInto(raw, out, 1);        // bytes in out, -1: it would not fit
 *   zstdDecompressInto(out.subarray(0, n), back);   // bytes written; throws on damage
 *
 * The codecs are the system's libzstd / liblz4, loaded by the addon at run time
 * (native/codecs.h); codecLibraries() says which are there. Without them (or without the addon)
 * src/codecs/registry.ts keeps to the npm bindings; MIGSTREAM_SYSTEM_CODECS=0 makes it do so.
 * Arguments are checked here (ArgumentError) and again in the addon.
 */
import { ArgumentError } from '../stream/errors.js';
import { checkInteger, describe, nativeBinding } from './binding.js';

export interface CodecLibraries {
  /** ZSTD_versionNumber() of the libzstd in use (e.g. 10504), 0 when there is none. */
  readonly zstd: number;
  /** LZ4_versionNumber() of the liblz4 in use, 0 when there is none. */
  readonly lz4: number;
}

const NONE: CodecLibraries = { zstd: 0, lz4: 0 };
let libraries: CodecLibraries | undefined;

/** The codec libraries the addon loaded; none when the addon is not built or they are turned off. */
export function codecLibraries(): CodecLibraries {
  if (libraries !== undefined) return libraries;
  if (process.env.MIGSTREAM_SYSTEM_CODECS === '0') return (libraries = NONE);
  try {
    libraries = nativeBinding().codecVersions();
  } catch {
    libraries = NONE;
  }
  return libraries;
}

function checkBytes(where: string, name: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) throw new ArgumentError(`${where}: ${name} must be a Uint8Array, got ${describe(value)}`);
  return value;
}

function checkPair(where: string, src: unknown, dst: unknown): void {
  checkBytes(where, 'source', src);
  checkBytes(where, 'destination', dst);
}

/** XXH32 of `bytes` (`xxhsum -H32`), seed 0 unless given. */
export function xxh32Native(bytes: Uint8Array, seed = 0): number {
  checkBytes('xxh32', 'buffer', bytes);
  checkInteger('xxh32', 'seed', seed, 0, 0xffff_ffff);
  return nativeBinding().xxh32(bytes, seed);
}

/** The low 32 bits of XXH64 (seed 0) of `bytes`: container version 2's checksum. */
export function xxh64Low32Native(bytes: Uint8Array): number {
  checkBytes('xxh64Low32', 'buffer', bytes);
  return nativeBinding().xxh64Low32(bytes);
}

/** One zstd frame of `src` at `level` into `dst`: its length, or -1 when it does not fit in `dst`. */
export function zstdCompressInto(src: Uint8Array, dst: Uint8Array, level: number): number {
  checkPair('zstdCompressInto', src, dst);
  checkInteger('zstdCompressInto', 'level', level, -131072, 22);
  return nativeBinding().zstdCompress(src, dst, level);
}

/** The zstd frame in `src` into `dst`: the bytes written. Throws (an Error) on damaged input or one larger than `dst`. */
export function zstdDecompressInto(src: Uint8Array, dst: Uint8Array): number {
  checkPair('zstdDecompressInto', src, dst);
  return nativeBinding().zstdDecompress(src, dst);
}

/** An LZ4 block of `src` into `dst`: its length, or -1 when it does not fit in `dst`. */
export function lz4CompressInto(src: Uint8Array, dst: Uint8Array): number {
  checkPair('lz4CompressInto', src, dst);
  return nativeBinding().lz4Compress(src, dst);
}

/** The LZ4 block in `src` into `dst`: the bytes written. Throws (an Error) on a malformed block or one larger than `dst`. */
export function lz4DecompressInto(src: Uint8Array, dst: Uint8Array): number {
  checkPair('lz4DecompressInto', src, dst);
  return nativeBinding().lz4Decompress(src, dst);
}

/** What frameDecodeAsync found: 0 ok, 1 stored checksum, 2 codec, 3 raw checksum (native/codecs.h FrameCheck). */
export interface FrameCheck {
  readonly status: 0 | 1 | 2 | 3;
  /** The checksum computed, for statuses 1 and 3. */
  readonly actual: number;
  /** The codec's complaint, for status 2. */
  readonly message: string;
}

/**
 * Checks and decompresses one container frame (zstd or lz4, codec ids 2 and 1) on libuv's
 * thread pool: the checksum of `stored`, decompression into `raw` (exactly the raw length), the
 * checksum of `raw`. `checksum` is the container version whose checksum the frame carries (1
 * XXH32, 2 the low 32 bits of XXH64). Several run at once without starting a thread. `stored`
 * and `raw` must stay untouched until the promise settles.
 */
export function frameDecodeAsync(codec: number, stored: Uint8Array, raw: Uint8Array, storedChecksum: number, rawChecksum: number, checksum: 1 | 2): Promise<FrameCheck> {
  checkPair('frameDecodeAsync', stored, raw);
  if (codec !== 1 && codec !== 2) throw new ArgumentError(`frameDecodeAsync: codec must be 1 (lz4) or 2 (zstd), got ${describe(codec)}`);
  checkInteger('frameDecodeAsync', 'storedChecksum', storedChecksum, 0, 0xffff_ffff);
  checkInteger('frameDecodeAsync', 'rawChecksum', rawChecksum, 0, 0xffff_ffff);
  checkInteger('frameDecodeAsync', 'checksum', checksum, 1, 2);
  return nativeBinding().frameDecode(codec, stored, raw, storedChecksum, rawChecksum, checksum) as Promise<FrameCheck>;
}
