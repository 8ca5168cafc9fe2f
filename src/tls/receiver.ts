/**
 * The receiving side's main thread: accepts connections, hands each socket to a channel
 * worker and writes the stream to the output. Admission, reordering, verification, DONE and
 * every deadline are the session machine's (recv-session.ts): this file feeds it what the
 * listener, the workers, the output and the clock say, and carries out its actions.
 *
 * Sockets move to workers by descriptor: the main thread accepts with pauseOnConnect, never
 * reads, and never closes its handle (closing would close the worker's descriptor).
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Worker } from 'node:worker_threads';
import { MigstreamError } from '../stream/errors.js';
import { ChannelError, ListenError, OutputError, type TransportError, transportErrorFrom } from './errors.js';
import { Alarm, closedSignal, tickMs, untilClosed } from './glue.js';
import type { TlsMaterial } from './credentials.js';
import type { FromRecvWorker, RecvWorkerData, ToRecvWorker } from './messages.js';
import { MAIN_STREAM, OUTPUT_GONE, ReceiverSession, type ConnectionId, type ReceiverSessionAction, type ReceiverSessionEvent } from './recv-session.js';
import type { TransferSummary } from './summary.js';
import { startChannelWorker, workerUrl } from './channel-worker.js';
import { CLOSE_GRACE_MS } from './wire.js';

export interface ReceiveOptions {
  host: string;
  port: number;
  tls: TlsMaterial | null;
  /**
   * Writes in-order stream bytes (blocking is fine: the workers keep reading meanwhile). The
   * chunks go back to the workers for reuse once it returns: it must not keep them.
   */
  write: (chunks: Buffer[]) => void;
  /**
   * Whether the output's reader is gone (the destination QEMU exited), polled about once a
   * second: without it, a receiver whose QEMU died before any sender connected would listen
   * until killed, since only a write would tell.
   */
  outputGone?: () => boolean;
  timeoutMs?: number;
  /** Unacknowledged frames per channel before its worker stops reading. */
  window?: number;
  holdBytes?: number;
  /**
   * Channel workers started before any connection arrives (default 1: channel 0's). Each costs
   * about 0.13 s of CPU to start, which a migration host sharing its cores with QEMU misses
   * more than the later channels miss the ~50 ms their worker takes to start on demand.
   */
  spareWorkers?: number;
  onListening?: (address: { host: string; port: number }) => void;
  onProgress?: (bytes: number) => void;
  /** Connections that were refused or failed outside the session (the session goes on). */
  onRefused?: (peer: string, reason: string) => void;
}

/** A connection as the glue knows it: its worker and when its socket has closed. */
interface Channel {
  worker: Worker;
  closed: Promise<void>;
}

/**
 * How long a finished receive waits for its channels' sockets to close (ABORT or DONE
 * flushed): a worker destroys a socket CLOSE_GRACE_MS after closing it with ABORT or REFUSE.
 */
const CLOSE_DEADLINE_MS = CLOSE_GRACE_MS + 100;
/** A refused connection's worker gets this long to send its REFUSE, then goes. */
const RETIRE_MS = 1000;

/** The output's writer, its failures told as OutputError (a gone reader as OUTPUT_GONE). */
function outputWriter(write: ReceiveOptions['write']): (chunks: Buffer[]) => void {
  return (chunks) => {
    try {
      write(chunks);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // The writer's own errors (MigstreamError) already say what went wrong with which output.
      const reason = error instanceof MigstreamError ? error.message : `cannot write the stream: ${(error as Error).message}`;
      throw new OutputError(code === 'EPIPE' ? OUTPUT_GONE : reason, { cause: error });
    }
  };
}

/** What a channel worker said, as an event of the session (`closed` is the glue's own). */
function eventOf(id: ConnectionId, message: FromRecvWorker, now: number): ReceiverSessionEvent | undefined {
  switch (message.t) {
    case 'open':
      return { type: 'open', id, request: message, now };
    case 'frame': {
      const data = Buffer.from(message.data.buffer, message.data.byteOffset, message.data.byteLength);
      return { type: 'frame', id, stream: MAIN_STREAM, seq: message.seq, data, wire: message.wire, now };
    }
    case 'end':
      return { type: 'end', id, stream: MAIN_STREAM, totals: { frames: message.frames, bytes: message.bytes, digest: message.digest } };
    case 'finished':
      return { type: 'finished', id, now };
    case 'closed':
      return undefined;
    case 'error':
      return { type: 'channel-failed', id, error: transportErrorFrom(message.error) };
  }
}

export async function receive(options: ReceiveOptions): Promise<TransferSummary> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const url = workerUrl('recv-worker');
  const session = new ReceiverSession({ timeoutMs, holdBytes: options.holdBytes ?? 4 * 1024 * 1024, tls: options.tls !== null });
  /** Connections whose worker is the session's or a stranger's not yet retired. */
  const channels = new Map<ConnectionId, Channel>();
  /** Sockets accepted but not yet handed to a worker (a `take` or `drop` follows at once). */
  const accepted = new Map<ConnectionId, { socket: Socket; fd: number; peer: string }>();
  const parked: Socket[] = [];
  let nextId = 0;
  let settle!: { resolve: (s: TransferSummary) => void; reject: (e: TransportError) => void };
  const result = new Promise<TransferSummary>((resolve, reject) => (settle = { resolve, reject }));
  // Written frames go back to the worker they came from, which reads the next ones into them.
  const cameFrom = new WeakMap<ArrayBufferLike, ConnectionId>();

  const write = outputWriter(options.write);

  const feed = (event: ReceiverSessionEvent): void => {
    for (const action of session.on(event)) {
      if (!carryOut(action)) break;
    }
    deadline.set(session.nextDeadline);
  };

  // The admission and join deadlines are met to the millisecond, as timers: a channel's own
  // silence timeout, which runs as long, must not report a session that failed to assemble.
  const deadline = new Alarm((now) => feed({ type: 'tick', now }));

  /** Carries out one action; false when a write failed (then the rest of the batch is moot). */
  const carryOut = (action: ReceiverSessionAction): boolean => {
    const post = (id: ConnectionId, message: ToRecvWorker): void => channels.get(id)?.worker.postMessage(message);
    switch (action.type) {
      case 'take':
        take(action.id);
        break;
      case 'drop':
        accepted.get(action.id)?.socket.destroy();
        accepted.delete(action.id);
        break;
      case 'refused':
        options.onRefused?.(action.peer, action.reason);
        break;
      case 'accept':
        post(action.id, { t: 'accept', index: action.index });
        break;
      case 'refuse':
        post(action.id, { t: 'refuse', reason: action.reason });
        break;
      case 'retire': {
        const worker = channels.get(action.id)?.worker;
        channels.delete(action.id);
        setTimeout(() => void worker?.terminate(), RETIRE_MS);
        break;
      }
      case 'ack':
        post(action.id, { t: 'ack' });
        break;
      case 'write':
        try {
          write(action.chunks);
        } catch (error) {
          feed({ type: 'output-failed', error: error as TransportError });
          return false;
        }
        if (!action.tail) action.chunks.forEach(recycle);
        break;
      case 'progress':
        options.onProgress?.(action.bytes);
        break;
      case 'done':
        post(action.id, { t: 'done', bytes: action.bytes });
        break;
      case 'abort':
        post(action.id, { t: 'abort', reason: action.reason });
        break;
      case 'failed':
        settle.reject(action.error);
        break;
      case 'completed':
        settle.resolve(action.summary);
        break;
    }
    return true;
  };

  const recycle = (frame: Buffer): void => {
    const id = cameFrom.get(frame.buffer);
    const channel = id === undefined ? undefined : channels.get(id);
    if (channel === undefined || !session.active) return;
    const buffer = frame.buffer as ArrayBuffer;
    channel.worker.postMessage({ t: 'recycle', buffer } satisfies ToRecvWorker, [buffer]);
  };

  const onMessage = (id: ConnectionId, message: FromRecvWorker): void => {
    const event = eventOf(id, message, performance.now());
    if (event?.type === 'frame') cameFrom.set(event.data.buffer, id);
    if (event !== undefined) feed(event);
  };

  // Checked about once a second: the output still has a reader, and the session's deadlines
  // (admission, joining, a frame that never arrives) are met.
  const watchdog = setInterval(() => {
    if (!session.active) return;
    if (options.outputGone?.() === true) return feed({ type: 'output-gone' });
    feed({ type: 'tick', now: performance.now() });
  }, tickMs(timeoutMs));
  watchdog.unref();

  const workerData: RecvWorkerData = { tls: options.tls, timeoutMs, window: options.window ?? 8 };
  const startSpare = (): Worker => {
    const worker = startChannelWorker(url, workerData, 'migstream-recv');
    worker.on('error', (error) => feed({ type: 'fail', error: new ChannelError(`worker failed: ${error.message}`, undefined, { cause: error }) }));
    return worker;
  };
  const spares: Worker[] = [];

  const take = (id: ConnectionId): void => {
    const { fd, peer } = accepted.get(id)!;
    accepted.delete(id);
    const worker = spares.shift() ?? startSpare();
    worker.postMessage({ t: 'socket', fd, peer } satisfies ToRecvWorker);
    const { closed, resolve: markClosed } = closedSignal();
    channels.set(id, { worker, closed });
    worker.on('message', (message: FromRecvWorker) => {
      if (message.t === 'closed') markClosed();
      onMessage(id, message);
    });
    worker.on('exit', (code) => {
      markClosed();
      feed({ type: 'worker-exit', id, code });
    });
  };

  const server: Server = createServer({ pauseOnConnect: true }, (socket) => {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    parked.push(socket);
    socket.unref();
    if (fd === undefined || fd < 0) {
      socket.destroy();
      return;
    }
    const id = nextId++;
    accepted.set(id, { socket, fd, peer });
    feed({ type: 'connection', id, peer, now: performance.now() });
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(new ListenError(`cannot listen on ${options.host}:${options.port}: ${error.message}`, { cause: error })));
      server.listen(options.port, options.host, () => resolve());
    });
  } catch (error) {
    // A start-up failure: nothing was started that would keep the process alive.
    clearInterval(watchdog);
    deadline.clear();
    throw error;
  }
  // Channel 0's worker starts once we listen, so the session's first channel does not wait
  // for one to load; the others start as their channels connect.
  for (let n = options.spareWorkers ?? 1; n > 0; n--) spares.push(startSpare());
  const address = server.address() as { address: string; port: number };
  options.onListening?.({ host: address.address, port: address.port });

  try {
    return await result;
  } finally {
    clearInterval(watchdog);
    deadline.clear();
    server.close();
    // Let ABORT/DONE frames leave before the workers go: each channel reports its socket closed.
    await untilClosed(
      [...channels.values()].map((c) => c.closed),
      CLOSE_DEADLINE_MS,
    );
    await Promise.all([...[...channels.values()].map((c) => c.worker), ...spares].map((worker) => worker.terminate()));
  }
}
