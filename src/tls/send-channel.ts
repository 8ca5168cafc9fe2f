/**
 * One sending channel's protocol as a state machine: events in, actions out. It owns no
 * socket, thread or timer; time arrives as `now` (milliseconds, any monotonic origin) in the
 * events, and anything to do later is an action carrying the time it is due. The worker
 * (send-worker.ts) feeds it what its socket and the main thread say, and carries out the
 * actions in order.
 *
 *   connecting ─connected─▶ connected ─join─▶ opening ─ACCEPT─▶ open ─end─▶ ending ─DONE─▶ done
 *        │ (channel 0 joins at once: connected → opening)            └─(index > 0)─▶ done
 *        └─ECONNREFUSED: redial at now + REDIAL_MS while within the timeout
 *   every state but done ─ error, REFUSE, ABORT, cut frame, close, timeout, abort ─▶ failed
 *
 * Payload work (compression) is asynchronous and done by the worker in order: the machine asks
 * for it (`encode`) and counts what is outstanding, so END leaves after the last frame.
 */
import { ChannelError, HandshakeError, PeerAbortError, ProtocolError, TimeoutError, channelFailure } from './errors.js';
import type { FromSendWorker } from './messages.js';
import { socketError } from './socket-errors.js';
import { CLOSE_GRACE_MS, FrameType, encodeAbort, encodeDataHeader, encodeEnd, encodeOpen, encodePing, type Frame } from './wire.js';

export type SendChannelState = 'connecting' | 'connected' | 'opening' | 'open' | 'ending' | 'done' | 'failed';

export interface SendChannelConfig {
  index: number;
  sessionId: Uint8Array;
  channels: number;
  codec: number;
  timeoutMs: number;
}

/** The receiver may not listen yet (QEMU starts it with the destination): redial this often. */
export const REDIAL_MS = 200;

/** A frame that has left: its credit and buffer go back to the main thread. */
export interface Credit {
  seq: number;
  raw: number;
  wire: number;
  buffer: ArrayBuffer;
}

export type SendChannelEvent =
  /** The worker starts: dial. */
  | { type: 'start'; now: number }
  /** A redial asked for by a `redial` action is due. */
  | { type: 'redial-due'; now: number }
  /** TCP (and TLS, pin checked) connected. */
  | { type: 'connected'; now: number }
  /** The main thread allows OPEN (channel 0 opened the session). */
  | { type: 'join'; now: number }
  /** Frames the parser read from the receiver in one chunk. */
  | { type: 'peer-frames'; frames: Frame[]; now: number }
  /** A frame to send, from the main thread. */
  | { type: 'send'; seq: number; data: Uint8Array }
  /** The frame asked for by `encode`, ready for the wire (payload compressed or raw). */
  | { type: 'encoded'; seq: number; raw: number; payload: Buffer; codec: number; buffer: ArrayBuffer; now: number }
  /** A `write` completed; `credit` is the write's. */
  | { type: 'written'; now: number; credit?: Credit | undefined }
  /** The stream ended: END with these totals, after every frame given so far. */
  | { type: 'end'; frames: number; bytes: number; digest: bigint; now: number }
  /** The main thread failed: tell the receiver why and close. */
  | { type: 'abort'; reason: string; now: number }
  | { type: 'socket-error'; error: unknown; now: number }
  /** The receiver ended the connection; `cutFrame`: inside a frame. */
  | { type: 'peer-end'; cutFrame: boolean }
  /** The socket closed (after an error, an end, or a destroy). */
  | { type: 'closed' }
  /** A failure found by the glue: a pin mismatch, a frame that would not compress, a parse error. */
  | { type: 'fail'; error: unknown }
  /** The watchdog; `unsent`: bytes the socket holds that the kernel has not taken. */
  | { type: 'tick'; now: number; unsent: number };

export type SendChannelAction =
  /** Dial the receiver now (a new socket). */
  | { type: 'connect' }
  /** Feed `redial-due` at time `at`. */
  | { type: 'redial'; at: number }
  /** Write bytes; once written feed `written` with `credit`, on error `socket-error`. */
  | { type: 'write'; bytes: Buffer; credit?: Credit }
  /** Compress (or pass through) frame `seq` and feed `encoded`, in the order asked. */
  | { type: 'encode'; seq: number; data: Uint8Array }
  | { type: 'post'; message: FromSendWorker; transfer?: ArrayBuffer[] }
  /** End the connection gracefully. */
  | { type: 'end' }
  /** End with a last frame (ABORT), and destroy the socket at `destroyAt` if still open. */
  | { type: 'close'; last: Buffer; destroyAt: number }
  | { type: 'destroy' };

export class SendChannel {
  state: SendChannelState = 'connecting';
  /** Channel 0 opens the session as soon as it is connected; the others wait for `join`. */
  private joinAllowed: boolean;
  /** A socket exists (dialled and not yet closed). */
  private socketOpen = false;
  /** The main thread wants to hear when the socket is closed (`closed` message). */
  private closeWanted = false;
  private lastWrite = 0;
  /** Last time a write completed or the receiver said something: the watchdog's clock. */
  private lastProgress = 0;
  /** The last refusal while dialling, reported if the receiver never listens. */
  private lastRefusal: unknown;
  /** Frames asked to `encode` and not yet `encoded`. */
  private encoding = 0;
  private pendingEnd: { frames: number; bytes: number; digest: bigint } | undefined;

  constructor(private readonly config: SendChannelConfig) {
    this.joinAllowed = config.index === 0;
  }

  on(event: SendChannelEvent): SendChannelAction[] {
    switch (event.type) {
      case 'start':
        this.lastWrite = this.lastProgress = event.now;
        return this.connect();
      case 'redial-due':
        return this.state === 'connecting' ? this.connect() : [];
      case 'connected':
        if (this.state !== 'connecting') return [];
        this.state = 'connected';
        return this.joinAllowed ? this.open(event.now) : [];
      case 'join':
        this.joinAllowed = true;
        return this.state === 'connected' ? this.open(event.now) : [];
      case 'peer-frames': {
        this.lastProgress = event.now;
        const actions: SendChannelAction[] = [];
        for (const frame of event.frames) {
          if (this.state === 'failed' || this.state === 'done') break;
          try {
            actions.push(...this.onFrame(frame));
          } catch (error) {
            actions.push(...this.fail(error));
          }
        }
        return actions;
      }
      case 'send':
        this.encoding++;
        return [{ type: 'encode', seq: event.seq, data: event.data }];
      case 'encoded':
        return [...this.onEncoded(event), ...this.flushEnd(event.now)];
      case 'written':
        this.lastProgress = event.now;
        return event.credit === undefined ? [] : [{ type: 'post', message: { t: 'credit', ...event.credit }, transfer: [event.credit.buffer] }];
      case 'end':
        this.pendingEnd = { frames: event.frames, bytes: event.bytes, digest: event.digest };
        return this.flushEnd(event.now);
      case 'abort': {
        this.closeWanted = true;
        if (this.state === 'failed' || this.state === 'done') return this.socketOpen ? [] : this.closedNotice();
        this.state = 'failed';
        if (!this.socketOpen) return this.closedNotice();
        return [{ type: 'close', last: encodeAbort(event.reason), destroyAt: event.now + CLOSE_GRACE_MS }];
      }
      case 'socket-error': {
        const code = (event.error as NodeJS.ErrnoException | undefined)?.code;
        if (this.state === 'connecting' && code === 'ECONNREFUSED' && event.now - this.lastProgress < this.config.timeoutMs) {
          this.lastRefusal = event.error;
          this.socketOpen = false;
          return [{ type: 'destroy' }, { type: 'redial', at: event.now + REDIAL_MS }];
        }
        return this.fail(event.error);
      }
      case 'peer-end':
        if (this.state === 'done') return [];
        if (event.cutFrame) return this.fail(new ProtocolError('the receiver sent a cut frame (not a migstream transport peer?)', this.config.index));
        return this.fail(new ChannelError('the receiver closed the connection before the end of the stream', this.config.index));
      case 'closed': {
        this.socketOpen = false;
        const actions =
          this.state === 'done' || this.state === 'failed' || this.state === 'connecting' ? [] : this.fail(new ChannelError('the connection closed before the end of the stream', this.config.index));
        return this.closeWanted ? [...actions, ...this.closedNotice()] : actions;
      }
      case 'fail':
        return this.fail(event.error);
      case 'tick':
        return this.tick(event.now, event.unsent);
    }
  }

  private connect(): SendChannelAction[] {
    this.socketOpen = true;
    return [{ type: 'connect' }];
  }

  private open(now: number): SendChannelAction[] {
    this.state = 'opening';
    const { sessionId, channels, index, codec } = this.config;
    return [this.write(encodeOpen({ sessionId: Buffer.from(sessionId), channels, index, codec }), now)];
  }

  private write(bytes: Buffer, now: number, credit?: Credit): SendChannelAction {
    this.lastWrite = now;
    return credit === undefined ? { type: 'write', bytes } : { type: 'write', bytes, credit };
  }

  private onFrame(frame: Frame): SendChannelAction[] {
    const index = this.config.index;
    switch (frame.type) {
      case FrameType.ACCEPT:
        if (this.state !== 'opening' || frame.index !== index) throw new ProtocolError(`unexpected ACCEPT for channel ${frame.index}`, index);
        this.state = 'open';
        return [{ type: 'post', message: { t: 'open' } }];
      case FrameType.REFUSE:
        throw new HandshakeError(`the receiver refused the channel: ${frame.reason}`, index);
      case FrameType.DONE:
        if (this.state !== 'ending') throw new ProtocolError('DONE before the end of the stream', index);
        this.state = 'done';
        return [{ type: 'post', message: { t: 'done', bytes: frame.bytes } }, { type: 'end' }];
      case FrameType.ABORT:
        throw new PeerAbortError(`the receiver failed: ${frame.reason}`, index);
      case FrameType.PING:
        return [];
      default:
        throw new ProtocolError(`unexpected frame type ${frame.type} from the receiver`, index);
    }
  }

  private onEncoded(event: Extract<SendChannelEvent, { type: 'encoded' }>): SendChannelAction[] {
    this.encoding--;
    if (this.state !== 'open') return [];
    const { seq, raw, payload, codec, buffer, now } = event;
    // Once written (or encrypted), the frame's buffer goes back to the input with its credit.
    return [this.write(encodeDataHeader(seq, raw, codec, payload.length), now), this.write(payload, now, { seq, raw, wire: payload.length + 18, buffer })];
  }

  /** END, once every frame asked for has been encoded and written. */
  private flushEnd(now: number): SendChannelAction[] {
    const end = this.pendingEnd;
    if (end === undefined || this.encoding > 0) return [];
    this.pendingEnd = undefined;
    if (this.state !== 'open') return [];
    this.state = 'ending';
    const actions: SendChannelAction[] = [this.write(encodeEnd(end), now)];
    // Channel 0 waits for the receiver's DONE; the others are finished.
    if (this.config.index !== 0) {
      this.state = 'done';
      actions.push({ type: 'end' });
    }
    return actions;
  }

  private fail(error: unknown): SendChannelAction[] {
    if (this.state === 'failed' || this.state === 'done') return [];
    this.state = 'failed';
    const index = this.config.index;
    return [{ type: 'post', message: { t: 'error', error: channelFailure(socketError(error, index, 'receiver'), index) } }, { type: 'destroy' }];
  }

  private closedNotice(): SendChannelAction[] {
    this.closeWanted = false;
    return [{ type: 'post', message: { t: 'closed' } }];
  }

  private tick(now: number, unsent: number): SendChannelAction[] {
    const state = this.state;
    if (state === 'failed' || state === 'done') return [];
    // Waiting on the receiver (handshake, DONE) or on writes that do not drain.
    const waiting = state === 'connecting' || state === 'connected' || state === 'opening' || state === 'ending' || unsent > 0;
    if (waiting && now - this.lastProgress > this.config.timeoutMs) {
      // Still dialling a port that refuses: say so, not that a handshake stalled.
      if (state === 'connecting' && this.lastRefusal !== undefined) return this.fail(this.lastRefusal);
      const phase = state === 'connecting' || state === 'connected' || state === 'opening' ? 'handshake' : state === 'ending' ? 'waiting for the receiver to confirm' : 'writes not draining';
      return this.fail(new TimeoutError(`no progress for ${this.config.timeoutMs / 1000} s (${phase})`, this.config.index));
    }
    const actions: SendChannelAction[] = [];
    // A quiet channel (slow source) still shows the receiver it is alive.
    if ((state === 'open' || state === 'ending') && now - this.lastWrite > this.config.timeoutMs / 3) actions.push(this.write(encodePing(), now));
    if (!waiting) this.lastProgress = now;
    return actions;
  }
}
