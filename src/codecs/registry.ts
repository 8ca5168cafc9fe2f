/**
 * The frame codecs: lz4 (block format, lz4-napi's framing), zstd and zlib (node:zlib raw
 * deflate; pako measured 3x slower on migration streams). Each compresses one buffer on its
 * own: frames are independent, which is what lets workers run them in parallel.
 *
 * Two ways to run zstd and lz4, giving the same formats:
 *   compressInto / decompressInto   the system's libzstd / liblz4 through the native addon
 *                                   (src/native/codec.ts), synchronous, into a buffer the caller
 *                                   owns and reuses: what the container uses when available
 *   compressBytes / decompressBytes the npm bindings (@mongodb-js/zstd, lz4-napi), a fresh buffer
 *                                   per call: the fallback, and the API src/tls uses
 *
 * Pure functions of their input; they run in the worker threads (worker.ts) and on the main
 * thread.
 */
import { createRequire } from 'node:module';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { codecLibraries, lz4CompressInto, lz4DecompressInto, zstdCompressInto, zstdDecompressInto } from '../native/codec.js';
import { ArgumentError } from '../stream/errors.js';

export const CODEC_IDS = { none: 0, lz4: 1, zstd: 2, zlib: 3 } as const;
export type CodecName = keyof typeof CODEC_IDS;
export type CodecId = (typeof CODEC_IDS)[CodecName];

export interface CodecInfo {
  readonly name: CodecName;
  readonly id: CodecId;
  readonly minLevel: number;
  readonly maxLevel: number;
  readonly defaultLevel: number;
}

export const CODECS: readonly CodecInfo[] = [
  { name: 'none', id: 0, minLevel: 0, maxLevel: 0, defaultLevel: 0 },
  // lz4-napi (lz4_flex) has one speed: "level" 1 is the only one.
  { name: 'lz4', id: 1, minLevel: 1, maxLevel: 1, defaultLevel: 1 },
  // Level 3 with dedup (on by default) is smaller than `zstd -3 -T<cores>` of the six recorded
  // streams (all but the random-page one, +0.07% there, and in total) at 1.2x its speed; level
  // 1 is 1.6x faster but larger stream by stream, winning only in total (bench/compress.ts).
  { name: 'zstd', id: 2, minLevel: -7, maxLevel: 22, defaultLevel: 3 },
  { name: 'zlib', id: 3, minLevel: 1, maxLevel: 9, defaultLevel: 1 },
];

export function codecByName(name: string): CodecInfo {
  const codec = CODECS.find((c) => c.name === name);
  if (codec === undefined) {
    throw new ArgumentError(`unknown codec "${name}"; known: ${CODECS.map((c) => c.name).join(', ')}`);
  }
  return codec;
}

export function codecById(id: number): CodecInfo | undefined {
  return CODECS.find((c) => c.id === id);
}

/** The level to use: `level` checked against the codec's range, or its default. */
export function resolveLevel(codec: CodecInfo, level: number | undefined): number {
  if (level === undefined) return codec.defaultLevel;
  if (!Number.isInteger(level) || level < codec.minLevel || level > codec.maxLevel) {
    throw new ArgumentError(`${codec.name} level must be an integer in ${codec.minLevel}..${codec.maxLevel}, got ${String(level)}`);
  }
  return level;
}

interface Lz4Binding {
  compressSync(data: Buffer): Buffer;
  uncompressSync(data: Uint8Array): Buffer;
}

interface ZstdBinding {
  compress(data: Buffer, level?: number): Promise<Buffer>;
  decompress(data: Buffer): Promise<Buffer>;
}

const require = createRequire(import.meta.url);
let lz4: Lz4Binding | undefined;
let zstd: ZstdBinding | undefined;

function loadLz4(): Lz4Binding {
  lz4 ??= require('lz4-napi') as Lz4Binding;
  return lz4;
}

function loadZstd(): ZstdBinding {
  if (zstd === undefined) {
    try {
      // The platform package itself: the package's bindings.js first asks process.report for
      // the C library (musl or glibc), which takes tens of milliseconds.
      zstd = require(`@mongodb-js/zstd-${process.platform}-${process.arch}-gnu`) as ZstdBinding;
    } catch {
      try {
        // The package's index.js (1.2.x) calls the binding without the level, so every level
        // would be 3; the binding itself takes (data, level).
        zstd = require('@mongodb-js/zstd/bindings.js') as ZstdBinding;
      } catch {
        zstd = require('@mongodb-js/zstd') as ZstdBinding;
      }
    }
  }
  return zstd;
}

function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Compresses `raw` with one codec; the result may be larger than `raw` (the caller decides). */
export async function compressBytes(codec: CodecId, level: number, raw: Uint8Array): Promise<Buffer> {
  const input = asBuffer(raw);
  switch (codec) {
    case CODEC_IDS.none:
      return input;
    case CODEC_IDS.lz4:
      return loadLz4().compressSync(input);
    case CODEC_IDS.zstd:
      return loadZstd().compress(input, level);
    case CODEC_IDS.zlib:
      return deflateRawSync(input, { level });
  }
}

/**
 * Decompresses one frame's stored bytes into exactly `rawLength` bytes. Any failure, including
 * a different length, throws; the caller turns it into a CorruptFrameError with its frame.
 */
export async function decompressBytes(codec: CodecId, stored: Uint8Array, rawLength: number): Promise<Buffer> {
  const input = asBuffer(stored);
  let raw: Buffer;
  switch (codec) {
    case CODEC_IDS.none:
      raw = input;
      break;
    case CODEC_IDS.lz4:
      // lz4-napi's block format starts with the raw length (u32 little-endian); check it before
      // the decoder sizes its output by it.
      if (input.length < 4 || input.readUInt32LE(0) !== rawLength) {
        throw new Error(`lz4 block announces ${input.length < 4 ? 'nothing' : input.readUInt32LE(0)} bytes`);
      }
      raw = loadLz4().uncompressSync(input);
      break;
    case CODEC_IDS.zstd:
      raw = await loadZstd().decompress(input);
      break;
    case CODEC_IDS.zlib:
      try {
        raw = inflateRawSync(input, { maxOutputLength: Math.max(rawLength, 1) });
      } catch (error) {
        // node:zlib stops at maxOutputLength with a RangeError: here it is bytes that lie.
        if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw new Error(`inflates to more than the announced ${rawLength} bytes`);
        throw error;
      }
      break;
    default:
      throw new Error(`unknown codec ${String(codec)}`);
  }
  if (raw.length !== rawLength) throw new Error(`decompressed to ${raw.length} bytes`);
  return raw;
}

/**
 * Decompresses into exactly `rawLength` bytes with the native codec when there is one, so the
 * stored bytes' own claims (a zstd frame without a content size, an lz4 length) cannot make it
 * allocate more; `into` (rawLength bytes) takes the result then. Without the addon the npm
 * codecs run (decompressBytes) and the length is checked after.
 */
export async function decompressFrame(codec: CodecId, stored: Uint8Array, rawLength: number, into?: Buffer): Promise<Buffer> {
  if (!hasNativeCodec(codec)) return decompressBytes(codec, stored, rawLength);
  const raw = into ?? Buffer.allocUnsafeSlow(rawLength);
  decompressInto(codec, stored, raw);
  return raw;
}

/** Whether compressInto and decompressInto run `codec` (none and zlib: never; zstd and lz4: with the system library). */
export function hasNativeCodec(codec: number): boolean {
  switch (codec) {
    case CODEC_IDS.zstd:
      return codecLibraries().zstd > 0;
    case CODEC_IDS.lz4:
      return codecLibraries().lz4 > 0;
    default:
      return false;
  }
}

/** lz4-napi's framing of a block: the raw length, u32 little-endian, first. */
const LZ4_LENGTH_BYTES = 4;

/**
 * Compresses `raw` into `out` with the native codec (hasNativeCodec(codec) must hold): the
 * stored length, or -1 when the stored bytes would not fit in `out` (give `out` raw.length - 1
 * bytes to learn that the codec cannot make the frame smaller).
 */
export function compressInto(codec: CodecId, level: number, raw: Uint8Array, out: Uint8Array): number {
  switch (codec) {
    case CODEC_IDS.zstd:
      return zstdCompressInto(raw, out, level);
    case CODEC_IDS.lz4: {
      if (out.length < LZ4_LENGTH_BYTES) return -1;
      const n = lz4CompressInto(raw, out.subarray(LZ4_LENGTH_BYTES));
      if (n < 0) return -1;
      new DataView(out.buffer, out.byteOffset, LZ4_LENGTH_BYTES).setUint32(0, raw.length, true);
      return LZ4_LENGTH_BYTES + n;
    }
    default:
      throw new ArgumentError(`codec ${String(codec)} has no native implementation`);
  }
}

/**
 * Decompresses one frame's stored bytes into `out`, which holds exactly the raw length, with
 * the native codec (hasNativeCodec(codec) must hold). Any failure, including a different
 * length, throws; the caller turns it into a CorruptFrameError with its frame.
 */
export function decompressInto(codec: CodecId, stored: Uint8Array, out: Uint8Array): void {
  let n: number;
  switch (codec) {
    case CODEC_IDS.zstd:
      n = zstdDecompressInto(stored, out);
      break;
    case CODEC_IDS.lz4: {
      // The announced length is checked before the block is decoded, as decompressBytes does.
      const announced = stored.length < LZ4_LENGTH_BYTES ? -1 : new DataView(stored.buffer, stored.byteOffset, LZ4_LENGTH_BYTES).getUint32(0, true);
      if (announced !== out.length) throw new Error(`lz4 block announces ${announced < 0 ? 'nothing' : announced} bytes`);
      n = lz4DecompressInto(stored.subarray(LZ4_LENGTH_BYTES), out);
      break;
    }
    default:
      throw new ArgumentError(`codec ${String(codec)} has no native implementation`);
  }
  if (n !== out.length) throw new Error(`decompressed to ${n} bytes`);
}
