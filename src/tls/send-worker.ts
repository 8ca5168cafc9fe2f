/**
 * One sending channel: owns its socket and TLS session, compresses and writes the frames the
 * main thread hands it, and returns a credit when a frame has left for the kernel.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { parentPort, workerData } from 'node:worker_threads';
import type { CodecId } from '../compress/codecs.js';
import { limitUnsent, socketDescriptor } from '../native/fd.js';
import { checkPin, clientTlsOptions } from './credentials.js';
import { AuthError, ChannelError, HandshakeError, PeerAbortError, ProtocolError, TimeoutError, channelFailure } from './errors.js';
import type { FromSendWorker, SendWorkerData, ToSendWorker } from './messages.js';
import { socketError } from './socket-errors.js';
import { FrameParser, FrameType, encodeAbort, encodeDataHeader, encodeEnd, encodeOpen, encodePing, type Frame } from './wire.js';

const config = workerData as SendWorkerData;
const port = parentPort!;
const post = (message: FromSendWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(message, transfer);

let socket: Socket | TLSSocket;
let state: 'connecting' | 'connected' | 'opening' | 'open' | 'ending' | 'done' | 'failed' = 'connecting';
/** Channel 0 opens the session as soon as it is connected; the others wait for 'join'. */
let joinAllowed = config.index === 0;
let lastWrite = Date.now();
/** Last time a write completed or the receiver said something: the watchdog's clock. */
let lastProgress = Date.now();
/** The last refusal while dialling (the receiver not listening yet), reported if it never does. */
let lastRefusal: Error | undefined;
let queue: Promise<void> = Promise.resolve();
const parser = new FrameParser(config.index);

function fail(error: unknown): void {
  if (state === 'failed' || state === 'done') return;
  state = 'failed';
  post({ t: 'error', error: channelFailure(socketError(error, config.index, 'receiver'), config.index) });
  socket?.destroy();
}

function write(chunk: Buffer, done?: () => void): void {
  lastWrite = Date.now();
  socket.write(chunk, (error) => {
    if (error) return fail(error);
    lastProgress = Date.now();
    done?.();
  });
}

function onFrame(frame: Frame): void {
  switch (frame.type) {
    case FrameType.ACCEPT:
      if (state !== 'opening' || frame.index !== config.index) throw new ProtocolError(`unexpected ACCEPT for channel ${frame.index}`, config.index);
      state = 'open';
      post({ t: 'open' });
      return;
    case FrameType.REFUSE:
      throw new HandshakeError(`the receiver refused the channel: ${frame.reason}`, config.index);
    case FrameType.DONE:
      if (state !== 'ending') throw new ProtocolError('DONE before the end of the stream', config.index);
      state = 'done';
      post({ t: 'done', bytes: frame.bytes });
      socket.end();
      return;
    case FrameType.ABORT:
      throw new PeerAbortError(`the receiver failed: ${frame.reason}`, config.index);
    case FrameType.PING:
      return;
    default:
      throw new ProtocolError(`unexpected frame type ${frame.type} from the receiver`, config.index);
  }
}

function onData(chunk: Buffer): void {
  lastProgress = Date.now();
  try {
    for (const frame of parser.push(chunk)) onFrame(frame);
  } catch (error) {
    fail(error);
  }
}

function onConnected(): void {
  state = 'connected';
  limitSocketBacklog();
  if (joinAllowed) sendOpen();
}

/**
 * At most one frame waits unsent in the kernel; the rest wait here, counted in the credits.
 * Autotuning grows a socket's send buffer to megabytes (tcp_wmem), and QEMU, which decides the
 * switch-over from how fast its pipe drains, would count bytes parked there as sent: on a
 * 100 Mbit/s link 4 MiB is 330 ms of downtime it never predicted. Best effort: a socket that
 * will not take the limit works as before.
 */
function limitSocketBacklog(): void {
  if (config.unsentLimitBytes <= 0) return;
  const fd = socketDescriptor(socket);
  if (fd !== undefined) limitUnsent(fd, config.unsentLimitBytes);
}

function sendOpen(): void {
  state = 'opening';
  write(encodeOpen({ sessionId: Buffer.from(config.sessionId), channels: config.channels, index: config.index, codec: config.codec }));
}

async function sendFrame(seq: number, data: Uint8Array): Promise<void> {
  const raw = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let payload = raw;
  let codec = 0;
  if (config.codec !== 0) {
    // Loaded on first use: plaintext channels start without the codec libraries.
    const { compressBytes } = await import('../compress/codecs.js');
    const packed = await compressBytes(config.codec as CodecId, config.level, raw);
    if (packed.length < raw.length) {
      payload = packed;
      codec = config.codec;
    }
  }
  if (state !== 'open') return;
  write(encodeDataHeader(seq, raw.length, codec, payload.length));
  // Once written (or encrypted), the frame's buffer goes back to the input.
  const buffer = data.buffer as ArrayBuffer;
  write(payload, () => post({ t: 'credit', seq, raw: raw.length, wire: payload.length + 18, buffer }, [buffer]));
}

port.on('message', (message: ToSendWorker) => {
  switch (message.t) {
    case 'join':
      joinAllowed = true;
      if (state === 'connected') sendOpen();
      return;
    case 'frame':
      queue = queue.then(() => sendFrame(message.seq, message.data)).catch(fail);
      return;
    case 'end':
      queue = queue.then(() => {
        if (state !== 'open') return;
        state = 'ending';
        write(encodeEnd(message));
        // Channel 0 waits for the receiver's DONE; the others are finished.
        if (config.index !== 0) {
          state = 'done';
          socket.end();
        }
      });
      return;
    case 'abort':
      if (state === 'failed' || state === 'done') return;
      state = 'failed';
      socket?.end(encodeAbort(message.reason));
      setTimeout(() => socket?.destroy(), 500).unref();
      return;
  }
});

function start(): void {
  const options = { host: config.host, port: config.port };
  if (config.tls === null) {
    socket = netConnect(options, onConnected);
  } else {
    const material = config.tls;
    const tlsSocket = tlsConnect({ ...options, ...clientTlsOptions(material, config.host) }, () => {
      const pinProblem = checkPin(material, tlsSocket.getPeerCertificate());
      if (pinProblem !== null) return fail(new AuthError(pinProblem, config.index));
      onConnected();
    });
    socket = tlsSocket;
  }
  socket.setNoDelay(true);
  socket.on('data', onData);
  socket.on('error', (error: NodeJS.ErrnoException) => {
    // The receiver may not listen yet (QEMU starts it with the destination): keep dialling.
    if (state === 'connecting' && error.code === 'ECONNREFUSED' && Date.now() - lastProgress < config.timeoutMs) {
      lastRefusal = error;
      socket.destroy();
      setTimeout(start, 200);
      return;
    }
    fail(error);
  });
  socket.on('end', () => {
    if (state === 'done') return;
    if (parser.pending > 0) return fail(new ProtocolError('the receiver sent a cut frame (not a migstream transport peer?)', config.index));
    fail(new ChannelError('the receiver closed the connection before the end of the stream', config.index));
  });
  socket.on('close', () => {
    if (state !== 'done' && state !== 'failed' && state !== 'connecting') fail(new ChannelError('the connection closed before the end of the stream', config.index));
  });
}

function watch(): void {
  setInterval(() => {
    const now = Date.now();
    // Waiting on the receiver (handshake, DONE) or on writes that do not drain.
    const waiting = state === 'connecting' || state === 'connected' || state === 'opening' || state === 'ending' || socket.writableLength > 0;
    if (waiting && now - lastProgress > config.timeoutMs) {
      // Still dialling a port that refuses: say so, not that a handshake stalled.
      if (state === 'connecting' && lastRefusal !== undefined) return fail(lastRefusal);
      const phase = state === 'connecting' || state === 'connected' || state === 'opening' ? 'handshake' : state === 'ending' ? 'waiting for the receiver to confirm' : 'writes not draining';
      return fail(new TimeoutError(`no progress for ${config.timeoutMs / 1000} s (${phase})`, config.index));
    }
    // A quiet channel (slow source) still shows the receiver it is alive.
    if ((state === 'open' || state === 'ending') && now - lastWrite > config.timeoutMs / 3) write(encodePing());
    if (!waiting) lastProgress = now;
  }, Math.max(50, Math.min(1000, config.timeoutMs / 6))).unref();
}

try {
  watch();
  start();
} catch (error) {
  fail(error);
}
