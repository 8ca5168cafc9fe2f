/**
 * The NBD protocol's numbers: NetworkBlockDevice/nbd doc/proto.md ("Values"), as QEMU names
 * them in include/block/nbd.h. Every magic, option, reply type, command and flag the client
 * speaks, and the bounds it holds a server to.
 */

/** 'NBDMAGIC': the first 8 bytes a newstyle server sends. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': the server's second word, and the start of every option the client sends. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** The start of every option reply (fixed newstyle). */
export const NBD_REP_MAGIC = 0x3e889045565a9n;
/** The old-style handshake's second word; a server sending it does not do newstyle. */
export const NBD_CLISERV_MAGIC = 0x00420281861253n;

export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags. */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

/** Transmission flags (NBD_INFO_EXPORT). */
export const TransmissionFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
} as const;

export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

export const Rep = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
} as const;

/** Error replies have bit 31 set. */
export const NBD_REP_ERR_BIT = 0x8000_0000;
export const RepErr = {
  UNSUP: NBD_REP_ERR_BIT + 1,
  POLICY: NBD_REP_ERR_BIT + 2,
  INVALID: NBD_REP_ERR_BIT + 3,
  PLATFORM: NBD_REP_ERR_BIT + 4,
  TLS_REQD: NBD_REP_ERR_BIT + 5,
  UNKNOWN: NBD_REP_ERR_BIT + 6,
  SHUTDOWN: NBD_REP_ERR_BIT + 7,
  BLOCK_SIZE_REQD: NBD_REP_ERR_BIT + 8,
} as const;

export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

export const Cmd = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;
export type CmdName = keyof typeof Cmd;

export const CmdFlag = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
} as const;

export const NBD_REPLY_FLAG_DONE = 1 << 0;

/** Structured reply chunk types; error chunks have bit 15 set. */
export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8000 + 1,
  ERROR_OFFSET: 0x8000 + 2,
} as const;
export const NBD_REPLY_TYPE_ERROR_BIT = 0x8000;

/** base:allocation extent flags. */
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
/** qemu:dirty-bitmap:NAME extent flag (QEMU's docs/interop/nbd.txt). */
export const NBD_STATE_DIRTY = 1 << 0;

/** The error values proto.md allows ("Error values"); anything else is told by number. */
export const NBD_ERRNO: Readonly<Record<number, string>> = {
  1: 'EPERM',
  5: 'EIO',
  12: 'ENOMEM',
  22: 'EINVAL',
  28: 'ENOSPC',
  75: 'EOVERFLOW',
  95: 'ENOTSUP',
  108: 'ESHUTDOWN',
};

export const NBD_OPTION_HEADER_BYTES = 16;
export const NBD_OPTION_REPLY_HEADER_BYTES = 20;
export const NBD_REQUEST_HEADER_BYTES = 28;
export const NBD_SIMPLE_REPLY_HEADER_BYTES = 16;
export const NBD_STRUCTURED_REPLY_HEADER_BYTES = 20;

// ---- bounds a server is held to ----

/** proto.md: a string MUST be no longer than 4096 bytes (export names, messages, context names). */
export const NBD_MAX_STRING = 4096;
/** An option reply's payload: a string and a few words at most (REP_SERVER, REP_INFO, META_CONTEXT). */
export const MAX_OPTION_REPLY_PAYLOAD = NBD_MAX_STRING + 64;
/** Option replies to one option (LIST_META_CONTEXT may list many bitmaps; QEMU's are few). */
export const MAX_OPTION_REPLIES = 4096;
/**
 * A BLOCK_STATUS chunk's payload: the context id and up to 2^20 extents. QEMU's server sends at
 * most NBD_MAX_BLOCK_STATUS_EXTENTS (2^20 / 8 = 128 Ki) per chunk (nbd/server.c).
 */
export const MAX_BLOCK_STATUS_PAYLOAD = 4 + 8 * (1 << 20);
/** An error chunk: errno, message length, a string, an offset. */
export const MAX_ERROR_PAYLOAD = 4 + 2 + NBD_MAX_STRING + 8;
/** The largest READ/WRITE a request carries when the server names no maximum (QEMU's NBD_MAX_BUFFER_SIZE). */
export const DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024;
/** Content chunks one READ reply may split into before we call the server hostile. */
export const MAX_CONTENT_CHUNKS = 1 << 16;
