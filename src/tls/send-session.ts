/**
 * The sender's session as a state machine: events in, actions out, no worker, input or timer.
 * sender.ts reads the input, feeds this machine what the input and the channel workers say,
 * and carries out its actions.
 *
 *   opening ─channel 0 open─▶ joining ─all N open─▶ streaming ─input ended─▶ ending ─DONE, bytes match─▶ done
 *   opening/joining/streaming/ending ─ a channel fails, a worker exits, DONE's bytes differ ─▶ failed
 *
 * Credit is counted in frames: a channel starts with `credit` once it is open and gets one
 * back per frame its socket has taken. A frame goes to the channel with the most credit (ties
 * rotate), so a slow channel gets fewer, and with no credit anywhere the glue stops reading.
 *
 * Frames belong to a logical stream; today only MAIN_STREAM, QEMU's one-way stream (see
 * recv-session.ts and docs/transport.md, "Towards several two-way streams").
 */
import { StreamDigest } from './digest.js';
import { ChannelError, ChecksumError, type TransportError } from './errors.js';
import type { ChannelStats } from './summary.js';

export interface SendSessionConfig {
  channels: number;
  /** Frames a channel may hold before its first credit comes back. */
  credit: number;
}

export type SendSessionState = 'opening' | 'joining' | 'streaming' | 'ending' | 'done' | 'failed';

export type SendSessionEvent =
  /** Channel `index` was accepted by the receiver. */
  | { type: 'opened'; index: number }
  /** A frame cut from the input, to send. */
  | { type: 'frame'; data: Uint8Array }
  /** Channel `index`'s socket took a frame. */
  | { type: 'credit'; index: number; wire: number }
  /** The input ended: END on every channel. */
  | { type: 'input-ended' }
  /** The receiver confirmed `bytes` (channel 0's DONE). */
  | { type: 'done'; bytes: number }
  | { type: 'worker-exit'; index: number; code: number }
  /** A channel, the input or the decoder failed. */
  | { type: 'fail'; error: TransportError | Error };

export type SendSessionAction =
  /** Channel `index` may send OPEN (channel 0 opened the session). */
  | { type: 'join'; index: number }
  | { type: 'send'; index: number; seq: number; data: Uint8Array }
  | { type: 'end'; index: number; frames: number; bytes: number; digest: bigint }
  | { type: 'abort'; index: number; reason: string }
  | { type: 'completed' }
  | { type: 'failed'; error: TransportError | Error };

export class SendSession {
  state: SendSessionState = 'opening';
  /** The first failure, kept for whoever waits on the session. */
  failure: TransportError | Error | undefined;
  private readonly credit: number[];
  private readonly opened: boolean[];
  readonly stats: ChannelStats[];
  private readonly digest = new StreamDigest();
  /** Frames sent so far: the next frame's sequence number. */
  frames = 0;
  bytes = 0;

  constructor(private readonly config: SendSessionConfig) {
    this.credit = new Array<number>(config.channels).fill(0);
    this.opened = new Array<boolean>(config.channels).fill(false);
    this.stats = Array.from({ length: config.channels }, (_, index) => ({ index, frames: 0, rawBytes: 0, wireBytes: 0 }));
  }

  /** The digest of the frames sent so far (END carries it). */
  get digestValue(): bigint {
    return this.digest.value;
  }

  /** Whether a frame may be read and sent now: streaming, and some channel has credit. */
  get canSend(): boolean {
    return this.state === 'streaming' && this.credit.some((c) => c > 0);
  }

  on(event: SendSessionEvent): SendSessionAction[] {
    if (this.state === 'done' || this.state === 'failed') return [];
    switch (event.type) {
      case 'opened':
        return this.onOpened(event.index);
      case 'frame':
        return this.onFrame(event.data);
      case 'credit':
        this.credit[event.index]!++;
        this.stats[event.index]!.wireBytes += event.wire;
        return [];
      case 'input-ended': {
        if (this.state !== 'streaming') return [];
        this.state = 'ending';
        const end = { frames: this.frames, bytes: this.bytes, digest: this.digest.value };
        return this.stats.map(({ index }) => ({ type: 'end', index, ...end }));
      }
      case 'done':
        // (A channel accepts DONE only after its END: send-channel.ts.)
        if (event.bytes !== this.bytes) return this.fail(new ChecksumError(`the receiver confirmed ${event.bytes} bytes, ${this.bytes} were sent`));
        this.state = 'done';
        return [{ type: 'completed' }];
      case 'worker-exit':
        return this.fail(new ChannelError(`worker exited (${event.code}) before the end of the stream`, event.index));
      case 'fail':
        return this.fail(event.error);
    }
  }

  private onOpened(index: number): SendSessionAction[] {
    if (this.opened[index] === true) return [];
    this.opened[index] = true;
    this.credit[index] = this.config.credit;
    const actions: SendSessionAction[] = [];
    // Every channel connects at once; channel 0 opens the session and the others join it.
    if (index === 0) {
      this.state = 'joining';
      for (let other = 1; other < this.config.channels; other++) actions.push({ type: 'join', index: other });
    }
    if (this.state === 'joining' && this.opened.every(Boolean)) this.state = 'streaming';
    return actions;
  }

  private onFrame(data: Uint8Array): SendSessionAction[] {
    if (!this.canSend) throw new Error(`a frame while ${this.state} with no credit: the glue must wait for canSend`);
    const seq = this.frames;
    // Most credit first; ties rotate, so idle channels share the work (and the cores).
    let best = seq % this.config.channels;
    for (let index = 0; index < this.config.channels; index++) if (this.credit[index]! > this.credit[best]!) best = index;
    this.credit[best]!--;
    this.stats[best]!.frames++;
    this.stats[best]!.rawBytes += data.length;
    this.digest.update(data);
    this.frames++;
    this.bytes += data.length;
    return [{ type: 'send', index: best, seq, data }];
  }

  private fail(error: TransportError | Error): SendSessionAction[] {
    this.state = 'failed';
    this.failure = error;
    const reason = error.message;
    return [...this.stats.map(({ index }): SendSessionAction => ({ type: 'abort', index, reason })), { type: 'failed', error }];
  }
}
