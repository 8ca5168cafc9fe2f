/**
 * The receiving side's main thread: accepts connections, hands each socket to a channel
 * worker, admits channels into one session, puts frames back in order and writes them to the
 * output, and answers DONE once the end frame's totals and checksum match.
 *
 * Sockets move to workers by descriptor: the main thread accepts with pauseOnConnect, never
 * reads, and never closes its handle (closing would close the worker's descriptor).
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Worker } from 'node:worker_threads';
import { codecById } from '../compress/codecs.js';
import { MigstreamError } from '../stream/errors.js';
import { ChannelError, ChecksumError, ListenError, OutputError, ProtocolError, TimeoutError, TransportError, transportErrorFrom } from './errors.js';
import type { TlsMaterial } from './credentials.js';
import type { FromRecvWorker, RecvWorkerData, ToRecvWorker } from './messages.js';
import { Reorderer } from './reorder.js';
import { StreamDigest, formatDigest } from './digest.js';
import { admit, type SessionInfo } from './session.js';
import type { ChannelStats, TransferSummary } from './summary.js';
import { startChannelWorker, workerUrl } from './channel-worker.js';

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

interface Connection {
  worker: Worker;
  peer: string;
  index: number | undefined;
  stats: ChannelStats;
  ended: { frames: number; bytes: number; digest: bigint } | undefined;
}

const OUTPUT_GONE = 'nobody reads the output any more (did the destination QEMU exit?)';

/**
 * Connections not (yet) admitted into the session that may hold a worker at once: a port
 * scan or a flood of strangers is dropped at accept beyond this, instead of costing a thread
 * each.
 */
const MAX_STRANGERS = 8;

export async function receive(options: ReceiveOptions): Promise<TransferSummary> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const url = workerUrl('recv-worker');
  const connections = new Set<Connection>();
  const members: Connection[] = [];
  const parked: Socket[] = [];
  let session: SessionInfo | undefined;
  let started = 0n;
  let finished = false;
  let settle!: { resolve: (s: TransferSummary) => void; reject: (e: TransportError) => void };
  const result = new Promise<TransferSummary>((resolve, reject) => (settle = { resolve, reject }));
  let joinTimer: NodeJS.Timeout | undefined;
  // Until a session is admitted, connections that fail the handshake, authentication or the
  // session check are refused one by one and recv keeps listening; from the first connection
  // on, a sender has --timeout to be admitted.
  let admissionTimer: NodeJS.Timeout | undefined;
  let refusals = 0;
  let lastRefusal: string | undefined;
  const refuse = (c: Connection, reason: string): void => {
    refusals++;
    lastRefusal = `${c.peer}: ${reason}`;
    options.onRefused?.(c.peer, reason);
    retire(c);
  };
  const startAdmissionClock = (): void => {
    if (admissionTimer !== undefined || session !== undefined) return;
    admissionTimer = setTimeout(() => {
      if (session !== undefined) return;
      const strangers = [...connections].filter((c) => c.index === undefined).length;
      const refused = refusals === 0 ? '' : `; ${refusals} connection(s) refused, the last ${lastRefusal}`;
      const pending = strangers === 0 ? '' : `; ${strangers} still unidentified`;
      fail(new TimeoutError(`no sender was admitted within ${timeoutMs / 1000} s of the first connection${refused}${pending}`));
    }, timeoutMs);
  };
  // Checked about once a second: the output still has a reader; and a frame that never arrives
  // (its channel died unseen, or the channel is paused behind its window and cannot read its
  // own ABORT) does not leave the others waiting: frames held back for it longer than
  // --timeout fail the session.
  let lastRelease = Date.now();
  const watchdog = setInterval(() => {
    if (finished) return;
    if (options.outputGone?.() === true) return fail(new OutputError(OUTPUT_GONE));
    if (reorder.pendingFrames === 0 || Date.now() - lastRelease <= timeoutMs) return;
    fail(new TimeoutError(`frame ${reorder.next} did not arrive within ${timeoutMs / 1000} s while ${reorder.pendingFrames} later frame(s) waited for it`));
  }, Math.max(50, Math.min(1000, timeoutMs / 6)));
  watchdog.unref();

  // The digest covers the held tail too, so it is computed as frames are released.
  const digest = new StreamDigest();
  const write = (chunks: Buffer[]): void => {
    try {
      options.write(chunks);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // The writer's own errors (MigstreamError) already say what went wrong with which output.
      const reason = error instanceof MigstreamError ? error.message : `cannot write the stream: ${(error as Error).message}`;
      throw new OutputError(code === 'EPIPE' ? OUTPUT_GONE : reason, { cause: error });
    }
  };
  // Written frames go back to the worker they came from, which reads the next ones into them.
  const cameFrom = new WeakMap<ArrayBufferLike, Connection>();
  const recycle = (frame: Buffer): void => {
    const c = cameFrom.get(frame.buffer);
    if (c === undefined || finished || !connections.has(c)) return;
    const buffer = frame.buffer as ArrayBuffer;
    c.worker.postMessage({ t: 'recycle', buffer } satisfies ToRecvWorker, [buffer]);
  };
  const reorder = new Reorderer(options.holdBytes ?? 4 * 1024 * 1024, write, (frame) => digest.update(frame), recycle);

  const post = (c: Connection, message: ToRecvWorker): void => c.worker.postMessage(message);

  const fail = (error: TransportError): void => {
    if (finished) return;
    finished = true;
    for (const c of connections) post(c, { t: 'abort', reason: error.message });
    settle.reject(error);
  };

  const summary = (): TransferSummary => ({
    bytes: reorder.bytes,
    frames: reorder.next,
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
    digest: digest.value,
    codec: codecById(session!.codec)?.name ?? String(session!.codec),
    tls: options.tls !== null,
    channels: members.map((c) => c.stats).sort((a, b) => a.index - b.index),
  });

  const checkComplete = (): void => {
    if (session === undefined || members.length < session.channels) return;
    if (members.some((c) => c.ended === undefined)) return;
    const end = members[0]!.ended!;
    if (members.some((c) => c.ended!.frames !== end.frames || c.ended!.bytes !== end.bytes || c.ended!.digest !== end.digest)) {
      return fail(new ProtocolError('the channels announce different end totals'));
    }
    if (reorder.next < end.frames) return; // frames still in flight on other channels
    if (reorder.next > end.frames || reorder.pendingFrames > 0) {
      return fail(new ChecksumError(`received ${reorder.next + reorder.pendingFrames} frames, the sender announced ${end.frames}`));
    }
    if (reorder.bytes !== end.bytes) return fail(new ChecksumError(`received ${reorder.bytes} bytes, the sender announced ${end.bytes}`));
    if (digest.value !== end.digest) {
      return fail(new ChecksumError(`stream digest ${formatDigest(digest.value)} differs from the sender's ${formatDigest(end.digest)}`));
    }
    try {
      reorder.flush();
    } catch (error) {
      return fail(error as TransportError);
    }
    finished = true;
    clearTimeout(joinTimer);
    const zero = members.find((c) => c.index === 0)!;
    zero.worker.on('message', (message: FromRecvWorker) => {
      if (message.t === 'finished') settle.resolve(summary());
    });
    post(zero, { t: 'done', bytes: reorder.bytes });
  };

  const onMessage = (c: Connection, message: FromRecvWorker): void => {
    if (finished) return;
    switch (message.t) {
      case 'open': {
        const verdict = admit(session, message);
        if ('refuse' in verdict) {
          post(c, { t: 'refuse', reason: verdict.refuse });
          refuse(c, verdict.refuse);
          return;
        }
        if (session === undefined) {
          clearTimeout(admissionTimer);
          started = process.hrtime.bigint();
          joinTimer = setTimeout(() => {
            if (members.length < verdict.session.channels) {
              fail(new TimeoutError(`only ${members.length} of ${verdict.session.channels} channels joined within ${timeoutMs / 1000} s`));
            }
          }, timeoutMs);
        }
        session = verdict.session;
        c.index = message.index;
        c.stats.index = message.index;
        members.push(c);
        post(c, { t: 'accept', index: message.index });
        if (members.length === session.channels) clearTimeout(joinTimer);
        return;
      }
      case 'frame': {
        const data = Buffer.from(message.data.buffer, message.data.byteOffset, message.data.byteLength);
        cameFrom.set(data.buffer, c);
        c.stats.frames++;
        c.stats.rawBytes += data.length;
        c.stats.wireBytes += message.wire;
        try {
          const waitedBefore = reorder.pendingFrames > 0;
          const released = reorder.add(message.seq, data, c.index!);
          // The clock runs while frames wait for a missing one: it starts with the first such
          // wait and restarts with every release.
          if (released.length > 0 || !waitedBefore) lastRelease = Date.now();
          if (released.length > 0) options.onProgress?.(reorder.bytes);
        } catch (error) {
          return fail(error as TransportError);
        }
        // Acks go to the channel that delivered the frame, now it is out of the way; frames
        // waiting for an earlier one stay counted against their channel's window.
        ackReleased(c, message.seq);
        checkComplete();
        return;
      }
      case 'end':
        c.ended = { frames: message.frames, bytes: message.bytes, digest: message.digest };
        checkComplete();
        return;
      case 'finished':
        return;
      case 'error': {
        const error = transportErrorFrom(message.error);
        if (c.index === undefined) {
          // A stranger failed (handshake, authentication, garbage, silence), before or during
          // a session: refuse it only.
          refuse(c, error.message);
          return;
        }
        return fail(error);
      }
    }
  };

  // A refused connection's worker gets a moment to send its REFUSE, then goes.
  function retire(c: Connection): void {
    connections.delete(c);
    setTimeout(() => void c.worker.terminate(), 1000);
  }

  // seq -> channel that delivered it, to return the window slot when the frame is released.
  const owner = new Map<number, Connection>();
  let ackedUpTo = 0;
  function ackReleased(c: Connection, seq: number): void {
    owner.set(seq, c);
    for (; ackedUpTo < reorder.next; ackedUpTo++) {
      const o = owner.get(ackedUpTo)!;
      owner.delete(ackedUpTo);
      post(o, { t: 'ack' });
    }
  }

  const workerData: RecvWorkerData = { tls: options.tls, timeoutMs, window: options.window ?? 8 };
  const startSpare = (): Worker => {
    const worker = startChannelWorker(url, workerData, 'migstream-recv');
    worker.on('error', (error) => fail(new ChannelError(`worker failed: ${error.message}`, undefined, { cause: error })));
    return worker;
  };
  const spares: Worker[] = [];

  const server: Server = createServer({ pauseOnConnect: true }, (socket) => {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
    parked.push(socket);
    socket.unref();
    if (finished || fd === undefined || fd < 0) {
      socket.destroy();
      return;
    }
    const strangers = [...connections].filter((member) => member.index === undefined).length;
    if (strangers >= MAX_STRANGERS) {
      refusals++;
      lastRefusal = `${peer}: ${MAX_STRANGERS} unidentified connections already`;
      options.onRefused?.(peer, `dropped: ${MAX_STRANGERS} unidentified connections already`);
      socket.destroy();
      return;
    }
    startAdmissionClock();
    const worker = spares.shift() ?? startSpare();
    worker.postMessage({ t: 'socket', fd, peer } satisfies ToRecvWorker);
    const c: Connection = { worker, peer, index: undefined, stats: { index: -1, frames: 0, rawBytes: 0, wireBytes: 0 }, ended: undefined };
    connections.add(c);
    worker.on('message', (message: FromRecvWorker) => onMessage(c, message));
    worker.on('exit', (code) => {
      if (!finished && c.index !== undefined) fail(new ChannelError(`worker exited (${code})`, c.index));
    });
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) => reject(new ListenError(`cannot listen on ${options.host}:${options.port}: ${error.message}`, { cause: error })));
      server.listen(options.port, options.host, () => resolve());
    });
  } catch (error) {
    // A start-up failure: nothing was started that would keep the process alive.
    finished = true;
    clearInterval(watchdog);
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
    clearTimeout(joinTimer);
    clearTimeout(admissionTimer);
    clearInterval(watchdog);
    server.close();
    // Let ABORT/DONE frames leave before the workers go.
    await new Promise((resolve) => setTimeout(resolve, 100));
    await Promise.all([...[...connections].map((c) => c.worker), ...spares].map((worker) => worker.terminate()));
  }
}
