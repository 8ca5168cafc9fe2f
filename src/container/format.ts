/**
 * Byte layout of the migstream container (docs/container.md is the specification; this file
 * mirrors it). All integers are big-endian unless noted.
 *
 *   preamble   8 bytes magic "\x89MSZ\r\n\x1a\n", be16 version (2; 1 is read too), be16 flags (0)
 *   frames     header (28 bytes) + stored bytes, numbered 0, 1, 2, … in file order
 *
 *   frame header
 *     0  u8   kind        HEADER 1, META 2, PAYLOAD 3, DATA 4, END 5
 *     1  u8   codec       none 0, lz4 1, zstd 2, zlib 3
 *     2  be16 flags       0
 *     4  be32 number      the frame's position in the file, from 0
 *     8  be32 raw length
 *    12  be32 stored length
 *    16  be32 checksum of the raw bytes      (version 2: XXH64's low 32 bits; 1: XXH32)
 *    20  be32 checksum of the stored bytes   (the same)
 *    24  be32 XXH32 of header bytes 0..23
 */
import { ArgumentError } from '../stream/errors.js';
import { dataChecksum, xxh32, type DataChecksum } from './checksum.js';
import type { CodecId } from '../codecs/registry.js';

/** PNG-style: a high byte, a name, CR LF, ^Z, LF catch 7-bit and newline-mangling transfers. */
export const CONTAINER_MAGIC = Buffer.from([0x89, 0x4d, 0x53, 0x5a, 0x0d, 0x0a, 0x1a, 0x0a]);
/** The version written. Readers read it and version 1, which differs only in its checksum. */
export const CONTAINER_VERSION = 2;
export type ContainerVersion = 1 | 2;
export const READABLE_VERSIONS: readonly ContainerVersion[] = [1, 2];
/** The checksum writers put in frame headers and REF cuts. */
export const WRITTEN_CHECKSUM: DataChecksum = dataChecksum(CONTAINER_VERSION);
export const PREAMBLE_LENGTH = 12;
export const FRAME_HEADER_LENGTH = 28;

export const FrameKind = {
  HEADER: 1,
  META: 2,
  PAYLOAD: 3,
  DATA: 4,
  END: 5,
} as const;
export type FrameKindId = (typeof FrameKind)[keyof typeof FrameKind];

const KIND_NAMES: Record<number, string> = { 1: 'HEADER', 2: 'META', 3: 'PAYLOAD', 4: 'DATA', 5: 'END' };

export function frameKindName(kind: number): string {
  return KIND_NAMES[kind] ?? `kind 0x${kind.toString(16)}`;
}

/**
 * Largest raw or stored frame accepted when reading: bounds the memory a corrupt length can
 * make the reader ask for. Writers stay far below (frames default to 4 MiB).
 */
export const MAX_FRAME_BYTES = 256 * 1024 * 1024;

export interface FrameHeader {
  readonly kind: number;
  readonly codec: number;
  readonly flags: number;
  readonly number: number;
  readonly rawLength: number;
  readonly storedLength: number;
  readonly rawChecksum: number;
  readonly storedChecksum: number;
}

export function encodePreamble(): Buffer {
  const out = Buffer.alloc(PREAMBLE_LENGTH);
  CONTAINER_MAGIC.copy(out, 0);
  out.writeUInt16BE(CONTAINER_VERSION, 8);
  return out;
}

export function encodeFrameHeader(header: FrameHeader): Buffer {
  const out = Buffer.allocUnsafe(FRAME_HEADER_LENGTH);
  out.writeUInt8(header.kind, 0);
  out.writeUInt8(header.codec, 1);
  out.writeUInt16BE(header.flags, 2);
  out.writeUInt32BE(header.number, 4);
  out.writeUInt32BE(header.rawLength, 8);
  out.writeUInt32BE(header.storedLength, 12);
  out.writeUInt32BE(header.rawChecksum, 16);
  out.writeUInt32BE(header.storedChecksum, 20);
  out.writeUInt32BE(xxh32(out.subarray(0, 24)), 24);
  return out;
}

/** Reads a header; `valid` is false when its own checksum does not match. */
export function decodeFrameHeader(bytes: Buffer): { header: FrameHeader; valid: boolean } {
  const header: FrameHeader = {
    kind: bytes.readUInt8(0),
    codec: bytes.readUInt8(1),
    flags: bytes.readUInt16BE(2),
    number: bytes.readUInt32BE(4),
    rawLength: bytes.readUInt32BE(8),
    storedLength: bytes.readUInt32BE(12),
    rawChecksum: bytes.readUInt32BE(16),
    storedChecksum: bytes.readUInt32BE(20),
  };
  return { header, valid: bytes.readUInt32BE(24) === xxh32(bytes.subarray(0, 24)) };
}

/** The HEADER frame's raw bytes: UTF-8 JSON. */
export interface ContainerInfo {
  /** "qemu": page-aware META/PAYLOAD segments; "raw": DATA frames of opaque bytes. */
  mode: 'qemu' | 'raw';
  /** Length of a page payload (cut tag 0 and 1); the stream's TARGET_PAGE_SIZE. */
  pageSize: number;
  codec: string;
  level: number;
  /** Target raw bytes per PAYLOAD or DATA frame. */
  frameBytes: number;
  /** Page references reach at most this many stored pages back; 0: no references. */
  dedupWindowPages: number;
  /** Pages sent several times were reduced to their final content: not the input's bytes. */
  compacted: boolean;
  creator: string;
}

/** The END frame's raw bytes. */
export interface ContainerEnd {
  /** Bytes of the reconstructed stream. */
  streamBytes: number;
  /** Frames before END (so END's own number). */
  frames: number;
  /** XXH32 over the big-endian raw checksums of the META, PAYLOAD and DATA frames (ChecksumChain), in every version. */
  streamChecksum: number;
}

export const END_LENGTH = 16;

export function encodeEnd(end: ContainerEnd): Buffer {
  const out = Buffer.alloc(END_LENGTH);
  out.writeUInt32BE(Math.floor(end.streamBytes / 0x1_0000_0000), 0);
  out.writeUInt32BE(end.streamBytes % 0x1_0000_0000, 4);
  out.writeUInt32BE(end.frames, 8);
  out.writeUInt32BE(end.streamChecksum, 12);
  return out;
}

export function decodeEnd(raw: Buffer): ContainerEnd | undefined {
  if (raw.length !== END_LENGTH) return undefined;
  return {
    streamBytes: raw.readUInt32BE(0) * 0x1_0000_0000 + raw.readUInt32BE(4),
    frames: raw.readUInt32BE(8),
    streamChecksum: raw.readUInt32BE(12),
  };
}

/** Cut tags of a META frame (see Cut). */
export const CutTag = {
  /** A page payload of `pageSize` bytes, next in the PAYLOAD frame. */
  PAGE: 0,
  /** A page equal to a page stored earlier: `distance` stored pages back. */
  REF: 1,
  /** A payload of `length` bytes, next in the PAYLOAD frame. */
  BYTES: 2,
} as const;

/**
 * Where a payload goes back into the stream: after `gap` more META bytes. Encoded as
 * uleb128(gap * 4 + tag), then for REF uleb128(distance) and be32 checksum of the page (the
 * version's data checksum, checked when the reference is resolved), for BYTES uleb128(length).
 */
export type Cut =
  | { readonly tag: typeof CutTag.PAGE; readonly gap: number }
  | { readonly tag: typeof CutTag.REF; readonly gap: number; readonly distance: number; readonly checksum: number }
  | { readonly tag: typeof CutTag.BYTES; readonly gap: number; readonly length: number };

export type { CodecId };

/** Appends uleb128(value) for a non-negative safe integer. */
export function writeUleb(out: number[], value: number): void {
  if (!(Number.isSafeInteger(value) && value >= 0)) throw new ArgumentError(`uleb128 of ${String(value)}`);
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

/** uleb128 at `at`: [value, next offset], or undefined when it runs past `end` or 2^53. */
export function readUleb(bytes: Uint8Array, at: number, end: number): [number, number] | undefined {
  let value = 0;
  let weight = 1;
  for (let i = at; i < end; i++) {
    const byte = bytes[i]!;
    value += (byte & 0x7f) * weight;
    if (byte < 0x80) return Number.isSafeInteger(value) ? [value, i + 1] : undefined;
    weight *= 0x80;
    if (weight > 2 ** 56) return undefined;
  }
  return undefined;
}
