/**
 * The receiver's session as a state machine: events in, actions out, no socket, thread or
 * timer (time comes in as `now`, in milliseconds). receiver.ts feeds it what the listener,
 * the channel workers and the output say, and carries out its actions in order.
 *
 *   listening ─OPEN index 0 admitted─▶ joining ─all N joined─▶ running
 *   joining/running ─END on every channel, totals and digest verified─▶ confirming ─DONE flushed─▶ completed
 *   listening/joining/running ─ a member fails, bad totals or digest, a timeout, output gone ─▶ failed
 *   confirming ─ the held tail cannot be written ─▶ failed
 *
 * Connections are told apart by an id the glue gives them. Until it is admitted a connection
 * is a stranger: its failures are logged and refused one by one, never the session's.
 *
 * Frames are addressed to a logical stream (`stream`): today only MAIN_STREAM, QEMU's one-way
 * migration stream, sender to receiver. Each stream has its own reordering, held tail, digest
 * and END totals (InboundStream), so more streams, and streams in the other direction, are
 * an extension of the `streams` map (docs/transport.md, "Towards several two-way streams").
 */
import { codecById } from '../codecs/registry.js';
import { StreamDigest, formatDigest } from './digest.js';
import { ChannelError, ChecksumError, OutputError, ProtocolError, TimeoutError, type TransportError } from './errors.js';
import { Reorderer } from './reorder.js';
import { admit, type OpenRequest, type SessionInfo } from './session.js';
import type { ChannelStats, TransferSummary } from './summary.js';

/** QEMU's migration stream: the one stream a session carries today. */
export const MAIN_STREAM = 0;

/**
 * Connections not (yet) admitted into the session that may hold a worker at once: a port
 * scan or a flood of strangers is dropped at accept beyond this, instead of costing a thread
 * each.
 */
export const MAX_STRANGERS = 8;

export const OUTPUT_GONE = 'nobody reads the output any more (did the destination QEMU exit?)';

export type ConnectionId = number;

export interface EndTotals {
  frames: number;
  bytes: number;
  digest: bigint;
}

/**
 * One stream in from the sender: frames put back in order with the newest `holdBytes` held
 * until END is verified, the digest over the released frames, and which connection to ack for
 * each released frame (its window slot comes back only once the frame is out of the way).
 */
export class InboundStream {
  private readonly digest = new StreamDigest();
  private readonly reorder: Reorderer;
  private toWrite: Buffer[] = [];
  /** seq -> connection that delivered it, to return the window slot when it is released. */
  private readonly owner = new Map<number, ConnectionId>();
  private ackedUpTo = 0;
  private lastRelease: number;

  constructor(holdBytes: number, now: number) {
    this.lastRelease = now;
    // The digest covers the held tail too, so it is computed as frames are released.
    this.reorder = new Reorderer(
      holdBytes,
      (chunks) => this.toWrite.push(...chunks),
      (frame) => this.digest.update(frame),
    );
  }

  get frames(): number {
    return this.reorder.next;
  }

  get bytes(): number {
    return this.reorder.bytes;
  }

  get digestValue(): bigint {
    return this.digest.value;
  }

  /**
   * Adds frame `seq` from connection `from` (channel `channel`): the bytes now ready to write
   * and the connections to ack, one per frame released. Throws ProtocolError for a duplicate.
   */
  add(seq: number, data: Buffer, from: ConnectionId, channel: number, now: number): { write: Buffer[]; released: boolean; acks: ConnectionId[] } {
    const waitedBefore = this.reorder.pendingFrames > 0;
    const released = this.reorder.add(seq, data, channel);
    // The clock runs while frames wait for a missing one: it starts with the first such wait
    // and restarts with every release.
    if (released.length > 0 || !waitedBefore) this.lastRelease = now;
    this.owner.set(seq, from);
    const acks: ConnectionId[] = [];
    for (; this.ackedUpTo < this.reorder.next; this.ackedUpTo++) {
      acks.push(this.owner.get(this.ackedUpTo)!);
      this.owner.delete(this.ackedUpTo);
    }
    const write = this.toWrite;
    this.toWrite = [];
    return { write, released: released.length > 0, acks };
  }

  /** A frame that never arrives while later ones wait for it longer than `timeoutMs`. */
  stalled(now: number, timeoutMs: number): TransportError | undefined {
    if (this.reorder.pendingFrames === 0 || now - this.lastRelease <= timeoutMs) return undefined;
    return new TimeoutError(`frame ${this.reorder.next} did not arrive within ${timeoutMs / 1000} s while ${this.reorder.pendingFrames} later frame(s) waited for it`);
  }

  /** 'wait' while frames are still in flight; else what is wrong with the stream, or 'ok'. */
  verify(end: EndTotals): 'wait' | 'ok' | TransportError {
    const { next, pendingFrames, bytes } = this.reorder;
    if (next < end.frames) return 'wait';
    if (next > end.frames || pendingFrames > 0) return new ChecksumError(`received ${next + pendingFrames} frames, the sender announced ${end.frames}`);
    if (bytes !== end.bytes) return new ChecksumError(`received ${bytes} bytes, the sender announced ${end.bytes}`);
    if (this.digest.value !== end.digest) {
      return new ChecksumError(`stream digest ${formatDigest(this.digest.value)} differs from the sender's ${formatDigest(end.digest)}`);
    }
    return 'ok';
  }

  /** The held tail: take it only once the stream is verified. */
  tail(): Buffer[] {
    this.reorder.flush();
    const tail = this.toWrite;
    this.toWrite = [];
    return tail;
  }
}

export interface ReceiverSessionConfig {
  timeoutMs: number;
  holdBytes: number;
  tls: boolean;
}

export type ReceiverSessionState = 'listening' | 'joining' | 'running' | 'confirming' | 'completed' | 'failed';

export type ReceiverSessionEvent =
  /** The listener accepted a connection. */
  | { type: 'connection'; id: ConnectionId; peer: string; now: number }
  /** A connection's first frame, OPEN. */
  | { type: 'open'; id: ConnectionId; request: OpenRequest; now: number }
  | { type: 'frame'; id: ConnectionId; stream: number; seq: number; data: Buffer; wire: number; now: number }
  | { type: 'end'; id: ConnectionId; stream: number; totals: EndTotals }
  /** A connection's worker failed (its socket, the peer, its bytes). */
  | { type: 'channel-failed'; id: ConnectionId; error: TransportError }
  | { type: 'worker-exit'; id: ConnectionId; code: number }
  /** Channel 0's DONE has been flushed to its socket. */
  | { type: 'finished'; id: ConnectionId; now: number }
  /** The output's reader is gone. */
  | { type: 'output-gone' }
  /** A `write` failed: the rest of that batch of actions is moot. */
  | { type: 'output-failed'; error: TransportError }
  /** Any other failure of the receiver (a worker thread that crashed). */
  | { type: 'fail'; error: TransportError }
  | { type: 'tick'; now: number };

export type ReceiverSessionAction =
  /** Hand the connection's socket to a channel worker. */
  | { type: 'take'; id: ConnectionId }
  /** Close the connection at once, unanswered. */
  | { type: 'drop'; id: ConnectionId }
  /** Tell the operator a connection was turned away (the session goes on). */
  | { type: 'refused'; peer: string; reason: string }
  | { type: 'accept'; id: ConnectionId; index: number }
  | { type: 'refuse'; id: ConnectionId; reason: string }
  /** The connection is no longer the session's: let its worker go. */
  | { type: 'retire'; id: ConnectionId }
  /** Return one window slot to the connection's worker. */
  | { type: 'ack'; id: ConnectionId }
  /**
   * Write in-order bytes of `stream` (synchronously; on failure feed `output-failed` and drop
   * the rest of the batch). `tail`: the held tail, after verification.
   */
  | { type: 'write'; stream: number; chunks: Buffer[]; tail: boolean }
  | { type: 'progress'; bytes: number }
  | { type: 'done'; id: ConnectionId; bytes: number }
  | { type: 'abort'; id: ConnectionId; reason: string }
  | { type: 'failed'; error: TransportError }
  | { type: 'completed'; summary: TransferSummary };

interface Connection {
  id: ConnectionId;
  peer: string;
  index: number | undefined;
  stats: ChannelStats;
  ended: EndTotals | undefined;
}

export class ReceiverSession {
  state: ReceiverSessionState = 'listening';
  private session: SessionInfo | undefined;
  /** Connections that are the session's or may become it (strangers not yet refused). */
  private readonly connections = new Map<ConnectionId, Connection>();
  private readonly members: Connection[] = [];
  private readonly streams = new Map<number, InboundStream>();
  private startedAt = 0;
  /** From the first connection on, a sender has --timeout to be admitted. */
  private admissionDeadline: number | undefined;
  /** From channel 0's admission on, the other channels have --timeout to join. */
  private joinDeadline: number | undefined;
  private refusals = 0;
  private lastRefusal: string | undefined;

  constructor(private readonly config: ReceiverSessionConfig) {}

  /** Still taking connections, frames and failures (not confirming, completed or failed). */
  get active(): boolean {
    return this.state === 'listening' || this.state === 'joining' || this.state === 'running';
  }

  /**
   * The admission or join deadline, if one runs: a `tick` at that time fails the session. (A
   * frame that never arrives is checked by the periodic ticks.)
   */
  get nextDeadline(): number | undefined {
    if (!this.active) return undefined;
    return this.session === undefined ? this.admissionDeadline : this.joinDeadline;
  }

  on(event: ReceiverSessionEvent): ReceiverSessionAction[] {
    switch (event.type) {
      case 'finished':
        return this.onFinished(event.id, event.now);
      case 'output-failed':
        return this.state === 'confirming' || this.active ? this.fail(event.error) : [];
      default:
        return this.active ? this.onActive(event) : event.type === 'connection' ? [{ type: 'drop', id: event.id }] : [];
    }
  }

  private onActive(event: ReceiverSessionEvent): ReceiverSessionAction[] {
    const timeout = this.config.timeoutMs;
    switch (event.type) {
      case 'connection':
        return this.onConnection(event.id, event.peer, event.now);
      case 'open':
        return this.onOpen(event.id, event.request, event.now);
      case 'frame':
        return this.onFrame(event);
      case 'end': {
        const c = this.connections.get(event.id);
        if (c?.index === undefined) return [];
        if (event.stream !== MAIN_STREAM) return this.fail(new ProtocolError(`END for unknown stream ${event.stream}`, c.index));
        c.ended = event.totals;
        return this.checkComplete();
      }
      case 'channel-failed': {
        const c = this.connections.get(event.id);
        if (c === undefined) return [];
        // A stranger failed (handshake, authentication, garbage, silence), before or during a
        // session: refuse it only.
        return c.index === undefined ? this.refuse(c, event.error.message) : this.fail(event.error);
      }
      case 'worker-exit': {
        const c = this.connections.get(event.id);
        return c?.index === undefined ? [] : this.fail(new ChannelError(`worker exited (${event.code})`, c.index));
      }
      case 'output-gone':
        return this.fail(new OutputError(OUTPUT_GONE));
      case 'fail':
        return this.fail(event.error);
      case 'tick': {
        const now = event.now;
        if (this.session === undefined && this.admissionDeadline !== undefined && now >= this.admissionDeadline) {
          const strangers = this.strangers();
          const refused = this.refusals === 0 ? '' : `; ${this.refusals} connection(s) refused, the last ${this.lastRefusal}`;
          const pending = strangers === 0 ? '' : `; ${strangers} still unidentified`;
          return this.fail(new TimeoutError(`no sender was admitted within ${timeout / 1000} s of the first connection${refused}${pending}`));
        }
        if (this.session !== undefined && this.joinDeadline !== undefined && now >= this.joinDeadline) {
          return this.fail(new TimeoutError(`only ${this.members.length} of ${this.session.channels} channels joined within ${timeout / 1000} s`));
        }
        for (const stream of this.streams.values()) {
          const stalled = stream.stalled(now, timeout);
          if (stalled !== undefined) return this.fail(stalled);
        }
        return [];
      }
      default:
        return [];
    }
  }

  private strangers(): number {
    let count = 0;
    for (const c of this.connections.values()) if (c.index === undefined) count++;
    return count;
  }

  private onConnection(id: ConnectionId, peer: string, now: number): ReceiverSessionAction[] {
    if (this.strangers() >= MAX_STRANGERS) {
      this.refusals++;
      this.lastRefusal = `${peer}: ${MAX_STRANGERS} unidentified connections already`;
      return [
        { type: 'refused', peer, reason: `dropped: ${MAX_STRANGERS} unidentified connections already` },
        { type: 'drop', id },
      ];
    }
    if (this.session === undefined) this.admissionDeadline ??= now + this.config.timeoutMs;
    this.connections.set(id, { id, peer, index: undefined, stats: { index: -1, frames: 0, rawBytes: 0, wireBytes: 0 }, ended: undefined });
    return [{ type: 'take', id }];
  }

  private onOpen(id: ConnectionId, request: OpenRequest, now: number): ReceiverSessionAction[] {
    const c = this.connections.get(id);
    if (c === undefined || c.index !== undefined) return [];
    const verdict = admit(this.session, request);
    if ('refuse' in verdict) return [{ type: 'refuse', id, reason: verdict.refuse }, ...this.refuse(c, verdict.refuse)];
    if (this.session === undefined) {
      this.admissionDeadline = undefined;
      this.startedAt = now;
      this.joinDeadline = now + this.config.timeoutMs;
      this.streams.set(MAIN_STREAM, new InboundStream(this.config.holdBytes, now));
      this.state = 'joining';
    }
    this.session = verdict.session;
    c.index = request.index;
    c.stats.index = request.index;
    this.members.push(c);
    if (this.members.length === this.session.channels) {
      this.joinDeadline = undefined;
      this.state = 'running';
    }
    return [{ type: 'accept', id, index: request.index }];
  }

  private onFrame(event: Extract<ReceiverSessionEvent, { type: 'frame' }>): ReceiverSessionAction[] {
    const c = this.connections.get(event.id);
    if (c?.index === undefined) return [];
    const stream = this.streams.get(event.stream);
    if (stream === undefined) return this.fail(new ProtocolError(`frame ${event.seq} for unknown stream ${event.stream}`, c.index));
    c.stats.frames++;
    c.stats.rawBytes += event.data.length;
    c.stats.wireBytes += event.wire;
    let added: ReturnType<InboundStream['add']>;
    try {
      added = stream.add(event.seq, event.data, c.id, c.index, event.now);
    } catch (error) {
      return this.fail(error as TransportError);
    }
    const actions: ReceiverSessionAction[] = [];
    if (added.write.length > 0) actions.push({ type: 'write', stream: event.stream, chunks: added.write, tail: false });
    if (added.released) actions.push({ type: 'progress', bytes: stream.bytes });
    for (const id of added.acks) actions.push({ type: 'ack', id });
    return [...actions, ...this.checkComplete()];
  }

  /** Once every channel announced the same END and the stream checks out: the tail, then DONE. */
  private checkComplete(): ReceiverSessionAction[] {
    const session = this.session;
    if (session === undefined || this.members.length < session.channels) return [];
    if (this.members.some((c) => c.ended === undefined)) return [];
    const end = this.members[0]!.ended!;
    if (this.members.some((c) => c.ended!.frames !== end.frames || c.ended!.bytes !== end.bytes || c.ended!.digest !== end.digest)) {
      return this.fail(new ProtocolError('the channels announce different end totals'));
    }
    const stream = this.streams.get(MAIN_STREAM)!;
    const verdict = stream.verify(end);
    if (verdict === 'wait') return []; // frames still in flight on other channels
    if (verdict !== 'ok') return this.fail(verdict);
    this.state = 'confirming';
    this.joinDeadline = undefined;
    const zero = this.members.find((c) => c.index === 0)!;
    return [
      { type: 'write', stream: MAIN_STREAM, chunks: stream.tail(), tail: true },
      { type: 'done', id: zero.id, bytes: stream.bytes },
    ];
  }

  private onFinished(id: ConnectionId, now: number): ReceiverSessionAction[] {
    if (this.state !== 'confirming' || this.connections.get(id)?.index !== 0) return [];
    this.state = 'completed';
    return [{ type: 'completed', summary: this.summary(now) }];
  }

  private summary(now: number): TransferSummary {
    const stream = this.streams.get(MAIN_STREAM)!;
    const codec = this.session!.codec;
    return {
      bytes: stream.bytes,
      frames: stream.frames,
      seconds: (now - this.startedAt) / 1000,
      digest: stream.digestValue,
      codec: codecById(codec)?.name ?? String(codec),
      tls: this.config.tls,
      channels: this.members.map((c) => c.stats).sort((a, b) => a.index - b.index),
    };
  }

  private refuse(c: Connection, reason: string): ReceiverSessionAction[] {
    this.refusals++;
    this.lastRefusal = `${c.peer}: ${reason}`;
    this.connections.delete(c.id);
    return [
      { type: 'refused', peer: c.peer, reason },
      { type: 'retire', id: c.id },
    ];
  }

  private fail(error: TransportError): ReceiverSessionAction[] {
    if (this.state === 'completed' || this.state === 'failed') return [];
    this.state = 'failed';
    const actions: ReceiverSessionAction[] = [];
    for (const c of this.connections.values()) actions.push({ type: 'abort', id: c.id, reason: error.message });
    actions.push({ type: 'failed', error });
    return actions;
  }
}
