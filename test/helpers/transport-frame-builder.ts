/**
 * Builds the transport's wire frames by hand, from docs/transport.md's "Frames" table alone:
 * nothing here comes from src/tls, so a bug in the production encoders cannot hide in the
 * expected bytes. XXH64 (the END digest's hash) is the hand-written one of container-builder.ts.
 *
 *   every frame     u32 length (of type + body) | u8 type | body, big-endian
 *   open, accept, refuse, data, end, done, abort, ping   one function per frame type
 *   frame(type, body)   any frame, for hostile ones (unknown type, a body of the wrong size)
 *   streamDigest(frames) END's digest of the frames' raw bytes
 */
import { xxh64 } from './container-builder.js';

export const Type = { OPEN: 1, ACCEPT: 2, REFUSE: 3, DATA: 4, END: 5, DONE: 6, ABORT: 7, PING: 8 } as const;
export const MAGIC = Buffer.from('MGTX', 'latin1');
export const VERSION = 2;
export const SESSION_ID_BYTES = 16;
/** A frame's length (type + body) is at most this. */
export const FRAME_LIMIT = 64 * 1024 * 1024;
/** Codec bytes of OPEN and DATA. */
export const WireCodec = { none: 0, lz4: 1, zstd: 2, zlib: 3 } as const;

const u8 = (v: number): Buffer => Buffer.from([v & 0xff]);
const u16 = (v: number): Buffer => Buffer.from([(v >>> 8) & 0xff, v & 0xff]);
const u32 = (v: number): Buffer => Buffer.from([(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
const u64 = (v: number | bigint): Buffer => {
  const big = BigInt(v);
  return Buffer.concat([u32(Number((big >> 32n) & 0xffff_ffffn)), u32(Number(big & 0xffff_ffffn))]);
};

/** Any frame: u32 length (1 + body, or `length` to lie about it), u8 type, body. */
export function frame(type: number, body: Uint8Array = Buffer.alloc(0), length?: number): Buffer {
  return Buffer.concat([u32(length ?? 1 + body.length), u8(type), Buffer.from(body)]);
}

export interface OpenSpec {
  sessionId: Uint8Array;
  channels: number;
  index: number;
  codec: number;
  version?: number;
  magic?: Uint8Array;
}

/** OPEN: "MGTX", u16 version, 16 B session id, u16 channels, u16 index, u8 codec. */
export function open(spec: OpenSpec): Buffer {
  if (spec.sessionId.length !== SESSION_ID_BYTES) throw new Error('a session id is 16 bytes');
  return frame(Type.OPEN, Buffer.concat([Buffer.from(spec.magic ?? MAGIC), u16(spec.version ?? VERSION), Buffer.from(spec.sessionId), u16(spec.channels), u16(spec.index), u8(spec.codec)]));
}

/** ACCEPT: u16 index. */
export const accept = (index: number): Buffer => frame(Type.ACCEPT, u16(index));
/** REFUSE: utf-8 reason. */
export const refuse = (reason: string): Buffer => frame(Type.REFUSE, Buffer.from(reason, 'utf8'));

export interface DataSpec {
  seq: number | bigint;
  /** The bytes after decompression. */
  raw: Uint8Array;
  /** What goes on the wire: `raw` for codec 0. */
  payload?: Uint8Array;
  codec?: number;
  /** Overrides the raw length, for hostile frames. */
  rawLength?: number;
}

/** DATA: u64 seq, u32 raw length, u8 codec, payload. */
export function data(spec: DataSpec): Buffer {
  return frame(Type.DATA, Buffer.concat([u64(spec.seq), u32(spec.rawLength ?? spec.raw.length), u8(spec.codec ?? WireCodec.none), Buffer.from(spec.payload ?? spec.raw)]));
}

/** END: u64 frames, u64 bytes, u64 digest. */
export const end = (frames: number | bigint, bytes: number | bigint, digest: bigint): Buffer => frame(Type.END, Buffer.concat([u64(frames), u64(bytes), u64(digest)]));
/** DONE: u64 bytes written and verified. */
export const done = (bytes: number | bigint): Buffer => frame(Type.DONE, u64(bytes));
/** ABORT: utf-8 reason. */
export const abort = (reason: string): Buffer => frame(Type.ABORT, Buffer.from(reason, 'utf8'));
/** PING: no body. */
export const ping = (): Buffer => frame(Type.PING);

const le64 = (v: bigint): Buffer => {
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(v);
  return out;
};

/**
 * END's digest over the frames' raw bytes, in seq order: starting from 0, for each frame
 * digest = XXH64(le64(digest) ‖ le64(h)), where h is the frame's XXH64 (seed 0), or 0 for an
 * empty frame (docs/transport.md, "END digest").
 */
export function streamDigest(frames: readonly Uint8Array[]): bigint {
  let digest = 0n;
  for (const raw of frames) {
    const h = raw.length === 0 ? 0n : xxh64(raw);
    digest = xxh64(Buffer.concat([le64(digest), le64(h)]));
  }
  return digest;
}

/** A whole channel's frames from the sender: OPEN, DATA per frame, END. */
export function senderChannel(open_: OpenSpec, frames: readonly DataSpec[], totals: { frames: number; bytes: number; digest: bigint }): Buffer {
  return Buffer.concat([open(open_), ...frames.map(data), end(totals.frames, totals.bytes, totals.digest)]);
}

/**
 * Protocol version 3, the tunnel's frames, from docs/tunnel.md's "Frames" table alone:
 *
 *   STREAM 9        u32 stream, utf-8 target
 *   STREAM_END 10   u32 stream, u64 bytes
 *   STREAM_RESET 11 u32 stream, utf-8 reason
 *   WINDOW 12       u32 stream, u32 bytes
 *   STREAM_DATA 13  u32 stream, u8 codec, u32 raw length, payload
 */
export const TunnelType = { STREAM: 9, STREAM_END: 10, STREAM_RESET: 11, WINDOW: 12, STREAM_DATA: 13 } as const;
export const TUNNEL_VERSION = 3;

export const stream = (id: number, target: string): Buffer => frame(TunnelType.STREAM, Buffer.concat([u32(id), Buffer.from(target, 'utf8')]));
export const streamEnd = (id: number, bytes: number | bigint): Buffer => frame(TunnelType.STREAM_END, Buffer.concat([u32(id), u64(bytes)]));
export const streamReset = (id: number, reason: string): Buffer => frame(TunnelType.STREAM_RESET, Buffer.concat([u32(id), Buffer.from(reason, 'utf8')]));
export const windowGrant = (id: number, bytes: number): Buffer => frame(TunnelType.WINDOW, Buffer.concat([u32(id), u32(bytes)]));
/** STREAM_DATA with raw payload (codec 0) unless `codec`/`rawLength` say otherwise. */
export const streamData = (id: number, payload: Uint8Array, options: { codec?: number; rawLength?: number } = {}): Buffer =>
  frame(TunnelType.STREAM_DATA, Buffer.concat([u32(id), u8(options.codec ?? 0), u32(options.rawLength ?? payload.length), Buffer.from(payload)]));

/**
 * A page table (docs/tunnel.md "Page-aware compression"), the start of a STREAM_DATA payload
 * whose codec byte has 0x10: u32 cache slots, u32 entries, entries × (u32 offset in the raw
 * chunk, u32 slot, u8 op: 1 store, 2 delta); the body follows.
 */
export const PAGE_TABLE_FLAG = 0x10;
export const PageOp = { store: 1, delta: 2 } as const;
export const pageTable = (slots: number, entries: readonly (readonly [offset: number, slot: number, op: number])[]): Buffer =>
  Buffer.concat([u32(slots), u32(entries.length), ...entries.map(([offset, slot, op]) => Buffer.concat([u32(offset), u32(slot), u8(op)]))]);
