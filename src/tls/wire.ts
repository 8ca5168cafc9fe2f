/**
 * Frames on one channel. Every frame is
 *
 *   u32 length (of type + body, big-endian) | u8 type | body
 *
 * and the types, with their bodies (all integers big-endian):
 *
 *   OPEN    1  "MGTX" | u16 version | 16 B session id | u16 channels | u16 index | u8 codec
 *   ACCEPT  2  u16 index
 *   REFUSE  3  utf-8 reason
 *   DATA    4  u64 seq | u32 raw length | u8 codec | payload (raw or compressed)
 *   END     5  u64 frames | u64 bytes | u64 digest of the whole stream (digest.ts)
 *   DONE    6  u64 bytes: the receiver wrote and verified the whole stream (channel 0 only)
 *   ABORT   7  utf-8 reason: the peer failed; the channel closes after it
 *   PING    8  empty: keeps the idle timeout of a quiet channel from firing
 *
 * Zero is not a type, so a run of zero bytes is never a valid frame.
 */
import { ChunkCursor } from '../bytes/chunk-cursor.js';
import { ProtocolError } from './errors.js';

export const PROTOCOL_MAGIC = 0x4d475458; // "MGTX"
/** 2: END carries the XXH64 chain digest (1 carried a CRC-32). */
export const PROTOCOL_VERSION = 2;
export const SESSION_ID_BYTES = 16;
/** Bound on one frame's length: a corrupt length must not make us buffer gigabytes. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** After REFUSE or ABORT, how long a socket may take to flush it before it is destroyed. */
export const CLOSE_GRACE_MS = 500;

export const FrameType = { OPEN: 1, ACCEPT: 2, REFUSE: 3, DATA: 4, END: 5, DONE: 6, ABORT: 7, PING: 8 } as const;

export interface OpenFrame {
  type: typeof FrameType.OPEN;
  magic: number;
  version: number;
  sessionId: Buffer;
  channels: number;
  index: number;
  codec: number;
}
export interface DataFrame {
  type: typeof FrameType.DATA;
  seq: number;
  rawLength: number;
  codec: number;
  payload: Buffer;
}
export interface EndFrame {
  type: typeof FrameType.END;
  frames: number;
  bytes: number;
  digest: bigint;
}
export type Frame =
  | OpenFrame
  | { type: typeof FrameType.ACCEPT; index: number }
  | { type: typeof FrameType.REFUSE; reason: string }
  | DataFrame
  | EndFrame
  | { type: typeof FrameType.DONE; bytes: number }
  | { type: typeof FrameType.ABORT; reason: string }
  | { type: typeof FrameType.PING };

/** A frame of `type` with room for its body at offset 5 (the tunnel's frames use it too). */
export function frame(type: number, bodyLength: number): Buffer {
  const out = Buffer.allocUnsafe(5 + bodyLength);
  out.writeUInt32BE(1 + bodyLength, 0);
  out.writeUInt8(type, 4);
  return out;
}

export function encodeOpen(open: Omit<OpenFrame, 'type' | 'magic' | 'version'> & { version?: number }): Buffer {
  const out = frame(FrameType.OPEN, 4 + 2 + SESSION_ID_BYTES + 2 + 2 + 1);
  out.writeUInt32BE(PROTOCOL_MAGIC, 5);
  out.writeUInt16BE(open.version ?? PROTOCOL_VERSION, 9);
  open.sessionId.copy(out, 11, 0, SESSION_ID_BYTES);
  out.writeUInt16BE(open.channels, 27);
  out.writeUInt16BE(open.index, 29);
  out.writeUInt8(open.codec, 31);
  return out;
}

export function encodeAccept(index: number): Buffer {
  const out = frame(FrameType.ACCEPT, 2);
  out.writeUInt16BE(index, 5);
  return out;
}

/** A frame whose body is a reason: cut to 1000 characters. */
export function encodeText(type: number, text: string): Buffer {
  const body = Buffer.from(text.slice(0, 1000), 'utf8');
  const out = frame(type, body.length);
  body.copy(out, 5);
  return out;
}

export const encodeRefuse = (reason: string): Buffer => encodeText(FrameType.REFUSE, reason);
export const encodeAbort = (reason: string): Buffer => encodeText(FrameType.ABORT, reason);
export const encodePing = (): Buffer => frame(FrameType.PING, 0);

/** The 18-byte header of a DATA frame; the payload follows it as a separate write. */
export function encodeDataHeader(seq: number, rawLength: number, codec: number, payloadLength: number): Buffer {
  const out = frame(FrameType.DATA, 13 + payloadLength).subarray(0, 18);
  out.writeBigUInt64BE(BigInt(seq), 5);
  out.writeUInt32BE(rawLength, 13);
  out.writeUInt8(codec, 17);
  return out;
}

export function encodeEnd(end: Omit<EndFrame, 'type'>): Buffer {
  const out = frame(FrameType.END, 24);
  out.writeBigUInt64BE(BigInt(end.frames), 5);
  out.writeBigUInt64BE(BigInt(end.bytes), 13);
  out.writeBigUInt64BE(end.digest, 21);
  return out;
}

export function encodeDone(bytes: number): Buffer {
  const out = frame(FrameType.DONE, 8);
  out.writeBigUInt64BE(BigInt(bytes), 5);
  return out;
}

function need(body: Buffer, length: number, name: string, channel: number | undefined): void {
  if (body.length !== length) throw new ProtocolError(`${name} frame of ${body.length} bytes, expected ${length}`, channel);
}

function u64(body: Buffer, at: number): number {
  return Number(body.readBigUInt64BE(at));
}

export function decodeFrame(type: number, body: Buffer, channel?: number): Frame {
  switch (type) {
    case FrameType.OPEN:
      need(body, 27, 'OPEN', channel);
      return {
        type,
        magic: body.readUInt32BE(0),
        version: body.readUInt16BE(4),
        sessionId: Buffer.from(body.subarray(6, 22)),
        channels: body.readUInt16BE(22),
        index: body.readUInt16BE(24),
        codec: body.readUInt8(26),
      };
    case FrameType.ACCEPT:
      need(body, 2, 'ACCEPT', channel);
      return { type, index: body.readUInt16BE(0) };
    case FrameType.REFUSE:
    case FrameType.ABORT:
      return { type, reason: body.toString('utf8') };
    case FrameType.DATA:
      if (body.length < 13) throw new ProtocolError(`DATA frame of ${body.length} bytes`, channel);
      // The receiver allocates the raw length to decompress into: bound it as frames are.
      if (body.readUInt32BE(8) > MAX_FRAME_BYTES) throw new ProtocolError(`DATA frame announces ${body.readUInt32BE(8)} raw bytes, more than ${MAX_FRAME_BYTES}`, channel);
      return { type, seq: u64(body, 0), rawLength: body.readUInt32BE(8), codec: body.readUInt8(12), payload: body.subarray(13) };
    case FrameType.END:
      need(body, 24, 'END', channel);
      return { type, frames: u64(body, 0), bytes: u64(body, 8), digest: body.readBigUInt64BE(16) };
    case FrameType.DONE:
      need(body, 8, 'DONE', channel);
      return { type, bytes: u64(body, 0) };
    case FrameType.PING:
      need(body, 0, 'PING', channel);
      return { type };
    default:
      throw new ProtocolError(`unknown frame type ${type} (not a migstream transport peer?)`, channel);
  }
}

/** Bytes of a DATA frame before its payload: length, type, seq, raw length, codec. */
export const DATA_HEADER_BYTES = 18;

/**
 * Push parser: `push(chunk)` returns the frames the chunk completes. Bodies are sliced from
 * the chunk when a frame lies inside it. A frame that straddles chunks is copied out once; a
 * DATA payload then gets an ArrayBuffer of its own, so it can be transferred between threads
 * as it is.
 */
/** Where a DATA frame's payload is put together (BufferPool.take, to reuse buffers). */
export type PayloadAllocator = (bytes: number) => Buffer;

/** Turns one frame's type and body into a frame (decodeFrame; the tunnel's own, src/tunnel/wire.ts). */
export type FrameDecoder<F> = (type: number, body: Buffer, channel: number | undefined) => F;

export class FrameParser<F = Frame> {
  /** Bytes received but not yet part of a whole frame (src/bytes/chunk-cursor.ts). */
  private readonly input = new ChunkCursor();

  constructor(
    private readonly channel?: number,
    private readonly allocate: PayloadAllocator = Buffer.allocUnsafeSlow,
    private readonly decode: FrameDecoder<F> = decodeFrame as FrameDecoder<F>,
  ) {}

  /** Bytes received but not yet part of a whole frame (non-zero at EOF means a cut frame). */
  get pending(): number {
    return this.input.available;
  }

  push(chunk: Buffer): F[] {
    const input = this.input;
    input.push(chunk);
    const frames: F[] = [];
    for (;;) {
      if (input.available < 5) break;
      const length = input.peekU32();
      if (length === 0 || length > MAX_FRAME_BYTES) {
        throw new ProtocolError(`frame length ${length} out of range (not a migstream transport peer?)`, this.channel);
      }
      if (input.available < 4 + length) break;
      const type = input.peekU8(4);
      // Version 2 DATA only: its payload is put together in a buffer of its own.
      if (type === FrameType.DATA && this.decode === (decodeFrame as FrameDecoder<unknown>) && input.contiguous < 4 + length && length >= DATA_HEADER_BYTES - 4) {
        const header = input.read(DATA_HEADER_BYTES, Buffer.allocUnsafe(DATA_HEADER_BYTES));
        const payload = input.read(4 + length - DATA_HEADER_BYTES, this.allocate(4 + length - DATA_HEADER_BYTES));
        const frame = decodeFrame(type, header.subarray(5), this.channel) as DataFrame;
        frames.push({ ...frame, payload } as F);
        continue;
      }
      // A view of one chunk, or copied into a buffer of its own.
      const whole = input.contiguous >= 4 + length ? input.read(4 + length) : input.read(4 + length, Buffer.allocUnsafeSlow(4 + length));
      frames.push(this.decode(type, whole.subarray(5), this.channel));
    }
    input.dropConsumed();
    return frames;
  }
}

/**
 * Pull parser for a socket read straight into our buffers (net.Socket `onread`): `target()`
 * is where the next read should land, `filled(n)` reports n bytes read there and returns the
 * frames they complete. Headers are read exactly; a DATA payload is read into a buffer of its
 * own, so it crosses no copy between the kernel and the thread it is transferred to.
 */
export class FrameReader {
  private buffer: Buffer = Buffer.allocUnsafe(5);
  private have = 0;
  private step: 'length' | 'body' | 'data-header' | 'payload' = 'length';
  private length = 0;
  private type = 0;
  private header: Buffer | undefined;
  /** Bytes of the frame being read. */
  private partial = 0;

  constructor(
    private readonly channel?: number,
    private readonly allocate: PayloadAllocator = Buffer.allocUnsafeSlow,
  ) {}

  /** Bytes read but not yet part of a whole frame (non-zero at EOF means a cut frame). */
  get pending(): number {
    return this.partial;
  }

  target(): Buffer {
    return this.buffer.subarray(this.have);
  }

  filled(n: number): Frame[] {
    this.have += n;
    this.partial += n;
    if (this.have < this.buffer.length) return [];
    switch (this.step) {
      case 'length': {
        this.length = this.buffer.readUInt32BE(0);
        this.type = this.buffer.readUInt8(4);
        if (this.length === 0 || this.length > MAX_FRAME_BYTES) {
          throw new ProtocolError(`frame length ${this.length} out of range (not a migstream transport peer?)`, this.channel);
        }
        if (this.type === FrameType.DATA && this.length >= DATA_HEADER_BYTES - 4) return this.expect('data-header', DATA_HEADER_BYTES - 5);
        if (this.length === 1) return this.complete(decodeFrame(this.type, Buffer.alloc(0), this.channel));
        return this.expect('body', this.length - 1);
      }
      case 'body':
        return this.complete(decodeFrame(this.type, this.buffer, this.channel));
      case 'data-header':
        this.header = this.buffer;
        return this.expect('payload', 4 + this.length - DATA_HEADER_BYTES, true);
      case 'payload': {
        const frame = decodeFrame(this.type, this.header!, this.channel) as DataFrame;
        return this.complete({ ...frame, payload: this.buffer });
      }
    }
  }

  private expect(step: FrameReader['step'], bytes: number, own = false): Frame[] {
    this.step = step;
    this.buffer = own ? this.allocate(bytes) : Buffer.allocUnsafe(bytes);
    this.have = 0;
    // An empty payload is complete at once.
    return bytes === 0 ? this.filled(0) : [];
  }

  private complete(frame: Frame): Frame[] {
    this.step = 'length';
    this.buffer = Buffer.allocUnsafe(5);
    this.have = 0;
    this.partial = 0;
    this.header = undefined;
    return [frame];
  }
}
