/**
 * `migstream recv` against a hand-driven peer that speaks the transport's wire format
 * (src/tls/wire.ts) over plaintext TCP, so a test can send what a correct sender never would:
 * a wrong end checksum, a late or foreign channel, silence. The receiver is the real CLI.
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { describe, expect, test } from 'vitest';
import { StreamDigest } from '../../src/tls/digest.js';
import { FrameParser, FrameType, encodeDataHeader, encodeEnd, encodeOpen, encodePing, type Frame } from '../../src/tls/wire.js';
import { loadFixture } from '../helpers/qemu.js';
import { startRecv, type Finished } from '../helpers/transport.js';

const FRAME = 1 << 20;
/** Eight frames of a real stream: more than the 4 MiB tail the receiver holds back. */
const stream = readFileSync(loadFixture('compress').stream).subarray(0, 8 * FRAME);

/** One TCP connection speaking frames; `next()` resolves with the receiver's next frame. */
class Peer {
  private readonly parser = new FrameParser();
  private readonly frames: Frame[] = [];
  private waiting: ((frame: Frame | 'closed') => void) | undefined;
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.frames.push(...this.parser.push(chunk));
      this.deliver();
    });
    socket.on('close', () => {
      this.closed = true;
      this.deliver();
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new Peer(socket)));
      socket.once('error', reject);
    });
  }

  private deliver(): void {
    const waiting = this.waiting;
    if (waiting === undefined) return;
    const frame = this.frames.shift();
    if (frame !== undefined) {
      this.waiting = undefined;
      waiting(frame);
    } else if (this.closed) {
      this.waiting = undefined;
      waiting('closed');
    }
  }

  next(): Promise<Frame | 'closed'> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.deliver();
    });
  }

  send(...chunks: Buffer[]): void {
    for (const chunk of chunks) this.socket.write(chunk);
  }

  sendData(from: number, frames: number): void {
    for (let seq = from; seq < from + frames; seq++) {
      const payload = stream.subarray(seq * FRAME, (seq + 1) * FRAME);
      this.send(encodeDataHeader(seq, payload.length, 0, payload.length), payload);
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The digest of frames 0..count-1 as the sender cuts them. */
function digestOf(count: number): bigint {
  const digest = new StreamDigest();
  for (let seq = 0; seq < count; seq++) digest.update(stream.subarray(seq * FRAME, (seq + 1) * FRAME));
  return digest.value;
}

const session = (fill: number): Buffer => Buffer.alloc(16, fill);
const opening = (sessionId: Buffer, channels: number, index: number): Buffer => encodeOpen({ sessionId, channels, index, codec: 0 });

/**
 * A recv writing to its stdout, a pipe read here: what it wrote before a failure is seen even
 * though a file output (-o) would be removed after it (src/cli/output-file.ts).
 */
async function receiver(timeoutSeconds = 10) {
  const recv = await startRecv(['--insecure', '--timeout', String(timeoutSeconds)], { stdout: 'pipe' });
  const chunks: Buffer[] = [];
  recv.child.stdout!.on('data', (chunk: Buffer) => chunks.push(chunk));
  const received = (): Buffer => Buffer.concat(chunks);
  return { recv, received, size: () => received().length };
}

function expectFailedWithin(finished: Finished, ms: number, message: RegExp): void {
  expect(finished.code, finished.stderr).toBe(1);
  expect(finished.ms).toBeLessThan(ms);
  expect(finished.stderr).toMatch(message);
}

describe('recv against a hand-driven peer', () => {
  test('a wrong end digest fails the session, and the held tail is never written', async () => {
    const { recv, received, size } = await receiver();
    const peer = await Peer.open(recv.port);
    peer.send(opening(session(1), 1, 0));
    expect(await peer.next()).toMatchObject({ type: FrameType.ACCEPT, index: 0 });
    peer.sendData(0, 8);
    peer.send(encodeEnd({ frames: 8, bytes: stream.length, digest: digestOf(8) ^ 1n }));
    expect(await peer.next()).toMatchObject({ type: FrameType.ABORT, reason: expect.stringMatching(/digest/) });
    expectFailedWithin(await recv.exited, 10_000, /stream digest [0-9a-f]{16} differs from the sender's/);
    // Everything but the newest 4 MiB was released in order; the tail stayed held.
    expect(size()).toBeLessThanOrEqual(stream.length - 4 * FRAME);
    expect(received().equals(stream.subarray(0, size()))).toBe(true);
    peer.close();
  });

  test('an end frame announcing more bytes than arrived fails the session', async () => {
    const { recv, size } = await receiver();
    const peer = await Peer.open(recv.port);
    peer.send(opening(session(2), 1, 0));
    await peer.next();
    peer.sendData(0, 6);
    peer.send(encodeEnd({ frames: 6, bytes: 6 * FRAME + 1, digest: digestOf(6) }));
    expect(await peer.next()).toMatchObject({ type: FrameType.ABORT });
    expectFailedWithin(await recv.exited, 10_000, /received 6291456 bytes, the sender announced 6291457/);
    expect(size()).toBeLessThanOrEqual(2 * FRAME);
    peer.close();
  });

  test('late, duplicate and foreign channels are refused while the session goes on to complete', async () => {
    const { recv, received } = await receiver();
    const id = session(3);
    const zero = await Peer.open(recv.port);
    zero.send(opening(id, 2, 0));
    expect(await zero.next()).toMatchObject({ type: FrameType.ACCEPT, index: 0 });
    const one = await Peer.open(recv.port);
    one.send(opening(id, 2, 1));
    expect(await one.next()).toMatchObject({ type: FrameType.ACCEPT, index: 1 });

    const refusals: [Buffer, RegExp][] = [
      [opening(id, 2, 1), /channel 1 has already joined/],
      [opening(id, 2, 2), /channel 2 outside the session's 2 channels/],
      [opening(session(9), 2, 1), /unknown session id/],
      [opening(id, 3, 1), /differ from the session's/],
    ];
    for (const [open, reason] of refusals) {
      const late = await Peer.open(recv.port);
      late.send(open);
      expect(await late.next()).toMatchObject({ type: FrameType.REFUSE, reason: expect.stringMatching(reason) });
      expect(await late.next()).toBe('closed');
    }

    // Frames split over the two admitted channels, even ones on 0 and odd ones on 1.
    for (let seq = 0; seq < 8; seq++) (seq % 2 === 0 ? zero : one).sendData(seq, 1);
    const end = encodeEnd({ frames: 8, bytes: stream.length, digest: digestOf(8) });
    zero.send(end);
    one.send(end);
    expect(await zero.next()).toMatchObject({ type: FrameType.DONE, bytes: stream.length });
    const finished = await recv.exited;
    expect(finished.code, finished.stderr).toBe(0);
    expect(finished.stderr.match(/refused/g)).toHaveLength(refusals.length);
    expect(received().equals(stream)).toBe(true);
    zero.close();
    one.close();
  });

  test('a channel arriving before channel 0 opened a session is refused', async () => {
    const { recv } = await receiver(3);
    const early = await Peer.open(recv.port);
    early.send(opening(session(4), 2, 1));
    expect(await early.next()).toMatchObject({ type: FrameType.REFUSE, reason: expect.stringMatching(/before channel 0/) });
    recv.child.kill('SIGTERM');
    await recv.exited;
  });

  test('a frame that never arrives fails the session after --timeout, though every channel stays alive', async () => {
    const { recv, size } = await receiver(2);
    const id = session(6);
    const zero = await Peer.open(recv.port);
    zero.send(opening(id, 2, 0));
    await zero.next();
    const one = await Peer.open(recv.port);
    one.send(opening(id, 2, 1));
    await one.next();
    zero.sendData(0, 1);
    one.sendData(2, 1); // frame 1 never comes
    const keepAlive = setInterval(() => {
      zero.send(encodePing());
      one.send(encodePing());
    }, 300);
    try {
      expectFailedWithin(await recv.exited, 8_000, /frame 1 did not arrive within 2 s while 1 later frame\(s\) waited for it/);
    } finally {
      clearInterval(keepAlive);
      zero.close();
      one.close();
    }
    expect(size()).toBe(0); // frame 0 is within the held tail
  });

  test('a silent connection is dropped after --timeout, and recv gives up for want of a sender', async () => {
    const { recv } = await receiver(2);
    const peer = await Peer.open(recv.port);
    expectFailedWithin(await recv.exited, 8_000, /no sender was admitted within 2 s of the first connection/);
    expect(recv.stderr()).toMatch(/refused 127\.0\.0\.1:\d+: .*nothing received for 2 s|still unidentified/);
    peer.close();
  });

  test('a session whose other channels never join times out after --timeout', async () => {
    const { recv } = await receiver(2);
    const peer = await Peer.open(recv.port);
    peer.send(opening(session(5), 3, 0));
    await peer.next();
    peer.sendData(0, 1);
    expectFailedWithin(await recv.exited, 8_000, /only 1 of 3 channels joined within 2 s/);
    peer.close();
  });
});
