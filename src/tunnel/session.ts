/**
 * One tunnel session, one side, as a state machine without I/O: the streams it carries over
 * its channels, their credit, half-closes and resets, and the channels' heartbeat.
 *
 * The dialer (the source host's tunnel) accepts local connections and opens a stream for each;
 * the listener (the destination's) connects each stream to its target. Either side then moves
 * bytes both ways. The I/O edge (host.ts) calls the inputs below and carries out the actions
 * `drain()` returns, in order.
 *
 * Credit: each direction of a stream may have at most `window` bytes sent and not yet written
 * by the far side; the far side grants more (WINDOW) as its local socket takes them. So a slow
 * consumer of one stream (an NBD server writing a disk) never stops a channel that other
 * streams share (the return path's small messages, which QEMU waits for), and memory is
 * bounded by streams × window per direction.
 */
import { ChannelError, PeerAbortError, ProtocolError, TimeoutError, type TransportError } from '../tls/errors.js';
import { encodeAbort, encodePing } from '../tls/wire.js';
import type { StreamCodec } from './frame-codec.js';
import { TunnelFrameType, encodeStream, encodeStreamDataHeader, encodeStreamEnd, encodeStreamReset, encodeWindow, type TunnelFrame } from './wire.js';

export type TunnelSide = 'dialer' | 'listener';

export interface TunnelSessionConfig {
  side: TunnelSide;
  channels: number;
  /** Bytes one direction of a stream may have in flight (default 4 MiB). */
  window?: number;
  /** A channel that heard nothing for this long fails the session (default 30 s). */
  timeoutMs?: number;
  /** Listener: null when a stream may connect to `target`, else why not. */
  checkTarget?: (target: string) => string | null;
  /**
   * Compresses what we send and decompresses STREAM_DATA of another codec than 0, stream by
   * stream (frame-codec.ts); without it every STREAM_DATA goes raw and a compressed one fails.
   */
  codec?: StreamCodec | undefined;
}

export const DEFAULT_WINDOW = 4 * 1024 * 1024;

export type TunnelAction =
  | { kind: 'send'; channel: number; bytes: Buffer[] }
  /** Listener: connect the stream's local socket to its target. */
  | { kind: 'connect'; stream: number; target: string }
  | { kind: 'write'; stream: number; data: Buffer }
  /** Half-close the local socket's writing side once earlier writes are out. */
  | { kind: 'end'; stream: number }
  | { kind: 'destroy'; stream: number; reason: string }
  | { kind: 'pause'; stream: number }
  | { kind: 'resume'; stream: number }
  | { kind: 'opened'; stream: number; target: string; channel: number }
  | { kind: 'closed'; stream: number; sent: number; received: number; reset: string | null }
  /** The session ended: `stopped` when stop() ended it on purpose. */
  | { kind: 'failed'; error: TransportError; stopped: boolean };

interface StreamState {
  id: number;
  target: string;
  channel: number;
  /** Listener: the local socket is not connected yet; writes wait in `held`. */
  connecting: boolean;
  held: Buffer[];
  /** Bytes we may still send, and what waits for credit. */
  credit: number;
  queued: Buffer[];
  paused: boolean;
  /** Bytes sent / received over the tunnel. */
  sent: number;
  received: number;
  /** Bytes the far side may send before it needs a WINDOW from us. */
  granted: number;
  /** Bytes our local socket took since the last WINDOW. */
  written: number;
  /** Our local side reached EOF; STREAM_END is sent once `queued` is empty. */
  localEnded: boolean;
  endSent: boolean;
  /** The far side's STREAM_END arrived; our local socket is ended after `held`. */
  remoteEnded: boolean;
}

interface ChannelClock {
  lastSent: number;
  lastHeard: number;
}

export class TunnelSession {
  private readonly streams = new Map<number, StreamState>();
  /**
   * Highest stream id opened so far, per channel: an id at or below it that is gone was
   * closed, and late frames for it are dropped. Per channel, because the dialer numbers streams
   * in one sequence but spreads them over the channels: STREAM 7 on channel 0 may arrive before
   * STREAM 2 on channel 1, while on one channel they arrive in order. The dialer opens them all
   * and keeps its sequence in `nextStream`.
   */
  private readonly highestStream: number[];
  private nextStream = 1;
  /**
   * Listener: streams are connected one at a time in id order, the order the dialer accepted
   * them. QEMU before 8.0 takes the first connection to its socket as the main stream (it does
   * not peek at the magic), and with several channels a multifd stream's STREAM may arrive
   * before the main one's. `nextConnect` is the next id to connect, `connectingNow` the one
   * whose connect is out, `settledIds` ids that arrived and need no connect (refused, or reset
   * before their turn).
   */
  private nextConnect = 1;
  private connectingNow: number | null = null;
  private readonly settledIds = new Set<number>();
  private readonly clocks: ChannelClock[];
  private readonly window: number;
  private readonly timeoutMs: number;
  private actions: TunnelAction[] = [];
  private failure: TransportError | null = null;

  constructor(
    private readonly config: TunnelSessionConfig,
    now = 0,
  ) {
    this.window = config.window ?? DEFAULT_WINDOW;
    this.timeoutMs = config.timeoutMs ?? 30_000;
    this.clocks = Array.from({ length: config.channels }, () => ({ lastSent: now, lastHeard: now }));
    this.highestStream = new Array<number>(config.channels).fill(0);
  }

  get failed(): TransportError | null {
    return this.failure;
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /** The actions produced since the last call, in order. */
  drain(): TunnelAction[] {
    const out = this.actions;
    this.actions = [];
    return out;
  }

  /** Dialer: a local connection was accepted for `target`; returns its stream id. */
  open(target: string): number {
    if (this.config.side !== 'dialer') throw new Error('only the dialer opens streams');
    const id = this.nextStream++;
    const channel = this.quietestChannel();
    this.highestStream[channel] = id;
    this.streams.set(id, this.newStream(id, target, channel, false));
    this.send(channel, [encodeStream(id, target)]);
    this.actions.push({ kind: 'opened', stream: id, target, channel });
    return id;
  }

  /** Listener: the stream's local socket connected; what waited is written now. */
  connected(id: number): void {
    const stream = this.streams.get(id);
    if (stream === undefined || !stream.connecting) return;
    stream.connecting = false;
    for (const data of stream.held) this.actions.push({ kind: 'write', stream: id, data });
    stream.held = [];
    if (stream.remoteEnded) this.actions.push({ kind: 'end', stream: id });
    this.closeIfDone(stream);
    this.connectDone(id);
  }

  /** Bytes read from a stream's local socket. */
  localData(id: number, data: Buffer): void {
    const stream = this.streams.get(id);
    if (stream === undefined || stream.localEnded || data.length === 0) return;
    stream.queued.push(data);
    this.flush(stream);
  }

  /** The local socket reached EOF: the far side's socket is half-closed once our bytes are out. */
  localEnd(id: number): void {
    const stream = this.streams.get(id);
    if (stream === undefined || stream.localEnded) return;
    stream.localEnded = true;
    this.flush(stream);
  }

  /** The local socket took `bytes` of what we wrote to it: grant the far side more. */
  localWritten(id: number, bytes: number): void {
    const stream = this.streams.get(id);
    if (stream === undefined) return;
    stream.written += bytes;
    // Grant in quarters of the window, not per write: fewer WINDOW frames, same bound.
    if (stream.written >= this.window / 4 && !stream.remoteEnded) {
      this.send(stream.channel, [encodeWindow(id, stream.written)]);
      stream.granted += stream.written;
      stream.written = 0;
    }
  }

  /** The local socket failed, or closed before both directions finished. */
  localFailed(id: number, reason: string): void {
    const stream = this.streams.get(id);
    if (stream === undefined) return;
    this.send(stream.channel, [encodeStreamReset(id, reason)]);
    this.actions.push({ kind: 'destroy', stream: id, reason });
    this.remove(stream, reason);
  }

  /** A frame from channel `channel` of this session (after OPEN/ACCEPT). */
  frame(channel: number, frame: TunnelFrame, now: number): void {
    if (this.failure !== null) return;
    this.clocks[channel]!.lastHeard = now;
    try {
      this.handle(channel, frame);
    } catch (error) {
      if (error instanceof ProtocolError) this.fail(error);
      else throw error;
    }
  }

  /** A channel's socket failed or closed (`error` names it): every stream goes with the session. */
  channelLost(error: TransportError): void {
    this.fail(error);
  }

  /** Heartbeat: PING quiet channels, fail on silent ones. Call about once a second. */
  tick(now: number): void {
    if (this.failure !== null) return;
    this.clocks.forEach((clock, channel) => {
      if (now - clock.lastHeard >= this.timeoutMs) {
        this.fail(new TimeoutError(`nothing heard for ${Math.round(this.timeoutMs / 1000)} s`, channel));
      } else if (now - clock.lastSent >= this.timeoutMs / 3) {
        this.send(channel, [encodePing()]);
        clock.lastSent = now;
      }
    });
  }

  /** Stops the session on purpose (a signal): every stream is destroyed and the peer is told why. */
  stop(reason: string): void {
    this.fail(new ChannelError(reason), true, true);
  }

  /** Records that `channel` sent something at `now` (the edge calls this on every write). */
  sentAt(channel: number, now: number): void {
    this.clocks[channel]!.lastSent = now;
  }

  private handle(channel: number, frame: TunnelFrame): void {
    switch (frame.type) {
      case TunnelFrameType.PING:
        return;
      case TunnelFrameType.ABORT:
        this.fail(new PeerAbortError(`the peer failed: ${frame.reason}`, channel), false);
        return;
      case TunnelFrameType.STREAM:
        return this.remoteOpen(channel, frame.stream, frame.target);
      case TunnelFrameType.STREAM_DATA: {
        const stream = this.streamFor(channel, frame.stream, 'STREAM_DATA');
        if (stream === undefined) return;
        if (stream.remoteEnded) throw new ProtocolError(`stream ${frame.stream}: data after its STREAM_END`, channel);
        if (stream.received + frame.rawLength > stream.granted) {
          throw new ProtocolError(`stream ${frame.stream}: ${stream.received + frame.rawLength} bytes sent against ${stream.granted} granted`, channel);
        }
        const data = this.unpack(channel, frame);
        stream.received += frame.rawLength;
        if (stream.connecting) stream.held.push(data);
        else this.actions.push({ kind: 'write', stream: stream.id, data });
        return;
      }
      case TunnelFrameType.STREAM_END: {
        const stream = this.streamFor(channel, frame.stream, 'STREAM_END');
        if (stream === undefined) return;
        if (stream.remoteEnded) throw new ProtocolError(`stream ${frame.stream}: a second STREAM_END`, channel);
        if (frame.bytes !== stream.received) throw new ProtocolError(`stream ${frame.stream}: STREAM_END counts ${frame.bytes} bytes, ${stream.received} arrived`, channel);
        stream.remoteEnded = true;
        if (!stream.connecting) this.actions.push({ kind: 'end', stream: stream.id });
        this.closeIfDone(stream);
        return;
      }
      case TunnelFrameType.STREAM_RESET: {
        const stream = this.streamFor(channel, frame.stream, 'STREAM_RESET');
        if (stream === undefined) return;
        const reason = `the peer reset it: ${frame.reason}`;
        this.actions.push({ kind: 'destroy', stream: stream.id, reason });
        this.remove(stream, reason);
        return;
      }
      case TunnelFrameType.WINDOW: {
        const stream = this.streamFor(channel, frame.stream, 'WINDOW');
        if (stream === undefined) return;
        stream.credit += frame.bytes;
        this.flush(stream);
        return;
      }
      default:
        throw new ProtocolError(`unexpected frame type ${frame.type} in an open session`, channel);
    }
  }

  /** A STREAM_DATA's raw bytes: its payload, or what the payload decompresses to. */
  private unpack(channel: number, frame: Extract<TunnelFrame, { type: typeof TunnelFrameType.STREAM_DATA }>): Buffer {
    if (frame.codec === 0) {
      if (frame.payload.length !== frame.rawLength) throw new ProtocolError(`stream ${frame.stream}: raw STREAM_DATA of ${frame.payload.length} bytes announces ${frame.rawLength}`, channel);
      return frame.payload;
    }
    if (this.config.codec === undefined) throw new ProtocolError(`stream ${frame.stream}: codec ${frame.codec} is not supported by this tunnel`, channel);
    try {
      return this.config.codec.decompress(frame.stream, frame.codec, frame.payload, frame.rawLength);
    } catch (error) {
      throw new ProtocolError(`stream ${frame.stream}: a STREAM_DATA of codec 0x${frame.codec.toString(16)} does not decode to its ${frame.rawLength} bytes: ${(error as Error).message}`, channel);
    }
  }

  private remoteOpen(channel: number, id: number, target: string): void {
    if (this.config.side !== 'listener') throw new ProtocolError(`STREAM ${id} from the listener: only the dialer opens streams`, channel);
    const highest = this.highestStream[channel]!;
    if (id <= highest || this.streams.has(id)) throw new ProtocolError(`STREAM ${id} reuses an id (the last on this channel was ${highest})`, channel);
    this.highestStream[channel] = id;
    const refusal = this.config.checkTarget?.(target) ?? null;
    if (refusal !== null) {
      // The stream never opened here; the dialer drops our reset's late frames as it would any.
      this.send(channel, [encodeStreamReset(id, refusal)]);
      this.actions.push({ kind: 'opened', stream: id, target, channel }, { kind: 'closed', stream: id, sent: 0, received: 0, reset: refusal });
      this.settledIds.add(id);
    } else {
      this.streams.set(id, this.newStream(id, target, channel, true));
      this.actions.push({ kind: 'opened', stream: id, target, channel });
    }
    this.connectNext();
  }

  /** Issues the next connect in id order, if its STREAM arrived and no connect is out. */
  private connectNext(): void {
    while (this.connectingNow === null && this.failure === null) {
      const id = this.nextConnect;
      if (this.settledIds.delete(id)) {
        this.nextConnect++;
        continue;
      }
      const stream = this.streams.get(id);
      if (stream === undefined) return;
      this.connectingNow = id;
      this.actions.push({ kind: 'connect', stream: id, target: stream.target });
    }
  }

  /** Stream `id` connected, failed to, or went away: the next one may connect. */
  private connectDone(id: number): void {
    if (this.config.side !== 'listener' || id < this.nextConnect) return;
    if (id === this.connectingNow) {
      this.connectingNow = null;
      this.nextConnect++;
    } else {
      this.settledIds.add(id);
    }
    this.connectNext();
  }

  /** The stream a frame names, or undefined for a stream closed before (late frames are dropped). */
  private streamFor(channel: number, id: number, what: string): StreamState | undefined {
    const stream = this.streams.get(id);
    if (stream === undefined) {
      if (id >= 1 && id <= this.highestStream[channel]!) return undefined;
      throw new ProtocolError(`${what} for stream ${id}, which was never opened`, channel);
    }
    if (stream.channel !== channel) throw new ProtocolError(`${what} for stream ${id} on channel ${channel}; it lives on channel ${stream.channel}`, channel);
    return stream;
  }

  private newStream(id: number, target: string, channel: number, connecting: boolean): StreamState {
    return {
      id,
      target,
      channel,
      connecting,
      held: [],
      credit: this.window,
      queued: [],
      paused: false,
      sent: 0,
      received: 0,
      granted: this.window,
      written: 0,
      localEnded: false,
      endSent: false,
      remoteEnded: false,
    };
  }

  /** Sends what credit allows; pauses the local socket while something waits. */
  private flush(stream: StreamState): void {
    while (stream.queued.length > 0 && stream.credit > 0) {
      let data = stream.queued[0]!;
      if (data.length > stream.credit) {
        stream.queued[0] = data.subarray(stream.credit);
        data = data.subarray(0, stream.credit);
      } else {
        stream.queued.shift();
      }
      stream.credit -= data.length;
      stream.sent += data.length;
      const { codec, payload } = this.config.codec?.compress(stream.id, data) ?? { codec: 0, payload: data };
      this.send(stream.channel, [encodeStreamDataHeader(stream.id, codec, data.length, payload.length), payload]);
    }
    const waiting = stream.queued.length > 0;
    if (waiting && !stream.paused) {
      stream.paused = true;
      this.actions.push({ kind: 'pause', stream: stream.id });
    } else if (!waiting && stream.paused) {
      stream.paused = false;
      this.actions.push({ kind: 'resume', stream: stream.id });
    }
    if (!waiting && stream.localEnded && !stream.endSent) {
      stream.endSent = true;
      this.send(stream.channel, [encodeStreamEnd(stream.id, stream.sent)]);
      this.closeIfDone(stream);
    }
  }

  /** Both directions finished: the stream is closed on both sides (each side's socket ends on its own). */
  private closeIfDone(stream: StreamState): void {
    if (stream.endSent && stream.remoteEnded && !stream.connecting) this.remove(stream, null);
  }

  private remove(stream: StreamState, reset: string | null): void {
    this.streams.delete(stream.id);
    this.config.codec?.forget(stream.id);
    this.actions.push({ kind: 'closed', stream: stream.id, sent: stream.sent, received: stream.received, reset });
    if (stream.connecting) this.connectDone(stream.id);
  }

  private quietestChannel(): number {
    const load = new Array<number>(this.config.channels).fill(0);
    for (const stream of this.streams.values()) load[stream.channel]!++;
    return load.indexOf(Math.min(...load));
  }

  private send(channel: number, bytes: Buffer[]): void {
    this.actions.push({ kind: 'send', channel, bytes });
  }

  /** The session ends: every stream's local socket is destroyed; `tell` sends ABORT on every channel. */
  private fail(error: TransportError, tell = true, stopped = false): void {
    if (this.failure !== null) return;
    this.failure = error;
    if (tell) {
      for (let channel = 0; channel < this.config.channels; channel++) this.send(channel, [encodeAbort(error.message)]);
    }
    for (const stream of [...this.streams.values()]) {
      this.actions.push({ kind: 'destroy', stream: stream.id, reason: error.message });
      this.remove(stream, error.message);
    }
    this.actions.push({ kind: 'failed', error, stopped });
  }
}
