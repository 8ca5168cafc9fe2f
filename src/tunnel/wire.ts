/**
 * Frames of the tunnel: protocol version 3 of the transport's wire (docs/tunnel.md). Same
 * envelope as version 2 (src/tls/wire.ts): `u32 length (of type + body) | u8 type | body`,
 * big-endian, at most 64 MiB. A session carries several two-way streams, one per forwarded
 * connection, each pinned to one channel, so TCP keeps a stream's bytes in order.
 *
 *   OPEN          1  as version 2, with version 3 (the dialer, first frame of a channel)
 *   ACCEPT        2  u16 index
 *   REFUSE        3  utf-8 reason, then close
 *   ABORT         7  utf-8 reason: the whole session failed
 *   PING          8  empty: either way, when a channel has been quiet
 *   STREAM        9  u32 stream | utf-8 target: the dialer accepted a connection for `target`
 *   STREAM_END   10  u32 stream | u64 bytes: this direction is finished (a half-close)
 *   STREAM_RESET 11  u32 stream | utf-8 reason: the connection failed on this side
 *   WINDOW       12  u32 stream | u32 bytes: the receiver of a direction grants more bytes
 *   STREAM_DATA  13  u32 stream | u8 codec | u32 raw length | payload
 *
 * Version 2's DATA (4), END (5) and DONE (6) carry one session-wide stream and are refused here.
 */
import { ProtocolError } from '../tls/errors.js';
import { FrameType as V2FrameType, MAX_FRAME_BYTES, decodeFrame, encodeText, frame } from '../tls/wire.js';

export const TUNNEL_PROTOCOL_VERSION = 3;

export const TunnelFrameType = {
  OPEN: V2FrameType.OPEN,
  ACCEPT: V2FrameType.ACCEPT,
  REFUSE: V2FrameType.REFUSE,
  ABORT: V2FrameType.ABORT,
  PING: V2FrameType.PING,
  STREAM: 9,
  STREAM_END: 10,
  STREAM_RESET: 11,
  WINDOW: 12,
  STREAM_DATA: 13,
} as const;

/** A STREAM's target (a socket path) is at most this long: a UNIX path is at most 108 bytes. */
export const MAX_TARGET_BYTES = 1024;
/** STREAM_DATA's header: length, type, stream, codec, raw length. */
export const STREAM_DATA_HEADER_BYTES = 14;

export type TunnelFrame =
  | { type: typeof TunnelFrameType.OPEN; magic: number; version: number; sessionId: Buffer; channels: number; index: number; codec: number }
  | { type: typeof TunnelFrameType.ACCEPT; index: number }
  | { type: typeof TunnelFrameType.REFUSE; reason: string }
  | { type: typeof TunnelFrameType.ABORT; reason: string }
  | { type: typeof TunnelFrameType.PING }
  | { type: typeof TunnelFrameType.STREAM; stream: number; target: string }
  | { type: typeof TunnelFrameType.STREAM_END; stream: number; bytes: number }
  | { type: typeof TunnelFrameType.STREAM_RESET; stream: number; reason: string }
  | { type: typeof TunnelFrameType.WINDOW; stream: number; bytes: number }
  | { type: typeof TunnelFrameType.STREAM_DATA; stream: number; codec: number; rawLength: number; payload: Buffer };

export function encodeStream(stream: number, target: string): Buffer {
  const body = Buffer.from(target, 'utf8');
  if (body.length > MAX_TARGET_BYTES) throw new RangeError(`stream target of ${body.length} bytes, at most ${MAX_TARGET_BYTES}`);
  const out = frame(TunnelFrameType.STREAM, 4 + body.length);
  out.writeUInt32BE(stream, 5);
  body.copy(out, 9);
  return out;
}

export function encodeStreamEnd(stream: number, bytes: number): Buffer {
  const out = frame(TunnelFrameType.STREAM_END, 12);
  out.writeUInt32BE(stream, 5);
  out.writeBigUInt64BE(BigInt(bytes), 9);
  return out;
}

export function encodeStreamReset(stream: number, reason: string): Buffer {
  const text = encodeText(TunnelFrameType.STREAM_RESET, reason);
  const out = frame(TunnelFrameType.STREAM_RESET, 4 + text.length - 5);
  out.writeUInt32BE(stream, 5);
  text.copy(out, 9, 5);
  return out;
}

export function encodeWindow(stream: number, bytes: number): Buffer {
  const out = frame(TunnelFrameType.WINDOW, 8);
  out.writeUInt32BE(stream, 5);
  out.writeUInt32BE(bytes, 9);
  return out;
}

/** STREAM_DATA's 14-byte header; the payload follows as a separate write. */
export function encodeStreamDataHeader(stream: number, codec: number, rawLength: number, payloadLength: number): Buffer {
  const out = frame(TunnelFrameType.STREAM_DATA, 9 + payloadLength).subarray(0, STREAM_DATA_HEADER_BYTES);
  out.writeUInt32BE(stream, 5);
  out.writeUInt8(codec, 9);
  out.writeUInt32BE(rawLength, 10);
  return out;
}

function atLeast(body: Buffer, length: number, name: string, channel: number | undefined): void {
  if (body.length < length) throw new ProtocolError(`${name} frame of ${body.length} bytes, expected at least ${length}`, channel);
}

function exactly(body: Buffer, length: number, name: string, channel: number | undefined): void {
  if (body.length !== length) throw new ProtocolError(`${name} frame of ${body.length} bytes, expected ${length}`, channel);
}

/** A FrameDecoder (src/tls/wire.ts) for version 3: the shared frames as version 2 reads them, the stream frames here. */
export function decodeTunnelFrame(type: number, body: Buffer, channel: number | undefined): TunnelFrame {
  switch (type) {
    case TunnelFrameType.OPEN:
    case TunnelFrameType.ACCEPT:
    case TunnelFrameType.REFUSE:
    case TunnelFrameType.ABORT:
    case TunnelFrameType.PING:
      return decodeFrame(type, body, channel) as TunnelFrame;
    case TunnelFrameType.STREAM:
      atLeast(body, 4, 'STREAM', channel);
      if (body.length - 4 > MAX_TARGET_BYTES) throw new ProtocolError(`STREAM target of ${body.length - 4} bytes, at most ${MAX_TARGET_BYTES}`, channel);
      return { type, stream: body.readUInt32BE(0), target: body.toString('utf8', 4) };
    case TunnelFrameType.STREAM_END: {
      exactly(body, 12, 'STREAM_END', channel);
      const bytes = body.readBigUInt64BE(4);
      if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError(`STREAM_END announces ${bytes} bytes`, channel);
      return { type, stream: body.readUInt32BE(0), bytes: Number(bytes) };
    }
    case TunnelFrameType.STREAM_RESET:
      atLeast(body, 4, 'STREAM_RESET', channel);
      return { type, stream: body.readUInt32BE(0), reason: body.toString('utf8', 4) };
    case TunnelFrameType.WINDOW:
      exactly(body, 8, 'WINDOW', channel);
      return { type, stream: body.readUInt32BE(0), bytes: body.readUInt32BE(4) };
    case TunnelFrameType.STREAM_DATA: {
      atLeast(body, 9, 'STREAM_DATA', channel);
      const rawLength = body.readUInt32BE(5);
      // The receiver allocates the raw length to decompress into: bound it as frames are.
      if (rawLength > MAX_FRAME_BYTES) throw new ProtocolError(`STREAM_DATA announces ${rawLength} raw bytes, more than ${MAX_FRAME_BYTES}`, channel);
      return { type, stream: body.readUInt32BE(0), codec: body.readUInt8(4), rawLength, payload: body.subarray(9) };
    }
    default:
      throw new ProtocolError(
        type >= 4 && type <= 6 ? `frame type ${type} belongs to protocol version 2 (migstream send/recv), not to a tunnel` : `unknown frame type ${type} (not a migstream tunnel peer?)`,
        channel,
      );
  }
}
