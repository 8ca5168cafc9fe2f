/**
 * The sockets behind the verdict exchange (verdict-wire.ts): the destination listens (TLS
 * with client certificates, like recv, or plaintext with --insecure), the source connects
 * once its check is done. A connection that does not send a well-formed source verdict within
 * 10 s is closed and reported; the listener keeps waiting for the real source.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { checkPin, clientTlsOptions, serverTlsOptions, type TlsMaterial } from '../tls/credentials.js';
import { MigrateError } from './errors.js';
import { decodeVerdict, encodeVerdict, VerdictLineSplitter, type Verdict, type VerdictMessage } from './verdict-wire.js';

const FIRST_LINE_MS = 10_000;

export class VerdictChannelError extends MigrateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_VERDICT_CHANNEL', message, options);
  }
}

type SourceVerdict = Extract<VerdictMessage, { type: 'source-verdict' }>;
type DestinationVerdict = Extract<VerdictMessage, { type: 'destination-verdict' }>;

export interface SourceContact {
  verdict: SourceVerdict;
  peer: string;
  reply(message: DestinationVerdict): Promise<void>;
}

/** Reads the first line of `socket` (bounded in size and time). */
function firstLine(socket: Socket, timeoutMs: number, peer: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const splitter = new VerdictLineSplitter();
    const timer = setTimeout(() => finish(new VerdictChannelError(`${peer} sent no verdict within ${timeoutMs / 1000} s`)), timeoutMs);
    const finish = (error: Error | null, line?: string): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onEnd);
      if (error) reject(error);
      else resolve(line!);
    };
    const onData = (chunk: Buffer): void => {
      try {
        const lines = splitter.push(chunk);
        if (lines.length > 0) finish(null, lines[0]);
      } catch (error) {
        finish(error as Error);
      }
    };
    const onError = (error: Error): void => finish(new VerdictChannelError(`${peer}: ${error.message}`, { cause: error }));
    const onEnd = (): void => finish(new VerdictChannelError(`${peer} closed the verdict connection before answering`));
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('end', onEnd);
  });
}

export class VerdictListener {
  private waiting: ((contact: SourceContact) => void) | undefined;
  private arrived: SourceContact | undefined;

  private constructor(
    private readonly server: Server,
    private readonly onStray: (peer: string, reason: string) => void,
  ) {}

  static async listen(options: { host: string; port: number; tls: TlsMaterial | null; onStray?: (peer: string, reason: string) => void }): Promise<VerdictListener> {
    const onStray = options.onStray ?? (() => undefined);
    let listener: VerdictListener | undefined;
    const accept = (socket: Socket): void => listener!.accept(socket);
    const server = options.tls === null ? createServer(accept) : createTlsServer(serverTlsOptions(options.tls), accept);
    // A client that fails the TLS handshake (no or wrong certificate) never reaches accept.
    server.on('tlsClientError', (error: Error, socket: TLSSocket) => onStray(`${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`, `TLS: ${error.message}`));
    listener = new VerdictListener(server, onStray);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(new VerdictChannelError(`cannot listen for the verdict on ${options.host}:${options.port}: ${error.message}`, { cause: error })));
      server.listen(options.port, options.host, () => resolve());
    });
    server.on('error', () => undefined);
    return listener;
  }

  get port(): number {
    const address = this.server.address();
    return typeof address === 'object' && address !== null ? address.port : 0;
  }

  private accept(socket: Socket): void {
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    socket.on('error', () => undefined);
    if (this.arrived !== undefined) {
      this.onStray(peer, 'a source verdict already arrived');
      socket.destroy();
      return;
    }
    firstLine(socket, FIRST_LINE_MS, peer).then(
      (line) => {
        let message: VerdictMessage;
        try {
          message = decodeVerdict(line);
        } catch (error) {
          this.onStray(peer, (error as Error).message);
          socket.destroy();
          return;
        }
        if (message.type !== 'source-verdict' || this.arrived !== undefined) {
          this.onStray(peer, message.type !== 'source-verdict' ? `sent a ${message.type}` : 'a source verdict already arrived');
          socket.destroy();
          return;
        }
        const contact: SourceContact = {
          verdict: message,
          peer,
          reply: (answer) => new Promise<void>((resolve) => socket.end(encodeVerdict(answer), () => resolve())),
        };
        this.arrived = contact;
        this.waiting?.(contact);
      },
      (error: unknown) => {
        this.onStray(peer, (error as Error).message);
        socket.destroy();
      },
    );
  }

  /** The first well-formed source verdict (strays are skipped), or a timeout error. */
  waitForSource(timeoutMs: number): Promise<SourceContact> {
    if (this.arrived) return Promise.resolve(this.arrived);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        reject(new VerdictChannelError(`the source sent no verdict within ${timeoutMs / 1000} s (is it running "migrate --verify"?)`));
      }, timeoutMs);
      this.waiting = (contact) => {
        clearTimeout(timer);
        resolve(contact);
      };
    });
  }

  close(): void {
    this.server.close();
  }
}

/** The source's side: connect (retrying while the destination comes up), send, read the answer. */
export async function exchangeVerdict(options: { host: string; port: number; tls: TlsMaterial | null; verdict: Verdict; timeoutMs: number }): Promise<DestinationVerdict> {
  const peer = `${options.host}:${options.port}`;
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    let socket: Socket;
    try {
      socket = await open(options.host, options.port, options.tls);
    } catch (error) {
      if (Date.now() > deadline) throw new VerdictChannelError(`cannot reach the destination's verdict port ${peer}: ${(error as Error).message}`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 200));
      continue;
    }
    try {
      socket.write(encodeVerdict({ type: 'source-verdict', ...options.verdict }));
      const line = await firstLine(socket, Math.max(1000, deadline - Date.now()), `the destination ${peer}`);
      const answer = decodeVerdict(line);
      if (answer.type !== 'destination-verdict') throw new VerdictChannelError(`the destination ${peer} answered with a ${answer.type}`);
      return answer;
    } finally {
      socket.destroy();
    }
  }
}

function open(host: string, port: number, tls: TlsMaterial | null): Promise<Socket> {
  return new Promise((resolve, reject) => {
    if (tls === null) {
      const socket = createConnection({ host, port }, () => resolve(socket));
      socket.once('error', reject);
      return;
    }
    const socket = tlsConnect({ host, port, ...clientTlsOptions(tls, host) }, () => {
      const problem = checkPin(tls, socket.getPeerCertificate());
      if (problem !== null) {
        socket.destroy();
        reject(new VerdictChannelError(problem));
      } else resolve(socket);
    });
    socket.once('error', reject);
  });
}
