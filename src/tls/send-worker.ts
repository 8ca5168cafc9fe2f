/**
 * One sending channel's thread: owns its socket and TLS session and compresses frames. What
 * the channel says and when is decided by its state machine (send-channel.ts); this file only
 * feeds it what the socket, the clock and the main thread say, and carries out its actions.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { parentPort, workerData } from 'node:worker_threads';
import type { CodecId } from '../codecs/registry.js';
import { limitUnsent, socketDescriptor } from '../native/fd.js';
import { checkPin, clientTlsOptions } from './credentials.js';
import { AuthError } from './errors.js';
import { closeSocket, tickMs } from './glue.js';
import type { SendWorkerData, ToSendWorker } from './messages.js';
import { SendChannel, type SendChannelAction, type SendChannelEvent } from './send-channel.js';
import { FrameParser } from './wire.js';

/** Compresses a frame if that shrinks it: the payload and the codec it went out in. */
async function encode(config: SendWorkerData, data: Uint8Array): Promise<{ payload: Buffer; codec: number }> {
  const raw = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (config.codec === 0) return { payload: raw, codec: 0 };
  // Loaded on first use: plaintext channels start without the codec libraries.
  const { compressBytes } = await import('../codecs/registry.js');
  const packed = await compressBytes(config.codec as CodecId, config.level, raw);
  return packed.length < raw.length ? { payload: packed, codec: config.codec } : { payload: raw, codec: 0 };
}

function runChannel(config: SendWorkerData): void {
  const port = parentPort!;
  const channel = new SendChannel(config);
  const parser = new FrameParser(config.index);
  let socket: Socket | TLSSocket | undefined;
  /** Frames are compressed one after the other, so they reach `encoded` in order. */
  let queue: Promise<void> = Promise.resolve();

  const feed = (event: SendChannelEvent): void => {
    for (const action of channel.on(event)) carryOut(action);
  };

  const carryOut = (action: SendChannelAction): void => {
    switch (action.type) {
      case 'connect':
        try {
          socket = dial();
        } catch (error) {
          feed({ type: 'fail', error });
        }
        return;
      case 'redial':
        setTimeout(() => feed({ type: 'redial-due', now: Date.now() }), Math.max(0, action.at - Date.now()));
        return;
      case 'write': {
        const { credit } = action;
        socket?.write(action.bytes, (error) => feed(error ? { type: 'socket-error', error, now: Date.now() } : { type: 'written', now: Date.now(), credit }));
        return;
      }
      case 'encode': {
        const { seq, data } = action;
        queue = queue
          .then(() => encode(config, data))
          .then(({ payload, codec }) => feed({ type: 'encoded', seq, raw: data.byteLength, payload, codec, buffer: data.buffer as ArrayBuffer, now: Date.now() }))
          .catch((error: unknown) => feed({ type: 'fail', error }));
        return;
      }
      case 'post':
        port.postMessage(action.message, action.transfer ?? []);
        return;
      case 'end':
        socket?.end();
        return;
      case 'close':
        closeSocket(socket, action.last, action.destroyAt);
        return;
      case 'destroy':
        socket?.destroy();
        return;
    }
  };

  /**
   * At most one frame waits unsent in the kernel; the rest wait here, counted in the credits.
   * Autotuning grows a socket's send buffer to megabytes (tcp_wmem), and QEMU, which decides the
   * switch-over from how fast its pipe drains, would count bytes parked there as sent: on a
   * 100 Mbit/s link 4 MiB is 330 ms of downtime it never predicted. Best effort: a socket that
   * will not take the limit works as before.
   */
  const limitSocketBacklog = (connected: Socket): void => {
    if (config.unsentLimitBytes <= 0) return;
    const fd = socketDescriptor(connected);
    if (fd !== undefined) limitUnsent(fd, config.unsentLimitBytes);
  };

  const dial = (): Socket | TLSSocket => {
    const options = { host: config.host, port: config.port };
    let dialled: Socket | TLSSocket;
    // Events of a socket given up for a redial are not this channel's any more.
    const current = (): boolean => socket === dialled;
    const onConnected = (): void => {
      limitSocketBacklog(dialled);
      feed({ type: 'connected', now: Date.now() });
    };
    if (config.tls === null) {
      dialled = netConnect(options, () => current() && onConnected());
    } else {
      const material = config.tls;
      const tlsSocket = tlsConnect({ ...options, ...clientTlsOptions(material, config.host) }, () => {
        if (!current()) return;
        const pinProblem = checkPin(material, tlsSocket.getPeerCertificate());
        if (pinProblem !== null) return feed({ type: 'fail', error: new AuthError(pinProblem, config.index) });
        onConnected();
      });
      dialled = tlsSocket;
    }
    dialled.setNoDelay(true);
    dialled.on('data', (chunk: Buffer) => {
      if (!current()) return;
      try {
        feed({ type: 'peer-frames', frames: parser.push(chunk), now: Date.now() });
      } catch (error) {
        feed({ type: 'fail', error });
      }
    });
    dialled.on('error', (error) => current() && feed({ type: 'socket-error', error, now: Date.now() }));
    dialled.on('end', () => current() && feed({ type: 'peer-end', cutFrame: parser.pending > 0 }));
    dialled.on('close', () => current() && feed({ type: 'closed' }));
    return dialled;
  };

  port.on('message', (message: ToSendWorker) => {
    const now = Date.now();
    switch (message.t) {
      case 'join':
        return feed({ type: 'join', now });
      case 'frame':
        return feed({ type: 'send', seq: message.seq, data: message.data });
      case 'end':
        return feed({ type: 'end', frames: message.frames, bytes: message.bytes, digest: message.digest, now });
      case 'abort':
        return feed({ type: 'abort', reason: message.reason, now });
    }
  });

  setInterval(() => feed({ type: 'tick', now: Date.now(), unsent: socket?.writableLength ?? 0 }), tickMs(config.timeoutMs)).unref();
  feed({ type: 'start', now: Date.now() });
}

runChannel(workerData as SendWorkerData);
