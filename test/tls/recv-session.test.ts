/**
 * The receiver's session machine (src/tls/recv-session.ts) driven event by event, with no
 * listener, worker or timer: admission and strangers, reordering with the held tail and the
 * window acks, END totals and digest, DONE, failures and every deadline as ticks.
 */
import { describe, expect, test } from 'vitest';
import { StreamDigest } from '../../src/tls/digest.js';
import { ChannelError, ProtocolError, type TransportError } from '../../src/tls/errors.js';
import { InboundStream, MAIN_STREAM, MAX_STRANGERS, OUTPUT_GONE, ReceiverSession, type ReceiverSessionAction, type ReceiverSessionEvent } from '../../src/tls/recv-session.js';
import type { OpenRequest } from '../../src/tls/session.js';

const TIMEOUT = 2000;
const HOLD = 8;
const make = () => new ReceiverSession({ timeoutMs: TIMEOUT, holdBytes: HOLD, tls: true });
const id1 = new Uint8Array(16).fill(1);
const request = (index: number, overrides: Partial<OpenRequest> = {}): OpenRequest => ({ version: 2, sessionId: id1, channels: 2, index, codec: 1, ...overrides });
const frameBytes = (seq: number): Buffer => Buffer.alloc(4, seq + 1);
const frame = (id: number, seq: number, now = 10): ReceiverSessionEvent => ({ type: 'frame', id, stream: MAIN_STREAM, seq, data: frameBytes(seq), wire: 30, now });
const kinds = (actions: ReceiverSessionAction[]) => actions.map((a) => a.type);
const failure = (actions: ReceiverSessionAction[]): TransportError => {
  const failed = actions.find((a) => a.type === 'failed');
  if (failed?.type !== 'failed') throw new Error(`no failure in ${JSON.stringify(kinds(actions))}`);
  return failed.error;
};
const written = (actions: ReceiverSessionAction[]) => Buffer.concat(actions.flatMap((a) => (a.type === 'write' ? a.chunks : [])));

function digestOf(frames: number): bigint {
  const digest = new StreamDigest();
  for (let seq = 0; seq < frames; seq++) digest.update(frameBytes(seq));
  return digest.value;
}
const totals = (frames: number) => ({ frames, bytes: 4 * frames, digest: digestOf(frames) });

/** A session with connections 0 and 1 admitted as channels 0 and 1 (of 2). */
function running(): ReceiverSession {
  const session = make();
  for (const id of [0, 1]) {
    expect(session.on({ type: 'connection', id, peer: `10.0.0.1:${id}`, now: 0 })).toEqual([{ type: 'take', id }]);
    expect(session.on({ type: 'open', id, request: request(id), now: 1 })).toEqual([{ type: 'accept', id, index: id }]);
  }
  expect(session.state).toBe('running');
  return session;
}

describe('receiver session: admission', () => {
  test('channel 0 opens the session (joining), the others join it (running)', () => {
    const session = make();
    session.on({ type: 'connection', id: 7, peer: 'a:1', now: 0 });
    session.on({ type: 'open', id: 7, request: request(0), now: 5 });
    expect(session.state).toBe('joining');
    session.on({ type: 'connection', id: 8, peer: 'a:2', now: 6 });
    expect(session.on({ type: 'open', id: 8, request: request(1), now: 7 })).toEqual([{ type: 'accept', id: 8, index: 1 }]);
    expect(session.state).toBe('running');
    // The join deadline is off once everyone joined.
    expect(session.on({ type: 'tick', now: 10 * TIMEOUT })).toEqual([]);
  });

  test("refusals answer REFUSE with admit()'s reason, are logged, and retire the connection; the session goes on", () => {
    const session = running();
    const cases: [OpenRequest, RegExp][] = [
      [request(1), /channel 1 has already joined/],
      [request(2), /channel 2 outside the session's 2 channels/],
      [request(1, { sessionId: new Uint8Array(16).fill(9) }), /unknown session id/],
      [request(1, { channels: 3 }), /differ from the session's/],
      [request(1, { version: 1 }), /^protocol version 1; this receiver speaks version 2$/],
    ];
    cases.forEach(([open, reason], n) => {
      const id = 10 + n;
      session.on({ type: 'connection', id, peer: `p:${id}`, now: 2 });
      const out = session.on({ type: 'open', id, request: open, now: 3 });
      expect(kinds(out)).toEqual(['refuse', 'refused', 'retire']);
      expect(out[0]).toMatchObject({ id, reason: expect.stringMatching(reason) });
      expect(out[1]).toMatchObject({ peer: `p:${id}`, reason: expect.stringMatching(reason) });
      // A retired connection's later messages are not the session's.
      expect(session.on({ type: 'channel-failed', id, error: new ChannelError('late') })).toEqual([]);
      expect(session.on({ type: 'worker-exit', id, code: 1 })).toEqual([]);
    });
    expect(session.state).toBe('running');
  });

  test('a channel before channel 0 is refused, and the admission clock keeps running', () => {
    const session = make();
    session.on({ type: 'connection', id: 1, peer: 'p:1', now: 100 });
    expect(session.on({ type: 'open', id: 1, request: request(1), now: 101 })[0]).toMatchObject({ type: 'refuse', reason: expect.stringMatching(/before channel 0/) });
    expect(session.on({ type: 'tick', now: 100 + TIMEOUT - 1 })).toEqual([]);
    expect(failure(session.on({ type: 'tick', now: 100 + TIMEOUT })).message).toMatch(
      /^no sender was admitted within 2 s of the first connection; 1 connection\(s\) refused, the last p:1: channel 1 arrived before channel 0 opened a session$/,
    );
  });

  test('a failing stranger is refused, not the session; strangers still unidentified at the deadline are named', () => {
    const session = make();
    session.on({ type: 'connection', id: 1, peer: 'p:1', now: 0 });
    session.on({ type: 'connection', id: 2, peer: 'p:2', now: 0 });
    const out = session.on({ type: 'channel-failed', id: 1, error: new ProtocolError('frame length 0 out of range') });
    expect(out).toEqual([
      { type: 'refused', peer: 'p:1', reason: 'frame length 0 out of range' },
      { type: 'retire', id: 1 },
    ]);
    expect(session.state).toBe('listening');
    const failed = session.on({ type: 'tick', now: TIMEOUT });
    expect(failure(failed)).toMatchObject({ code: 'ERR_TIMEOUT', message: expect.stringMatching(/; 1 connection\(s\) refused, the last p:1: frame length 0 out of range; 1 still unidentified$/) });
    // The stranger still connected is told why.
    expect(failed[0]).toEqual({ type: 'abort', id: 2, reason: failure(failed).message });
  });

  test(`beyond ${MAX_STRANGERS} unidentified connections, more are dropped at accept`, () => {
    const session = make();
    for (let id = 0; id < MAX_STRANGERS; id++) expect(kinds(session.on({ type: 'connection', id, peer: `p:${id}`, now: 0 }))).toEqual(['take']);
    expect(session.on({ type: 'connection', id: 99, peer: 'p:99', now: 0 })).toEqual([
      { type: 'refused', peer: 'p:99', reason: `dropped: ${MAX_STRANGERS} unidentified connections already` },
      { type: 'drop', id: 99 },
    ]);
    // Admitted channels are no strangers: room again.
    session.on({ type: 'open', id: 0, request: request(0), now: 1 });
    expect(kinds(session.on({ type: 'connection', id: 100, peer: 'p:100', now: 2 }))).toEqual(['take']);
  });

  test('the deadline the glue must wake for: admission from the first connection, then joining, then none', () => {
    const session = make();
    expect(session.nextDeadline).toBeUndefined();
    session.on({ type: 'connection', id: 0, peer: 'p:0', now: 10 });
    session.on({ type: 'connection', id: 1, peer: 'p:1', now: 20 });
    expect(session.nextDeadline).toBe(10 + TIMEOUT);
    session.on({ type: 'open', id: 0, request: request(0), now: 30 });
    expect(session.nextDeadline).toBe(30 + TIMEOUT);
    session.on({ type: 'open', id: 1, request: request(1), now: 40 });
    expect(session.nextDeadline).toBeUndefined();
  });

  test('channels that never join fail the session at the join deadline', () => {
    const session = make();
    session.on({ type: 'connection', id: 0, peer: 'p:0', now: 0 });
    session.on({ type: 'open', id: 0, request: request(0, { channels: 3 }), now: 50 });
    expect(session.on({ type: 'tick', now: 50 + TIMEOUT - 1 })).toEqual([]);
    expect(failure(session.on({ type: 'tick', now: 50 + TIMEOUT })).message).toBe('only 1 of 3 channels joined within 2 s');
  });
});

describe('receiver session: frames, END and DONE', () => {
  test('frames are released in order, the newest holdBytes held; each release acks the channel that delivered it', () => {
    const session = running();
    // Frame 1 on channel 1 first: nothing released, nothing acked.
    expect(session.on(frame(1, 1))).toEqual([]);
    // Frame 0 releases 0 and 1: 8 bytes, all within the held tail; both acked to their carriers.
    expect(session.on(frame(0, 0))).toEqual([
      { type: 'progress', bytes: 8 },
      { type: 'ack', id: 0 },
      { type: 'ack', id: 1 },
    ]);
    // Frame 2 pushes frame 0 out of the held tail.
    const out = session.on(frame(0, 2));
    expect(kinds(out)).toEqual(['write', 'progress', 'ack']);
    expect(out[0]).toEqual({ type: 'write', stream: MAIN_STREAM, chunks: [frameBytes(0)], tail: false });
  });

  test('END on every channel with matching totals and digest: the held tail is written, then DONE on channel 0; finished completes', () => {
    const session = running();
    session.on(frame(0, 0, 100));
    session.on(frame(1, 1, 100));
    session.on(frame(0, 2, 100));
    expect(session.on({ type: 'end', id: 1, stream: MAIN_STREAM, totals: totals(3) })).toEqual([]);
    const out = session.on({ type: 'end', id: 0, stream: MAIN_STREAM, totals: totals(3) });
    expect(out).toEqual([
      { type: 'write', stream: MAIN_STREAM, chunks: [frameBytes(1), frameBytes(2)], tail: true },
      { type: 'done', id: 0, bytes: 12 },
    ]);
    expect(session.state).toBe('confirming');
    // While confirming, failures of the channels and deadlines change nothing.
    expect(session.on({ type: 'channel-failed', id: 1, error: new ChannelError('closed') })).toEqual([]);
    expect(session.on({ type: 'tick', now: 100 * TIMEOUT })).toEqual([]);
    expect(session.on({ type: 'finished', id: 1, now: 600 })).toEqual([]); // only channel 0's DONE counts
    const done = session.on({ type: 'finished', id: 0, now: 600 });
    expect(done).toEqual([
      {
        type: 'completed',
        summary: {
          bytes: 12,
          frames: 3,
          seconds: 0.599,
          digest: digestOf(3),
          codec: 'lz4',
          tls: true,
          channels: [
            { index: 0, frames: 2, rawBytes: 8, wireBytes: 60 },
            { index: 1, frames: 1, rawBytes: 4, wireBytes: 30 },
          ],
        },
      },
    ]);
    expect(session.state).toBe('completed');
    expect(session.on({ type: 'connection', id: 9, peer: 'late', now: 700 })).toEqual([{ type: 'drop', id: 9 }]);
  });

  test('END before the last frames: completion waits for them', () => {
    const session = running();
    session.on({ type: 'end', id: 0, stream: MAIN_STREAM, totals: totals(2) });
    expect(session.on({ type: 'end', id: 1, stream: MAIN_STREAM, totals: totals(2) })).toEqual([]);
    session.on(frame(1, 1));
    expect(kinds(session.on(frame(0, 0)))).toEqual(['progress', 'ack', 'ack', 'write', 'done']);
  });

  test('a held tail that cannot be written fails the session: every channel is told, nothing confirmed', () => {
    const session = running();
    session.on(frame(0, 0));
    session.on({ type: 'end', id: 1, stream: MAIN_STREAM, totals: totals(1) });
    session.on({ type: 'end', id: 0, stream: MAIN_STREAM, totals: totals(1) });
    const error = new ChannelError('EPIPE');
    const out = session.on({ type: 'output-failed', error });
    expect(out).toEqual([
      { type: 'abort', id: 0, reason: 'EPIPE' },
      { type: 'abort', id: 1, reason: 'EPIPE' },
      { type: 'failed', error },
    ]);
    expect(session.on({ type: 'finished', id: 0, now: 5 })).toEqual([]);
  });

  const wrongEnds: [string, (s: ReceiverSession) => ReceiverSessionAction[], string, RegExp][] = [
    ['a wrong digest', (s) => ends(s, { ...totals(2), digest: totals(2).digest ^ 1n }), 'ERR_CHECKSUM', /^stream digest [0-9a-f]{16} differs from the sender's [0-9a-f]{16}$/],
    ['more bytes announced than arrived', (s) => ends(s, { ...totals(2), bytes: 9 }), 'ERR_CHECKSUM', /^received 8 bytes, the sender announced 9$/],
    ['fewer frames announced than arrived', (s) => ends(s, totals(1)), 'ERR_CHECKSUM', /^received 2 frames, the sender announced 1$/],
    [
      'channels announcing different totals',
      (s) => {
        s.on({ type: 'end', id: 0, stream: MAIN_STREAM, totals: totals(2) });
        return s.on({ type: 'end', id: 1, stream: MAIN_STREAM, totals: totals(3) });
      },
      'ERR_PROTOCOL',
      /^the channels announce different end totals$/,
    ],
    ['a frame received twice', (s) => s.on(frame(1, 0)), 'ERR_PROTOCOL', /^channel 1: frame 0 received twice$/],
    ['a frame for a stream that does not exist', (s) => s.on({ type: 'frame', id: 0, stream: 3, seq: 2, data: Buffer.alloc(1), wire: 19, now: 0 }), 'ERR_PROTOCOL', /frame 2 for unknown stream 3/],
    [
      'a member channel failing',
      (s) => s.on({ type: 'channel-failed', id: 1, error: new ChannelError('the connection closed before the end frame: truncated session', 1) }),
      'ERR_CHANNEL',
      /^channel 1: the connection closed/,
    ],
    ['a member worker exiting', (s) => s.on({ type: 'worker-exit', id: 0, code: 1 }), 'ERR_CHANNEL', /^channel 0: worker exited \(1\)$/],
    ['the output reader gone', (s) => s.on({ type: 'output-gone' }), 'ERR_OUTPUT', new RegExp(`^${OUTPUT_GONE.replace(/[()?]/g, '\\$&')}$`)],
  ];
  function ends(session: ReceiverSession, end: { frames: number; bytes: number; digest: bigint }): ReceiverSessionAction[] {
    session.on({ type: 'end', id: 0, stream: MAIN_STREAM, totals: end });
    return session.on({ type: 'end', id: 1, stream: MAIN_STREAM, totals: end });
  }
  test.each(wrongEnds)('%s fails the session: ABORT on every channel, the tail never written', (_name, act, code, message) => {
    const session = running();
    session.on(frame(0, 0));
    session.on(frame(1, 1));
    const out = act(session);
    expect(failure(out)).toMatchObject({ code, message: expect.stringMatching(message) });
    expect(kinds(out)).toEqual(['abort', 'abort', 'failed']);
    expect(written(out).length).toBe(0);
    expect(session.state).toBe('failed');
    // Failed is final.
    expect(session.on(frame(0, 2))).toEqual([]);
    expect(session.on({ type: 'tick', now: 100 * TIMEOUT })).toEqual([]);
  });

  test('a frame that never arrives fails the session after the timeout, counted from the first frame that waited for it', () => {
    const session = running();
    session.on(frame(0, 0, 1000));
    session.on(frame(1, 2, 1500)); // frame 1 missing: the clock starts with frame 2's wait
    session.on(frame(0, 3, 2500)); // another waiting frame does not restart it
    expect(session.on({ type: 'tick', now: 1500 + TIMEOUT })).toEqual([]);
    expect(failure(session.on({ type: 'tick', now: 1501 + TIMEOUT })).message).toBe('frame 1 did not arrive within 2 s while 2 later frame(s) waited for it');
    // With nothing waiting, no clock runs.
    const idle = running();
    idle.on(frame(0, 0, 0));
    expect(idle.on({ type: 'tick', now: 100 * TIMEOUT })).toEqual([]);
  });
});

describe('InboundStream', () => {
  test('acks follow release order, not arrival order', () => {
    const stream = new InboundStream(0, 0);
    expect(stream.add(2, frameBytes(2), 30, 2, 0)).toEqual({ write: [], released: false, acks: [] });
    expect(stream.add(1, frameBytes(1), 20, 1, 0).acks).toEqual([]);
    const out = stream.add(0, frameBytes(0), 10, 0, 0);
    expect(out.acks).toEqual([10, 20, 30]);
    expect(out.write).toEqual([frameBytes(0), frameBytes(1), frameBytes(2)]);
    expect(stream.verify(totals(3))).toBe('ok');
    expect(stream.tail()).toEqual([]);
  });
});
