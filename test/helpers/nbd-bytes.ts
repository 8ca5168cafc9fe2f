/**
 * NBD messages built by hand from NetworkBlockDevice/nbd doc/proto.md alone (and QEMU's
 * nbd/server.c for the META_CONTEXT query list and NBD_INFO_BLOCK_SIZE): nothing here comes
 * from src/nbd, so a bug in the client's writer or parser cannot hide in the expected bytes.
 * Every number is written out again on purpose.
 *
 *   server side   greeting, optionReply (+ ack, metaContext, infoExport, infoBlockSize, refuse),
 *                 simpleReply, chunk (+ offsetData, offsetHole, blockStatus, errorChunk,
 *                 errorOffset, none)
 *   client side   clientFlags, option (+ goData, metaContextData), request
 */
const u16 = (v: number): Buffer => Buffer.from([(v >>> 8) & 0xff, v & 0xff]);
const u32 = (v: number): Buffer => Buffer.from([(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff]);
const u64 = (v: number | bigint): Buffer => {
  const big = BigInt(v);
  return Buffer.concat([u32(Number((big >> 32n) & 0xffff_ffffn)), u32(Number(big & 0xffff_ffffn))]);
};
const text = (s: string): Buffer => Buffer.from(s, 'utf8');

/** "NBDMAGIC", "IHAVEOPT", the reply magic and the transmission magics, as proto.md spells them. */
export const INIT_PASSWD = Buffer.from('NBDMAGIC', 'latin1');
export const IHAVEOPT = Buffer.from('IHAVEOPT', 'latin1');
export const OPT_REPLY_MAGIC = u64(0x3e889045565a9n);
export const CLISERV_MAGIC = u64(0x00420281861253n);
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 } as const;
export const REP = { ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4 } as const;
export const REP_ERR = { UNSUP: 2 ** 31 + 1, POLICY: 2 ** 31 + 2, INVALID: 2 ** 31 + 3, TLS_REQD: 2 ** 31 + 5, UNKNOWN: 2 ** 31 + 6, SHUTDOWN: 2 ** 31 + 7 } as const;
export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const;
export const CHUNK = { NONE: 0, OFFSET_DATA: 1, OFFSET_HOLE: 2, BLOCK_STATUS: 5, ERROR: 2 ** 15 + 1, ERROR_OFFSET: 2 ** 15 + 2 } as const;
export const FLAG_DONE = 1;
/** Transmission flags: HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_WRITE_ZEROES | SEND_DF… */
export const TFLAG = { HAS_FLAGS: 1, READ_ONLY: 2, SEND_FLUSH: 4, SEND_FUA: 8, SEND_TRIM: 32, SEND_WRITE_ZEROES: 64, SEND_DF: 128, CAN_MULTI_CONN: 256 } as const;

// ---- server → client, handshake ----

/** NBDMAGIC, IHAVEOPT (or another second word), u16 handshake flags (bit 0 FIXED_NEWSTYLE, bit 1 NO_ZEROES). */
export function greeting(flags = 0b11, second: Buffer = IHAVEOPT): Buffer {
  return Buffer.concat([INIT_PASSWD, second, u16(flags)]);
}

/** u64 reply magic, u32 option, u32 reply type, u32 length (or a lie), data. */
export function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0), length?: number, magic: Buffer = OPT_REPLY_MAGIC): Buffer {
  return Buffer.concat([magic, u32(option), u32(type), u32(length ?? data.length), data]);
}

export const ack = (option: number): Buffer => optionReply(option, REP.ACK);
export const refuse = (option: number, type: number, message = ''): Buffer => optionReply(option, type, text(message));
/** NBD_REP_META_CONTEXT: u32 context id, name. */
export const metaContext = (option: number, id: number, name: string): Buffer => optionReply(option, REP.META_CONTEXT, Buffer.concat([u32(id), text(name)]));
/** NBD_REP_INFO / NBD_INFO_EXPORT: u16 0, u64 size, u16 transmission flags. */
export const infoExport = (size: number | bigint, flags: number): Buffer => optionReply(OPT.GO, REP.INFO, Buffer.concat([u16(INFO.EXPORT), u64(size), u16(flags)]));
/** NBD_REP_INFO / NBD_INFO_BLOCK_SIZE: u16 3, u32 minimum, u32 preferred, u32 maximum. */
export const infoBlockSize = (minimum: number, preferred: number, maximum: number): Buffer => optionReply(OPT.GO, REP.INFO, Buffer.concat([u16(INFO.BLOCK_SIZE), u32(minimum), u32(preferred), u32(maximum)]));
/** NBD_REP_INFO / NBD_INFO_NAME: u16 1, the name. */
export const infoName = (name: string): Buffer => optionReply(OPT.GO, REP.INFO, Buffer.concat([u16(INFO.NAME), text(name)]));

// ---- client → server, handshake ----

export const clientFlags = (flags: number): Buffer => u32(flags);

/** IHAVEOPT, u32 option, u32 length, data. */
export function option(opt: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([IHAVEOPT, u32(opt), u32(data.length), data]);
}

/** NBD_OPT_GO's data: u32 name length, name, u16 info count, u16 each. */
export function goData(name: string, infos: number[]): Buffer {
  return Buffer.concat([u32(Buffer.byteLength(name)), text(name), u16(infos.length), ...infos.map(u16)]);
}

/** NBD_OPT_{LIST,SET}_META_CONTEXT's data: u32 name length, name, u32 query count, (u32 length, query)… */
export function metaContextData(name: string, queries: string[]): Buffer {
  return Buffer.concat([u32(Buffer.byteLength(name)), text(name), u32(queries.length), ...queries.flatMap((q) => [u32(Buffer.byteLength(q)), text(q)])]);
}

// ---- client → server, transmission ----

/** u32 0x25609513, u16 command flags, u16 type, u64 handle, u64 offset, u32 length. */
export function request(flags: number, type: number, handle: number | bigint, offset: number | bigint, length: number): Buffer {
  return Buffer.concat([u32(REQUEST_MAGIC), u16(flags), u16(type), u64(handle), u64(offset), u32(length)]);
}

// ---- server → client, transmission ----

/** u32 0x67446698, u32 error, u64 handle, then (READ without structured replies) the data. */
export function simpleReply(error: number, handle: number | bigint, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([u32(SIMPLE_REPLY_MAGIC), u32(error), u64(handle), data]);
}

/** u32 0x668e33ef, u16 flags, u16 type, u64 handle, u32 length (or a lie), payload. */
export function chunk(flags: number, type: number, handle: number | bigint, payload: Buffer = Buffer.alloc(0), length?: number): Buffer {
  return Buffer.concat([u32(STRUCTURED_REPLY_MAGIC), u16(flags), u16(type), u64(handle), u32(length ?? payload.length), payload]);
}

export const none = (handle: number | bigint): Buffer => chunk(FLAG_DONE, CHUNK.NONE, handle);
/** OFFSET_DATA: u64 offset, data. */
export const offsetData = (handle: number | bigint, offset: number, data: Buffer, done = false): Buffer => chunk(done ? FLAG_DONE : 0, CHUNK.OFFSET_DATA, handle, Buffer.concat([u64(offset), data]));
/** OFFSET_HOLE: u64 offset, u32 hole size. */
export const offsetHole = (handle: number | bigint, offset: number, size: number, done = false): Buffer => chunk(done ? FLAG_DONE : 0, CHUNK.OFFSET_HOLE, handle, Buffer.concat([u64(offset), u32(size)]));
/** BLOCK_STATUS: u32 context id, (u32 length, u32 flags)… */
export const blockStatus = (handle: number | bigint, id: number, extents: [number, number][], done = false): Buffer =>
  chunk(done ? FLAG_DONE : 0, CHUNK.BLOCK_STATUS, handle, Buffer.concat([u32(id), ...extents.flatMap(([length, flags]) => [u32(length), u32(flags)])]));
/** ERROR: u32 error, u16 message length, message. */
export const errorChunk = (handle: number | bigint, error: number, message = '', done = true): Buffer =>
  chunk(done ? FLAG_DONE : 0, CHUNK.ERROR, handle, Buffer.concat([u32(error), u16(Buffer.byteLength(message)), text(message)]));
/** ERROR_OFFSET: u32 error, u16 message length, message, u64 offset. */
export const errorOffset = (handle: number | bigint, error: number, message: string, offset: number, done = true): Buffer =>
  chunk(done ? FLAG_DONE : 0, CHUNK.ERROR_OFFSET, handle, Buffer.concat([u32(error), u16(Buffer.byteLength(message)), text(message), u64(offset)]));

export { u16, u32, u64 };
