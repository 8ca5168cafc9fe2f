/**
 * One receiving channel's protocol as a state machine: events in, actions out, no socket,
 * thread or timer (time comes in as `now`). The worker (recv-worker.ts) feeds it what its
 * socket, its TLS session and the main thread say, and carries out its actions.
 *
 *   handshake ─OPEN─▶ opened ─accept─▶ open ─END─▶ ended ─done─▶ done
 *                        └─refuse─▶ done (REFUSE written, then close)
 *   every state but done ─ bad frame, ABORT, EOF, error, silence, abort, bad certificate ─▶ failed
 *
 * Flow control: a frame posted to the main thread counts against the window until the main
 * thread acks it; at `window` frames the machine pauses reading, and resumes below it.
 * Decompression is asynchronous and done by the worker in order (`decode` → `decoded`); END is
 * posted after the last frame before it.
 */
import { AuthError, ChannelError, PeerAbortError, ProtocolError, TimeoutError, channelFailure } from './errors.js';
import type { FromRecvWorker } from './messages.js';
import { socketError } from './socket-errors.js';
import { CLOSE_GRACE_MS, FrameType, PROTOCOL_MAGIC, encodeAbort, encodeAccept, encodeDone, encodeRefuse, type Frame } from './wire.js';

export type RecvChannelState = 'handshake' | 'opened' | 'open' | 'ended' | 'done' | 'failed';

export interface RecvChannelConfig {
  timeoutMs: number;
  /** Frames posted and not yet acknowledged before reading pauses. */
  window: number;
  /** The socket is plaintext (--insecure): a TLS ClientHello is recognised and refused. */
  plaintext: boolean;
}

/** A TLS record's first byte (handshake): what a TLS sender says first. */
const TLS_HANDSHAKE_RECORD = 0x16;

export type RecvChannelEvent =
  /** The main thread handed over the accepted socket of `peer`. */
  | { type: 'start'; peer: string; now: number }
  /** Bytes were read; `firstByte` is the read's first (plaintext sockets check it). */
  | { type: 'peer-bytes'; now: number; firstByte: number | undefined }
  /** Frames the parser completed from those bytes. */
  | { type: 'peer-frames'; frames: Frame[] }
  /** The frame asked for by `decode`, raw and in a buffer that may be transferred. */
  | { type: 'decoded'; seq: number; raw: Uint8Array; wire: number }
  /** The main thread admitted the channel as `index`. */
  | { type: 'accept'; index: number; now: number }
  | { type: 'refuse'; reason: string; now: number }
  /** The main thread released one of this channel's frames. */
  | { type: 'ack'; now: number }
  /** The whole stream was written and verified (channel 0). */
  | { type: 'done'; bytes: number }
  | { type: 'abort'; reason: string; now: number }
  /** The TLS handshake finished with a client certificate the CA does not vouch for. */
  | { type: 'auth-failed'; reason: string; now: number }
  | { type: 'socket-error'; error: unknown }
  /** The sender ended the connection; `cutFrame`: inside a frame. */
  | { type: 'peer-end'; cutFrame: boolean }
  | { type: 'closed' }
  /** A failure the glue found: a parse error, a frame that does not decompress. */
  | { type: 'fail'; error: unknown }
  | { type: 'tick'; now: number };

export type RecvChannelAction =
  | { type: 'post'; message: FromRecvWorker; transfer?: ArrayBuffer[] }
  /** Decompress (codec 0: take as it is) and feed `decoded`, in the order asked. */
  | { type: 'decode'; seq: number; rawLength: number; codec: number; payload: Buffer }
  | { type: 'write'; bytes: Buffer }
  /** End the connection after `last`; post `then` once it has been flushed. */
  | { type: 'end'; last: Buffer; then?: FromRecvWorker }
  /** End with a last frame (REFUSE, ABORT) and destroy the socket at `destroyAt`. */
  | { type: 'close'; last: Buffer; destroyAt: number }
  | { type: 'pause' }
  | { type: 'resume' }
  | { type: 'destroy' };

export class RecvChannel {
  state: RecvChannelState = 'handshake';
  index: number | undefined;
  private peer = '';
  private outstanding = 0;
  private paused = false;
  private sawBytes = false;
  private lastData = 0;
  private decoding = 0;
  private pendingEnd: { frames: number; bytes: number; digest: bigint } | undefined;

  constructor(private readonly config: RecvChannelConfig) {}

  private get finished(): boolean {
    return this.state === 'failed' || this.state === 'done';
  }

  on(event: RecvChannelEvent): RecvChannelAction[] {
    switch (event.type) {
      case 'start':
        this.peer = event.peer;
        this.lastData = event.now;
        return [];
      case 'peer-bytes':
        this.lastData = event.now;
        if (!this.sawBytes && this.config.plaintext && event.firstByte === TLS_HANDSHAKE_RECORD) {
          return this.fail(new ProtocolError('the sender speaks TLS to a plaintext (--insecure) listener'));
        }
        this.sawBytes = true;
        return [];
      case 'peer-frames': {
        const actions: RecvChannelAction[] = [];
        for (const frame of event.frames) {
          if (this.finished) break;
          try {
            actions.push(...this.onFrame(frame));
          } catch (error) {
            actions.push(...this.fail(error));
          }
        }
        return actions;
      }
      case 'decoded':
        return [...this.onDecoded(event), ...this.flushEnd()];
      case 'accept':
        // A channel that failed while the main thread admitted it stays failed.
        if (this.finished) return [];
        this.index = event.index;
        this.state = 'open';
        return [{ type: 'write', bytes: encodeAccept(event.index) }];
      case 'refuse':
        if (this.finished) return [];
        this.state = 'done';
        return [{ type: 'close', last: encodeRefuse(event.reason), destroyAt: event.now + CLOSE_GRACE_MS }];
      case 'ack':
        this.outstanding--;
        if (this.outstanding >= this.config.window || !this.paused) return [];
        this.lastData = event.now;
        this.paused = false;
        return [{ type: 'resume' }];
      case 'done':
        this.state = 'done';
        return [{ type: 'end', last: encodeDone(event.bytes), then: { t: 'finished' } }];
      case 'abort':
        if (this.finished) return [];
        this.state = 'failed';
        return [{ type: 'close', last: encodeAbort(event.reason), destroyAt: event.now + CLOSE_GRACE_MS }];
      case 'auth-failed':
        if (this.finished) return [];
        this.state = 'failed';
        // The refusal travels inside the TLS session, so the sender prints the same reason.
        return [
          { type: 'post', message: { t: 'error', error: channelFailure(new AuthError(event.reason)) } },
          { type: 'close', last: encodeRefuse(event.reason), destroyAt: event.now + CLOSE_GRACE_MS },
        ];
      case 'socket-error':
        return this.fail(event.error);
      case 'peer-end':
        if (this.state === 'ended' || this.state === 'done') return [];
        if (this.state === 'handshake' && !this.sawBytes) return this.fail(new ChannelError(`${this.peer} closed the connection during the handshake`));
        return this.fail(new ChannelError(`the connection closed ${event.cutFrame ? 'inside a frame' : 'before the end frame'}: truncated session`, this.index));
      case 'closed':
        return [{ type: 'post', message: { t: 'closed' } }];
      case 'fail':
        return this.fail(event.error);
      case 'tick': {
        const waiting = this.state === 'handshake' || this.state === 'opened' || this.state === 'open';
        if (!waiting || this.paused || event.now - this.lastData <= this.config.timeoutMs) return [];
        return this.fail(new TimeoutError(`nothing received for ${this.config.timeoutMs / 1000} s`, this.index));
      }
    }
  }

  private onFrame(frame: Frame): RecvChannelAction[] {
    switch (frame.type) {
      case FrameType.OPEN:
        if (this.state !== 'handshake') throw new ProtocolError('a second OPEN on one channel', this.index);
        if (frame.magic !== PROTOCOL_MAGIC) throw new ProtocolError('not a migstream transport peer (bad magic)');
        this.state = 'opened';
        return [{ type: 'post', message: { t: 'open', magic: frame.magic, version: frame.version, sessionId: frame.sessionId, channels: frame.channels, index: frame.index, codec: frame.codec } }];
      case FrameType.DATA:
        if (this.state !== 'open') throw new ProtocolError(`DATA frame ${frame.seq} ${this.state === 'ended' ? 'after END' : 'before the channel was accepted'}`, this.index);
        if (frame.codec === 0 && frame.payload.length !== frame.rawLength) {
          throw new ProtocolError(`frame ${frame.seq}: ${frame.payload.length} bytes stored, ${frame.rawLength} announced`, this.index);
        }
        this.decoding++;
        return [{ type: 'decode', seq: frame.seq, rawLength: frame.rawLength, codec: frame.codec, payload: frame.payload }];
      case FrameType.END:
        if (this.state !== 'open') throw new ProtocolError('END frame out of place', this.index);
        this.state = 'ended';
        this.pendingEnd = { frames: frame.frames, bytes: frame.bytes, digest: frame.digest };
        return this.flushEnd();
      case FrameType.ABORT:
        throw new PeerAbortError(`the sender failed: ${frame.reason}`, this.index);
      case FrameType.PING:
        return [];
      default:
        throw new ProtocolError(`unexpected frame type ${frame.type} from the sender`, this.index);
    }
  }

  private onDecoded(event: Extract<RecvChannelEvent, { type: 'decoded' }>): RecvChannelAction[] {
    this.decoding--;
    // END may already have been parsed behind this frame; only a failure drops it.
    if (this.finished) return [];
    const actions: RecvChannelAction[] = [];
    this.outstanding++;
    if (this.outstanding >= this.config.window && !this.paused) {
      this.paused = true;
      actions.push({ type: 'pause' });
    }
    const buffer = event.raw.buffer as ArrayBuffer;
    actions.push({ type: 'post', message: { t: 'frame', seq: event.seq, data: event.raw, wire: event.wire }, transfer: [buffer] });
    return actions;
  }

  /** END goes to the main thread after every frame read before it. */
  private flushEnd(): RecvChannelAction[] {
    const end = this.pendingEnd;
    if (end === undefined || this.decoding > 0 || this.finished) return [];
    this.pendingEnd = undefined;
    return [{ type: 'post', message: { t: 'end', ...end } }];
  }

  private fail(error: unknown): RecvChannelAction[] {
    if (this.finished) return [];
    this.state = 'failed';
    return [{ type: 'post', message: { t: 'error', error: channelFailure(socketError(error, this.index ?? -1, 'sender'), this.index) } }, { type: 'destroy' }];
  }
}
