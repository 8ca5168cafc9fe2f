/**
 * The sending channel's state machine (src/tls/send-channel.ts) driven event by event, with no
 * socket, thread or timer: every transition of docs/transport.md's diagram, hostile receivers
 * and the watchdog's timeouts as ticks.
 */
import { describe, expect, test } from 'vitest';
import { reviveError } from '../../src/errors.js';
import { REDIAL_MS, SendChannel, type SendChannelAction, type SendChannelEvent } from '../../src/tls/send-channel.js';
import { CLOSE_GRACE_MS, FrameParser, FrameType, encodeAbort, type Frame } from '../../src/tls/wire.js';

const TIMEOUT = 3000;
const sessionId = new Uint8Array(16).fill(7);
const make = (index = 0, channels = 2) => new SendChannel({ index, sessionId, channels, codec: 1, timeoutMs: TIMEOUT });

/** The frames of every `write` action, parsed back. */
function written(actions: SendChannelAction[]): Frame[] {
  const parser = new FrameParser();
  return actions.flatMap((a) => (a.type === 'write' ? parser.push(a.bytes) : []));
}
const posts = (actions: SendChannelAction[]) => actions.flatMap((a) => (a.type === 'post' ? [a.message] : []));
/** The error a `post` of `t: 'error'` carries, revived as the main thread does. */
function postedError(actions: SendChannelAction[]): Error {
  const message = posts(actions).find((m) => m.t === 'error');
  if (message?.t !== 'error') throw new Error(`no error posted in ${JSON.stringify(actions.map((a) => a.type))}`);
  return reviveError(message.error);
}
const peer = (...frames: Frame[]): SendChannelEvent => ({ type: 'peer-frames', frames, now: 10 });

/** A channel driven to `open`: started, connected, OPEN written, ACCEPT read. */
function opened(index = 0): SendChannel {
  const channel = make(index);
  channel.on({ type: 'start', now: 0 });
  channel.on({ type: 'connected', now: 1 });
  if (index !== 0) channel.on({ type: 'join', now: 2 });
  channel.on(peer({ type: FrameType.ACCEPT, index }));
  expect(channel.state).toBe('open');
  return channel;
}

describe('sending channel: the way to open', () => {
  test('start dials; channel 0 sends OPEN as soon as it is connected; ACCEPT opens it and tells the main thread', () => {
    const channel = make(0, 3);
    expect(channel.on({ type: 'start', now: 0 })).toEqual([{ type: 'connect' }]);
    expect(channel.state).toBe('connecting');
    const open = channel.on({ type: 'connected', now: 5 });
    expect(channel.state).toBe('opening');
    expect(written(open)).toEqual([{ type: FrameType.OPEN, magic: 0x4d475458, version: 2, sessionId: Buffer.from(sessionId), channels: 3, index: 0, codec: 1 }]);
    expect(posts(channel.on(peer({ type: FrameType.ACCEPT, index: 0 })))).toEqual([{ t: 'open' }]);
    expect(channel.state).toBe('open');
  });

  test('channels 1..N-1 wait for join, whichever comes first', () => {
    const early = make(1);
    early.on({ type: 'start', now: 0 });
    expect(early.on({ type: 'connected', now: 1 })).toEqual([]);
    expect(early.state).toBe('connected');
    expect(written(early.on({ type: 'join', now: 2 }))[0]).toMatchObject({ type: FrameType.OPEN, index: 1 });
    expect(early.state).toBe('opening');

    const late = make(1);
    late.on({ type: 'start', now: 0 });
    expect(late.on({ type: 'join', now: 1 })).toEqual([]);
    expect(written(late.on({ type: 'connected', now: 2 }))[0]).toMatchObject({ type: FrameType.OPEN, index: 1 });
  });

  test('a refused dial is redialled at now + REDIAL_MS (no sleep) while within the timeout, then reported', () => {
    const channel = make();
    channel.on({ type: 'start', now: 0 });
    const refused = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    expect(channel.on({ type: 'socket-error', error: refused, now: 100 })).toEqual([{ type: 'destroy' }, { type: 'redial', at: 100 + REDIAL_MS }]);
    expect(channel.on({ type: 'closed' })).toEqual([]); // the given-up socket's close
    expect(channel.on({ type: 'redial-due', now: 300 })).toEqual([{ type: 'connect' }]);
    expect(channel.on({ type: 'tick', now: TIMEOUT, unsent: 0 })).toEqual([]);
    const failed = channel.on({ type: 'tick', now: TIMEOUT + 1, unsent: 0 });
    expect(postedError(failed).message).toBe('channel 0: connection refused (is "migstream recv" listening there?)');
    expect(failed).toContainEqual({ type: 'destroy' });
    expect(channel.state).toBe('failed');
    // A refusal after the timeout is not redialled either.
    const other = make();
    other.on({ type: 'start', now: 0 });
    expect(postedError(other.on({ type: 'socket-error', error: refused, now: TIMEOUT })).message).toMatch(/connection refused/);
  });

  test('a redial that comes due after an abort does not dial', () => {
    const channel = make();
    channel.on({ type: 'start', now: 0 });
    channel.on({ type: 'socket-error', error: Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }), now: 1 });
    expect(posts(channel.on({ type: 'abort', reason: 'input failed', now: 2 }))).toEqual([{ t: 'closed' }]);
    expect(channel.on({ type: 'redial-due', now: 201 })).toEqual([]);
  });

  test('a silent receiver during the handshake times out naming the phase', () => {
    const channel = make();
    channel.on({ type: 'start', now: 0 });
    channel.on({ type: 'connected', now: 1 });
    expect(postedError(channel.on({ type: 'tick', now: TIMEOUT + 1, unsent: 0 }))).toMatchObject({ code: 'ERR_TIMEOUT', message: 'channel 0: no progress for 3 s (handshake)' });
  });
});

describe('sending channel: frames, END and DONE', () => {
  test('frames are encoded in order; each is written as header + payload and its credit returns once written', () => {
    const channel = opened();
    const buffer = new ArrayBuffer(5);
    const data = new Uint8Array(buffer);
    expect(channel.on({ type: 'send', seq: 0, data })).toEqual([{ type: 'encode', seq: 0, data }]);
    const out = channel.on({ type: 'encoded', seq: 0, raw: 5, payload: Buffer.from('hello'), codec: 0, buffer, now: 20 });
    expect(out).toHaveLength(2);
    expect(written(out)).toEqual([{ type: FrameType.DATA, seq: 0, rawLength: 5, codec: 0, payload: Buffer.from('hello') }]);
    const credit = { seq: 0, raw: 5, wire: 23, buffer };
    expect(out[1]).toMatchObject({ type: 'write', credit });
    expect(channel.on({ type: 'written', now: 21 })).toEqual([]); // the header
    expect(channel.on({ type: 'written', now: 21, credit })).toEqual([{ type: 'post', message: { t: 'credit', ...credit }, transfer: [buffer] }]);
  });

  test('END waits for the frames still being encoded; channel 0 then waits for DONE, checks it and ends', () => {
    const channel = opened(0);
    channel.on({ type: 'send', seq: 0, data: new Uint8Array(3) });
    expect(channel.on({ type: 'end', frames: 1, bytes: 3, digest: 9n, now: 30 })).toEqual([]);
    const out = channel.on({ type: 'encoded', seq: 0, raw: 3, payload: Buffer.alloc(3), codec: 0, buffer: new ArrayBuffer(3), now: 31 });
    expect(written(out).map((f) => f.type)).toEqual([FrameType.DATA, FrameType.END]);
    expect(written(out)[1]).toEqual({ type: FrameType.END, frames: 1, bytes: 3, digest: 9n });
    expect(channel.state).toBe('ending');
    expect(channel.on(peer({ type: FrameType.DONE, bytes: 3 }))).toEqual([{ type: 'post', message: { t: 'done', bytes: 3 } }, { type: 'end' }]);
    expect(channel.state).toBe('done');
    // Done is final: the close and a late abort change nothing, the abort is answered at the close.
    expect(channel.on({ type: 'peer-end', cutFrame: false })).toEqual([]);
    expect(channel.on({ type: 'abort', reason: 'x', now: 40 })).toEqual([]);
    expect(channel.on({ type: 'closed' })).toEqual([{ type: 'post', message: { t: 'closed' } }]);
  });

  test('channels other than 0 are done once END is written', () => {
    const channel = opened(1);
    const out = channel.on({ type: 'end', frames: 0, bytes: 0, digest: 0n, now: 5 });
    expect(written(out)).toEqual([{ type: FrameType.END, frames: 0, bytes: 0, digest: 0n }]);
    expect(out.at(-1)).toEqual({ type: 'end' });
    expect(channel.state).toBe('done');
    expect(channel.on({ type: 'closed' })).toEqual([]);
  });

  test('a frame encoded after the channel failed is dropped: no write, no credit', () => {
    const channel = opened();
    channel.on({ type: 'send', seq: 4, data: new Uint8Array(1) });
    channel.on({ type: 'abort', reason: 'stop', now: 5 });
    expect(channel.on({ type: 'encoded', seq: 4, raw: 1, payload: Buffer.alloc(1), codec: 0, buffer: new ArrayBuffer(1), now: 6 })).toEqual([]);
  });

  test('an idle open channel pings every third of the timeout; its ticks keep the clock', () => {
    const channel = opened();
    expect(channel.on({ type: 'tick', now: 900, unsent: 0 })).toEqual([]);
    expect(written(channel.on({ type: 'tick', now: TIMEOUT / 3 + 10, unsent: 0 }))).toEqual([{ type: FrameType.PING }]);
    expect(channel.on({ type: 'tick', now: TIMEOUT / 3 + 20, unsent: 0 })).toEqual([]);
    // Long idle is no failure while nothing is unsent.
    expect(posts(channel.on({ type: 'tick', now: 10 * TIMEOUT, unsent: 0 }))).toEqual([]);
  });

  test('writes that do not drain, and a DONE that never comes, time out', () => {
    const stuck = opened();
    stuck.on({ type: 'tick', now: 100, unsent: 0 });
    expect(posts(stuck.on({ type: 'tick', now: 100 + TIMEOUT, unsent: 4096 }))).toEqual([]);
    expect(postedError(stuck.on({ type: 'tick', now: 101 + TIMEOUT, unsent: 4096 })).message).toBe('channel 0: no progress for 3 s (writes not draining)');

    const ending = opened();
    ending.on({ type: 'end', frames: 0, bytes: 0, digest: 0n, now: 50 });
    ending.on({ type: 'written', now: 60 });
    expect(postedError(ending.on({ type: 'tick', now: 61 + TIMEOUT, unsent: 0 })).message).toBe('channel 0: no progress for 3 s (waiting for the receiver to confirm)');
  });
});

describe('sending channel: hostile or failing receivers', () => {
  const cases: [string, () => SendChannel, SendChannelEvent, string, RegExp][] = [
    [
      'REFUSE while opening',
      () => {
        const c = make();
        c.on({ type: 'start', now: 0 });
        c.on({ type: 'connected', now: 0 });
        return c;
      },
      peer({ type: FrameType.REFUSE, reason: 'nope' }),
      'ERR_HANDSHAKE',
      /^channel 0: the receiver refused the channel: nope$/,
    ],
    [
      'ACCEPT for another channel',
      () => {
        const c = make();
        c.on({ type: 'start', now: 0 });
        c.on({ type: 'connected', now: 0 });
        return c;
      },
      peer({ type: FrameType.ACCEPT, index: 3 }),
      'ERR_PROTOCOL',
      /unexpected ACCEPT for channel 3/,
    ],
    ['a second ACCEPT', () => opened(), peer({ type: FrameType.ACCEPT, index: 0 }), 'ERR_PROTOCOL', /unexpected ACCEPT for channel 0/],
    ['DONE before END', () => opened(), peer({ type: FrameType.DONE, bytes: 1 }), 'ERR_PROTOCOL', /DONE before the end of the stream/],
    ['ABORT', () => opened(), peer({ type: FrameType.ABORT, reason: 'disk full' }), 'ERR_PEER_ABORT', /^channel 0: the receiver failed: disk full$/],
    ['a DATA frame', () => opened(), peer({ type: FrameType.DATA, seq: 0, rawLength: 0, codec: 0, payload: Buffer.alloc(0) }), 'ERR_PROTOCOL', /unexpected frame type 4 from the receiver/],
    ['a cut frame, then EOF', () => opened(), { type: 'peer-end', cutFrame: true }, 'ERR_PROTOCOL', /the receiver sent a cut frame/],
    ['EOF before the end', () => opened(), { type: 'peer-end', cutFrame: false }, 'ERR_CHANNEL', /the receiver closed the connection before the end of the stream/],
    ['a close before the end', () => opened(), { type: 'closed' }, 'ERR_CHANNEL', /the connection closed before the end of the stream/],
    [
      'a reset',
      () => opened(),
      { type: 'socket-error', error: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), now: 5 },
      'ERR_CHANNEL',
      /^channel 0: the receiver reset the connection \(ECONNRESET\)$/,
    ],
    [
      'a certificate the CA did not sign',
      () => make(),
      { type: 'socket-error', error: Object.assign(new Error('unable to verify'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }), now: 0 },
      'ERR_AUTH',
      /the receiver's certificate was rejected/,
    ],
  ];
  test.each(cases)('%s fails the channel once, with the reason posted and the socket destroyed', (_name, setUp, event, code, message) => {
    const channel = setUp();
    const out = channel.on(event);
    expect(postedError(out)).toMatchObject({ code, message: expect.stringMatching(message) });
    expect(out.at(-1)).toEqual({ type: 'destroy' });
    expect(channel.state).toBe('failed');
    // Whatever follows is moot: nothing more is posted.
    expect(channel.on(peer({ type: FrameType.PING }, { type: FrameType.ABORT, reason: 'again' }))).toEqual([]);
    expect(channel.on({ type: 'tick', now: 100 * TIMEOUT, unsent: 1 })).toEqual([]);
  });

  test('frames after the failing one in the same chunk are not looked at', () => {
    const channel = opened();
    const out = channel.on(peer({ type: FrameType.ABORT, reason: 'first' }, { type: FrameType.ABORT, reason: 'second' }));
    expect(posts(out)).toHaveLength(1);
    expect(postedError(out).message).toMatch(/first/);
  });

  test('PING from the receiver is progress, nothing else', () => {
    const channel = opened();
    expect(channel.on(peer({ type: FrameType.PING }))).toEqual([]);
    expect(channel.state).toBe('open');
  });
});

describe('sending channel: abort from the main thread', () => {
  test('an open channel ends with ABORT, is destroyed after the grace, and answers closed when its socket is', () => {
    const channel = opened();
    const out = channel.on({ type: 'abort', reason: 'stream ends inside a record', now: 1000 });
    expect(out).toEqual([{ type: 'close', last: encodeAbort('stream ends inside a record'), destroyAt: 1000 + CLOSE_GRACE_MS }]);
    expect(channel.state).toBe('failed');
    expect(channel.on({ type: 'closed' })).toEqual([{ type: 'post', message: { t: 'closed' } }]);
  });

  test('a channel that already failed answers closed at once if its socket is gone, else when it closes', () => {
    const gone = opened();
    gone.on({ type: 'socket-error', error: new Error('boom'), now: 1 });
    gone.on({ type: 'closed' });
    expect(gone.on({ type: 'abort', reason: 'x', now: 2 })).toEqual([{ type: 'post', message: { t: 'closed' } }]);

    const closing = opened();
    closing.on({ type: 'socket-error', error: new Error('boom'), now: 1 });
    expect(closing.on({ type: 'abort', reason: 'x', now: 2 })).toEqual([]);
    expect(closing.on({ type: 'closed' })).toEqual([{ type: 'post', message: { t: 'closed' } }]);
  });

  test('a pin mismatch reported by the glue is an authentication failure', () => {
    const channel = make();
    channel.on({ type: 'start', now: 0 });
    const out = channel.on({ type: 'fail', error: Object.assign(new Error('x'), { code: 'CERT_HAS_EXPIRED' }) });
    expect(postedError(out)).toMatchObject({ code: 'ERR_AUTH' });
    expect(channel.on({ type: 'connected', now: 1 })).toEqual([]);
  });
});
