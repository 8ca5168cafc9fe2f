/**
 * The tunnel's session machine (src/tunnel/session.ts) without sockets: a dialer and a listener
 * joined in memory, every frame going through the real encoders and parser, the local sockets
 * played by the test.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { ChannelError } from '../../src/tls/errors.js';
import { FrameParser } from '../../src/tls/wire.js';
import { TunnelSession, type TunnelAction, type TunnelSessionConfig } from '../../src/tunnel/session.js';
import { decodeTunnelFrame, type TunnelFrame } from '../../src/tunnel/wire.js';
import { codecByName } from '../../src/codecs/registry.js';
import { frameCodec } from '../../src/tunnel/frame-codec.js';
import * as W from '../helpers/transport-frame-builder.js';

type Side = 'dialer' | 'listener';

/** Two sessions joined by in-memory channels; local sockets are records of what was asked. */
class Pair {
  readonly sides: Record<Side, TunnelSession>;
  /** Everything each side's session asked of its local world, in order. */
  readonly log: Record<Side, TunnelAction[]> = { dialer: [], listener: [] };
  /** Bytes each side sent per channel (raw frames), for the tests that inspect the wire. */
  readonly wire: Record<Side, Buffer[][]>;
  private readonly parsers: Record<Side, FrameParser<TunnelFrame>[]>;
  /** When false, frames stay on the wire until deliver(). */
  autoDeliver = true;
  private readonly queue: { to: Side; channel: number; bytes: Buffer }[] = [];
  now = 0;

  constructor(channels = 1, config: Partial<TunnelSessionConfig> = {}) {
    this.sides = {
      dialer: new TunnelSession({ side: 'dialer', channels, ...config }, 0),
      listener: new TunnelSession({ side: 'listener', channels, ...config }, 0),
    };
    this.wire = { dialer: Array.from({ length: channels }, () => []), listener: Array.from({ length: channels }, () => []) };
    this.parsers = {
      dialer: Array.from({ length: channels }, (_, i) => new FrameParser<TunnelFrame>(i, undefined, decodeTunnelFrame)),
      listener: Array.from({ length: channels }, (_, i) => new FrameParser<TunnelFrame>(i, undefined, decodeTunnelFrame)),
    };
  }

  /** Runs `input` on one side, then carries frames across until both are quiet. */
  on(side: Side, input: (session: TunnelSession) => void): this {
    input(this.sides[side]);
    this.settle();
    return this;
  }

  settle(): void {
    for (let moved = true; moved;) {
      moved = false;
      for (const side of ['dialer', 'listener'] as const) {
        for (const action of this.sides[side].drain()) {
          this.log[side].push(action);
          if (action.kind === 'send') {
            const bytes = Buffer.concat(action.bytes);
            this.wire[side][action.channel]!.push(bytes);
            this.queue.push({ to: side === 'dialer' ? 'listener' : 'dialer', channel: action.channel, bytes });
          }
          moved = true;
        }
      }
      if (this.autoDeliver) moved = this.deliver() || moved;
    }
  }

  /** Delivers queued frames (only channel `only`'s when given); returns whether any were. */
  deliver(only?: number): boolean {
    const batch = this.queue.filter((item) => only === undefined || item.channel === only);
    this.queue.splice(0, this.queue.length, ...this.queue.filter((item) => !batch.includes(item)));
    for (const { to, channel, bytes } of batch) this.inject(to, channel, bytes);
    return batch.length > 0;
  }

  inject(to: Side, channel: number, bytes: Buffer): void {
    for (const frame of this.parsers[to][channel]!.push(bytes)) this.sides[to].frame(channel, frame, this.now);
  }

  of<K extends TunnelAction['kind']>(side: Side, kind: K): Extract<TunnelAction, { kind: K }>[] {
    return this.log[side].filter((a): a is Extract<TunnelAction, { kind: K }> => a.kind === kind);
  }

  /** The bytes written to a stream's local socket on `side`. */
  written(side: Side, stream: number): Buffer {
    return Buffer.concat(
      this.of(side, 'write')
        .filter((a) => a.stream === stream)
        .map((a) => a.data),
    );
  }

  /** Acknowledges every write so far on `side` (its local socket took them). */
  drainWrites(side: Side): void {
    const writes = this.of(side, 'write');
    const from = this.acked[side];
    this.acked[side] = writes.length;
    for (const write of writes.slice(from)) this.on(side, (s) => s.localWritten(write.stream, write.data.length));
  }

  /** Writes acknowledged so far, per side. */
  private readonly acked: Record<Side, number> = { dialer: 0, listener: 0 };
}

const bytes = (n: number, seed = 1): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

describe('TunnelSession', () => {
  test('a stream opens, carries bytes both ways, half-closes each way and closes on both sides', () => {
    const pair = new Pair();
    let id = 0;
    pair.on('dialer', (s) => (id = s.open('/run/mig/qemu.sock')));
    expect(id).toBe(1);
    expect(pair.of('listener', 'connect')).toEqual([{ kind: 'connect', stream: 1, target: '/run/mig/qemu.sock' }]);
    pair.on('listener', (s) => s.connected(1));
    pair.on('dialer', (s) => s.localData(1, Buffer.from('QEVM')));
    pair.on('dialer', (s) => s.localData(1, Buffer.from('\0\0\0\x03')));
    pair.on('listener', (s) => s.localData(1, Buffer.from('return path')));
    expect(pair.written('listener', 1).toString('latin1')).toBe('QEVM\0\0\0\x03');
    expect(pair.written('dialer', 1).toString()).toBe('return path');
    // The source side finishes first: the destination's socket is half-closed, the stream stays.
    pair.on('dialer', (s) => s.localEnd(1));
    expect(pair.of('listener', 'end')).toEqual([{ kind: 'end', stream: 1 }]);
    expect(pair.sides.dialer.openStreams).toBe(1);
    pair.on('listener', (s) => s.localData(1, Buffer.from(' last words')));
    pair.on('listener', (s) => s.localEnd(1));
    expect(pair.written('dialer', 1).toString()).toBe('return path last words');
    expect(pair.of('dialer', 'end')).toEqual([{ kind: 'end', stream: 1 }]);
    expect(pair.of('dialer', 'closed')).toEqual([{ kind: 'closed', stream: 1, sent: 8, received: 22, reset: null }]);
    expect(pair.of('listener', 'closed')).toEqual([{ kind: 'closed', stream: 1, sent: 22, received: 8, reset: null }]);
    expect(pair.sides.dialer.openStreams + pair.sides.listener.openStreams).toBe(0);
    expect(pair.of('dialer', 'destroy')).toEqual([]);
  });

  test('credit: at most a window in flight per direction; the local socket is paused and resumed; every byte arrives', () => {
    const window = 1024;
    const pair = new Pair(1, { window });
    pair.on('dialer', (s) => s.open('/t'));
    pair.on('listener', (s) => s.connected(1));
    const data = bytes(5000);
    pair.on('dialer', (s) => s.localData(1, data));
    expect(pair.written('listener', 1).length).toBe(window);
    expect(pair.of('dialer', 'pause')).toHaveLength(1);
    // Nothing more moves until the destination's socket takes the bytes.
    pair.on('dialer', (s) => s.tick(1));
    expect(pair.written('listener', 1).length).toBe(window);
    for (let rounds = 0; pair.written('listener', 1).length < data.length && rounds < 50; rounds++) pair.drainWrites('listener');
    expect(pair.written('listener', 1).equals(data)).toBe(true);
    expect(pair.of('dialer', 'resume')).toHaveLength(1);
    // WINDOW frames grant a quarter of the window or more at a time.
    const grants = pair.wire.listener[0]!.filter((f) => f[4] === W.TunnelType.WINDOW).map((f) => f.readUInt32BE(9));
    expect(grants.length).toBeGreaterThan(0);
    for (const grant of grants) expect(grant).toBeGreaterThanOrEqual(window / 4);
  });

  test('a peer that sends beyond its credit fails the session', () => {
    const pair = new Pair(1, { window: 100 });
    pair.on('dialer', (s) => s.open('/t'));
    pair.inject('listener', 0, W.streamData(1, bytes(101)));
    pair.settle();
    expect(pair.sides.listener.failed?.message).toMatch(/stream 1: 101 bytes sent against 100 granted/);
    expect(pair.of('listener', 'destroy')).toEqual([{ kind: 'destroy', stream: 1, reason: expect.stringMatching(/granted/) as string }]);
  });

  test('the listener holds bytes and the half-close until its socket connected', () => {
    const pair = new Pair();
    pair.on('dialer', (s) => s.open('/t'));
    pair.on('dialer', (s) => s.localData(1, Buffer.from('early')));
    pair.on('dialer', (s) => s.localEnd(1));
    expect(pair.of('listener', 'write')).toEqual([]);
    expect(pair.of('listener', 'end')).toEqual([]);
    pair.on('listener', (s) => s.connected(1));
    expect(pair.written('listener', 1).toString()).toBe('early');
    expect(pair.log.listener.map((a) => a.kind).slice(-2)).toEqual(['write', 'end']);
  });

  test('a target the listener does not serve is refused with a reset naming it; the session goes on', () => {
    const pair = new Pair(1, { checkTarget: (target) => (target === '/ok' ? null : `${target} is not a target`) });
    pair.on('dialer', (s) => s.open('/etc/shadow'));
    expect(pair.of('listener', 'connect')).toEqual([]);
    expect(pair.of('dialer', 'destroy')).toEqual([{ kind: 'destroy', stream: 1, reason: 'the peer reset it: /etc/shadow is not a target' }]);
    pair.on('dialer', (s) => s.open('/ok'));
    expect(pair.of('listener', 'connect')).toEqual([{ kind: 'connect', stream: 2, target: '/ok' }]);
    expect(pair.sides.dialer.failed).toBeNull();
    expect(pair.sides.listener.failed).toBeNull();
  });

  test('a connection failing on one side resets only its stream; frames already in flight for it are dropped', () => {
    const pair = new Pair();
    pair.on('dialer', (s) => s.open('/a'));
    pair.on('dialer', (s) => s.open('/b'));
    pair.on('listener', (s) => (s.connected(1), s.connected(2)));
    pair.autoDeliver = false;
    pair.on('dialer', (s) => s.localData(1, Buffer.from('in flight')));
    pair.on('listener', (s) => s.localFailed(1, 'ECONNRESET'));
    pair.deliver();
    pair.settle();
    pair.autoDeliver = true;
    expect(pair.of('dialer', 'destroy')).toEqual([{ kind: 'destroy', stream: 1, reason: 'the peer reset it: ECONNRESET' }]);
    expect(pair.of('listener', 'write')).toEqual([]);
    pair.on('dialer', (s) => s.localData(2, Buffer.from('still here')));
    expect(pair.written('listener', 2).toString()).toBe('still here');
    expect(pair.sides.listener.failed).toBeNull();
    expect(pair.of('listener', 'closed')).toEqual([{ kind: 'closed', stream: 1, sent: 0, received: 0, reset: 'ECONNRESET' }]);
  });

  test('streams spread over the channels (fewest open first) and each stays on its own', () => {
    const pair = new Pair(2);
    pair.on('dialer', (s) => (s.open('/m'), s.open('/f1'), s.open('/f2')));
    expect(pair.of('dialer', 'opened').map((a) => a.channel)).toEqual([0, 1, 0]);
    expect(pair.of('listener', 'opened').map((a) => a.channel)).toEqual([0, 1, 0]);
    pair.on('listener', (s) => [1, 2, 3].forEach((id) => s.connected(id)));
    pair.on('listener', (s) => s.localData(2, Buffer.from('x')));
    expect(pair.wire.listener[1]!.some((f) => f[4] === W.TunnelType.STREAM_DATA)).toBe(true);
    // A stream's frame on another channel than its own is refused.
    pair.inject('listener', 1, W.streamData(1, Buffer.from('y')));
    pair.settle();
    expect(pair.sides.listener.failed?.message).toMatch(/STREAM_DATA for stream 1 on channel 1; it lives on channel 0/);
  });

  test('streams numbered in one sequence arrive out of order across channels, in order on each', () => {
    const pair = new Pair(2);
    pair.autoDeliver = false;
    pair.on('dialer', (s) => [1, 2, 3, 4].forEach(() => s.open('/t')));
    // Channel 1 (streams 2 and 4) is slower than channel 0 (streams 1 and 3).
    pair.deliver(0);
    pair.settle();
    // Stream 1 connects; 3 waits for 2, which has not arrived.
    expect(pair.of('listener', 'connect').map((a) => a.stream)).toEqual([1]);
    pair.deliver(1);
    pair.settle();
    expect(pair.sides.listener.failed).toBeNull();
    // Connected one at a time, in the order the dialer accepted them (QEMU 7.2 takes the first
    // connection as its main stream).
    expect(pair.of('listener', 'connect').map((a) => a.stream)).toEqual([1]);
    for (const id of [1, 2, 3]) pair.on('listener', (s) => s.connected(id));
    expect(pair.of('listener', 'connect').map((a) => a.stream)).toEqual([1, 2, 3, 4]);
  });

  test('a refused target or a failed connect does not hold up the streams after it', () => {
    const pair = new Pair(1, { checkTarget: (target) => (target === '/no' ? 'refused' : null) });
    pair.on('dialer', (s) => ['/a', '/no', '/b', '/c'].forEach((t) => s.open(t)));
    expect(pair.of('listener', 'connect').map((a) => a.stream)).toEqual([1]);
    pair.on('listener', (s) => s.localFailed(1, 'ENOENT'));
    expect(pair.of('listener', 'connect').map((a) => a.stream)).toEqual([1, 3]);
    pair.on('listener', (s) => s.connected(3));
    expect(pair.of('listener', 'connect').map((a) => a.stream)).toEqual([1, 3, 4]);
    expect(
      pair
        .of('dialer', 'destroy')
        .map((a) => a.stream)
        .sort(),
    ).toEqual([1, 2]);
  });

  test('with a codec: compressible chunks go compressed, others raw, every byte arrives; a payload that does not decompress fails the session', () => {
    const lz4 = frameCodec(codecByName('lz4'), 1);
    if (typeof lz4 === 'string') throw new Error(lz4);
    const pair = new Pair(1, { codec: lz4 });
    pair.on('dialer', (s) => s.open('/t'));
    pair.on('listener', (s) => s.connected(1));
    const text = Buffer.from('migration '.repeat(6000));
    const noise = randomBytes(5000);
    pair.on('dialer', (s) => (s.localData(1, text), s.localData(1, noise), s.localData(1, Buffer.from('tiny'))));
    expect(pair.written('listener', 1).equals(Buffer.concat([text, noise, Buffer.from('tiny')]))).toBe(true);
    const codecs = pair.wire.dialer[0]!.filter((f) => f[4] === W.TunnelType.STREAM_DATA).map((f) => f[9]);
    expect(codecs).toEqual([1, 0, 0]);
    pair.inject('listener', 0, W.streamData(1, Buffer.from('not lz4 at all'), { codec: 1, rawLength: 100 }));
    pair.settle();
    expect(pair.sides.listener.failed?.message).toMatch(/stream 1: a STREAM_DATA of codec 0x1 does not decode to its 100 bytes/);
  });

  test.each([
    ['a frame for a stream never opened', 'listener', W.streamData(5, Buffer.from('x')), /STREAM_DATA for stream 5, which was never opened/],
    ['a STREAM from the listener', 'dialer', W.stream(9, '/x'), /only the dialer opens streams/],
    ['a STREAM reusing an id', 'listener', W.stream(1, '/t'), /STREAM 1 reuses an id \(the last on this channel was 1\)/],
    ['STREAM_END counting other bytes', 'listener', W.streamEnd(1, 7), /STREAM_END counts 7 bytes, 0 arrived/],
    ['a codec this version does not send', 'listener', W.streamData(1, Buffer.from('x'), { codec: 1 }), /codec 1 is not supported/],
    ['raw data shorter than announced', 'listener', W.streamData(1, Buffer.from('x'), { rawLength: 2 }), /raw STREAM_DATA of 1 bytes announces 2/],
    ['an OPEN inside a session', 'listener', W.open({ sessionId: Buffer.alloc(16), channels: 1, index: 0, codec: 0, version: 3 }), /unexpected frame type 1/],
  ] as const)('%s fails the session with a ProtocolError, ABORT to the peer, every stream destroyed', (_name, side, frame, message) => {
    const pair = new Pair();
    pair.on('dialer', (s) => s.open('/t'));
    pair.on('listener', (s) => s.connected(1));
    pair.autoDeliver = false;
    pair.inject(side, 0, frame);
    pair.settle();
    const session = pair.sides[side];
    expect(session.failed?.code).toBe('ERR_PROTOCOL');
    expect(session.failed?.message).toMatch(message);
    expect(pair.of(side, 'destroy')).toHaveLength(1);
    expect(pair.of(side, 'failed')).toEqual([{ kind: 'failed', error: session.failed, stopped: false }]);
    const abort = pair.of(side, 'send').find((a) => a.bytes[0]![4] === W.Type.ABORT);
    expect(abort).toBeDefined();
    // The peer hears why and ends too.
    pair.deliver();
    pair.settle();
    const peer = pair.sides[side === 'dialer' ? 'listener' : 'dialer'];
    expect(peer.failed?.code).toBe('ERR_PEER_ABORT');
    expect(peer.failed?.message).toContain(session.failed!.message);
  });

  test('heartbeat: PING after a third of the timeout without writing; a silent channel fails the session', () => {
    const pair = new Pair(2, { timeoutMs: 3000 });
    pair.on('dialer', (s) => s.open('/t'));
    pair.autoDeliver = false;
    pair.on('dialer', (s) => s.tick(999));
    expect(pair.of('dialer', 'send').filter((a) => a.bytes[0]![4] === W.Type.PING)).toHaveLength(0);
    pair.on('dialer', (s) => s.tick(1000));
    expect(
      pair
        .of('dialer', 'send')
        .filter((a) => a.bytes[0]![4] === W.Type.PING)
        .map((a) => a.channel),
    ).toEqual([0, 1]);
    // Channel 0 hears its peer at 2500, channel 1 never does.
    pair.inject('dialer', 0, W.ping());
    pair.sides.dialer.frame(0, { type: 8 }, 2500);
    pair.on('dialer', (s) => s.tick(3000));
    expect(pair.sides.dialer.failed?.code).toBe('ERR_TIMEOUT');
    expect(pair.sides.dialer.failed?.message).toBe('channel 1: nothing heard for 3 s');
    expect(pair.of('dialer', 'destroy')).toEqual([{ kind: 'destroy', stream: 1, reason: 'channel 1: nothing heard for 3 s' }]);
  });

  test('a lost channel ends every stream; stop() tells the peer and is marked as stopped', () => {
    const pair = new Pair(2);
    pair.on('dialer', (s) => (s.open('/a'), s.open('/b')));
    pair.on('listener', (s) => s.channelLost(new ChannelError('the peer closed the connection', 1)));
    expect(pair.of('listener', 'destroy').map((a) => a.stream)).toEqual([1, 2]);
    expect(pair.sides.dialer.failed?.message).toMatch(/the peer failed: channel 1: the peer closed the connection/);
    const other = new Pair();
    other.on('dialer', (s) => s.open('/a'));
    other.on('dialer', (s) => s.stop('stopped by SIGTERM'));
    expect(other.of('dialer', 'failed')).toEqual([{ kind: 'failed', error: other.sides.dialer.failed, stopped: true }]);
    expect(other.sides.listener.failed?.message).toBe('channel 0: the peer failed: stopped by SIGTERM');
    expect(other.of('listener', 'destroy')).toHaveLength(1);
  });
});
