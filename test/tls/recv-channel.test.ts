/**
 * The receiving channel's state machine (src/tls/recv-channel.ts) driven event by event, with
 * no socket, thread or timer: every transition of docs/transport.md's diagram, the read
 * window, hostile senders and silence as ticks.
 */
import { describe, expect, test } from 'vitest';
import { reviveError } from '../../src/errors.js';
import { RecvChannel, type RecvChannelAction, type RecvChannelEvent } from '../../src/tls/recv-channel.js';
import { CLOSE_GRACE_MS, FrameParser, FrameType, PROTOCOL_MAGIC, encodeAbort, encodeDone, encodeRefuse, type Frame } from '../../src/tls/wire.js';

const TIMEOUT = 2000;
const make = (window = 2, plaintext = true) => new RecvChannel({ timeoutMs: TIMEOUT, window, plaintext });
const posts = (actions: RecvChannelAction[]) => actions.flatMap((a) => (a.type === 'post' ? [a.message] : []));
function postedError(actions: RecvChannelAction[]): Error {
  const message = posts(actions).find((m) => m.t === 'error');
  if (message?.t !== 'error') throw new Error(`no error posted in ${JSON.stringify(actions.map((a) => a.type))}`);
  return reviveError(message.error);
}
const peer = (...frames: Frame[]): RecvChannelEvent => ({ type: 'peer-frames', frames });
const openFrame = (overrides: Partial<Extract<Frame, { type: 1 }>> = {}): Frame => ({
  type: FrameType.OPEN,
  magic: PROTOCOL_MAGIC,
  version: 2,
  sessionId: Buffer.alloc(16, 1),
  channels: 2,
  index: 1,
  codec: 0,
  ...overrides,
});
const data = (seq: number, payload = Buffer.from('abc'), codec = 0, rawLength = payload.length): Frame => ({ type: FrameType.DATA, seq, rawLength, codec, payload });
const decoded = (seq: number, length = 3): RecvChannelEvent => ({ type: 'decoded', seq, raw: new Uint8Array(new ArrayBuffer(length)), wire: length + 18 });

/** A channel driven to `open` as channel `index`. */
function opened(index = 1, window = 2): RecvChannel {
  const channel = make(window);
  channel.on({ type: 'start', peer: '10.0.0.1:5000', now: 0 });
  channel.on({ type: 'peer-bytes', now: 1, firstByte: 0 });
  channel.on(peer(openFrame({ index })));
  channel.on({ type: 'accept', index, now: 2 });
  expect(channel.state).toBe('open');
  return channel;
}

describe('receiving channel: admission', () => {
  test('OPEN goes to the main thread; accept writes ACCEPT and opens the channel', () => {
    const channel = make();
    channel.on({ type: 'start', peer: 'p', now: 0 });
    channel.on({ type: 'peer-bytes', now: 1, firstByte: 0 });
    expect(posts(channel.on(peer(openFrame())))).toEqual([{ t: 'open', magic: PROTOCOL_MAGIC, version: 2, sessionId: Buffer.alloc(16, 1), channels: 2, index: 1, codec: 0 }]);
    expect(channel.state).toBe('opened');
    const accepted = channel.on({ type: 'accept', index: 1, now: 2 });
    expect(accepted).toHaveLength(1);
    expect(new FrameParser().push((accepted[0] as { bytes: Buffer }).bytes)).toEqual([{ type: FrameType.ACCEPT, index: 1 }]);
    expect(channel.index).toBe(1);
  });

  test('refuse closes with REFUSE and a destroy deadline; the channel is done', () => {
    const channel = make();
    channel.on({ type: 'start', peer: 'p', now: 0 });
    channel.on(peer(openFrame()));
    expect(channel.on({ type: 'refuse', reason: 'channel 1 has already joined', now: 100 })).toEqual([{ type: 'close', last: encodeRefuse('channel 1 has already joined'), destroyAt: 100 + CLOSE_GRACE_MS }]);
    expect(channel.state).toBe('done');
    expect(channel.on({ type: 'peer-end', cutFrame: false })).toEqual([]);
  });

  test('a TLS ClientHello on a plaintext listener is refused before it is parsed', () => {
    const channel = make();
    channel.on({ type: 'start', peer: 'p', now: 0 });
    const out = channel.on({ type: 'peer-bytes', now: 1, firstByte: 0x16 });
    expect(postedError(out).message).toMatch(/the sender speaks TLS to a plaintext \(--insecure\) listener/);
    expect(channel.state).toBe('failed');
    // Later bytes starting with 0x16 are a frame's length byte like any other.
    const later = opened();
    expect(later.on({ type: 'peer-bytes', now: 5, firstByte: 0x16 })).toEqual([]);
    // A TLS listener never checks.
    const tls = make(2, false);
    expect(tls.on({ type: 'peer-bytes', now: 1, firstByte: 0x16 })).toEqual([]);
  });

  test('a bad client certificate: the error is posted and REFUSE carries the same reason', () => {
    const channel = make(2, false);
    channel.on({ type: 'start', peer: 'p', now: 0 });
    const out = channel.on({ type: 'auth-failed', reason: 'client certificate rejected: certificate has expired (CERT_HAS_EXPIRED)', now: 10 });
    expect(postedError(out)).toMatchObject({ code: 'ERR_AUTH', message: 'client certificate rejected: certificate has expired (CERT_HAS_EXPIRED)' });
    expect(out[1]).toEqual({ type: 'close', last: encodeRefuse('client certificate rejected: certificate has expired (CERT_HAS_EXPIRED)'), destroyAt: 10 + CLOSE_GRACE_MS });
    expect(channel.state).toBe('failed');
  });
});

describe('receiving channel: frames, window and END', () => {
  test('DATA is decoded in order and posted with its buffer transferred; END follows the last frame before it', () => {
    const channel = opened();
    const payload = Buffer.from('abc');
    expect(channel.on(peer(data(0, payload), data(1, Buffer.alloc(2), 2, 10)))).toEqual([
      { type: 'decode', seq: 0, rawLength: 3, codec: 0, payload },
      { type: 'decode', seq: 1, rawLength: 10, codec: 2, payload: Buffer.alloc(2) },
    ]);
    // END parsed while both frames are still being decoded: it waits for them.
    expect(channel.on(peer({ type: FrameType.END, frames: 2, bytes: 13, digest: 5n }))).toEqual([]);
    expect(channel.state).toBe('ended');
    const first = decoded(0);
    const out = channel.on(first);
    expect(posts(out)).toEqual([{ t: 'frame', seq: 0, data: (first as { raw: Uint8Array }).raw, wire: 21 }]);
    expect(out.find((a) => a.type === 'post')).toMatchObject({ transfer: [(first as { raw: Uint8Array }).raw.buffer] });
    expect(posts(channel.on(decoded(1, 10))).map((m) => m.t)).toEqual(['frame', 'end']);
  });

  test('reading pauses at `window` unacknowledged frames and resumes below it; a paused channel is not silent', () => {
    const channel = opened(1, 2);
    channel.on(peer(data(0), data(1), data(2)));
    expect(channel.on(decoded(0)).map((a) => a.type)).toEqual(['post']);
    expect(channel.on(decoded(1)).map((a) => a.type)).toEqual(['pause', 'post']);
    expect(channel.on(decoded(2)).map((a) => a.type)).toEqual(['post']);
    // Paused: the watchdog does not count the quiet against the sender.
    expect(channel.on({ type: 'tick', now: 10 * TIMEOUT })).toEqual([]);
    expect(channel.on({ type: 'ack', now: 10 * TIMEOUT })).toEqual([]); // 2 outstanding: still at the window
    expect(channel.on({ type: 'ack', now: 10 * TIMEOUT + 1 })).toEqual([{ type: 'resume' }]);
    expect(channel.on({ type: 'ack', now: 10 * TIMEOUT + 2 })).toEqual([]);
    // The resume restarted the silence clock.
    expect(channel.on({ type: 'tick', now: 11 * TIMEOUT })).toEqual([]);
    expect(postedError(channel.on({ type: 'tick', now: 11 * TIMEOUT + 2 }))).toMatchObject({ code: 'ERR_TIMEOUT', message: 'channel 1: nothing received for 2 s' });
  });

  test('done ends the connection with DONE and posts finished once it is flushed', () => {
    const channel = opened(0);
    channel.on(peer({ type: FrameType.END, frames: 0, bytes: 0, digest: 0n }));
    expect(channel.on({ type: 'done', bytes: 42 })).toEqual([{ type: 'end', last: encodeDone(42), then: { t: 'finished' } }]);
    expect(channel.state).toBe('done');
    expect(channel.on({ type: 'tick', now: 100 * TIMEOUT })).toEqual([]);
  });

  test('an ended channel is not silent, and its EOF is no failure; a frame decoded after a failure is dropped', () => {
    const channel = opened();
    channel.on(peer({ type: FrameType.END, frames: 0, bytes: 0, digest: 0n }));
    expect(channel.on({ type: 'tick', now: 100 * TIMEOUT })).toEqual([]);
    expect(channel.on({ type: 'peer-end', cutFrame: false })).toEqual([]);

    const failing = opened();
    failing.on(peer(data(0)));
    failing.on({ type: 'abort', reason: 'x', now: 3 });
    expect(failing.on(decoded(0))).toEqual([]);
  });

  test('every socket close is reported to the main thread', () => {
    expect(opened().on({ type: 'closed' })).toEqual([{ type: 'post', message: { t: 'closed' } }]);
  });
});

describe('receiving channel: hostile or failing senders', () => {
  const cases: [string, () => RecvChannel, RecvChannelEvent, string, RegExp][] = [
    ['another magic', () => make(), peer(openFrame({ magic: 0x12345678 })), 'ERR_PROTOCOL', /^not a migstream transport peer \(bad magic\)$/],
    ['a second OPEN', () => opened(), peer(openFrame()), 'ERR_PROTOCOL', /^channel 1: a second OPEN on one channel$/],
    ['DATA before ACCEPT', () => make(), peer(data(0)), 'ERR_PROTOCOL', /^DATA frame 0 before the channel was accepted$/],
    [
      'DATA after END',
      () => {
        const c = opened();
        c.on(peer({ type: FrameType.END, frames: 0, bytes: 0, digest: 0n }));
        return c;
      },
      peer(data(7)),
      'ERR_PROTOCOL',
      /DATA frame 7 after END/,
    ],
    ['a raw DATA frame shorter than announced', () => opened(), peer(data(0, Buffer.from('hello'), 0, 6)), 'ERR_PROTOCOL', /^channel 1: frame 0: 5 bytes stored, 6 announced$/],
    ['END before ACCEPT', () => make(), peer({ type: FrameType.END, frames: 0, bytes: 0, digest: 0n }), 'ERR_PROTOCOL', /END frame out of place/],
    ['ABORT', () => opened(), peer({ type: FrameType.ABORT, reason: 'stream ends inside a record' }), 'ERR_PEER_ABORT', /^channel 1: the sender failed: stream ends inside a record$/],
    ['DONE from the sender', () => opened(), peer({ type: FrameType.DONE, bytes: 0 }), 'ERR_PROTOCOL', /unexpected frame type 6 from the sender/],
    ['EOF inside a frame', () => opened(), { type: 'peer-end', cutFrame: true }, 'ERR_CHANNEL', /^channel 1: the connection closed inside a frame: truncated session$/],
    ['EOF before END', () => opened(), { type: 'peer-end', cutFrame: false }, 'ERR_CHANNEL', /the connection closed before the end frame: truncated session/],
    [
      'a port scan (EOF before any byte)',
      () => {
        const c = make();
        c.on({ type: 'start', peer: '10.0.0.9:1234', now: 0 });
        return c;
      },
      { type: 'peer-end', cutFrame: false },
      'ERR_CHANNEL',
      /^10\.0\.0\.9:1234 closed the connection during the handshake$/,
    ],
    [
      'a reset',
      () => opened(),
      { type: 'socket-error', error: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) },
      'ERR_CHANNEL',
      /^channel 1: the sender reset the connection \(ECONNRESET\)$/,
    ],
    [
      'silence during the handshake',
      () => {
        const c = make();
        c.on({ type: 'start', peer: 'p', now: 0 });
        return c;
      },
      { type: 'tick', now: TIMEOUT + 1 },
      'ERR_TIMEOUT',
      /nothing received for 2 s/,
    ],
    ['silence while open', () => opened(), { type: 'tick', now: TIMEOUT + 2 }, 'ERR_TIMEOUT', /^channel 1: nothing received for 2 s$/],
    ['a frame that does not decompress', () => opened(), { type: 'fail', error: new Error('bad lz4 block') }, 'ERR_CHANNEL', /bad lz4 block/],
  ];
  test.each(cases)('%s fails the channel once, the reason posted, the socket destroyed unanswered', (_name, setUp, event, code, message) => {
    const channel = setUp();
    const out = channel.on(event);
    expect(postedError(out)).toMatchObject({ code, message: expect.stringMatching(message) });
    expect(out.at(-1)).toEqual({ type: 'destroy' });
    expect(out.some((a) => a.type === 'write' || a.type === 'close')).toBe(false);
    expect(channel.state).toBe('failed');
    expect(channel.on(peer(data(9), { type: FrameType.ABORT, reason: 'again' }))).toEqual([]);
    expect(channel.on({ type: 'abort', reason: 'late', now: 0 })).toEqual([]);
    // An admission decided before the failure was seen does not reopen it.
    expect(channel.on({ type: 'accept', index: 1, now: 0 })).toEqual([]);
    expect(channel.on({ type: 'refuse', reason: 'late', now: 0 })).toEqual([]);
    expect(channel.state).toBe('failed');
  });

  test('abort from the main thread closes with ABORT once; the watchdog is quiet afterwards', () => {
    const channel = opened();
    expect(channel.on({ type: 'abort', reason: 'stream digest differs', now: 50 })).toEqual([{ type: 'close', last: encodeAbort('stream digest differs'), destroyAt: 50 + CLOSE_GRACE_MS }]);
    expect(channel.on({ type: 'abort', reason: 'again', now: 51 })).toEqual([]);
    expect(channel.on({ type: 'tick', now: 100 * TIMEOUT })).toEqual([]);
  });

  test('PING is traffic: it keeps the silence clock from firing', () => {
    const channel = opened();
    channel.on({ type: 'peer-bytes', now: TIMEOUT, firstByte: 0 });
    expect(channel.on(peer({ type: FrameType.PING }))).toEqual([]);
    expect(channel.on({ type: 'tick', now: 2 * TIMEOUT })).toEqual([]);
  });
});
