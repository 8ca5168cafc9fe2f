/**
 * One receiving channel's thread: wraps the socket the main thread accepted (by descriptor),
 * runs the TLS server side, reads and decompresses frames. What the channel answers and when
 * is decided by its state machine (recv-channel.ts); this file feeds it what the socket, the
 * clock and the main thread say, and carries out its actions.
 */
import { Socket, type OnReadOpts, type SocketConstructorOpts } from 'node:net';
import { TLSSocket } from 'node:tls';
import { parentPort, workerData } from 'node:worker_threads';
import type { CodecId } from '../codecs/registry.js';
import { BufferPool } from '../bytes/buffer-pool.js';
import { serverTlsOptions } from './credentials.js';
import { ProtocolError } from './errors.js';
import { closeSocket, tickMs } from './glue.js';
import type { RecvWorkerData, ToRecvWorker } from './messages.js';
import { RecvChannel, type RecvChannelAction, type RecvChannelEvent } from './recv-channel.js';
import { FrameParser, FrameReader, type Frame } from './wire.js';

function describeVerifyError(error: Error | string | undefined): string {
  const code = typeof error === 'string' ? error : ((error as NodeJS.ErrnoException | undefined)?.code ?? error?.message ?? 'unknown');
  const text: Record<string, string> = {
    CERT_HAS_EXPIRED: 'certificate has expired (CERT_HAS_EXPIRED)',
    CERT_NOT_YET_VALID: 'certificate is not yet valid (CERT_NOT_YET_VALID)',
    UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'not signed by our CA (UNABLE_TO_VERIFY_LEAF_SIGNATURE)',
    UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'not signed by our CA (UNABLE_TO_GET_ISSUER_CERT_LOCALLY)',
    DEPTH_ZERO_SELF_SIGNED_CERT: 'self-signed, not signed by our CA (DEPTH_ZERO_SELF_SIGNED_CERT)',
  };
  return text[code] ?? code;
}

function runChannel(config: RecvWorkerData): void {
  const port = parentPort!;
  const channel = new RecvChannel({ timeoutMs: config.timeoutMs, window: config.window, plaintext: config.tls === null });
  /** Payload buffers: a frame's comes back once the main thread has written it. */
  const pool = new BufferPool(config.window + 2);
  const allocate = (bytes: number): Buffer => pool.take(bytes);
  let socket: Socket | TLSSocket | undefined;
  /** Bytes of a frame cut short, for the message when the connection ends inside one. */
  let pendingBytes = (): number => 0;
  /** Frames are decompressed one after the other, so they reach `decoded` in order. */
  let queue: Promise<void> = Promise.resolve();

  const feed = (event: RecvChannelEvent): void => {
    for (const action of channel.on(event)) carryOut(action);
  };

  const carryOut = (action: RecvChannelAction): void => {
    switch (action.type) {
      case 'post':
        port.postMessage(action.message, action.transfer ?? []);
        return;
      case 'decode': {
        const { seq } = action;
        queue = queue
          .then(() => decode(action))
          .then(({ raw, wire }) => feed({ type: 'decoded', seq, raw, wire }))
          .catch((error: unknown) => feed({ type: 'fail', error }));
        return;
      }
      case 'write':
        socket?.write(action.bytes);
        return;
      case 'end': {
        const { then } = action;
        socket?.end(action.last, () => then !== undefined && port.postMessage(then));
        return;
      }
      case 'close':
        closeSocket(socket, action.last, action.destroyAt);
        return;
      case 'pause':
        socket?.pause();
        return;
      case 'resume':
        socket?.resume();
        return;
      case 'destroy':
        socket?.destroy();
        return;
    }
  };

  /** A frame's raw bytes in a buffer of its own (the only kind that can be transferred). */
  const decode = async ({ seq, rawLength, codec, payload }: Extract<RecvChannelAction, { type: 'decode' }>): Promise<{ raw: Buffer; wire: number }> => {
    let raw = payload;
    if (codec !== 0) {
      try {
        const { decompressFrame, hasNativeCodec } = await import('../codecs/registry.js');
        raw = await decompressFrame(codec as CodecId, payload, rawLength, hasNativeCodec(codec) ? pool.take(rawLength) : undefined);
      } catch (error) {
        throw new ProtocolError(`frame ${seq} does not decompress: ${(error as Error).message}`, channel.index);
      }
      if (pool.owns(payload)) pool.give(payload.buffer as ArrayBuffer);
    }
    // Small copies come from Buffer's shared pool: copy those into a buffer of their own.
    if (!pool.owns(raw) && (raw.byteOffset !== 0 || raw.buffer.byteLength !== raw.length)) {
      const own = pool.take(raw.length);
      raw.copy(own);
      raw = own;
    }
    return { raw, wire: payload.length + 18 };
  };

  const onRead = (firstByte: number | undefined, parse: () => Frame[]): boolean => {
    feed({ type: 'peer-bytes', now: Date.now(), firstByte });
    if (channel.state === 'failed') return false;
    let frames: Frame[];
    try {
      frames = parse();
    } catch (error) {
      feed({ type: 'fail', error });
      return true;
    }
    feed({ type: 'peer-frames', frames });
    return true;
  };

  /**
   * A plaintext channel reads straight into the frame reader's buffers (onread), so a payload
   * lands once, in the buffer that is then transferred to the main thread.
   */
  const plainSocket = (fd: number): Socket => {
    const reader = new FrameReader(undefined, allocate);
    pendingBytes = () => reader.pending;
    const onread: OnReadOpts = {
      buffer: () => reader.target(),
      callback: (n, buffer) => onRead(n > 0 ? buffer[0] : undefined, () => reader.filled(n)),
    };
    return new Socket({ fd, readable: true, writable: true, onread } as SocketConstructorOpts);
  };

  const tlsSocket = (fd: number): TLSSocket => {
    const tls = config.tls!;
    const raw = new Socket({ fd, readable: true, writable: true });
    const parser = new FrameParser(undefined, allocate);
    pendingBytes = () => parser.pending;
    const options = serverTlsOptions(tls);
    const secured = new TLSSocket(raw, { isServer: true, ...options });
    // A bare server-side TLSSocket neither closes on a bad client certificate (expired,
    // unknown CA) nor sets `authorized`: only tls.Server checks the handle's verifyError(),
    // so we do what it does (lib/_tls_wrap.js onServerSocketSecure) and fail closed.
    secured.on('secure', () => {
      if (options.requestCert !== true) return;
      const handle = (secured as unknown as { _handle?: { verifyError?: () => Error | null } })._handle;
      const verifyError = handle?.verifyError === undefined ? new Error('cannot read the verification result') : handle.verifyError();
      if (verifyError !== null) feed({ type: 'auth-failed', reason: `client certificate rejected: ${describeVerifyError(verifyError)}`, now: Date.now() });
    });
    secured.on('data', (chunk: Buffer) => onRead(undefined, () => parser.push(chunk)));
    return secured;
  };

  const start = (fd: number, peer: string): void => {
    feed({ type: 'start', peer, now: Date.now() });
    const started = config.tls === null ? plainSocket(fd) : tlsSocket(fd);
    socket = started;
    started.setNoDelay?.(true);
    started.on('error', (error) => feed({ type: 'socket-error', error }));
    started.on('end', () => feed({ type: 'peer-end', cutFrame: pendingBytes() > 0 }));
    started.on('close', () => feed({ type: 'closed' }));
    setInterval(() => feed({ type: 'tick', now: Date.now() }), tickMs(config.timeoutMs)).unref();
  };

  port.on('message', (message: ToRecvWorker) => {
    const now = Date.now();
    switch (message.t) {
      case 'socket':
        try {
          start(message.fd, message.peer);
        } catch (error) {
          feed({ type: 'fail', error });
        }
        return;
      case 'accept':
        return feed({ type: 'accept', index: message.index, now });
      case 'refuse':
        return feed({ type: 'refuse', reason: message.reason, now });
      case 'recycle':
        pool.give(message.buffer);
        return;
      case 'ack':
        return feed({ type: 'ack', now });
      case 'done':
        return feed({ type: 'done', bytes: message.bytes });
      case 'abort':
        return feed({ type: 'abort', reason: message.reason, now });
    }
  });
}

runChannel(workerData as RecvWorkerData);
