/**
 * Builds migstream container bytes by hand, from docs/container.md's tables alone: nothing here
 * comes from src/compress, so a bug in the production writer cannot hide in the expected bytes.
 * XXH32 and XXH64 (the algorithms the doc names) are written out below from the published
 * specification (github.com/Cyan4973/xxHash, doc/xxhash_spec.md); the codecs are the npm
 * packages and node:zlib.
 *
 *   preamble()                      12 bytes: magic, be16 version, be16 flags
 *   frameHeader(spec) / frame(spec) one 28-byte header (+ stored bytes), any field overridable
 *   headerFrame, metaFrame, payloadFrame, dataFrame, endFrame   one function per frame kind
 *   cutList(cuts)                   a META frame's leading cut list
 *   buildContainer(spec)            a whole container, with the stream it rebuilds
 *
 * Every function takes overrides so a test can build the hostile variants (a wrong checksum,
 * a length past the bound, an unknown kind) the same way as the good ones.
 */
import { createRequire } from 'node:module';
import { deflateRawSync } from 'node:zlib';

// --- the doc's constants ------------------------------------------------------------------------

/** Preamble magic: "\x89MSZ\r\n\x1a\n". */
export const MAGIC = Buffer.from([0x89, 0x4d, 0x53, 0x5a, 0x0d, 0x0a, 0x1a, 0x0a]);
export const PREAMBLE_BYTES = 12;
export const HEADER_BYTES = 28;
export const END_RAW_BYTES = 16;
/** Readers accept at most this many raw or stored bytes per frame. */
export const FRAME_LIMIT = 256 * 1024 * 1024;

export const Kind = { HEADER: 1, META: 2, PAYLOAD: 3, DATA: 4, END: 5 } as const;
export const Codec = { none: 0, lz4: 1, zstd: 2, zlib: 3 } as const;
export type CodecNumber = (typeof Codec)[keyof typeof Codec];
export const Tag = { PAGE: 0, REF: 1, BYTES: 2 } as const;

// --- XXH32 and XXH64 (seed 0 unless given) --------------------------------------------------------

const P32_1 = 0x9e3779b1;
const P32_2 = 0x85ebca77;
const P32_3 = 0xc2b2ae3d;
const P32_4 = 0x27d4eb2f;
const P32_5 = 0x165667b1;

const rotl32 = (x: number, r: number): number => ((x << r) | (x >>> (32 - r))) >>> 0;
const mul32 = (a: number, b: number): number => Math.imul(a, b) >>> 0;
const add32 = (...xs: number[]): number => xs.reduce((s, x) => (s + x) >>> 0, 0);
const le32 = (d: Uint8Array, i: number): number => (d[i]! | (d[i + 1]! << 8) | (d[i + 2]! << 16) | (d[i + 3]! << 24)) >>> 0;

/** XXH32 of `data`, as an unsigned 32-bit number. */
export function xxh32(data: Uint8Array, seed = 0): number {
  const round = (acc: number, lane: number): number => mul32(rotl32(add32(acc, mul32(lane, P32_2)), 13), P32_1);
  const len = data.length;
  let i = 0;
  let h: number;
  if (len >= 16) {
    let v1 = add32(seed, P32_1, P32_2);
    let v2 = add32(seed, P32_2);
    let v3 = seed >>> 0;
    let v4 = (seed - P32_1) >>> 0;
    for (; i + 16 <= len; i += 16) {
      v1 = round(v1, le32(data, i));
      v2 = round(v2, le32(data, i + 4));
      v3 = round(v3, le32(data, i + 8));
      v4 = round(v4, le32(data, i + 12));
    }
    h = add32(rotl32(v1, 1), rotl32(v2, 7), rotl32(v3, 12), rotl32(v4, 18));
  } else {
    h = add32(seed, P32_5);
  }
  h = add32(h, len);
  for (; i + 4 <= len; i += 4) h = mul32(rotl32(add32(h, mul32(le32(data, i), P32_3)), 17), P32_4);
  for (; i < len; i++) h = mul32(rotl32(add32(h, mul32(data[i]!, P32_5)), 11), P32_1);
  h = mul32(h ^ (h >>> 15), P32_2);
  h = mul32(h ^ (h >>> 13), P32_3);
  return (h ^ (h >>> 16)) >>> 0;
}

const MASK64 = (1n << 64n) - 1n;
const P64_1 = 0x9e3779b185ebca87n;
const P64_2 = 0xc2b2ae3d27d4eb4fn;
const P64_3 = 0x165667b19e3779f9n;
const P64_4 = 0x85ebca77c2b2ae63n;
const P64_5 = 0x27d4eb2f165667c5n;

const rotl64 = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & MASK64;
const le64 = (d: Uint8Array, i: number): bigint => BigInt(le32(d, i)) | (BigInt(le32(d, i + 4)) << 32n);

/** XXH64 of `data`, as an unsigned 64-bit bigint. */
export function xxh64(data: Uint8Array, seed = 0n): bigint {
  const round = (acc: bigint, lane: bigint): bigint => (rotl64((acc + lane * P64_2) & MASK64, 31n) * P64_1) & MASK64;
  const merge = (acc: bigint, v: bigint): bigint => ((acc ^ round(0n, v)) * P64_1 + P64_4) & MASK64;
  const len = data.length;
  let i = 0;
  let h: bigint;
  if (len >= 32) {
    let v1 = (seed + P64_1 + P64_2) & MASK64;
    let v2 = (seed + P64_2) & MASK64;
    let v3 = seed & MASK64;
    let v4 = (seed - P64_1) & MASK64;
    for (; i + 32 <= len; i += 32) {
      v1 = round(v1, le64(data, i));
      v2 = round(v2, le64(data, i + 8));
      v3 = round(v3, le64(data, i + 16));
      v4 = round(v4, le64(data, i + 24));
    }
    h = (rotl64(v1, 1n) + rotl64(v2, 7n) + rotl64(v3, 12n) + rotl64(v4, 18n)) & MASK64;
    for (const v of [v1, v2, v3, v4]) h = merge(h, v);
  } else {
    h = (seed + P64_5) & MASK64;
  }
  h = (h + BigInt(len)) & MASK64;
  for (; i + 8 <= len; i += 8) h = (rotl64(h ^ round(0n, le64(data, i)), 27n) * P64_1 + P64_4) & MASK64;
  if (i + 4 <= len) {
    h = (rotl64(h ^ ((BigInt(le32(data, i)) * P64_1) & MASK64), 23n) * P64_2 + P64_3) & MASK64;
    i += 4;
  }
  for (; i < len; i++) h = (rotl64(h ^ ((BigInt(data[i]!) * P64_5) & MASK64), 11n) * P64_1) & MASK64;
  h = ((h ^ (h >> 33n)) * P64_2) & MASK64;
  h = ((h ^ (h >> 29n)) * P64_3) & MASK64;
  return h ^ (h >> 32n);
}

/** The data checksum: version 2 the low 32 bits of XXH64, version 1 XXH32 (both seed 0). */
export function dataChecksum(data: Uint8Array, version: 1 | 2 = 2): number {
  return version === 1 ? xxh32(data) : Number(xxh64(data) & 0xffff_ffffn);
}

// --- byte helpers --------------------------------------------------------------------------------

const be16 = (v: number): Buffer => Buffer.from([(v >>> 8) & 0xff, v & 0xff]);
const be32 = (v: number): Buffer => Buffer.from([(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
const be64 = (v: number | bigint): Buffer => {
  const big = BigInt(v);
  return Buffer.concat([be32(Number((big >> 32n) & 0xffff_ffffn)), be32(Number(big & 0xffff_ffffn))]);
};

/** uleb128: 7 bits at a time, low first, high bit set on every byte but the last. */
export function uleb(value: number): Buffer {
  const out: number[] = [];
  let v = BigInt(value);
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? low | 0x80 : low);
  } while (v > 0n);
  return Buffer.from(out);
}

/** Lower-case hex without spaces, for comparing with hex written in a test. */
export const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
/** Bytes from hex written with any spacing. */
export const fromHex = (text: string): Buffer => Buffer.from(text.replace(/[\s_]/g, ''), 'hex');

// --- preamble and frame header ----------------------------------------------------------------

export interface PreambleSpec {
  magic?: Uint8Array;
  version?: number;
  flags?: number;
}

/** The 12-byte preamble: magic, be16 version (2), be16 flags (0). */
export function preamble(spec: PreambleSpec = {}): Buffer {
  return Buffer.concat([Buffer.from(spec.magic ?? MAGIC), be16(spec.version ?? 2), be16(spec.flags ?? 0)]);
}

export interface FrameSpec {
  kind: number;
  number: number;
  /** The bytes after decompression. */
  raw: Uint8Array;
  /** The bytes that follow the header: `raw` for codec none. */
  stored?: Uint8Array;
  codec?: number;
  flags?: number;
  /** Which data checksum the frame carries (the container version). */
  version?: 1 | 2;
  // Overrides, for hostile frames: each replaces the field the doc's rules would give.
  rawLength?: number;
  storedLength?: number;
  rawChecksum?: number;
  storedChecksum?: number;
  headerChecksum?: number;
}

/** The 28-byte frame header of the table "Frame header (28 bytes)". */
export function frameHeader(spec: FrameSpec): Buffer {
  const stored = spec.stored ?? spec.raw;
  const version = spec.version ?? 2;
  const first24 = Buffer.concat([
    Buffer.from([spec.kind, spec.codec ?? Codec.none]),
    be16(spec.flags ?? 0),
    be32(spec.number),
    be32(spec.rawLength ?? spec.raw.length),
    be32(spec.storedLength ?? stored.length),
    be32(spec.rawChecksum ?? dataChecksum(spec.raw, version)),
    be32(spec.storedChecksum ?? dataChecksum(stored, version)),
  ]);
  return Buffer.concat([first24, be32(spec.headerChecksum ?? xxh32(first24))]);
}

/** A whole frame: its header, then its stored bytes. */
export function frame(spec: FrameSpec): Buffer {
  return Buffer.concat([frameHeader(spec), Buffer.from(spec.stored ?? spec.raw)]);
}

type FrameOptions = Omit<FrameSpec, 'kind' | 'number' | 'raw'>;

// --- one function per frame kind -------------------------------------------------------------------

/** The HEADER frame's JSON members, in the doc's table order. */
export interface Info {
  mode: 'qemu' | 'raw';
  pageSize: number;
  codec: string;
  level: number;
  frameBytes: number;
  dedupWindowPages: number;
  compacted: boolean;
  creator: string;
}

/** The HEADER frame's raw bytes: UTF-8 JSON, members in the doc's order. */
export function headerJson(info: Info): Buffer {
  const { mode, pageSize, codec, level, frameBytes, dedupWindowPages, compacted, creator } = info;
  return Buffer.from(JSON.stringify({ mode, pageSize, codec, level, frameBytes, dedupWindowPages, compacted, creator }), 'utf8');
}

/** HEADER: always frame 0, codec none. */
export function headerFrame(info: Info | Uint8Array, options: FrameOptions & { number?: number } = {}): Buffer {
  const raw = info instanceof Uint8Array ? info : headerJson(info);
  return frame({ ...options, kind: Kind.HEADER, number: options.number ?? 0, raw });
}

/** A cut as the builder takes it: PAGE and BYTES carry their payload, REF its distance. */
export type Cut = { tag: 'page'; gap: number; data: Uint8Array } | { tag: 'ref'; gap: number; distance: number; checksum?: number } | { tag: 'bytes'; gap: number; data: Uint8Array };

/** The cut list that leads a META frame: uleb128 count, then per cut uleb128(gap × 4 + tag) and its arguments. */
export function cutList(cuts: readonly Cut[], refChecksums: readonly number[] = []): Buffer {
  const parts = [uleb(cuts.length)];
  let ref = 0;
  for (const cut of cuts) {
    switch (cut.tag) {
      case 'page':
        parts.push(uleb(cut.gap * 4 + Tag.PAGE));
        break;
      case 'ref': {
        const checksum = cut.checksum ?? refChecksums[ref];
        if (checksum === undefined) throw new Error('a REF cut needs its page checksum');
        ref++;
        parts.push(uleb(cut.gap * 4 + Tag.REF), uleb(cut.distance), be32(checksum));
        break;
      }
      case 'bytes':
        parts.push(uleb(cut.gap * 4 + Tag.BYTES), uleb(cut.data.length));
        break;
    }
  }
  return Buffer.concat(parts);
}

/** META: the cut list, then the structure bytes. */
export function metaRaw(cuts: readonly Cut[], structure: Uint8Array, refChecksums: readonly number[] = []): Buffer {
  return Buffer.concat([cutList(cuts, refChecksums), Buffer.from(structure)]);
}

export function metaFrame(number: number, raw: Uint8Array, options: FrameOptions = {}): Buffer {
  return frame({ ...options, kind: Kind.META, number, raw });
}

/** PAYLOAD: the PAGE and BYTES payloads of the META before it, back to back. */
export function payloadRaw(cuts: readonly Cut[]): Buffer {
  return Buffer.concat(cuts.flatMap((cut) => (cut.tag === 'ref' ? [] : [Buffer.from(cut.data)])));
}

export function payloadFrame(number: number, raw: Uint8Array, options: FrameOptions = {}): Buffer {
  return frame({ ...options, kind: Kind.PAYLOAD, number, raw });
}

/** DATA: stream bytes as they are (mode raw). */
export function dataFrame(number: number, raw: Uint8Array, options: FrameOptions = {}): Buffer {
  return frame({ ...options, kind: Kind.DATA, number, raw });
}

/** END's 16 raw bytes: be64 stream bytes, be32 frames before END, be32 checksum chain. */
export function endRaw(streamBytes: number, frames: number, chain: number): Buffer {
  return Buffer.concat([be64(streamBytes), be32(frames), be32(chain)]);
}

/** The checksum chain: XXH32 over the be32 raw checksums of every META, PAYLOAD and DATA frame. */
export function checksumChain(rawChecksums: readonly number[]): number {
  return xxh32(Buffer.concat(rawChecksums.map(be32)));
}

/** END: always last, codec none; its number is the count of frames before it. */
export function endFrame(number: number, streamBytes: number, chain: number, options: FrameOptions & { frames?: number } = {}): Buffer {
  return frame({ ...options, kind: Kind.END, number, raw: endRaw(streamBytes, options.frames ?? number, chain) });
}

// --- codecs ------------------------------------------------------------------------------------

const require = createRequire(import.meta.url);

/**
 * Stored bytes of `raw` under a codec, from the codec's own package: lz4 the lz4-napi block
 * format (u32 little-endian raw length, then an LZ4 block), zstd one zstd frame, zlib raw deflate.
 */
export async function encodeWith(codec: CodecNumber, raw: Uint8Array, level = 3): Promise<Buffer> {
  const input = Buffer.from(raw);
  switch (codec) {
    case Codec.none:
      return input;
    case Codec.lz4:
      return (require('lz4-napi') as { compressSync(data: Buffer): Buffer }).compressSync(input);
    case Codec.zstd:
      return (require('@mongodb-js/zstd') as { compress(data: Buffer, level?: number): Promise<Buffer> }).compress(input, level);
    case Codec.zlib:
      return deflateRawSync(input, { level: Math.min(Math.max(level, 1), 9) });
  }
}

// --- a whole container -------------------------------------------------------------------------

/** A data frame's bytes in another codec: what `encodeWith` gave for its raw bytes. */
export interface Stored {
  codec: number;
  stored: Uint8Array;
}

export type Part =
  /** A segment: META (+ PAYLOAD when its cuts take payload bytes). */
  | { segment: { cuts: readonly Cut[]; structure: Uint8Array }; meta?: Stored; payload?: Stored }
  /** A DATA frame (mode raw). */
  | { data: Uint8Array; stored?: Stored };

export interface ContainerSpec {
  info: Info;
  parts: readonly Part[];
  version?: 1 | 2;
}

export interface BuiltFrame {
  kind: number;
  number: number;
  /** Byte offset of the frame header in the container. */
  offset: number;
  codec: number;
  raw: Buffer;
  stored: Buffer;
}

export interface Built {
  bytes: Buffer;
  /** The stream the container rebuilds. */
  stream: Buffer;
  frames: BuiltFrame[];
}

/**
 * A whole container: preamble, HEADER, the parts' frames numbered in file order, END with the
 * stream length and the chain. REF cuts resolve against the pages stored so far (pages are
 * numbered as PAGE cuts store them; distance d is the page d before the next stored page), and
 * their checksum, when not given, is the data checksum of that page.
 */
export function buildContainer(spec: ContainerSpec): Built {
  const version = spec.version ?? 2;
  const frames: BuiltFrame[] = [];
  const chunks: Buffer[] = [preamble({ version })];
  let offset = PREAMBLE_BYTES;
  const add = (kind: number, raw: Buffer, stored?: Stored): void => {
    const codec = stored?.codec ?? Codec.none;
    const storedBytes = Buffer.from(stored?.stored ?? raw);
    const bytes = frame({ kind, number: frames.length, raw, stored: storedBytes, codec, version });
    frames.push({ kind, number: frames.length, offset, codec, raw, stored: storedBytes });
    chunks.push(bytes);
    offset += bytes.length;
  };
  add(Kind.HEADER, headerJson(spec.info));
  const pages: Buffer[] = [];
  const stream: Buffer[] = [];
  const chain: number[] = [];
  for (const part of spec.parts) {
    if ('data' in part) {
      const raw = Buffer.from(part.data);
      add(Kind.DATA, raw, part.stored);
      chain.push(dataChecksum(raw, version));
      stream.push(raw);
      continue;
    }
    const { cuts, structure } = part.segment;
    const refChecksums: number[] = [];
    let from = 0;
    for (const cut of cuts) {
      stream.push(Buffer.from(structure.subarray(from, from + cut.gap)));
      from += cut.gap;
      if (cut.tag === 'ref') {
        const page = pages[pages.length - cut.distance];
        if (page === undefined) throw new Error(`REF ${cut.distance} back: only ${pages.length} pages stored`);
        refChecksums.push(cut.checksum ?? dataChecksum(page, version));
        stream.push(page);
      } else {
        const data = Buffer.from(cut.data);
        if (cut.tag === 'page') {
          if (data.length !== spec.info.pageSize) throw new Error(`PAGE cut of ${data.length} bytes, pageSize ${spec.info.pageSize}`);
          pages.push(data);
        }
        stream.push(data);
      }
    }
    stream.push(Buffer.from(structure.subarray(from)));
    const meta = metaRaw(cuts, structure, refChecksums);
    add(Kind.META, meta, part.meta);
    chain.push(dataChecksum(meta, version));
    const payload = payloadRaw(cuts);
    if (payload.length > 0) {
      add(Kind.PAYLOAD, payload, part.payload);
      chain.push(dataChecksum(payload, version));
    }
  }
  const whole = Buffer.concat(stream);
  add(Kind.END, endRaw(whole.length, frames.length, checksumChain(chain)));
  return { bytes: Buffer.concat(chunks), stream: whole, frames };
}
