/**
 * XXH32 (seed 0), the checksum of container frames: the published algorithm
 * (github.com/Cyan4973/xxHash, doc/xxhash_spec.md), so other tools can verify a frame.
 *
 * Why not node:crypto: SHA-256 runs at memory speed only with SHA-NI, and zlib's crc32 is
 * Node 22+. Frames are hashed by the native addon (native/pages.cc) when it is built: the same
 * speed from a worker's first frame on, where this loop runs unoptimized for its first
 * megabytes. The loop here (~7 GB/s once optimized) hashes small inputs, whose call into the
 * addon would cost more than the hashing, and everything when the addon is not built.
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
