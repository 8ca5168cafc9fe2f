/**
 * The tunnel's I/O edge: runs a TunnelSession (session.ts) over its channels (channels.ts) and
 * the local UNIX-socket connections it forwards. The dialer listens on the local sockets it
 * was given and opens a stream per connection; the listener connects each stream to its target.
 * Everything that decides lives in the session; this file only moves bytes and events.
 */
import { EventEmitter } from 'node:events';
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { connect as netConnect, createServer as netServer, type Server, type Socket } from 'node:net';
import type { TlsMaterial } from '../tls/credentials.js';
import { ChannelError, ListenError, type TransportError } from '../tls/errors.js';
import { socketError } from '../tls/socket-errors.js';
import { codecById, codecByName, resolveLevel, type CodecName } from '../codecs/registry.js';
import { ArgumentError } from '../stream/errors.js';
import { DEFAULT_PAGE_CACHE_BYTES, frameCodec, type FrameCodec, type FrameCodecOptions, type PageDeltaCounts } from './frame-codec.js';
import { dialChannels, closeSocket, listenForChannels, type Channel } from './channels.js';
import { classifyConnection, type ConnectionKind } from './classify.js';
import { TunnelSession, type TunnelAction, type TunnelSide } from './session.js';
import type { TunnelFrame } from './wire.js';

/** What one forwarded connection did, for the report. */
export interface StreamRecord {
  id: number;
  target: string;
  channel: number;
  kind: ConnectionKind | null;
  /** Bytes from the connecting side (the client: libvirt, the source QEMU) and back. */
  clientBytes: number;
  serverBytes: number;
  openedAt: number;
  closedAt: number | null;
  /** Why it was reset, or null while open and after a clean close. */
  reset: string | null;
}

export interface TunnelEvents {
  stream: [StreamRecord];
  classified: [StreamRecord];
  /** Bytes of a stream as they pass: `fromClient` is the connecting side's direction. */
  bytes: [StreamRecord, boolean, Buffer];
  closed: [StreamRecord];
  /** The session ended; null when it was stopped on purpose. */
  end: [TransportError | null];
}

const CLASSIFY_BYTES = 16;
const TICK_MS = 1000;

/** Runs one session until it fails or is stopped. */
class SessionRunner extends EventEmitter<TunnelEvents> implements Tunnel {
  readonly session: TunnelSession;
  /** Resolves when the session ends: null when stopped, else why it failed. */
  readonly ended: Promise<TransportError | null>;
  private readonly sockets = new Map<number, Socket>();
  /** The open streams' records: removed once reported closed (a long-lived tunnel sees many). */
  private readonly records = new Map<number, StreamRecord>();
  private readonly firstBytes = new Map<number, { client: Buffer; server: Buffer }>();
  private readonly timer: NodeJS.Timeout;
  private finished = false;
  /** Bytes of frames sent and received over the channels (before TLS). */
  private readonly wire = { sent: 0, received: 0 };
  private readonly codec: FrameCodec;

  constructor(
    private readonly side: TunnelSide,
    private readonly channels: Channel[],
    options: { timeoutMs: number; window?: number | undefined; checkTarget?: (target: string) => string | null; codec: FrameCodec },
  ) {
    super();
    this.codec = options.codec;
    this.ended = new Promise((resolve) => this.once('end', resolve));
    this.session = new TunnelSession({ side, channels: channels.length, timeoutMs: options.timeoutMs, window: options.window, checkTarget: options.checkTarget, codec: options.codec }, Date.now());
    for (const channel of channels) this.attachChannel(channel);
    this.timer = setInterval(() => this.step(() => this.session.tick(Date.now())), TICK_MS);
    this.timer.unref();
  }

  /** Pages this side sent as deltas against their earlier copy (-c with --page-cache). */
  pageDelta(): PageDeltaCounts {
    return this.codec.pageDelta();
  }

  /** Frame bytes over the channels so far, each way (TLS adds its own few per record). */
  wireBytes(): { sent: number; received: number } {
    return { ...this.wire };
  }

  get active(): boolean {
    return !this.finished;
  }

  /** Dialer: a local connection accepted for `target`. */
  accept(socket: Socket, target: string): void {
    this.step(() => {
      const id = this.session.open(target);
      this.attachLocal(id, socket);
    });
  }

  stop(reason = `the tunnel at the ${this.side === 'dialer' ? 'source' : 'destination'} was stopped`): void {
    this.step(() => this.session.stop(reason));
  }

  private attachChannel(channel: Channel): void {
    const { socket, parser, index } = channel;
    const deliver = (frames: TunnelFrame[]): void => {
      const now = Date.now();
      for (const frame of frames) this.session.frame(index, frame, now);
    };
    this.step(() => deliver(channel.early));
    socket.on('data', (chunk: Buffer) =>
      this.step(() => {
        this.wire.received += chunk.length;
        try {
          deliver(parser.push(chunk));
        } catch (error) {
          this.session.channelLost(error as TransportError);
        }
      }),
    );
    socket.on('error', (error) => this.step(() => this.session.channelLost(socketError(error, index, this.side === 'dialer' ? 'receiver' : 'sender'))));
    socket.on('close', () => this.step(() => this.session.channelLost(new ChannelError('the peer closed the connection', index))));
    socket.resume();
  }

  private attachLocal(id: number, socket: Socket): void {
    this.sockets.set(id, socket);
    socket.on('data', (chunk: Buffer) =>
      this.step(() => {
        this.observe(id, this.side === 'dialer', chunk);
        this.session.localData(id, chunk);
      }),
    );
    socket.on('end', () => this.step(() => this.session.localEnd(id)));
    socket.on('error', (error: NodeJS.ErrnoException) => this.step(() => this.session.localFailed(id, error.code ?? error.message)));
    socket.on('close', () => this.step(() => this.session.localFailed(id, 'the connection closed')));
  }

  /** Runs an input of the session, then carries out its actions. */
  private step(input: () => void): void {
    if (this.finished) return;
    input();
    for (const action of this.session.drain()) this.act(action);
  }

  private act(action: TunnelAction): void {
    switch (action.kind) {
      case 'send': {
        const socket = this.channels[action.channel]?.socket;
        if (socket === undefined || socket.destroyed) return;
        if (action.bytes.length > 1) socket.cork();
        for (const bytes of action.bytes) {
          this.wire.sent += bytes.length;
          socket.write(bytes);
        }
        if (action.bytes.length > 1) socket.uncork();
        this.session.sentAt(action.channel, Date.now());
        return;
      }
      case 'connect': {
        const socket = netConnect({ path: action.target, allowHalfOpen: true });
        socket.once('connect', () => this.step(() => this.session.connected(action.stream)));
        this.attachLocal(action.stream, socket);
        return;
      }
      case 'write': {
        const socket = this.sockets.get(action.stream);
        if (socket === undefined) return;
        this.observe(action.stream, this.side === 'listener', action.data);
        const bytes = action.data.length;
        socket.write(action.data, (error) => {
          if (error == null) this.step(() => this.session.localWritten(action.stream, bytes));
        });
        return;
      }
      case 'end':
        this.sockets.get(action.stream)?.end();
        return;
      case 'destroy':
        this.sockets.get(action.stream)?.destroy();
        return;
      case 'pause':
        this.sockets.get(action.stream)?.pause();
        return;
      case 'resume':
        this.sockets.get(action.stream)?.resume();
        return;
      case 'opened': {
        const record: StreamRecord = { id: action.stream, target: action.target, channel: action.channel, kind: null, clientBytes: 0, serverBytes: 0, openedAt: Date.now(), closedAt: null, reset: null };
        this.records.set(action.stream, record);
        this.firstBytes.set(action.stream, { client: Buffer.alloc(0), server: Buffer.alloc(0) });
        this.emit('stream', record);
        return;
      }
      case 'closed': {
        this.sockets.delete(action.stream);
        this.firstBytes.delete(action.stream);
        // The session reports every stream 'opened' before 'closed', refused ones included.
        const record = this.records.get(action.stream)!;
        this.records.delete(action.stream);
        record.closedAt = Date.now();
        record.reset = action.reset;
        this.emit('closed', record);
        return;
      }
      case 'failed':
        this.finish(action.stopped ? null : action.error);
        return;
    }
  }

  /** Counts a stream's bytes, tells its kind from its first ones, and passes them to listeners. */
  private observe(id: number, fromClient: boolean, data: Buffer): void {
    const record = this.records.get(id);
    if (record === undefined) return;
    if (fromClient) record.clientBytes += data.length;
    else record.serverBytes += data.length;
    const first = this.firstBytes.get(id);
    if (first !== undefined) {
      const key = fromClient ? 'client' : 'server';
      if (first[key].length < CLASSIFY_BYTES) first[key] = Buffer.concat([first[key], data.subarray(0, CLASSIFY_BYTES - first[key].length)]);
      const kind = classifyConnection(first.client, first.server);
      if (kind !== null) {
        record.kind = kind;
        this.firstBytes.delete(id);
        this.emit('classified', record);
      }
    }
    if (this.listenerCount('bytes') > 0) this.emit('bytes', record, fromClient, data);
  }

  private finish(error: TransportError | null): void {
    if (this.finished) return;
    this.finished = true;
    clearInterval(this.timer);
    for (const socket of this.sockets.values()) socket.destroy();
    for (const channel of this.channels) closeSocket(channel.socket);
    this.emit('end', error);
  }
}

export interface DialerOptions {
  host: string;
  port: number;
  channels: number;
  tls: TlsMaterial | null;
  timeoutMs: number;
  /** Local UNIX sockets to listen on, each forwarded to `target` on the far side. */
  routes: { listen: string; target: string }[];
  window?: number;
  /** Permissions of the listening sockets (e.g. 0o660 for a QEMU running as another user); default the umask's. */
  socketMode?: number | undefined;
  /** Compression of what goes both ways (default none); the destination follows the source's choice. */
  codec?: CodecName;
  level?: number | undefined;
  /**
   * Page-aware compression (with a codec): bytes of page cache each QEMU main stream or
   * multifd channel keeps on both hosts, so a page sent again goes as a delta; 0 turns it off.
   * Default DEFAULT_PAGE_CACHE_BYTES (64 MiB).
   */
  pageCacheBytes?: number | undefined;
}

export interface Tunnel extends EventEmitter<TunnelEvents> {
  /** Resolves when the session ends: null when stopped, else why it failed. */
  readonly ended: Promise<TransportError | null>;
  /** Frame bytes over the channels so far, each way (before TLS). */
  wireBytes(): { sent: number; received: number };
  /** Pages this side sent as deltas against their earlier copy, and pages it kept for that. */
  pageDelta(): PageDeltaCounts;
  stop(reason?: string): void;
}

/** Source side: connects the session, then listens on the routes' sockets until it ends. */
export async function startDialer(options: DialerOptions): Promise<Tunnel> {
  const codec = tunnelCodec(options.codec ?? 'none', options.level, { pageCacheBytes: options.pageCacheBytes ?? DEFAULT_PAGE_CACHE_BYTES });
  const channels = await dialChannels({ ...options, codec: codecByName(options.codec ?? 'none').id });
  const runner = new SessionRunner('dialer', channels, { timeoutMs: options.timeoutMs, window: options.window, codec });
  const servers: Server[] = [];
  void runner.ended.then(() => {
    for (const server of servers) server.close();
    for (const route of options.routes) removeSocketFile(route.listen);
  });
  try {
    for (const route of options.routes) {
      servers.push(await listenUnix(route.listen, (socket) => runner.accept(socket, route.target)));
      if (options.socketMode !== undefined) chmodSync(route.listen, options.socketMode);
    }
  } catch (error) {
    runner.stop('the tunnel could not listen on its sockets');
    throw error;
  }
  return runner;
}

export interface ListenerOptions {
  host: string;
  port: number;
  tls: TlsMaterial | null;
  timeoutMs: number;
  /** The only UNIX sockets a stream may connect to. */
  targets: string[];
  window?: number;
  /** The most page cache a source may make this side keep, all streams together (default 1 GiB). */
  pageCacheLimitBytes?: number | undefined;
}

export interface TunnelListener extends EventEmitter<TunnelEvents & { session: [Tunnel]; stranger: [string, string] }> {
  readonly port: number;
  close(): void;
}

/** Destination side: serves one session at a time, each stream connected to an allowed target. */
export async function startListener(options: ListenerOptions): Promise<TunnelListener> {
  const allowed = new Set(options.targets);
  const emitter = new EventEmitter<TunnelEvents & { session: [Tunnel]; stranger: [string, string] }>();
  let current: SessionRunner | undefined;
  const { server, port } = await listenForChannels({
    host: options.host,
    port: options.port,
    tls: options.tls,
    joinTimeoutMs: options.timeoutMs,
    busy: () => current?.active === true,
    onStranger: (address, reason) => emitter.emit('stranger', address, reason),
    onSession: (channels, codecId) => {
      let codec: FrameCodec;
      try {
        codec = tunnelCodec(codecById(codecId)!.name, undefined, { pageCacheLimitBytes: options.pageCacheLimitBytes });
      } catch (error) {
        emitter.emit('stranger', 'a session', `refused: ${(error as Error).message}`);
        for (const channel of channels) channel.socket.destroy();
        return;
      }
      const runner = new SessionRunner('listener', channels, {
        codec,
        timeoutMs: options.timeoutMs,
        window: options.window,
        checkTarget: (target) => (allowed.has(target) ? null : `${target} is not a target of this tunnel (--unix)`),
      });
      current = runner;
      // Not 'bytes': a listener there would make every chunk an event; subscribe on the session.
      for (const name of ['stream', 'classified', 'closed', 'end'] as const) {
        runner.on(name, (...args: unknown[]) => (emitter.emit as (event: string, ...rest: unknown[]) => boolean)(name, ...args));
      }
      emitter.emit('session', runner);
    },
  });
  return Object.assign(emitter, {
    port,
    close() {
      server.close();
      current?.stop();
    },
  });
}

/** The frame codec for `name`; a codec this machine cannot run is a start-up failure. */
function tunnelCodec(name: CodecName, level: number | undefined, options: FrameCodecOptions): FrameCodec {
  const info = codecByName(name);
  const codec = frameCodec(info, resolveLevel(info, level), options);
  if (typeof codec === 'string') throw new ArgumentError(codec);
  return codec;
}

/** Listens on a UNIX socket path; a stale socket file there (not another file) is replaced. */
function listenUnix(path: string, onConnection: (socket: Socket) => void): Promise<Server> {
  removeSocketFile(path);
  const server = netServer({ allowHalfOpen: true, pauseOnConnect: false }, onConnection);
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(new ListenError(`cannot listen on ${path}: ${error.code ?? error.message}`, { cause: error })));
    server.listen(path, () => resolve(server));
  });
}

function removeSocketFile(path: string): void {
  try {
    if (existsSync(path) && lstatSync(path).isSocket()) unlinkSync(path);
  } catch {
    // Someone else's file, or gone already: listen() will say.
  }
}
