/**
 * The container's checksums (docs/container.md, "Checksums"):
 *
 *   - the checksum of a frame's bytes (raw and stored) and of a referenced page, by container
 *     version (DataChecksum): version 1 XXH32, version 2 the low 32 bits of XXH64. Both are the
 *     published algorithms (github.com/Cyan4973/xxHash, doc/xxhash_spec.md), so other tools can
 *     verify a frame. Version 2 exists for speed: on 64-bit machines XXH64 hashes faster (npm
 *     run bench:hash: 10.5 against 7.2 GB/s), and a restore hashes every byte it writes.
 *   - XXH32 of each frame header and of the END frame's chain, in every version: a few bytes.
 *
 * Why not node:crypto: SHA-256 runs at memory speed only with SHA-NI, and zlib's crc32 is
 * Node 22+. Frames are hashed by the native addon (native/pages.cc) when it is built: the same
 * speed from a worker's first frame on, where a loop here runs unoptimized for its first
 * megabytes. The XXH32 loop here (~7 GB/s once optimized) hashes small inputs, whose call into
 * the addon would cost more than the hashing; the XXH64 here (BigInt, ~50 MB/s)
 * only stands in when the addon is not built, which `npm install` does not allow to happen.
 */
import { endianness } from 'node:os';
import { nativeBinding, type NativeBinding } from '../native/binding.js';

const P1 = 2654435761 | 0;
const P2 = 2246822519 | 0;
const P3 = 3266489917 | 0;
const P4 = 668265263;
const P5 = 374761393;

// Uint32Array reads are host-endian; XXH32 reads little-endian words.
const LITTLE_ENDIAN = endianness() === 'LE';

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function round(acc: number, lane: number): number {
  return Math.imul(rotl((acc + Math.imul(lane, P2)) | 0, 13), P1);
}

/** Reads the 16-byte stripes of `data` from `from`, returns the index after the last full one. */
function stripes(data: Uint8Array, from: number, end: number, v: Int32Array): number {
  let v1 = v[0]!;
  let v2 = v[1]!;
  let v3 = v[2]!;
  let v4 = v[3]!;
  let i = from;
  const at = data.byteOffset + from;
  if (LITTLE_ENDIAN && (at & 3) === 0) {
    const words = new Uint32Array(data.buffer, at, (end - from) >>> 2);
    let w = 0;
    const last = words.length - 4;
    // round() written out: this loop is most of the hashing time, and a worker runs it before
    // the optimizer has inlined anything.
    for (; w <= last; w += 4) {
      v1 = (v1 + Math.imul(words[w]!, P2)) | 0;
      v1 = Math.imul((v1 << 13) | (v1 >>> 19), P1);
      v2 = (v2 + Math.imul(words[w + 1]!, P2)) | 0;
      v2 = Math.imul((v2 << 13) | (v2 >>> 19), P1);
      v3 = (v3 + Math.imul(words[w + 2]!, P2)) | 0;
      v3 = Math.imul((v3 << 13) | (v3 >>> 19), P1);
      v4 = (v4 + Math.imul(words[w + 3]!, P2)) | 0;
      v4 = Math.imul((v4 << 13) | (v4 >>> 19), P1);
    }
    i = from + w * 4;
  } else {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (; i + 16 <= end; i += 16) {
      v1 = round(v1, view.getUint32(i, true));
      v2 = round(v2, view.getUint32(i + 4, true));
      v3 = round(v3, view.getUint32(i + 8, true));
      v4 = round(v4, view.getUint32(i + 12, true));
    }
  }
  v[0] = v1;
  v[1] = v2;
  v[2] = v3;
  v[3] = v4;
  return i;
}

function finish(h: number, data: Uint8Array, from: number, end: number): number {
  let i = from;
  for (; i + 4 <= end; i += 4) {
    const lane = data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24);
    h = Math.imul(rotl((h + Math.imul(lane, P3)) | 0, 17), P4);
  }
  for (; i < end; i++) h = Math.imul(rotl((h + Math.imul(data[i]!, P5)) | 0, 11), P1);
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

function seedLanes(): Int32Array {
  return Int32Array.of((P1 + P2) | 0, P2, 0, -P1 | 0);
}

function mergeLanes(v: Int32Array): number {
  return (rotl(v[0]!, 1) + rotl(v[1]!, 7) + rotl(v[2]!, 12) + rotl(v[3]!, 18)) | 0;
}

/** Inputs from this length on are hashed by the addon. */
const NATIVE_FROM = 256;
let native: NativeBinding | null | undefined;

function addon(): NativeBinding | null {
  if (native === undefined) {
    try {
      native = nativeBinding();
    } catch {
      native = null;
    }
  }
  return native;
}

/** XXH32 of `data` with seed 0, as an unsigned 32-bit number. */
export function xxh32(data: Uint8Array): number {
  const length = data.length;
  if (length >= NATIVE_FROM) {
    const binding = addon();
    if (binding !== null) return binding.xxh32(data, 0);
  }
  if (length < 16) return finish((P5 + length) | 0, data, 0, length);
  const v = seedLanes();
  const i = stripes(data, 0, length, v);
  return finish((mergeLanes(v) + length) | 0, data, i, length);
}

/** XXH32 over data that arrives in pieces; digest() equals xxh32 of the concatenation. */
export class Xxh32Stream {
  private readonly v = seedLanes();
  private readonly tail = new Uint8Array(16);
  private tailLength = 0;
  private total = 0;

  update(data: Uint8Array): this {
    this.total += data.length;
    let i = 0;
    if (this.tailLength > 0) {
      const take = Math.min(16 - this.tailLength, data.length);
      this.tail.set(data.subarray(0, take), this.tailLength);
      this.tailLength += take;
      i = take;
      if (this.tailLength < 16) return this;
      stripes(this.tail, 0, 16, this.v);
      this.tailLength = 0;
    }
    const end = i + ((data.length - i) & ~15);
    if (end > i) stripes(data, i, end, this.v);
    this.tail.set(data.subarray(end), 0);
    this.tailLength = data.length - end;
    return this;
  }

  /** The checksum of everything so far (the stream may go on). */
  digest(): number {
    const h = this.total >= 16 ? mergeLanes(this.v) : P5;
    // The length is added modulo 2^32, as XXH32 does for inputs of 4 GiB and more.
    return finish((h + (this.total % 0x1_0000_0000)) | 0, this.tail, 0, this.tailLength);
  }

  /** Bytes hashed so far. */
  get length(): number {
    return this.total;
  }
}

/**
 * The END frame's checksum: XXH32 over the big-endian raw checksums of the data frames (META,
 * PAYLOAD, DATA), in file order. The frames' own checksums vouch for their bytes; the chain
 * vouches that these are the frames, in the order, the compressor wrote, at four bytes of main
 * thread work per frame.
 */
export class ChecksumChain {
  private readonly hash = new Xxh32Stream();
  private readonly word = Buffer.alloc(4);

  add(rawChecksum: number): void {
    this.word.writeUInt32BE(rawChecksum >>> 0, 0);
    this.hash.update(this.word);
  }

  get value(): number {
    return this.hash.digest();
  }
}

// --- XXH64 ------------------------------------------------------------------------------------

const M64 = (1n << 64n) - 1n;
const Q1 = 0x9e3779b185ebca87n;
const Q2 = 0xc2b2ae3d27d4eb4fn;
const Q3 = 0x165667b19e3779f9n;
const Q4 = 0x85ebca77c2b2ae63n;
const Q5 = 0x27d4eb2f165667c5n;

function rotl64(x: bigint, r: bigint): bigint {
  return ((x << r) | (x >> (64n - r))) & M64;
}

function round64(acc: bigint, lane: bigint): bigint {
  return (rotl64((acc + lane * Q2) & M64, 31n) * Q1) & M64;
}

function merge64(acc: bigint, lane: bigint): bigint {
  return ((acc ^ round64(0n, lane)) * Q1 + Q4) & M64;
}

/** XXH64 (seed 0) in plain TypeScript: what native/pages.cc computes, at a fraction of its speed. */
export function xxh64Slow(data: Uint8Array): bigint {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const length = data.length;
  let p = 0;
  let h: bigint;
  if (length >= 32) {
    let v1 = (Q1 + Q2) & M64;
    let v2 = Q2;
    let v3 = 0n;
    let v4 = -Q1 & M64;
    for (; p + 32 <= length; p += 32) {
      v1 = round64(v1, view.getBigUint64(p, true));
      v2 = round64(v2, view.getBigUint64(p + 8, true));
      v3 = round64(v3, view.getBigUint64(p + 16, true));
      v4 = round64(v4, view.getBigUint64(p + 24, true));
    }
    h = (rotl64(v1, 1n) + rotl64(v2, 7n) + rotl64(v3, 12n) + rotl64(v4, 18n)) & M64;
    h = merge64(merge64(merge64(merge64(h, v1), v2), v3), v4);
  } else {
    h = Q5;
  }
  h = (h + BigInt(length)) & M64;
  for (; p + 8 <= length; p += 8) {
    h ^= round64(0n, view.getBigUint64(p, true));
    h = (rotl64(h, 27n) * Q1 + Q4) & M64;
  }
  if (p + 4 <= length) {
    h ^= (BigInt(view.getUint32(p, true)) * Q1) & M64;
    h = (rotl64(h, 23n) * Q2 + Q3) & M64;
    p += 4;
  }
  for (; p < length; p++) {
    h ^= (BigInt(data[p]!) * Q5) & M64;
    h = (rotl64(h, 11n) * Q1) & M64;
  }
  h ^= h >> 33n;
  h = (h * Q2) & M64;
  h ^= h >> 29n;
  h = (h * Q3) & M64;
  return h ^ (h >> 32n);
}

/** The low 32 bits of XXH64 (seed 0) of `data`, as an unsigned number. */
export function xxh64Low32(data: Uint8Array): number {
  const binding = addon();
  if (binding !== null) return binding.xxh64Low32(data);
  return Number(xxh64Slow(data) & 0xffff_ffffn);
}

// --- the checksum of frame bytes, by container version ------------------------------------

/** The checksum of a frame's bytes and of a referenced page in one container version. */
export interface DataChecksum {
  /** The container version that uses it (also its number for the addon's frameDecode). */
  readonly version: 1 | 2;
  /** For messages. */
  readonly name: string;
  of(data: Uint8Array): number;
}

const DATA_CHECKSUMS: Record<1 | 2, DataChecksum> = {
  1: { version: 1, name: 'XXH32', of: xxh32 },
  2: { version: 2, name: 'XXH64 (low 32 bits)', of: xxh64Low32 },
};

/** The data checksum of container `version` (1 or 2; format.ts checks the version first). */
export function dataChecksum(version: 1 | 2): DataChecksum {
  return DATA_CHECKSUMS[version];
}
