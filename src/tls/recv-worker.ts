/**
 * One receiving channel: wraps the socket the main thread accepted (by descriptor), runs the
 * TLS server side, reads and decompresses frames and posts them to the main thread. It stops
 * reading when `window` frames wait for the main thread, so memory stays bounded and a slow
 * destination slows the sender through TCP.
 */
import { Socket, type OnReadOpts, type SocketConstructorOpts } from 'node:net';
import { TLSSocket } from 'node:tls';
import { parentPort, workerData } from 'node:worker_threads';
import type { CodecId } from '../compress/codecs.js';
import { BufferPool } from './buffer-pool.js';
import { serverTlsOptions } from './credentials.js';
import { AuthError, ChannelError, PeerAbortError, ProtocolError, TimeoutError, channelFailure } from './errors.js';
import type { FromRecvWorker, RecvWorkerData, ToRecvWorker } from './messages.js';
import { socketError } from './socket-errors.js';
import { FrameParser, FrameReader, FrameType, PROTOCOL_MAGIC, encodeAbort, encodeAccept, encodeDone, encodeRefuse, type Frame } from './wire.js';

const config = workerData as RecvWorkerData;
const port = parentPort!;
const post = (message: FromRecvWorker, transfer?: ArrayBuffer[]): void => port.postMessage(message, transfer ?? []);

let peer = '';
let index: number | undefined;
let state: 'handshake' | 'opened' | 'open' | 'ended' | 'done' | 'failed' = 'handshake';
let outstanding = 0;
let lastData = Date.now();
let queue: Promise<void> = Promise.resolve();
let socket: Socket | TLSSocket;
/** Bytes of a frame cut short, for the message when the connection ends inside one. */
let pendingBytes = (): number => 0;
let sawBytes = false;
/** Payload buffers: a frame's comes back once the main thread has written it. */
const pool = new BufferPool(config.window + 2);
const allocate = (bytes: number): Buffer => pool.take(bytes);

function fail(error: unknown): void {
  if (state === 'failed' || state === 'done') return;
  state = 'failed';
  post({ t: 'error', error: channelFailure(socketError(error, index ?? -1, 'sender'), index) });
  socket?.destroy();
}

async function onDataFrame(seq: number, rawLength: number, codec: number, payload: Buffer): Promise<void> {
  let raw: Buffer;
  if (codec === 0) {
    if (payload.length !== rawLength) throw new ProtocolError(`frame ${seq}: ${payload.length} bytes stored, ${rawLength} announced`, index);
    raw = payload;
  } else {
    try {
      const { decompressFrame, hasNativeCodec } = await import('../compress/codecs.js');
      raw = await decompressFrame(codec as CodecId, payload, rawLength, hasNativeCodec(codec) ? pool.take(rawLength) : undefined);
    } catch (error) {
      throw new ProtocolError(`frame ${seq} does not decompress: ${(error as Error).message}`, index);
    }
    if (pool.owns(payload)) pool.give(payload.buffer as ArrayBuffer);
  }
  // Only a buffer of its own can be transferred: small copies come from Buffer's shared pool.
  if (!pool.owns(raw) && (raw.byteOffset !== 0 || raw.buffer.byteLength !== raw.length)) {
    const own = pool.take(raw.length);
    raw.copy(own);
    raw = own;
  }
  // END may already have been parsed behind this frame; only a failure drops it.
  if (state === 'failed' || state === 'done') return;
  outstanding++;
  if (outstanding >= config.window) socket.pause();
  post({ t: 'frame', seq, data: raw, wire: payload.length + 18 }, [raw.buffer as ArrayBuffer]);
}

function onFrame(frame: Frame): void {
  switch (frame.type) {
    case FrameType.OPEN:
      if (state !== 'handshake') throw new ProtocolError('a second OPEN on one channel', index);
      if (frame.magic !== PROTOCOL_MAGIC) throw new ProtocolError('not a migstream transport peer (bad magic)');
      state = 'opened';
      post({ t: 'open', magic: frame.magic, version: frame.version, sessionId: frame.sessionId, channels: frame.channels, index: frame.index, codec: frame.codec });
      return;
    case FrameType.DATA:
      if (state !== 'open') throw new ProtocolError(`DATA frame ${frame.seq} ${state === 'ended' ? 'after END' : 'before the channel was accepted'}`, index);
      queue = queue.then(() => onDataFrame(frame.seq, frame.rawLength, frame.codec, frame.payload)).catch(fail);
      return;
    case FrameType.END:
      if (state !== 'open') throw new ProtocolError('END frame out of place', index);
      state = 'ended';
      queue = queue.then(() => post({ t: 'end', frames: frame.frames, bytes: frame.bytes, digest: frame.digest }));
      return;
    case FrameType.ABORT:
      throw new PeerAbortError(`the sender failed: ${frame.reason}`, index);
    case FrameType.PING:
      return;
    default:
      throw new ProtocolError(`unexpected frame type ${frame.type} from the sender`, index);
  }
}

function onFrames(take: () => Frame[]): void {
  lastData = Date.now();
  sawBytes = true;
  try {
    for (const frame of take()) onFrame(frame);
  } catch (error) {
    fail(error);
  }
}

/**
 * A plaintext channel reads straight into the frame reader's buffers (onread), so a payload
 * lands once, in the buffer that is then transferred to the main thread.
 */
function plainSocket(fd: number): Socket {
  const reader = new FrameReader(undefined, allocate);
  pendingBytes = () => reader.pending;
  const onread: OnReadOpts = {
    buffer: () => reader.target(),
    callback: (n, buffer) => {
      if (!sawBytes && n > 0 && buffer[0] === 0x16) {
        fail(new ProtocolError('the sender speaks TLS to a plaintext (--insecure) listener'));
        return false;
      }
      onFrames(() => reader.filled(n));
      return true;
    },
  };
  return new Socket({ fd, readable: true, writable: true, onread } as SocketConstructorOpts);
}

port.on('message', (message: ToRecvWorker) => {
  switch (message.t) {
    case 'socket':
      peer = message.peer;
      try {
        start(message.fd);
      } catch (error) {
        fail(error);
      }
      return;
    case 'accept':
      index = message.index;
      state = 'open';
      socket.write(encodeAccept(message.index));
      return;
    case 'refuse':
      state = 'done';
      socket.end(encodeRefuse(message.reason));
      setTimeout(() => socket.destroy(), 500).unref();
      return;
    case 'recycle':
      pool.give(message.buffer);
      return;
    case 'ack':
      outstanding--;
      if (outstanding < config.window && socket.isPaused()) {
        lastData = Date.now();
        socket.resume();
      }
      return;
    case 'done':
      state = 'done';
      socket.end(encodeDone(message.bytes), () => post({ t: 'finished' }));
      return;
    case 'abort':
      if (state === 'failed' || state === 'done') return;
      state = 'failed';
      socket.end(encodeAbort(message.reason));
      setTimeout(() => socket.destroy(), 500).unref();
      return;
  }
});

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

function start(fd: number): void {
  lastData = Date.now();
  if (config.tls === null) {
    socket = plainSocket(fd);
  } else {
    const raw = new Socket({ fd, readable: true, writable: true });
    const parser = new FrameParser(undefined, allocate);
    pendingBytes = () => parser.pending;
    const options = serverTlsOptions(config.tls);
    const tlsSocket = new TLSSocket(raw, { isServer: true, ...options });
    // A bare server-side TLSSocket neither closes on a bad client certificate (expired,
    // unknown CA) nor sets `authorized`: only tls.Server checks the handle's verifyError(),
    // so we do what it does (lib/_tls_wrap.js onServerSocketSecure) and fail closed.
    tlsSocket.on('secure', () => {
      if (options.requestCert !== true) return;
      const handle = (tlsSocket as unknown as { _handle?: { verifyError?: () => Error | null } })._handle;
      const verifyError = handle?.verifyError === undefined ? new Error('cannot read the verification result') : handle.verifyError();
      if (verifyError !== null) {
        const reason = `client certificate rejected: ${describeVerifyError(verifyError)}`;
        state = 'failed';
        post({ t: 'error', error: channelFailure(new AuthError(reason)) });
        // The refusal travels inside the TLS session, so the sender prints the same reason.
        tlsSocket.end(encodeRefuse(reason));
        setTimeout(() => tlsSocket.destroy(), 500).unref();
      }
    });
    tlsSocket.on('data', (chunk: Buffer) => onFrames(() => parser.push(chunk)));
    socket = tlsSocket;
  }
  socket.setNoDelay?.(true);
  socket.on('error', fail);
  socket.on('end', () => {
    if (state === 'ended' || state === 'done') return;
    if (state === 'handshake' && !sawBytes) return fail(new ChannelError(`${peer} closed the connection during the handshake`));
    fail(new ChannelError(`the connection closed ${pendingBytes() > 0 ? 'inside a frame' : 'before the end frame'}: truncated session`, index));
  });
  setInterval(() => {
    const idle = Date.now() - lastData;
    const waiting = state === 'handshake' || state === 'open' || state === 'opened';
    if (waiting && !socket.isPaused() && idle > config.timeoutMs) {
      fail(new TimeoutError(`nothing received for ${config.timeoutMs / 1000} s`, index));
    }
  }, Math.max(50, Math.min(1000, config.timeoutMs / 6))).unref();
}
