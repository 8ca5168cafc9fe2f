/**
 * The client's side of the NBD wire (NetworkBlockDevice/nbd doc/proto.md): every message the
 * client sends, as bytes, and the fixed-size headers it reads, as values. No state, no I/O:
 * handshake.ts and transmission.ts sequence these, client.ts puts them on a socket.
 *
 *   option          u64 IHAVEOPT | u32 option | u32 length | data
 *   GO data         u32 name length | name | u16 info count | u16 info…
 *   META_CONTEXT    u32 name length | name | u32 query count | (u32 length | query)…
 *   request         u32 0x25609513 | u16 flags | u16 type | u64 handle | u64 offset | u32 length
 *   option reply    u64 0x3e889045565a9 | u32 option | u32 type | u32 length
 *   simple reply    u32 0x67446698 | u32 error | u64 handle
 *   chunk           u32 0x668e33ef | u16 flags | u16 type | u64 handle | u32 length
 */
import { NBD_OPTION_HEADER_BYTES, NBD_OPTION_REPLY_HEADER_BYTES, NBD_OPTS_MAGIC, NBD_REQUEST_HEADER_BYTES, NBD_REQUEST_MAGIC, Opt } from './constants.js';

const utf8 = (text: string): Buffer => Buffer.from(text, 'utf8');

/** The client flags word, answering the server's handshake flags. */
export function encodeClientFlags(flags: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(flags >>> 0, 0);
  return out;
}

/** Any option: IHAVEOPT, the option, its data's length, its data. */
export function encodeOption(option: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const out = Buffer.alloc(NBD_OPTION_HEADER_BYTES + data.length);
  out.writeBigUInt64BE(NBD_OPTS_MAGIC, 0);
  out.writeUInt32BE(option >>> 0, 8);
  out.writeUInt32BE(data.length, 12);
  out.set(data, NBD_OPTION_HEADER_BYTES);
  return out;
}

/** NBD_OPT_GO: the export and the NBD_INFO_* items asked for. */
export function encodeGo(exportName: string, infos: readonly number[]): Buffer {
  const name = utf8(exportName);
  const data = Buffer.alloc(4 + name.length + 2 + 2 * infos.length);
  data.writeUInt32BE(name.length, 0);
  data.set(name, 4);
  data.writeUInt16BE(infos.length, 4 + name.length);
  infos.forEach((info, i) => data.writeUInt16BE(info, 4 + name.length + 2 + 2 * i));
  return encodeOption(Opt.GO, data);
}

/**
 * NBD_OPT_SET_META_CONTEXT or NBD_OPT_LIST_META_CONTEXT: the export, then each query as a
 * length and its bytes (QEMU's nbd_negotiate_meta_queries reads exactly this).
 */
export function encodeMetaContext(option: typeof Opt.SET_META_CONTEXT | typeof Opt.LIST_META_CONTEXT, exportName: string, queries: readonly string[]): Buffer {
  const name = utf8(exportName);
  const encoded = queries.map(utf8);
  const data = Buffer.alloc(4 + name.length + 4 + encoded.reduce((sum, q) => sum + 4 + q.length, 0));
  let at = data.writeUInt32BE(name.length, 0);
  data.set(name, at);
  at = data.writeUInt32BE(encoded.length, at + name.length);
  for (const query of encoded) {
    at = data.writeUInt32BE(query.length, at);
    data.set(query, at);
    at += query.length;
  }
  return encodeOption(option, data);
}

export interface RequestHeader {
  readonly flags: number;
  readonly type: number;
  readonly handle: bigint;
  readonly offset: number;
  readonly length: number;
}

/** A transmission request's 28-byte header (WRITE's data follows it on the wire). */
export function encodeRequest(request: RequestHeader): Buffer {
  const out = Buffer.allocUnsafe(NBD_REQUEST_HEADER_BYTES);
  out.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  out.writeUInt16BE(request.flags, 4);
  out.writeUInt16BE(request.type, 6);
  out.writeBigUInt64BE(request.handle, 8);
  out.writeBigUInt64BE(BigInt(request.offset), 16);
  out.writeUInt32BE(request.length >>> 0, 24);
  return out;
}

export interface OptionReplyHeader {
  readonly magic: bigint;
  readonly option: number;
  readonly type: number;
  readonly length: number;
}

/** The 20-byte option reply header at `at`. */
export function decodeOptionReplyHeader(bytes: Buffer, at = 0): OptionReplyHeader {
  if (bytes.length - at < NBD_OPTION_REPLY_HEADER_BYTES) throw new RangeError('an option reply header is 20 bytes');
  return {
    magic: bytes.readBigUInt64BE(at),
    option: bytes.readUInt32BE(at + 8),
    type: bytes.readUInt32BE(at + 12),
    length: bytes.readUInt32BE(at + 16),
  };
}

/** Names for messages: `NBD_OPT_GO`, `NBD_REP_ERR_UNKNOWN`… */
const OPT_NAMES: Readonly<Record<number, string>> = {
  1: 'NBD_OPT_EXPORT_NAME',
  2: 'NBD_OPT_ABORT',
  3: 'NBD_OPT_LIST',
  5: 'NBD_OPT_STARTTLS',
  6: 'NBD_OPT_INFO',
  7: 'NBD_OPT_GO',
  8: 'NBD_OPT_STRUCTURED_REPLY',
  9: 'NBD_OPT_LIST_META_CONTEXT',
  10: 'NBD_OPT_SET_META_CONTEXT',
};
const REP_NAMES: Readonly<Record<number, string>> = {
  1: 'NBD_REP_ACK',
  2: 'NBD_REP_SERVER',
  3: 'NBD_REP_INFO',
  4: 'NBD_REP_META_CONTEXT',
  [0x8000_0001]: 'NBD_REP_ERR_UNSUP',
  [0x8000_0002]: 'NBD_REP_ERR_POLICY',
  [0x8000_0003]: 'NBD_REP_ERR_INVALID',
  [0x8000_0004]: 'NBD_REP_ERR_PLATFORM',
  [0x8000_0005]: 'NBD_REP_ERR_TLS_REQD',
  [0x8000_0006]: 'NBD_REP_ERR_UNKNOWN',
  [0x8000_0007]: 'NBD_REP_ERR_SHUTDOWN',
  [0x8000_0008]: 'NBD_REP_ERR_BLOCK_SIZE_REQD',
};
const CMD_NAMES: Readonly<Record<number, string>> = {
  0: 'READ',
  1: 'WRITE',
  2: 'DISC',
  3: 'FLUSH',
  4: 'TRIM',
  5: 'CACHE',
  6: 'WRITE_ZEROES',
  7: 'BLOCK_STATUS',
};

export const optionName = (option: number): string => OPT_NAMES[option] ?? `option ${option}`;
export const replyTypeName = (type: number): string => REP_NAMES[type] ?? `reply type 0x${type.toString(16)}`;
export const commandName = (type: number): string => CMD_NAMES[type] ?? `command ${type}`;
