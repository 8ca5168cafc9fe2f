/**
 * An NBD client over a Unix or TCP socket: the glue that owns the socket, the timers and the
 * promises around the two pure machines (handshake.ts, transmission.ts).
 *
 *   const nbd = await NbdClient.connect({ path, exportName: 'disk', metaContexts: ['base:allocation'] });
 *   const bytes = await nbd.read(0, 1 << 20);
 *   const extents = await nbd.blockStatus(0, nbd.size, 'base:allocation');
 *   await nbd.close();
 *
 * Requests are pipelined: every call sends at once and any number may be in flight, each
 * matched to its reply by handle. The caller bounds how many (and so the memory they hold).
 * A WRITE's buffer must stay unchanged until its promise settles.
 *
 * Failure: a server error fails that request (NbdCommandError); a protocol breach, a socket
 * that fails or closes, or silence for `timeoutMs` while requests wait fails every request in
 * flight and every later one with the same error, and the socket is destroyed.
 */
import { type Socket, createConnection } from 'node:net';
import { ArgumentError } from '../stream/errors.js';
import { Cmd, CmdFlag, DEFAULT_MAX_PAYLOAD, TransmissionFlag } from './constants.js';
import { NbdConnectionError, NbdError, NbdTimeoutError, describeRequest, type NbdRequestRef } from './errors.js';
import { Handshake, type BlockSizes, type Negotiated } from './handshake.js';
import { Transmission, type Completion, type Extent } from './transmission.js';

export type { BlockSizes, Extent };

export interface NbdConnectOptions {
  /** A Unix socket path, or `host` and `port` (default 10809) for TCP. */
  readonly path?: string | undefined;
  readonly host?: string | undefined;
  readonly port?: number | undefined;
  /** Default '' (the default export). */
  readonly exportName?: string | undefined;
  /** Meta contexts to select; each must be granted (NbdRefusedError otherwise). */
  readonly metaContexts?: readonly string[] | undefined;
  /** Ask NBD_OPT_LIST_META_CONTEXT with these queries first (`[]`: every context); see `listed`. */
  readonly listMetaContexts?: readonly string[] | undefined;
  /** How long the server may stay silent during the handshake or while requests wait. Default 30 s. */
  readonly timeoutMs?: number | undefined;
}

/** The most a single WRITE_ZEROES or BLOCK_STATUS asks for (lengths are 32-bit on the wire). */
const MAX_RANGE_REQUEST = 0x4000_0000;
const DEFAULT_TIMEOUT_MS = 30_000;
/**
 * The socket reads into one buffer of this size, reused (net's `onread`): no allocation per
 * read, and fewer, larger reads than the default 64 KiB. The parsers copy what they keep of it.
 */
const READ_BUFFER_BYTES = 1024 * 1024;

/** Where the socket's reads go: the handshake first, then the client. */
interface ReadSink {
  sink: (chunk: Buffer) => void;
  /** Where the next read may go instead of the shared buffer: a READ's own buffer (or undefined). */
  target: () => Buffer | undefined;
  /** `n` bytes landed in the last target. */
  direct: (n: number) => void;
}

/**
 * READ data with at least this much left is read straight into the READ's buffer (net's `onread`
 * takes a buffer per read): the kernel's copy is the only one. Less goes through the shared
 * buffer, so a small rest does not cost a read of its own.
 */
const DIRECT_READ_MIN_BYTES = 16 * 1024;

interface Waiter {
  resolve(completion: Completion & { ok: true }): void;
  reject(error: Error): void;
}

export class NbdClient {
  /** `unix:/path export "name"`: how every error names this server. */
  readonly peer: string;
  readonly size: number;
  /** Transmission flags (constants.ts TransmissionFlag). */
  readonly flags: number;
  readonly blockSizes: BlockSizes | undefined;
  readonly structuredReplies: boolean;
  /** The selected meta contexts. */
  readonly contexts: readonly string[];
  /** What NBD_OPT_LIST_META_CONTEXT answered, when `listMetaContexts` was given. */
  readonly listed: readonly string[] | undefined;
  /** The largest READ/WRITE payload one request carries. */
  readonly maxPayload: number;

  private readonly machine: Transmission;
  private readonly contextIds: ReadonlyMap<string, number>;
  private readonly waiters = new Map<bigint, Waiter>();
  private failure: NbdError | undefined;
  private closing = false;
  private lastHeard = Date.now();
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly socket: Socket,
    reads: ReadSink,
    peer: string,
    negotiated: Negotiated,
    rest: Buffer,
    private readonly timeoutMs: number,
  ) {
    this.peer = peer;
    this.size = negotiated.size;
    this.flags = negotiated.flags;
    this.blockSizes = negotiated.blockSizes;
    this.structuredReplies = negotiated.structuredReplies;
    this.contextIds = negotiated.contexts;
    this.contexts = [...negotiated.contexts.keys()];
    this.listed = negotiated.listed;
    this.maxPayload = Math.min(negotiated.blockSizes?.maximum ?? DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_PAYLOAD);
    this.machine = new Transmission({ peer, structuredReplies: negotiated.structuredReplies, contexts: negotiated.contexts });
    reads.sink = (chunk) => this.onData(chunk, true);
    reads.target = () => (this.failure === undefined ? this.machine.directTarget(DIRECT_READ_MIN_BYTES) : undefined);
    reads.direct = (n) => this.deliver(() => this.machine.receivedDirect(n));
    socket.on('error', (error) => this.fail(new NbdConnectionError(`the socket failed: ${error.message}`, { peer, request: this.machine.currentRequest }, { cause: error })));
    socket.on('close', () => this.onClose());
    if (rest.length > 0) this.onData(rest, false);
  }

  /** Connects, negotiates and enters transmission. Throws an NbdError naming the peer. */
  static async connect(options: NbdConnectOptions): Promise<NbdClient> {
    const exportName = options.exportName ?? '';
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw new ArgumentError(`NbdClient.connect: timeoutMs must be positive, got ${timeoutMs}`);
    let where: string;
    if (options.path !== undefined) where = `unix:${options.path}`;
    else if (options.host !== undefined) where = `tcp:${options.host}:${options.port ?? 10809}`;
    else throw new ArgumentError('NbdClient.connect: give a Unix socket path, or a host (and port)');
    const peer = `${where} export ${JSON.stringify(exportName)}`;
    const handshake = new Handshake({ peer, exportName, metaContexts: options.metaContexts, listQueries: options.listMetaContexts });
    const readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    const reads: ReadSink = { sink: () => {}, target: () => undefined, direct: () => {} };
    const onread = {
      buffer: (): Buffer => reads.target() ?? readBuffer,
      callback: (n: number, buffer: Uint8Array): boolean => {
        if (buffer === readBuffer) reads.sink(readBuffer.subarray(0, n));
        else reads.direct(n);
        return true;
      },
    };
    const socket = options.path !== undefined ? createConnection({ path: options.path, onread }) : createConnection({ host: options.host!, port: options.port ?? 10809, onread });
    if (options.path === undefined) socket.setNoDelay(true);

    return new Promise<NbdClient>((resolve, reject) => {
      let connected = false;
      const fail = (error: NbdError): void => {
        cleanup();
        socket.destroy();
        reject(error);
      };
      const timer = setTimeout(
        () => fail(new NbdTimeoutError(`no ${connected ? 'handshake' : 'connection'} within ${timeoutMs} ms`, timeoutMs, { peer, option: connected ? 'handshake' : 'connect' })),
        timeoutMs,
      );
      const onConnect = (): void => {
        connected = true;
      };
      const onError = (error: Error): void =>
        fail(new NbdConnectionError(connected ? `the socket failed during the handshake: ${error.message}` : `cannot connect: ${error.message}`, { peer }, { cause: error }));
      const onClose = (): void => fail(new NbdConnectionError('the server closed the connection during the handshake', { peer }));
      const onData = (chunk: Buffer): void => {
        try {
          const step = handshake.receive(chunk, true);
          for (const bytes of step.send) socket.write(bytes);
          if (step.done !== undefined) {
            cleanup();
            resolve(new NbdClient(socket, reads, peer, step.done.negotiated, step.done.rest, timeoutMs));
          }
        } catch (error) {
          fail(error instanceof NbdError ? error : new NbdConnectionError(`handshake failed: ${String(error)}`, { peer }, { cause: error }));
        }
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        socket.off('connect', onConnect);
        socket.off('error', onError);
        socket.off('close', onClose);
        reads.sink = () => {};
      };
      socket.on('connect', onConnect);
      socket.on('error', onError);
      socket.on('close', onClose);
      reads.sink = onData;
    });
  }

  get readOnly(): boolean {
    return (this.flags & TransmissionFlag.READ_ONLY) !== 0;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.waiters.size;
  }

  /**
   * `length` bytes at `offset`; a length past `maxPayload` goes as several requests at once.
   * `into` (exactly `length` bytes) takes the data instead of a new buffer: a caller reusing
   * its buffers spares the allocation and its page faults (bench/nbd.ts measures both).
   */
  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    this.checkRange('read', offset, length, true);
    if (into !== undefined && into.length !== length) throw new ArgumentError(`nbd ${this.peer}: read: a buffer of ${into.length} bytes for ${length}`);
    const out = into ?? Buffer.allocUnsafe(length);
    const pieces: Promise<unknown>[] = [];
    for (let at = 0; at < length; at += this.maxPayload) {
      const piece = Math.min(this.maxPayload, length - at);
      pieces.push(this.send({ type: Cmd.READ, offset: offset + at, length: piece, into: out.subarray(at, at + piece) }));
    }
    await Promise.all(pieces);
    return out;
  }

  /** Writes `data` at `offset` (several requests past `maxPayload`); `fua` asks NBD_CMD_FLAG_FUA. */
  async write(offset: number, data: Uint8Array, options: { fua?: boolean } = {}): Promise<void> {
    this.checkRange('write', offset, data.length, true);
    this.checkWritable('write');
    const flags = this.fuaFlag(options.fua);
    const pieces: Promise<unknown>[] = [];
    for (let at = 0; at < data.length; at += this.maxPayload) {
      const piece = data.subarray(at, Math.min(data.length, at + this.maxPayload));
      pieces.push(this.send({ type: Cmd.WRITE, offset: offset + at, length: piece.length, flags, data: piece }));
    }
    await Promise.all(pieces);
  }

  /** NBD_CMD_WRITE_ZEROES; `noHole` keeps the range allocated (NBD_CMD_FLAG_NO_HOLE). */
  async writeZeroes(offset: number, length: number, options: { noHole?: boolean; fua?: boolean } = {}): Promise<void> {
    this.checkRange('writeZeroes', offset, length, true);
    this.checkWritable('writeZeroes');
    if (!(this.flags & TransmissionFlag.SEND_WRITE_ZEROES)) throw new ArgumentError(`nbd ${this.peer}: the server does not offer WRITE_ZEROES`);
    const flags = this.fuaFlag(options.fua) | (options.noHole ? CmdFlag.NO_HOLE : 0);
    const step = this.alignedStep(MAX_RANGE_REQUEST);
    const pieces: Promise<unknown>[] = [];
    for (let at = 0; at < length; at += step) {
      pieces.push(this.send({ type: Cmd.WRITE_ZEROES, offset: offset + at, length: Math.min(step, length - at), flags }));
    }
    await Promise.all(pieces);
  }

  async flush(): Promise<void> {
    if (!(this.flags & TransmissionFlag.SEND_FLUSH)) throw new ArgumentError(`nbd ${this.peer}: the server does not offer FLUSH`);
    await this.send({ type: Cmd.FLUSH, offset: 0, length: 0 });
  }

  /**
   * The extents of `context` over [offset, offset + length), whole: asked again from where the
   * server's answer stopped (it may answer less than asked), adjacent extents of equal flags
   * joined.
   */
  async blockStatus(offset: number, length: number, context: string): Promise<Extent[]> {
    this.checkRange('blockStatus', offset, length, false);
    const id = this.contextIds.get(context);
    if (id === undefined) throw new ArgumentError(`nbd ${this.peer}: meta context "${context}" was not selected (selected: ${this.contexts.join(', ') || 'none'})`);
    const extents: Extent[] = [];
    const end = offset + length;
    for (let at = offset; at < end;) {
      const completion = await this.send({ type: Cmd.BLOCK_STATUS, offset: at, length: Math.min(end - at, this.alignedStep(MAX_RANGE_REQUEST)) });
      for (const extent of completion.extents!.get(id)!) {
        const last = extents[extents.length - 1];
        if (last !== undefined && last.flags === extent.flags && last.offset + last.length === extent.offset) {
          extents[extents.length - 1] = { offset: last.offset, length: last.length + extent.length, flags: last.flags };
        } else {
          extents.push(extent);
        }
        at = extent.offset + extent.length;
      }
    }
    return extents;
  }

  /**
   * Waits for the requests in flight, sends NBD_CMD_DISC and closes (proto.md: a soft
   * disconnect). After a failure it only destroys the socket.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    if (this.failure === undefined) await Promise.allSettled([...this.waiters.keys()].map((handle) => this.settled(handle)));
    this.closing = true;
    this.stopTimer();
    if (this.failure === undefined && !this.socket.destroyed) {
      const { header } = this.machine.request({ type: Cmd.DISC, offset: 0, length: 0 });
      await new Promise<void>((resolve) => {
        this.socket.once('close', () => resolve());
        this.socket.end(header);
        // A server that keeps the socket open after DISC is not waited on for long.
        setTimeout(() => {
          this.socket.destroy();
          resolve();
        }, 1000).unref();
      });
    } else {
      this.socket.destroy();
    }
  }

  // ---- requests ----

  private send(spec: { type: number; offset: number; length: number; flags?: number; data?: Uint8Array; into?: Buffer }): Promise<Completion & { ok: true }> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new NbdConnectionError('the client is closed', { peer: this.peer, request: { command: 'request', offset: spec.offset, length: spec.length } }));
    const { handle, header } = this.machine.request(spec);
    const promise = new Promise<Completion & { ok: true }>((resolve, reject) => this.waiters.set(handle, { resolve, reject }));
    if (this.waiters.size === 1) this.lastHeard = Date.now();
    this.armTimer();
    if (spec.data !== undefined) {
      this.socket.cork();
      this.socket.write(header);
      this.socket.write(spec.data);
      this.socket.uncork();
    } else {
      this.socket.write(header);
    }
    return promise;
  }

  /** Resolves when `handle` settles either way. */
  private settled(handle: bigint): Promise<void> {
    const waiter = this.waiters.get(handle);
    if (waiter === undefined) return Promise.resolve();
    return new Promise((resolve) => {
      this.waiters.set(handle, {
        resolve: (c) => {
          waiter.resolve(c);
          resolve();
        },
        reject: (e) => {
          waiter.reject(e);
          resolve();
        },
      });
    });
  }

  private onData(chunk: Buffer, lent: boolean): void {
    this.deliver(() => this.machine.receive(chunk, lent));
  }

  /** Hands the server's bytes to the machine (`parse`) and settles what they complete. */
  private deliver(parse: () => Completion[]): void {
    if (this.failure !== undefined) return;
    this.lastHeard = Date.now();
    let completions: Completion[];
    try {
      completions = parse();
    } catch (error) {
      this.fail(error instanceof NbdError ? error : new NbdConnectionError(String(error), { peer: this.peer }, { cause: error }));
      return;
    }
    for (const completion of completions) {
      const waiter = this.waiters.get(completion.handle);
      this.waiters.delete(completion.handle);
      if (completion.ok) waiter?.resolve(completion);
      else waiter?.reject(completion.error);
    }
    if (this.waiters.size === 0) this.stopTimer();
  }

  private onClose(): void {
    this.stopTimer();
    if (this.failure !== undefined) return;
    if (this.waiters.size === 0 && !this.machine.midReply) {
      if (!this.closing) this.failure = new NbdConnectionError('the server closed the connection', { peer: this.peer });
      return;
    }
    const request = this.machine.currentRequest ?? this.oldestRequest();
    const how = this.machine.midReply ? 'mid-reply' : `with ${this.waiters.size} request(s) in flight`;
    this.fail(new NbdConnectionError(`the server closed the connection ${how}`, { peer: this.peer, request }));
  }

  /** Ends the connection: every waiting request and every later one fails with `error`. */
  private fail(error: NbdError): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.stopTimer();
    this.socket.destroy();
    const waiters = [...this.waiters.values()];
    this.waiters.clear();
    for (const waiter of waiters) waiter.reject(error);
  }

  private oldestRequest(): NbdRequestRef | undefined {
    return this.machine.requestsInFlight()[0];
  }

  // ---- the silence timer: armed while requests wait, measured from the last byte heard ----

  private armTimer(): void {
    if (this.timer !== undefined) return;
    const wait = Math.max(1, this.lastHeard + this.timeoutMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.waiters.size === 0 || this.failure !== undefined) return;
      if (Date.now() - this.lastHeard >= this.timeoutMs) {
        const request = this.machine.currentRequest ?? this.oldestRequest();
        const what = request !== undefined ? ` (waiting on ${describeRequest(request)} and ${this.waiters.size - 1} more)` : '';
        this.fail(new NbdTimeoutError(`the server said nothing for ${this.timeoutMs} ms${what}`, this.timeoutMs, { peer: this.peer, request }));
      } else {
        this.armTimer();
      }
    }, wait);
  }

  private stopTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  // ---- argument checks (ArgumentError: the caller's mistake, not the server's) ----

  private checkRange(what: string, offset: number, length: number, aligned: boolean): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length <= 0) {
      throw new ArgumentError(`nbd ${this.peer}: ${what}: offset ${offset} and length ${length} must be integers, offset ≥ 0, length > 0`);
    }
    if (offset + length > this.size) {
      throw new ArgumentError(`nbd ${this.peer}: ${what}: offset ${offset} + length ${length} runs past the export's ${this.size} bytes`);
    }
    const minimum = this.blockSizes?.minimum ?? 1;
    if (aligned && (offset % minimum !== 0 || length % minimum !== 0)) {
      throw new ArgumentError(`nbd ${this.peer}: ${what}: offset ${offset} and length ${length} must be multiples of the minimum block size ${minimum}`);
    }
  }

  private checkWritable(what: string): void {
    if (this.readOnly) throw new ArgumentError(`nbd ${this.peer}: ${what}: the export is read-only`);
  }

  private fuaFlag(fua: boolean | undefined): number {
    if (!fua) return 0;
    if (!(this.flags & TransmissionFlag.SEND_FUA)) throw new ArgumentError(`nbd ${this.peer}: the server does not offer FUA`);
    return CmdFlag.FUA;
  }

  /** A request length up to `limit`, a multiple of the minimum block size. */
  private alignedStep(limit: number): number {
    const minimum = this.blockSizes?.minimum ?? 1;
    return limit - (limit % minimum);
  }
}
