/**
 * The sender's session machine (src/tls/send-session.ts) driven event by event, with no
 * worker or input: opening order, credit scheduling, END, the check of DONE, and failures.
 */
import { describe, expect, test } from 'vitest';
import { StreamDigest } from '../../src/tls/digest.js';
import { ChannelError } from '../../src/tls/errors.js';
import { SendSession, type SendSessionAction } from '../../src/tls/send-session.js';

const make = (channels = 3, credit = 2) => new SendSession({ channels, credit });
const frame = (n: number) => new Uint8Array(n).fill(n);
/** Which channel each `send` went to. */
const sentTo = (actions: SendSessionAction[]) => actions.flatMap((a) => (a.type === 'send' ? [a.index] : []));

function streaming(channels = 3, credit = 2): SendSession {
  const session = make(channels, credit);
  for (let index = 0; index < channels; index++) session.on({ type: 'opened', index });
  expect(session.state).toBe('streaming');
  return session;
}

describe('sender session', () => {
  test('channel 0 opens the session, then the others are let join; streaming once all are open', () => {
    const session = make(3);
    expect(session.canSend).toBe(false);
    expect(session.on({ type: 'opened', index: 0 })).toEqual([
      { type: 'join', index: 1 },
      { type: 'join', index: 2 },
    ]);
    expect(session.state).toBe('joining');
    expect(session.canSend).toBe(false);
    expect(session.on({ type: 'opened', index: 2 })).toEqual([]);
    expect(session.on({ type: 'opened', index: 1 })).toEqual([]);
    expect(session.state).toBe('streaming');
    expect(session.canSend).toBe(true);
    // One channel: open means streaming.
    const single = make(1);
    expect(single.on({ type: 'opened', index: 0 })).toEqual([]);
    expect(single.state).toBe('streaming');
  });

  test('frames go to the channel with the most credit, ties rotating by sequence number; no credit, no sending', () => {
    const session = streaming(3, 2);
    const order: number[] = [];
    for (let n = 0; n < 6; n++) order.push(...sentTo(session.on({ type: 'frame', data: frame(1) })));
    expect(order).toEqual([0, 1, 2, 0, 1, 2]);
    expect(session.canSend).toBe(false);
    expect(() => session.on({ type: 'frame', data: frame(1) })).toThrow(/canSend/);
    // A credit back on channel 2 makes it the one.
    session.on({ type: 'credit', index: 2, wire: 19 });
    expect(session.canSend).toBe(true);
    expect(session.on({ type: 'frame', data: frame(3) })).toEqual([{ type: 'send', index: 2, seq: 6, data: frame(3) }]);
    // A channel with more credit wins over the rotation.
    session.on({ type: 'credit', index: 1, wire: 19 });
    session.on({ type: 'credit', index: 1, wire: 19 });
    session.on({ type: 'credit', index: 0, wire: 19 });
    expect(sentTo(session.on({ type: 'frame', data: frame(1) }))).toEqual([1]);
    expect(session.stats).toEqual([
      { index: 0, frames: 2, rawBytes: 2, wireBytes: 19 },
      { index: 1, frames: 3, rawBytes: 3, wireBytes: 38 },
      { index: 2, frames: 3, rawBytes: 5, wireBytes: 19 },
    ]);
  });

  test('the input ends: END with the totals and the digest on every channel; DONE with the bytes sent completes', () => {
    const session = streaming(2, 4);
    const digest = new StreamDigest();
    for (const n of [3, 5]) {
      digest.update(frame(n));
      session.on({ type: 'frame', data: frame(n) });
    }
    const end = { frames: 2, bytes: 8, digest: digest.value };
    expect(session.on({ type: 'input-ended' })).toEqual([
      { type: 'end', index: 0, ...end },
      { type: 'end', index: 1, ...end },
    ]);
    expect(session.state).toBe('ending');
    expect(session.canSend).toBe(false);
    expect(session.on({ type: 'done', bytes: 8 })).toEqual([{ type: 'completed' }]);
    expect(session.state).toBe('done');
    // Workers exiting after the end are no failure.
    expect(session.on({ type: 'worker-exit', index: 1, code: 1 })).toEqual([]);
    expect(session.failure).toBeUndefined();
  });

  test('DONE confirming other bytes than were sent is a checksum failure; every channel is aborted', () => {
    const session = streaming(2, 4);
    session.on({ type: 'frame', data: frame(4) });
    session.on({ type: 'input-ended' });
    const out = session.on({ type: 'done', bytes: 3 });
    expect(out.map((a) => a.type)).toEqual(['abort', 'abort', 'failed']);
    expect(session.failure).toMatchObject({ code: 'ERR_CHECKSUM', message: 'the receiver confirmed 3 bytes, 4 were sent' });
    expect(out[0]).toEqual({ type: 'abort', index: 0, reason: 'the receiver confirmed 3 bytes, 4 were sent' });
  });

  test('a failing channel or a worker that exits early fails the session once; later events are moot', () => {
    const session = make(2);
    session.on({ type: 'opened', index: 0 });
    const error = new ChannelError('the receiver reset the connection (ECONNRESET)', 1);
    expect(session.on({ type: 'fail', error })).toEqual([
      { type: 'abort', index: 0, reason: error.message },
      { type: 'abort', index: 1, reason: error.message },
      { type: 'failed', error },
    ]);
    expect(session.state).toBe('failed');
    expect(session.on({ type: 'fail', error: new Error('second') })).toEqual([]);
    expect(session.on({ type: 'opened', index: 1 })).toEqual([]);
    expect(session.failure).toBe(error);

    const exited = streaming(2);
    exited.on({ type: 'worker-exit', index: 1, code: 1 });
    expect(exited.failure).toMatchObject({ code: 'ERR_CHANNEL', message: 'channel 1: worker exited (1) before the end of the stream' });
  });

  test("a failure of the input (the glue's decoder) aborts every channel with its message", () => {
    const session = streaming(2);
    const out = session.on({ type: 'fail', error: new Error('stream ends inside a record') });
    expect(out.filter((a) => a.type === 'abort')).toEqual([
      { type: 'abort', index: 0, reason: 'stream ends inside a record' },
      { type: 'abort', index: 1, reason: 'stream ends inside a record' },
    ]);
  });
});
