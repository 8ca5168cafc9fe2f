/**
 * The sockets behind the control port (verdict-wire.ts): the destination listens (TLS with
 * client certificates, like recv, or plaintext with --insecure); the source connects for a
 * link probe before the migration and for the verdict once its check is done. A connection
 * that does not send a well-formed first line within 10 s is closed and reported; the
 * listener keeps waiting for the real source.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { limitUnsent, socketDescriptor } from '../native/fd.js';
import { checkPin, clientTlsOptions, serverTlsOptions, type TlsMaterial } from '../tls/credentials.js';
import { MigrateError } from './errors.js';
import { encodeDiskMessage, type DiskOpenMessage } from './disk-wire.js';
import { decodeVerdict, encodeVerdict, VerdictLineSplitter, type ControlMessage, type Verdict, type VerdictMessage } from './verdict-wire.js';

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

interface FirstLine {
  line: string;
  /** Bytes that came after the line's newline in the same reads. */
  extraBytes: number;
}

/** Reads the first line of `socket` (bounded in size and time). */
function firstLine(socket: Socket, timeoutMs: number, peer: string): Promise<FirstLine> {
  return new Promise((resolve, reject) => {
    const splitter = new VerdictLineSplitter();
    let raw = 0;
    const timer = setTimeout(() => finish(new VerdictChannelError(`${peer} sent no verdict within ${timeoutMs / 1000} s`)), timeoutMs);
    const finish = (error: Error | null, line?: string): void => {
      clearTimeout(timer);
      // Paused, so nothing that follows the line is lost before the next reader attaches (and resumes).
      socket.pause();
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onEnd);
      if (error) reject(error);
      else resolve({ line: line!, extraBytes: raw - Buffer.byteLength(line!) - 1 });
    };
    const onData = (chunk: Buffer): void => {
      raw += chunk.length;
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

/**
 * Takes a drive's disk connection (disk-wire.ts) once its first line arrived; the socket is
 * paused and nothing followed the line.
 */
export type DiskStreamHandler = (socket: Socket, open: DiskOpenMessage, peer: string) => void;

export class VerdictListener {
  private waiting: ((contact: SourceContact) => void) | undefined;
  private arrived: SourceContact | undefined;

  private constructor(
    private readonly server: Server,
    private readonly onStray: (peer: string, reason: string) => void,
    private readonly onDiskStream: DiskStreamHandler | undefined,
  ) {}

  static async listen(options: { host: string; port: number; tls: TlsMaterial | null; onStray?: (peer: string, reason: string) => void; onDiskStream?: DiskStreamHandler }): Promise<VerdictListener> {
    const onStray = options.onStray ?? (() => undefined);
    // accept runs only once the server listens, after `listener` below exists.
    const accept = (socket: Socket): void => listener.accept(socket);
    const server = options.tls === null ? createServer(accept) : createTlsServer(serverTlsOptions(options.tls), accept);
    // A client that fails the TLS handshake (no or wrong certificate) never reaches accept.
    server.on('tlsClientError', (error: Error, socket: TLSSocket) => onStray(`${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`, `TLS: ${error.message}`));
    const listener = new VerdictListener(server, onStray, options.onDiskStream);
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
      ({ line, extraBytes }) => {
        let message: ControlMessage;
        try {
          message = decodeVerdict(line);
        } catch (error) {
          this.onStray(peer, (error as Error).message);
          socket.destroy();
          return;
        }
        if (message.type === 'disk-stream') {
          if (this.onDiskStream === undefined || extraBytes > 0) {
            this.onStray(peer, extraBytes > 0 ? 'sent disk bytes before it was told to' : `sent a disk stream for drive ${JSON.stringify(message.drive)}, and this side takes none (incoming --disk)`);
            if (extraBytes === 0) socket.end(encodeDiskMessage({ type: 'disk-refused', reason: 'the destination takes no disk (start migstream incoming with --disk DRIVE)' }));
            else socket.destroy();
            return;
          }
          this.onDiskStream(socket, message, peer);
          return;
        }
        if (message.type === 'link-probe') {
          answerLinkProbe(socket, message.maxBytes, extraBytes).catch((error: Error) => {
            this.onStray(peer, `link probe: ${error.message}`);
            socket.destroy();
          });
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
  const socket = await openWithRetry(options.host, options.port, options.tls, deadline, peer);
  try {
    socket.write(encodeVerdict({ type: 'source-verdict', ...options.verdict }));
    const { line } = await firstLine(socket, Math.max(1000, deadline - Date.now()), `the destination ${peer}`);
    const answer = decodeVerdict(line);
    if (answer.type !== 'destination-verdict') throw new VerdictChannelError(`the destination ${peer} answered with a ${answer.type}`);
    return answer;
  } finally {
    socket.destroy();
  }
}

/** How long a link probe may take at the destination before it is cut off. */
const LINK_PROBE_MS = 30_000;

/**
 * The destination's side of a link probe: count what arrives until the source half-closes,
 * timing from the first byte to the last, and answer. More than announced is a stray.
 */
/**
 * The probe's totals, and its second half on its own: a link's first moments run fast (a token
 * bucket's burst, tbf's or a provider's policer, lets a megabyte through at once) or slow (TCP's
 * slow start), and the migration lasts long enough that only the steady rate matters.
 */
export function linkProbeTimes(arrivals: readonly { at: number; bytes: number }[]): { bytes: number; ms: number; steadyBytes: number; steadyMs: number } {
  const first = arrivals[0];
  const last = arrivals[arrivals.length - 1];
  if (first === undefined || last === undefined) return { bytes: 0, ms: 0, steadyBytes: 0, steadyMs: 0 };
  const middle = first.at + (last.at - first.at) / 2;
  const from = arrivals.find((a) => a.at >= middle) ?? last;
  return { bytes: last.bytes, ms: last.at - first.at, steadyBytes: last.bytes - from.bytes, steadyMs: last.at - from.at };
}

function answerLinkProbe(socket: Socket, maxBytes: number, alreadyBytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const tooMuch = (): Error => new Error(`sent more than the ${maxBytes} bytes it announced`);
    if (alreadyBytes > maxBytes) {
      reject(tooMuch());
      return;
    }
    socket.resume();
    let bytes = alreadyBytes;
    // Arrivals (time, bytes so far), for the rate over the probe's second half.
    const arrivals: { at: number; bytes: number }[] = alreadyBytes > 0 ? [{ at: performance.now(), bytes }] : [];
    const timer = setTimeout(() => reject(new Error(`not finished within ${LINK_PROBE_MS / 1000} s`)), LINK_PROBE_MS);
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      arrivals.push({ at: performance.now(), bytes });
      if (bytes > maxBytes) {
        clearTimeout(timer);
        reject(tooMuch());
      }
    });
    socket.once('end', () => {
      clearTimeout(timer);
      socket.end(encodeVerdict({ type: 'link-probe-result', ...linkProbeTimes(arrivals) }), () => resolve());
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

export interface LinkRate {
  /** Bytes per second the destination counted, over all connections. */
  bytesPerSecond: number;
  bytes: number;
  ms: number;
  connections: number;
  /**
   * From the source's last probe byte leaving for the kernel to the destination's answer: what
   * the path holds under load (a router's queue, tbf's here) plus a round trip. The tail of the
   * migration stream takes as long after QEMU's last byte.
   */
  tailMs: number;
}

/**
 * The source's side: `connections` parallel connections to the control port, each sending
 * zeros (TLS encrypts them; a plain link does not compress) for `durationMs` or `maxBytes`,
 * then half-closing. The rate is the bytes the destination counted over its longest span.
 */
/** What the link probe writes at a time. */
const PROBE_PIECE_BYTES = 256 * 1024;

export async function probeLink(options: { host: string; port: number; tls: TlsMaterial | null; connections: number; durationMs: number; maxBytes: number; timeoutMs: number }): Promise<LinkRate> {
  const peer = `${options.host}:${options.port}`;
  const perConnection = Math.floor(options.maxBytes / options.connections);
  const one = async (): Promise<{ bytes: number; ms: number; steadyBytes?: number; steadyMs?: number; tailMs: number }> => {
    const socket = await openWithRetry(options.host, options.port, options.tls, Date.now() + options.timeoutMs, peer);
    try {
      socket.write(encodeVerdict({ type: 'link-probe', maxBytes: perConnection }));
      // As send's sockets: at most one piece unsent in the kernel, so the tail below is the path's.
      const fd = socketDescriptor(socket);
      if (fd !== undefined) limitUnsent(fd, PROBE_PIECE_BYTES);
      const chunk = Buffer.alloc(PROBE_PIECE_BYTES);
      const started = performance.now();
      let sent = 0;
      let lastWrittenAt = started;
      while (sent < perConnection && performance.now() - started < options.durationMs) {
        const piece = chunk.subarray(0, Math.min(chunk.length, perConnection - sent));
        sent += piece.length;
        const flushed = socket.write(piece, () => (lastWrittenAt = performance.now()));
        if (!flushed) await new Promise((resolve) => socket.once('drain', resolve));
      }
      socket.end();
      const { line } = await firstLine(socket, options.timeoutMs, `the destination ${peer}`);
      const tailMs = performance.now() - lastWrittenAt;
      const answer = decodeVerdict(line);
      if (answer.type !== 'link-probe-result') throw new VerdictChannelError(`the destination ${peer} answered a link probe with a ${answer.type}`);
      if (answer.bytes !== sent) throw new VerdictChannelError(`the destination ${peer} counted ${answer.bytes} of ${sent} probe bytes`);
      return { ...answer, tailMs };
    } finally {
      socket.destroy();
    }
  };
  const results = await Promise.all(Array.from({ length: options.connections }, one));
  const bytes = results.reduce((a, r) => a + r.bytes, 0);
  const ms = Math.max(...results.map((r) => r.ms));
  if (ms <= 0) throw new VerdictChannelError(`the link probe to ${peer} was too short to time (${bytes} bytes)`);
  // The connections' steady rates add up (they ran side by side); a destination that reports
  // no second half (an older migstream) gives the whole probe's rate.
  const steady = results.every((r) => r.steadyBytes !== undefined && r.steadyMs !== undefined && r.steadyMs > 0) ? results.reduce((a, r) => a + (r.steadyBytes! * 1000) / r.steadyMs!, 0) : undefined;
  const tailMs = Math.max(...results.map((r) => r.tailMs));
  return { bytesPerSecond: steady ?? (bytes * 1000) / ms, bytes, ms, connections: options.connections, tailMs };
}

/** Connects to the control port, retrying while the destination comes up (until `deadline`). */
export async function openWithRetry(host: string, port: number, tls: TlsMaterial | null, deadline: number, peer: string): Promise<Socket> {
  for (;;) {
    try {
      return await open(host, port, tls);
    } catch (error) {
      if (Date.now() > deadline) throw new VerdictChannelError(`cannot reach the destination's control port ${peer}: ${(error as Error).message}`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 200));
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
