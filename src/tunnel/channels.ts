/**
 * The tunnel's channels: N TCP connections (TLS 1.3 with mutual authentication unless
 * --insecure) between the two tunnel ends, and their handshake. The dialer connects N and sends
 * OPEN (version 3) on each; the listener admits them with the transport's rules
 * (src/tls/session.ts `admit`) and answers ACCEPT or REFUSE. I/O only; what flows once a
 * session is open is session.ts's business.
 */
import { randomBytes } from 'node:crypto';
import { connect as netConnect, createServer as netServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as tlsServer, type TLSSocket } from 'node:tls';
import { checkPin, clientTlsOptions, serverTlsOptions, type TlsMaterial } from '../tls/credentials.js';
import { ChannelError, HandshakeError, ListenError, ProtocolError, TimeoutError, type TransportError } from '../tls/errors.js';
import { admit, type SessionInfo } from '../tls/session.js';
import { socketError } from '../tls/socket-errors.js';
import { CLOSE_GRACE_MS, FrameParser, PROTOCOL_MAGIC, encodeAccept, encodeOpen, encodeRefuse } from '../tls/wire.js';
import { TUNNEL_PROTOCOL_VERSION, TunnelFrameType, decodeTunnelFrame, type TunnelFrame } from './wire.js';

/** One admitted channel: its socket and a parser that has already read the handshake. */
export interface Channel {
  index: number;
  socket: Socket;
  parser: FrameParser<TunnelFrame>;
  /** Frames that arrived in the same read as ACCEPT / OPEN. */
  early: TunnelFrame[];
}

const REDIAL_MS = 200;

/** Ends a socket after what was written, and destroys it if it will not flush. */
export function closeSocket(socket: Socket): void {
  socket.end();
  setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
}

export interface DialOptions {
  host: string;
  port: number;
  channels: number;
  tls: TlsMaterial | null;
  /** Give up when the listener cannot be reached or answered for this long. */
  timeoutMs: number;
  /** The session's codec (src/codecs/registry.ts numbering), announced in OPEN. */
  codec: number;
}

/** Dialer: connects every channel and waits for each one's ACCEPT. */
export async function dialChannels(options: DialOptions): Promise<Channel[]> {
  const sessionId = randomBytes(16);
  const deadline = Date.now() + options.timeoutMs;
  const opened: Channel[] = [];
  try {
    for (let index = 0; index < options.channels; index++) opened.push(await dialOne(options, sessionId, index, deadline));
    return opened;
  } catch (error) {
    for (const channel of opened) channel.socket.destroy();
    throw error;
  }
}

async function dialOne(options: DialOptions, sessionId: Buffer, index: number, deadline: number): Promise<Channel> {
  for (;;) {
    try {
      return await attempt(options, sessionId, index, deadline);
    } catch (error) {
      const refused = error instanceof ChannelError && /ECONNREFUSED|ENOENT/.test(String((error.cause as NodeJS.ErrnoException | undefined)?.code));
      if (!refused || Date.now() + REDIAL_MS > deadline) {
        if (refused) throw new ChannelError(`connection refused by ${options.host}:${options.port} (is "migstream tunnel --listen" running there?)`, index, { cause: error });
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, REDIAL_MS));
    }
  }
}

function attempt(options: DialOptions, sessionId: Buffer, index: number, deadline: number): Promise<Channel> {
  return new Promise((resolve, reject) => {
    const material = options.tls;
    const socket: Socket = material === null ? netConnect({ host: options.host, port: options.port }) : tlsConnect({ ...clientTlsOptions(material, options.host), host: options.host, port: options.port });
    socket.setNoDelay(true);
    const parser = new FrameParser<TunnelFrame>(index, undefined, decodeTunnelFrame);
    const timer = setTimeout(() => finish(new TimeoutError(`no answer from ${options.host}:${options.port} within the timeout`, index)), Math.max(0, deadline - Date.now()));
    let settled = false;
    const finish = (error: TransportError | null, channel?: Channel): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Paused until the session reads it: data with no listener would be lost.
      socket.pause();
      socket.off('data', onData);
      if (error === null) {
        resolve(channel!);
        return;
      }
      socket.destroy();
      reject(error);
    };
    const onData = (chunk: Buffer): void => {
      let frames: TunnelFrame[];
      try {
        frames = parser.push(chunk);
      } catch (error) {
        finish(error as TransportError);
        return;
      }
      const first = frames[0];
      if (first === undefined) return;
      if (first.type === TunnelFrameType.ACCEPT && first.index === index) finish(null, { index, socket, parser, early: frames.slice(1) });
      else if (first.type === TunnelFrameType.REFUSE) finish(new HandshakeError(`the listener refused: ${first.reason}`, index));
      else finish(new ProtocolError(`expected ACCEPT ${index}, got frame type ${first.type}`, index));
    };
    socket.once(material === null ? 'connect' : 'secureConnect', () => {
      if (material !== null) {
        const problem = checkPin(material, (socket as TLSSocket).getPeerCertificate());
        if (problem !== null) {
          finish(new HandshakeError(problem, index));
          return;
        }
      }
      socket.write(encodeOpen({ version: TUNNEL_PROTOCOL_VERSION, sessionId, channels: options.channels, index, codec: options.codec }));
    });
    socket.on('data', onData);
    socket.on('error', (error) => finish(socketError(error, index, 'receiver')));
    // TLS 1.3: the client's handshake completes before the server checked its certificate, so a
    // refused certificate shows only as this close (the listener logs the reason).
    socket.on('close', () => finish(new ChannelError('the listener closed the connection during the handshake (does it accept this client certificate?)', index)));
  });
}

export interface ListenOptions {
  host: string;
  port: number;
  tls: TlsMaterial | null;
  /** A complete session: all its channels joined; `codec` is the one its OPEN announced. */
  onSession(channels: Channel[], codec: number): void;
  /** A connection that was refused or failed before joining (logged; listening goes on). */
  onStranger(address: string, reason: string): void;
  /** While a session runs, new sessions are refused. */
  busy(): boolean;
  /** How long the channels of a session have to join after channel 0. */
  joinTimeoutMs: number;
}

/** Listener: accepts channels for one session at a time; strangers never disturb it. */
export function listenForChannels(options: ListenOptions): Promise<{ server: Server; port: number }> {
  let pending: { info: SessionInfo; channels: Channel[]; timer: NodeJS.Timeout } | undefined;
  const admitted = (socket: Socket, parser: FrameParser<TunnelFrame>, open: Extract<TunnelFrame, { type: 1 }>, early: TunnelFrame[]): void => {
    if (open.magic !== PROTOCOL_MAGIC) {
      options.onStranger(addressOf(socket), 'not a migstream tunnel (bad magic)');
      socket.destroy();
      return;
    }
    const refuse = (reason: string): void => {
      options.onStranger(addressOf(socket), reason);
      socket.write(encodeRefuse(reason));
      closeSocket(socket);
    };
    if (options.busy() && pending === undefined) return refuse('a tunnel session is already in progress');
    const result = admit(pending?.info, open, { version: TUNNEL_PROTOCOL_VERSION, name: 'tunnel' });
    if ('refuse' in result) return refuse(result.refuse);
    if (pending === undefined) {
      const timer = setTimeout(() => {
        const joined = pending;
        pending = undefined;
        if (joined === undefined) return;
        options.onStranger(addressOf(socket), `only ${joined.channels.length} of ${joined.info.channels} channels joined within the timeout`);
        for (const channel of joined.channels) channel.socket.destroy();
      }, options.joinTimeoutMs);
      pending = { info: result.session, channels: [], timer };
    }
    socket.write(encodeAccept(open.index));
    pending.channels.push({ index: open.index, socket, parser, early });
    if (pending.channels.length === pending.info.channels) {
      const complete = pending;
      pending = undefined;
      clearTimeout(complete.timer);
      options.onSession(
        complete.channels.sort((a, b) => a.index - b.index),
        complete.info.codec,
      );
    }
  };
  const onConnection = (socket: Socket): void => {
    socket.setNoDelay(true);
    const parser = new FrameParser<TunnelFrame>(undefined, undefined, decodeTunnelFrame);
    const fail = (reason: string): void => {
      socket.off('data', onData);
      options.onStranger(addressOf(socket), reason);
      socket.destroy();
    };
    const onData = (chunk: Buffer): void => {
      let frames: TunnelFrame[];
      try {
        frames = parser.push(chunk);
      } catch (error) {
        fail((error as Error).message);
        return;
      }
      const first = frames[0];
      if (first === undefined) return;
      socket.pause();
      socket.off('data', onData);
      socket.off('close', onClose);
      clearTimeout(timer);
      if (first.type !== TunnelFrameType.OPEN) return fail(`first frame of type ${first.type}, not OPEN`);
      admitted(socket, parser, first, frames.slice(1));
    };
    const onClose = (): void => {
      clearTimeout(timer);
      options.onStranger(addressOf(socket), 'closed before its OPEN');
    };
    // A connection that says nothing is dropped, so strangers cannot pile up.
    const timer = setTimeout(() => fail('no OPEN within the timeout'), options.joinTimeoutMs);
    socket.on('data', onData);
    socket.on('error', () => {});
    socket.once('close', onClose);
  };
  const server: Server = options.tls === null ? netServer(onConnection) : tlsServer(serverTlsOptions(options.tls), onConnection);
  server.on('tlsClientError', (error: Error, socket: Socket) => {
    options.onStranger(addressOf(socket), socketError(error, 0, 'sender').message.replace(/^channel 0: /, ''));
  });
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => reject(new ListenError(`cannot listen on ${options.host}:${options.port}: ${error.code ?? error.message}`, { cause: error })));
    server.listen(options.port, options.host, () => {
      const address = server.address();
      resolve({ server, port: typeof address === 'object' && address !== null ? address.port : options.port });
    });
  });
}

function addressOf(socket: Socket): string {
  return socket.remoteAddress === undefined ? 'unknown peer' : `${socket.remoteAddress}:${socket.remotePort}`;
}
