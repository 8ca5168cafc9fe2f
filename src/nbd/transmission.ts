/**
 * The transmission phase (proto.md "Transmission") as a state machine without I/O: requests
 * out as bytes with a fresh handle each, the server's bytes in, completed requests out. Any
 * number of requests may be in flight; replies and chunks of different requests may
 * interleave, as proto.md allows.
 *
 * Every reply is held to its request before its payload is taken:
 * - a simple reply only where proto.md allows one (never for a READ once structured replies
 *   are on, never a successful one for BLOCK_STATUS); a READ's data is exactly its length;
 * - OFFSET_DATA / OFFSET_HOLE only for a READ, inside the request, not overlapping earlier
 *   chunks, and at DONE without error the request covered whole;
 * - BLOCK_STATUS only for a BLOCK_STATUS, once per selected context, extents of nonzero
 *   length from the request's offset on, none starting past its end (the final one may run
 *   past it: later proto.md allows that, and QEMU's client clamps it; so do we);
 * - error chunks: a nonzero error, a message inside the chunk; ERROR_OFFSET inside the request;
 * - a payload no longer than its kind allows (MAX_BLOCK_STATUS_PAYLOAD, MAX_ERROR_PAYLOAD; a
 *   READ's data never past the request), so a hostile length never allocates.
 * A breach throws NbdProtocolError: the connection is beyond repair. A server's error for one
 * request is returned as that request's failure.
 */
import { ByteQueue } from './byte-queue.js';
import {
  Cmd,
  MAX_BLOCK_STATUS_PAYLOAD,
  MAX_CONTENT_CHUNKS,
  MAX_ERROR_PAYLOAD,
  NBD_ERRNO,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_ERROR_BIT,
  NBD_SIMPLE_REPLY_HEADER_BYTES,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_HEADER_BYTES,
  NBD_STRUCTURED_REPLY_MAGIC,
  ReplyType,
} from './constants.js';
import { NbdCommandError, NbdProtocolError, type NbdErrorContext, type NbdRequestRef } from './errors.js';
import { commandName, encodeRequest } from './wire.js';

export interface Extent {
  readonly offset: number;
  readonly length: number;
  /** base:allocation: NBD_STATE_HOLE (1) | NBD_STATE_ZERO (2); qemu:dirty-bitmap: 1 = dirty. */
  readonly flags: number;
}

export interface TransmissionOptions {
  readonly peer: string;
  readonly structuredReplies: boolean;
  /** The selected meta contexts: name → id. */
  readonly contexts: ReadonlyMap<string, number>;
}

export interface RequestSpec {
  readonly type: number;
  readonly offset: number;
  readonly length: number;
  readonly flags?: number;
  /** READ: the buffer of `length` bytes the data goes into (default: a new one). */
  readonly into?: Buffer | undefined;
}

export type Completion =
  | { readonly handle: bigint; readonly ok: true; readonly request: NbdRequestRef; readonly data?: Buffer; readonly extents?: ReadonlyMap<number, readonly Extent[]> }
  | { readonly handle: bigint; readonly ok: false; readonly request: NbdRequestRef; readonly error: NbdCommandError };

interface Pending {
  readonly ref: NbdRequestRef;
  readonly type: number;
  readonly offset: number;
  readonly length: number;
  /** READ: where the data goes. Bytes not covered at DONE fail the reply. */
  data: Buffer | undefined;
  covered: Coverage | undefined;
  /** BLOCK_STATUS: extents per context id. */
  extents: Map<number, Extent[]> | undefined;
  /** The first error chunk's error. */
  error: NbdCommandError | undefined;
}

/** Disjoint ranges [start, end), sorted, adjacent ones merged. */
class Coverage {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  bytes = 0;

  get ranges(): number {
    return this.starts.length;
  }

  /** Adds [start, end); false when it overlaps a range already there. */
  add(start: number, end: number): boolean {
    // The first range ending after `start`.
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! <= start) lo = mid + 1;
      else hi = mid;
    }
    if (lo < this.starts.length && this.starts[lo]! < end) return false;
    this.bytes += end - start;
    const joinsBefore = lo > 0 && this.ends[lo - 1] === start;
    const joinsAfter = lo < this.starts.length && this.starts[lo] === end;
    if (joinsBefore && joinsAfter) {
      this.ends[lo - 1] = this.ends[lo]!;
      this.starts.splice(lo, 1);
      this.ends.splice(lo, 1);
    } else if (joinsBefore) {
      this.ends[lo - 1] = end;
    } else if (joinsAfter) {
      this.starts[lo] = start;
    } else {
      this.starts.splice(lo, 0, start);
      this.ends.splice(lo, 0, end);
    }
    return true;
  }
}

type State =
  | { kind: 'header' }
  /** A simple reply's READ data still to come. */
  | { kind: 'simple-data'; handle: bigint; pending: Pending; left: number }
  /** A structured chunk whose payload is awaited whole (HOLE, BLOCK_STATUS, errors). */
  | { kind: 'payload'; handle: bigint; pending: Pending; type: number; flags: number; length: number }
  /** OFFSET_DATA: the 8-byte offset, then the data copied straight into the READ's buffer. */
  | { kind: 'data-offset'; handle: bigint; pending: Pending; flags: number; length: number }
  | { kind: 'data'; handle: bigint; pending: Pending; flags: number; at: number; left: number };

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export class Transmission {
  private readonly queue = new ByteQueue();
  private readonly pending = new Map<bigint, Pending>();
  private readonly contextIds: ReadonlySet<number>;
  private nextHandle = 1n;
  private state: State = { kind: 'header' };

  constructor(private readonly options: TransmissionOptions) {
    this.contextIds = new Set(options.contexts.values());
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** The request's header bytes and its handle; a WRITE's data is sent after the header. */
  request(spec: RequestSpec): { handle: bigint; header: Buffer; request: NbdRequestRef } {
    const handle = this.nextHandle++;
    const ref: NbdRequestRef = { command: commandName(spec.type), offset: spec.offset, length: spec.length };
    const header = encodeRequest({ flags: spec.flags ?? 0, type: spec.type, handle, offset: spec.offset, length: spec.length });
    // NBD_CMD_DISC has no reply (proto.md).
    if (spec.type !== Cmd.DISC) {
      this.pending.set(handle, {
        ref,
        type: spec.type,
        offset: spec.offset,
        length: spec.length,
        data: spec.type === Cmd.READ ? this.readBuffer(spec) : undefined,
        covered: spec.type === Cmd.READ ? new Coverage() : undefined,
        extents: spec.type === Cmd.BLOCK_STATUS ? new Map() : undefined,
        error: undefined,
      });
    }
    return { handle, header, request: ref };
  }

  private readBuffer(spec: RequestSpec): Buffer {
    if (spec.into === undefined) return Buffer.allocUnsafe(spec.length);
    if (spec.into.length !== spec.length) throw new RangeError(`a READ of ${spec.length} bytes into a buffer of ${spec.into.length}`);
    return spec.into;
  }

  /** The requests still waiting for their reply, as the errors name them. */
  requestsInFlight(): NbdRequestRef[] {
    return [...this.pending.values()].map((p) => p.ref);
  }

  /** True while a reply is partly parsed: a close now cuts it. */
  get midReply(): boolean {
    return this.state.kind !== 'header' || this.queue.available > 0;
  }

  /** The request the parser is inside, if any (for an error on close). */
  get currentRequest(): NbdRequestRef | undefined {
    return this.state.kind === 'header' ? undefined : this.state.pending.ref;
  }

  /**
   * Where the server's next bytes may go straight from the socket, sparing a copy: the rest of
   * the READ data being received, when nothing is queued ahead of it and at least `min` bytes
   * are left (else undefined). Hand what arrived there to receivedDirect().
   */
  directTarget(min: number): Buffer | undefined {
    const state = this.state;
    if ((state.kind !== 'simple-data' && state.kind !== 'data') || state.left < min || this.queue.available > 0) return undefined;
    const at = state.kind === 'data' ? state.at : state.pending.length - state.left;
    return state.pending.data!.subarray(at, at + state.left);
  }

  /** `n` bytes arrived in the buffer directTarget() gave; the requests that completes. */
  receivedDirect(n: number): Completion[] {
    const state = this.state;
    if ((state.kind !== 'simple-data' && state.kind !== 'data') || n > state.left || this.queue.available > 0) {
      throw new RangeError(`${n} bytes read straight into a READ's buffer, where none were expected`);
    }
    state.left -= n;
    if (state.kind === 'data') state.at += n;
    return this.parse();
  }

  /**
   * The server's bytes; the requests they complete. Throws NbdProtocolError on a breach.
   * `lent`: the caller reuses `chunk` once this returns (what is kept of it is copied).
   */
  receive(chunk: Uint8Array, lent = false): Completion[] {
    this.queue.push(chunk, lent);
    try {
      return this.parse();
    } finally {
      this.queue.keepLent();
    }
  }

  private parse(): Completion[] {
    const done: Completion[] = [];
    for (;;) {
      const state = this.state;
      switch (state.kind) {
        case 'header': {
          if (this.queue.available < 4) return done;
          const magic = this.queue.peekUInt32BE();
          if (magic !== NBD_SIMPLE_REPLY_MAGIC && magic !== NBD_STRUCTURED_REPLY_MAGIC) {
            throw this.protocol(`reply magic 0x${magic.toString(16).padStart(8, '0')}, expected 0x67446698 or 0x668e33ef`);
          }
          const simple = magic === NBD_SIMPLE_REPLY_MAGIC;
          const headerBytes = simple ? NBD_SIMPLE_REPLY_HEADER_BYTES : NBD_STRUCTURED_REPLY_HEADER_BYTES;
          if (this.queue.available < headerBytes) return done;
          const header = this.queue.take(headerBytes).subarray(4);
          if (simple) this.simpleHeader(header, done);
          else this.chunkHeader(header, done);
          break;
        }
        case 'simple-data': {
          const at = state.pending.length - state.left;
          const copied = this.queue.copyInto(state.pending.data!, at, state.left);
          state.left -= copied;
          if (state.left > 0) return done;
          state.pending.covered!.add(state.pending.offset, state.pending.offset + state.pending.length);
          this.finish(state.handle, state.pending, done);
          this.state = { kind: 'header' };
          break;
        }
        case 'data-offset': {
          if (this.queue.available < 8) return done;
          const offset = this.readOffset(this.queue.take(8), 0, state.pending);
          const length = state.length - 8;
          const { pending } = state;
          if (offset < pending.offset || offset + length > pending.offset + pending.length) {
            throw this.protocol(`OFFSET_DATA of ${length} bytes at 0x${offset.toString(16)} lies outside the request`, pending.ref);
          }
          this.cover(pending, offset, length, 'OFFSET_DATA');
          this.state = { kind: 'data', handle: state.handle, pending, flags: state.flags, at: offset - pending.offset, left: length };
          break;
        }
        case 'data': {
          const copied = this.queue.copyInto(state.pending.data!, state.at, state.left);
          state.at += copied;
          state.left -= copied;
          if (state.left > 0) return done;
          this.state = { kind: 'header' };
          if (state.flags & NBD_REPLY_FLAG_DONE) this.finish(state.handle, state.pending, done);
          break;
        }
        case 'payload': {
          if (this.queue.available < state.length) return done;
          const payload = this.queue.take(state.length);
          this.state = { kind: 'header' };
          this.chunkPayload(state.type, payload, state.pending);
          if (state.flags & NBD_REPLY_FLAG_DONE) this.finish(state.handle, state.pending, done);
          break;
        }
      }
    }
  }

  private context(request?: NbdRequestRef): NbdErrorContext {
    return { peer: this.options.peer, request };
  }

  private protocol(message: string, request?: NbdRequestRef): NbdProtocolError {
    return new NbdProtocolError(message, this.context(request));
  }

  private lookup(handle: bigint): Pending {
    const pending = this.pending.get(handle);
    if (pending === undefined) throw this.protocol(`a reply for handle 0x${handle.toString(16)}, which no request in flight has`);
    return pending;
  }

  private simpleHeader(rest: Buffer, done: Completion[]): void {
    const error = rest.readUInt32BE(0);
    const handle = rest.readBigUInt64BE(4);
    const pending = this.lookup(handle);
    if (this.options.structuredReplies && pending.type === Cmd.READ) {
      throw this.protocol('a simple reply to a READ after structured replies were negotiated', pending.ref);
    }
    if (error !== 0) {
      pending.error = this.commandError(error, '', pending.ref);
      this.finish(handle, pending, done);
    } else if (pending.type === Cmd.BLOCK_STATUS) {
      throw this.protocol('a simple reply without error to BLOCK_STATUS: its extents need a structured reply', pending.ref);
    } else if (pending.type === Cmd.READ && pending.length > 0) {
      this.state = { kind: 'simple-data', handle, pending, left: pending.length };
    } else {
      this.finish(handle, pending, done);
    }
  }

  private chunkHeader(rest: Buffer, done: Completion[]): void {
    const flags = rest.readUInt16BE(0);
    const type = rest.readUInt16BE(2);
    const handle = rest.readBigUInt64BE(4);
    const length = rest.readUInt32BE(12);
    if (!this.options.structuredReplies) throw this.protocol('a structured reply chunk, but structured replies were not negotiated');
    const pending = this.lookup(handle);
    const name = chunkName(type);
    const bad = (why: string): NbdProtocolError => this.protocol(`${name} chunk of ${length} bytes: ${why}`, pending.ref);
    switch (type) {
      case ReplyType.NONE:
        if (length !== 0) throw bad('NONE carries no payload');
        if (!(flags & NBD_REPLY_FLAG_DONE)) throw bad('NONE without the DONE flag');
        this.finish(handle, pending, done);
        return;
      case ReplyType.OFFSET_DATA:
        if (pending.type !== Cmd.READ) throw bad(`not a reply to ${pending.ref.command}`);
        if (length < 9) throw bad('OFFSET_DATA is at least 9 bytes');
        if (length - 8 > pending.length) throw bad(`longer than the ${pending.length} bytes asked`);
        this.state = { kind: 'data-offset', handle, pending, flags, length };
        return;
      case ReplyType.OFFSET_HOLE:
        if (pending.type !== Cmd.READ) throw bad(`not a reply to ${pending.ref.command}`);
        if (length !== 12) throw bad('OFFSET_HOLE is 12 bytes');
        break;
      case ReplyType.BLOCK_STATUS:
        if (pending.type !== Cmd.BLOCK_STATUS) throw bad(`not a reply to ${pending.ref.command}`);
        if (length < 12 || (length - 4) % 8 !== 0) throw bad('BLOCK_STATUS is a context id and whole 8-byte extents, at least one');
        if (length > MAX_BLOCK_STATUS_PAYLOAD) throw bad(`past the bound of ${MAX_BLOCK_STATUS_PAYLOAD}`);
        break;
      default:
        if (!(type & NBD_REPLY_TYPE_ERROR_BIT)) throw bad('a chunk type this client does not know');
        if (length < (type === ReplyType.ERROR_OFFSET ? 14 : 6)) throw bad('too short for an error chunk');
        if (length > MAX_ERROR_PAYLOAD) throw bad(`past the bound of ${MAX_ERROR_PAYLOAD}`);
    }
    this.state = { kind: 'payload', handle, pending, type, flags, length };
  }

  private chunkPayload(type: number, payload: Buffer, pending: Pending): void {
    if (type === ReplyType.OFFSET_HOLE) {
      const offset = this.readOffset(payload, 0, pending);
      const size = payload.readUInt32BE(8);
      if (size === 0) throw this.protocol('OFFSET_HOLE of 0 bytes', pending.ref);
      if (offset < pending.offset || offset + size > pending.offset + pending.length) {
        throw this.protocol(`OFFSET_HOLE of ${size} bytes at 0x${offset.toString(16)} lies outside the request`, pending.ref);
      }
      this.cover(pending, offset, size, 'OFFSET_HOLE');
      pending.data!.fill(0, offset - pending.offset, offset - pending.offset + size);
    } else if (type === ReplyType.BLOCK_STATUS) {
      this.blockStatus(payload, pending);
    } else {
      this.errorChunk(type, payload, pending);
    }
  }

  private blockStatus(payload: Buffer, pending: Pending): void {
    const id = payload.readUInt32BE(0);
    if (!this.contextIds.has(id)) throw this.protocol(`BLOCK_STATUS for meta context id ${id}, which was not selected`, pending.ref);
    if (pending.extents!.has(id)) throw this.protocol(`BLOCK_STATUS for meta context id ${id} twice in one reply`, pending.ref);
    const end = pending.offset + pending.length;
    const extents: Extent[] = [];
    const count = (payload.length - 4) / 8;
    let at = pending.offset;
    for (let i = 0; i < count; i++) {
      const length = payload.readUInt32BE(4 + 8 * i);
      const flags = payload.readUInt32BE(8 + 8 * i);
      if (length === 0) throw this.protocol(`BLOCK_STATUS extent ${i} at 0x${at.toString(16)} has length 0: it does not advance`, pending.ref);
      if (at >= end) throw this.protocol(`BLOCK_STATUS extent ${i} starts at 0x${at.toString(16)}, past the request's end 0x${end.toString(16)}`, pending.ref);
      if (at + length > end && i !== count - 1) {
        throw this.protocol(`BLOCK_STATUS extent ${i} of ${length} bytes at 0x${at.toString(16)} runs past the request's end 0x${end.toString(16)}`, pending.ref);
      }
      const clamped = Math.min(length, end - at);
      extents.push({ offset: at, length: clamped, flags });
      at += clamped;
    }
    pending.extents!.set(id, extents);
  }

  private errorChunk(type: number, payload: Buffer, pending: Pending): void {
    const errno = payload.readUInt32BE(0);
    const messageLength = payload.readUInt16BE(4);
    const room = payload.length - (type === ReplyType.ERROR_OFFSET ? 14 : 6);
    if (errno === 0) throw this.protocol(`${chunkName(type)} chunk with error 0`, pending.ref);
    if (messageLength > room) throw this.protocol(`${chunkName(type)} chunk: a message of ${messageLength} bytes in ${room}`, pending.ref);
    const message = payload.toString('utf8', 6, 6 + messageLength);
    if (type === ReplyType.ERROR_OFFSET) {
      const offset = this.readOffset(payload, 6 + messageLength, pending);
      if (offset < pending.offset || offset >= pending.offset + Math.max(1, pending.length)) {
        throw this.protocol(`ERROR_OFFSET at 0x${offset.toString(16)} lies outside the request`, pending.ref);
      }
      pending.error ??= this.commandError(errno, `${message}${message ? ' ' : ''}(at offset 0x${offset.toString(16)})`, pending.ref);
      return;
    }
    pending.error ??= this.commandError(errno, message, pending.ref);
  }

  private cover(pending: Pending, offset: number, length: number, what: string): void {
    if (!pending.covered!.add(offset, offset + length)) {
      throw this.protocol(`${what} of ${length} bytes at 0x${offset.toString(16)} overlaps an earlier chunk`, pending.ref);
    }
    if (pending.covered!.ranges > MAX_CONTENT_CHUNKS) throw this.protocol(`a READ reply split into more than ${MAX_CONTENT_CHUNKS} pieces`, pending.ref);
  }

  private readOffset(bytes: Buffer, at: number, pending: Pending): number {
    const offset = bytes.readBigUInt64BE(at);
    if (offset > MAX_SAFE) throw this.protocol(`offset 0x${offset.toString(16)} past 2^53`, pending.ref);
    return Number(offset);
  }

  private commandError(errno: number, message: string, ref: NbdRequestRef): NbdCommandError {
    return new NbdCommandError(errno, NBD_ERRNO[errno] ?? `errno ${errno}`, message, this.context(ref));
  }

  private finish(handle: bigint, pending: Pending, done: Completion[]): void {
    this.pending.delete(handle);
    if (pending.error !== undefined) {
      done.push({ handle, ok: false, request: pending.ref, error: pending.error });
      return;
    }
    if (pending.type === Cmd.READ) {
      const covered = pending.covered!.bytes;
      if (covered !== pending.length) throw this.protocol(`the reply ended with ${covered} of ${pending.length} bytes`, pending.ref);
      done.push({ handle, ok: true, request: pending.ref, data: pending.data! });
    } else if (pending.type === Cmd.BLOCK_STATUS) {
      for (const [name, id] of this.options.contexts) {
        if (!pending.extents!.has(id)) throw this.protocol(`the reply ended without extents for meta context "${name}"`, pending.ref);
      }
      done.push({ handle, ok: true, request: pending.ref, extents: pending.extents! });
    } else {
      done.push({ handle, ok: true, request: pending.ref });
    }
  }
}

function chunkName(type: number): string {
  switch (type) {
    case ReplyType.NONE:
      return 'NONE';
    case ReplyType.OFFSET_DATA:
      return 'OFFSET_DATA';
    case ReplyType.OFFSET_HOLE:
      return 'OFFSET_HOLE';
    case ReplyType.BLOCK_STATUS:
      return 'BLOCK_STATUS';
    case ReplyType.ERROR:
      return 'ERROR';
    case ReplyType.ERROR_OFFSET:
      return 'ERROR_OFFSET';
    default:
      return `type 0x${type.toString(16)}`;
  }
}
