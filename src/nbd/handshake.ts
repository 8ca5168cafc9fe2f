/**
 * The fixed newstyle handshake (proto.md "Fixed newstyle negotiation") as a state machine
 * without I/O: bytes from the server in (`receive`), bytes to send and, at the end, what was
 * negotiated out. The options go one at a time, as proto.md requires (no option before the
 * final reply to the previous one):
 *
 *   S: NBDMAGIC IHAVEOPT u16 flags    C: client flags, NBD_OPT_STRUCTURED_REPLY
 *   S: ACK                            C: [NBD_OPT_LIST_META_CONTEXT]   (when asked to list)
 *   S: META_CONTEXT… ACK              C: [NBD_OPT_SET_META_CONTEXT]    (when contexts are wanted)
 *   S: META_CONTEXT… ACK              C: NBD_OPT_GO (asking NBD_INFO_BLOCK_SIZE)
 *   S: INFO(EXPORT) [INFO(BLOCK_SIZE)] ACK  → transmission
 *
 * Every reply is checked before its payload is awaited: the magic, that it answers the option
 * just sent, and a payload no longer than MAX_OPTION_REPLY_PAYLOAD.
 */
import { ByteQueue } from './byte-queue.js';
import {
  Info,
  MAX_OPTION_REPLIES,
  MAX_OPTION_REPLY_PAYLOAD,
  NBD_CLISERV_MAGIC,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_NO_ZEROES,
  NBD_INIT_MAGIC,
  NBD_MAX_STRING,
  NBD_OPTION_REPLY_HEADER_BYTES,
  NBD_OPTS_MAGIC,
  NBD_REP_ERR_BIT,
  NBD_REP_MAGIC,
  Opt,
  Rep,
  RepErr,
} from './constants.js';
import { NbdProtocolError, NbdRefusedError, type NbdErrorContext } from './errors.js';
import { decodeOptionReplyHeader, encodeClientFlags, encodeGo, encodeMetaContext, encodeOption, optionName, replyTypeName, type OptionReplyHeader } from './wire.js';

export interface HandshakeOptions {
  /** Names the server in every error: `unix:/run/x.sock export "disk"`. */
  readonly peer: string;
  readonly exportName: string;
  /** Meta contexts to select (`base:allocation`, `qemu:dirty-bitmap:NAME`); each must be granted. */
  readonly metaContexts?: readonly string[] | undefined;
  /** Queries for NBD_OPT_LIST_META_CONTEXT, sent before SET; `[]` lists every context. */
  readonly listQueries?: readonly string[] | undefined;
}

export interface BlockSizes {
  readonly minimum: number;
  readonly preferred: number;
  readonly maximum: number;
}

export interface Negotiated {
  readonly size: number;
  /** Transmission flags (TransmissionFlag). */
  readonly flags: number;
  /** NBD_INFO_BLOCK_SIZE, when the server sent it. */
  readonly blockSizes: BlockSizes | undefined;
  readonly structuredReplies: boolean;
  /** Each selected meta context by name, with the id the server gave it. */
  readonly contexts: ReadonlyMap<string, number>;
  /** What NBD_OPT_LIST_META_CONTEXT answered, when it was asked. */
  readonly listed: readonly string[] | undefined;
}

export interface HandshakeStep {
  /** Bytes to write to the server, in order. */
  readonly send: readonly Buffer[];
  /** Set once the handshake is over; the bytes after it belong to the transmission phase. */
  readonly done?: { readonly negotiated: Negotiated; readonly rest: Buffer };
}

type State = 'greeting' | 'reply-header' | 'reply-payload' | 'done';

export class Handshake {
  private readonly queue = new ByteQueue();
  private state: State = 'greeting';
  private option = 0;
  private header: OptionReplyHeader | undefined;
  private replies = 0;
  private structuredReplies = false;
  private readonly wanted: readonly string[];
  private readonly contexts = new Map<string, number>();
  private listed: string[] | undefined;
  private size: number | undefined;
  private flags = 0;
  private blockSizes: BlockSizes | undefined;

  constructor(private readonly options: HandshakeOptions) {
    this.wanted = [...new Set(options.metaContexts ?? [])];
    if (Buffer.byteLength(options.exportName) > NBD_MAX_STRING) throw new RangeError(`an export name is at most ${NBD_MAX_STRING} bytes`);
  }

  private context(): NbdErrorContext {
    return { peer: this.options.peer, option: this.state === 'greeting' ? 'greeting' : optionName(this.option) };
  }

  private protocol(message: string): NbdProtocolError {
    return new NbdProtocolError(message, this.context());
  }

  /**
   * The server's bytes; throws an NbdError when the server breaks the protocol or refuses.
   * `lent`: the caller reuses `chunk` once this returns (what is kept of it is copied).
   */
  receive(chunk: Uint8Array, lent = false): HandshakeStep {
    if (this.state === 'done') throw new Error('the handshake is over');
    this.queue.push(chunk, lent);
    try {
      return this.parse();
    } finally {
      this.queue.keepLent();
    }
  }

  private parse(): HandshakeStep {
    const send: Buffer[] = [];
    for (;;) {
      if (this.state === 'greeting') {
        if (this.queue.available < 18) return { send };
        send.push(...this.greeting(this.queue.take(18)));
      } else if (this.state === 'reply-header') {
        if (this.queue.available < NBD_OPTION_REPLY_HEADER_BYTES) return { send };
        this.header = this.checkHeader(decodeOptionReplyHeader(this.queue.take(NBD_OPTION_REPLY_HEADER_BYTES)));
        this.state = 'reply-payload';
      } else if (this.state === 'reply-payload') {
        const header = this.header!;
        if (this.queue.available < header.length) return { send };
        const next = this.reply(header, Buffer.from(this.queue.take(header.length)));
        if (next === 'done') {
          this.state = 'done';
          return { send, done: { negotiated: this.negotiated(), rest: Buffer.from(this.queue.drain()) } };
        }
        if (next !== undefined) send.push(next);
      } else {
        return { send };
      }
    }
  }

  private greeting(bytes: Buffer): Buffer[] {
    const magic = bytes.readBigUInt64BE(0);
    const second = bytes.readBigUInt64BE(8);
    if (magic !== NBD_INIT_MAGIC) throw this.protocol(`not an NBD server: greeting magic 0x${magic.toString(16).padStart(16, '0')}, expected NBDMAGIC`);
    if (second === NBD_CLISERV_MAGIC) throw this.protocol('an oldstyle server; only fixed newstyle is spoken');
    if (second !== NBD_OPTS_MAGIC) throw this.protocol(`greeting's second magic 0x${second.toString(16).padStart(16, '0')}, expected IHAVEOPT`);
    const handshakeFlags = bytes.readUInt16BE(16);
    if ((handshakeFlags & NBD_FLAG_FIXED_NEWSTYLE) === 0) {
      throw new NbdRefusedError('the server does not do fixed newstyle negotiation (handshake flags 0x' + handshakeFlags.toString(16) + ')', this.context());
    }
    // proto.md: the client SHOULD ignore handshake flags it does not know.
    const clientFlags = NBD_FLAG_C_FIXED_NEWSTYLE | (handshakeFlags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0);
    return [encodeClientFlags(clientFlags), this.send(Opt.STRUCTURED_REPLY, encodeOption(Opt.STRUCTURED_REPLY))];
  }

  private send(option: number, bytes: Buffer): Buffer {
    this.option = option;
    this.replies = 0;
    this.state = 'reply-header';
    return bytes;
  }

  private checkHeader(header: OptionReplyHeader): OptionReplyHeader {
    if (header.magic !== NBD_REP_MAGIC) throw this.protocol(`option reply magic 0x${header.magic.toString(16)}, expected 0x${NBD_REP_MAGIC.toString(16)}`);
    if (header.option !== this.option) throw this.protocol(`a reply for ${optionName(header.option)} while ${optionName(this.option)} was asked`);
    if (header.length > MAX_OPTION_REPLY_PAYLOAD) {
      throw this.protocol(`${replyTypeName(header.type)} of ${header.length} bytes, past the bound of ${MAX_OPTION_REPLY_PAYLOAD}`);
    }
    if (++this.replies > MAX_OPTION_REPLIES) throw this.protocol(`more than ${MAX_OPTION_REPLIES} replies to one option`);
    return header;
  }

  /** One whole reply: the next option to send, 'done', or undefined (more replies follow). */
  private reply(header: OptionReplyHeader, payload: Buffer): Buffer | 'done' | undefined {
    this.state = 'reply-header';
    const { type } = header;
    if (type & NBD_REP_ERR_BIT) return this.refused(type, payload);
    if (type === Rep.ACK && payload.length !== 0) throw this.protocol(`NBD_REP_ACK with ${payload.length} bytes of payload`);
    switch (this.option) {
      case Opt.STRUCTURED_REPLY:
        if (type !== Rep.ACK) throw this.unexpected(type);
        this.structuredReplies = true;
        return this.afterStructuredReply();
      case Opt.LIST_META_CONTEXT:
        if (type === Rep.META_CONTEXT) {
          (this.listed ??= []).push(this.metaContextName(payload).name);
          return undefined;
        }
        if (type !== Rep.ACK) throw this.unexpected(type);
        this.listed ??= [];
        return this.afterList();
      case Opt.SET_META_CONTEXT:
        if (type === Rep.META_CONTEXT) {
          this.selected(this.metaContextName(payload));
          return undefined;
        }
        if (type !== Rep.ACK) throw this.unexpected(type);
        for (const name of this.wanted) {
          if (!this.contexts.has(name)) throw new NbdRefusedError(`the server has no meta context "${name}"`, this.context());
        }
        return this.go();
      case Opt.GO:
        if (type === Rep.INFO) {
          this.info(payload);
          return undefined;
        }
        if (type !== Rep.ACK) throw this.unexpected(type);
        if (this.size === undefined) throw this.protocol('NBD_REP_ACK before NBD_INFO_EXPORT: no export size');
        return 'done';
      default:
        throw new Error(`no reply expected for ${optionName(this.option)}`);
    }
  }

  private unexpected(type: number): NbdProtocolError {
    return this.protocol(`${replyTypeName(type)} is not a reply to ${optionName(this.option)}`);
  }

  private refused(type: number, payload: Buffer): Buffer {
    const message = payload.toString('utf8');
    // proto.md: a server without structured replies answers NBD_REP_ERR_UNSUP; go on with
    // simple replies unless meta contexts were asked for (they need structured replies).
    if (this.option === Opt.STRUCTURED_REPLY && type === RepErr.UNSUP && this.wanted.length === 0 && this.options.listQueries === undefined) {
      return this.afterStructuredReply();
    }
    const what =
      this.option === Opt.STRUCTURED_REPLY
        ? 'the server refused structured replies, which meta contexts need'
        : type === RepErr.UNKNOWN
          ? `the server has no export "${this.options.exportName}"`
          : `the server refused ${optionName(this.option)}`;
    throw new NbdRefusedError(`${what} (${replyTypeName(type)})`, this.context(), type, message);
  }

  private afterStructuredReply(): Buffer {
    return this.options.listQueries !== undefined ? this.send(Opt.LIST_META_CONTEXT, encodeMetaContext(Opt.LIST_META_CONTEXT, this.options.exportName, this.options.listQueries)) : this.afterList();
  }

  private afterList(): Buffer {
    return this.wanted.length > 0 ? this.send(Opt.SET_META_CONTEXT, encodeMetaContext(Opt.SET_META_CONTEXT, this.options.exportName, this.wanted)) : this.go();
  }

  private go(): Buffer {
    return this.send(Opt.GO, encodeGo(this.options.exportName, [Info.BLOCK_SIZE]));
  }

  private metaContextName(payload: Buffer): { id: number; name: string } {
    if (payload.length < 5) throw this.protocol(`NBD_REP_META_CONTEXT of ${payload.length} bytes: no name after the context id`);
    return { id: payload.readUInt32BE(0), name: payload.toString('utf8', 4) };
  }

  private selected({ id, name }: { id: number; name: string }): void {
    if (!this.wanted.includes(name)) throw this.protocol(`the server selected meta context "${name}", which was not asked for`);
    if (this.contexts.has(name)) throw this.protocol(`the server selected meta context "${name}" twice`);
    for (const [other, otherId] of this.contexts) {
      if (otherId === id) throw this.protocol(`meta contexts "${other}" and "${name}" share the id ${id}`);
    }
    this.contexts.set(name, id);
  }

  private info(payload: Buffer): void {
    if (payload.length < 2) throw this.protocol(`NBD_REP_INFO of ${payload.length} bytes: no info type`);
    const infoType = payload.readUInt16BE(0);
    if (infoType === Info.EXPORT) {
      if (payload.length !== 12) throw this.protocol(`NBD_INFO_EXPORT of ${payload.length} bytes, expected 12`);
      const size = payload.readBigUInt64BE(2);
      if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw this.protocol(`an export of ${size} bytes, past 2^53`);
      this.size = Number(size);
      this.flags = payload.readUInt16BE(10);
    } else if (infoType === Info.BLOCK_SIZE) {
      if (payload.length !== 14) throw this.protocol(`NBD_INFO_BLOCK_SIZE of ${payload.length} bytes, expected 14`);
      const minimum = payload.readUInt32BE(2);
      const preferred = payload.readUInt32BE(6);
      const maximum = payload.readUInt32BE(10);
      // proto.md (INFO extension): the minimum a power of two up to 64 KiB, the preferred a
      // power of two no smaller, the maximum a multiple of
      // the minimum, or 0xffffffff (no limit).
      const powerOfTwo = (v: number) => v > 0 && (v & (v - 1)) === 0;
      const maximumFits = maximum >= minimum && (maximum % minimum === 0 || maximum === 0xffff_ffff);
      if (!powerOfTwo(minimum) || minimum > 65536 || !powerOfTwo(preferred) || preferred < minimum || !maximumFits) {
        throw this.protocol(`NBD_INFO_BLOCK_SIZE minimum ${minimum}, preferred ${preferred}, maximum ${maximum} do not fit together`);
      }
      this.blockSizes = { minimum, preferred, maximum };
    }
    // proto.md: the client ignores info types it does not know (NBD_INFO_NAME, DESCRIPTION…).
  }

  private negotiated(): Negotiated {
    return {
      size: this.size!,
      flags: this.flags,
      blockSizes: this.blockSizes,
      structuredReplies: this.structuredReplies,
      contexts: this.contexts,
      listed: this.listed,
    };
  }
}
