/**
 * Loads the C++ addon (native/) once per thread and holds the argument checks every wrapper in
 * this folder runs before calling it. The addon checks again and throws the same ArgumentError
 * class, handed over here by init(); a missing build is a NativeAddonError naming the fix.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { MigstreamError, registerErrorClasses } from '../errors.js';
import { ArgumentError } from '../stream/errors.js';

/** The addon could not be loaded (not built, or built for another Node). */
export class NativeAddonError extends MigstreamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_NATIVE_ADDON', message, options);
  }
}
registerErrorClasses({ NativeAddonError });

/** The raw addon (native/addon.cc, native/bind_*.cc): no defaults, and every argument checked again in C++. */
export interface NativeBinding {
  init(argumentError: new (message: string) => Error): void;
  liveInstances(): number;
  hbitmapBytes(bits: number): number;
  hbSet(words: ArrayBuffer, bits: number, start: number, count: number): number;
  hbReset(words: ArrayBuffer, bits: number, start: number, count: number): number;
  hbGet(words: ArrayBuffer, bits: number, index: number): boolean;
  hbCount(words: ArrayBuffer, bits: number, start: number, count: number): number;
  hbNextSet(words: ArrayBuffer, bits: number, from: number, count: number): number;
  hbNextZero(words: ArrayBuffer, bits: number, from: number, count: number): number;
  hbDirtyAreas(words: ArrayBuffer, bits: number, from: number, count: number, maxLength: number, out: Float64Array): number;
  hbMerge(words: ArrayBuffer, bits: number, other: ArrayBuffer, otherBits: number): number;
  hbCopy(words: ArrayBuffer, bits: number, source: ArrayBuffer, sourceBits: number): number;
  hbExport(words: ArrayBuffer, bits: number, out: Uint8Array): void;
  hbImport(words: ArrayBuffer, bits: number, bytes: Uint8Array): number;
  isAllZero(bytes: Uint8Array): boolean;
  findZeroPages(bytes: Uint8Array, pageSize: number, out: Uint8Array): number;
  hashPages(bytes: Uint8Array, pageSize: number, out: BigUint64Array): void;
  xxh32(bytes: Uint8Array, seed: number): number;
  xxh64Low32(bytes: Uint8Array): number;
  codecVersions(): { zstd: number; lz4: number };
  /** Bytes written to dst, or -1 when the output does not fit. */
  zstdCompress(src: Uint8Array, dst: Uint8Array, level: number): number;
  zstdDecompress(src: Uint8Array, dst: Uint8Array): number;
  lz4Compress(src: Uint8Array, dst: Uint8Array): number;
  lz4Decompress(src: Uint8Array, dst: Uint8Array): number;
  frameDecode(codec: number, stored: Uint8Array, raw: Uint8Array, storedChecksum: number, rawChecksum: number, checksum: number): Promise<{ status: number; actual: number; message: string }>;
  ringCopy(ring: Uint8Array, at: number, src: Uint8Array): void;
  dedupStore(ring: Uint8Array, table: Uint8Array, positions: Float64Array, pageSize: number, stored: number, write: number, page: Uint8Array, checksum: Uint32Array): number;
  readerGone(fd: number): boolean;
  widenPipe(fd: number, bytes: number): number;
  limitUnsent(fd: number, bytes: number): number;
  writeRanges(fd: number, buffers: readonly Uint8Array[], ranges: Float64Array, count: number): Promise<number>;
}

const ADDON_FILES = ['../../build/Release/migstream_native.node', '../../build/Debug/migstream_native.node'];

let binding: NativeBinding | undefined;

/** Loads the addon (once per thread) and hands it the error class to throw. */
export function nativeBinding(): NativeBinding {
  if (binding !== undefined) return binding;
  // src/native/ and dist/native/ both sit two levels below the package root.
  const require = createRequire(import.meta.url);
  const failures: string[] = [];
  for (const file of ADDON_FILES) {
    const path = fileURLToPath(new URL(file, import.meta.url));
    let loaded: NativeBinding;
    try {
      loaded = require(path) as NativeBinding;
    } catch (error) {
      failures.push(`${path}: ${(error as Error).message.split('\n', 1)[0]}`);
      continue;
    }
    loaded.init(ArgumentError);
    binding = loaded;
    return loaded;
  }
  throw new NativeAddonError(`migstream's native addon is not built (run "npm install" or "npx node-gyp rebuild" in the package): ${failures.join('; ')}`);
}

// --- argument checks ------------------------------------------------------------------------

/** A short name of a bad value for an error message. */
export function describe(value: unknown): string {
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value === null) return 'null';
  if (typeof value === 'object') return Object.prototype.toString.call(value).slice(8, -1);
  return typeof value;
}

/** An integer in [min, max], else an ArgumentError naming `where` and `name`. */
export function checkInteger(where: string, name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ArgumentError(`${where}: ${name} must be an integer in ${min}..${max}, got ${describe(value)}`);
  }
  return value;
}
