/**
 * The transport's wire frames against an independent builder (test/helpers/
 * transport-frame-builder.ts, written from docs/transport.md alone): exact hex per frame type,
 * the parsers on the builder's bytes (whole, split at every offset, byte by byte), the encoders'
 * bytes equal to the builder's, the END digest, hostile frames refused with ProtocolError, and
 * a real `migstream recv` (no QEMU: its stdout is a pipe read here) taking a session the builder
 * wrote.
 */
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { StreamDigest } from '../../src/tls/digest.js';
import { ProtocolError } from '../../src/tls/errors.js';
import { admit } from '../../src/tls/session.js';
import { FrameParser, FrameReader, encodeAbort, encodeAccept, encodeDataHeader, encodeDone, encodeEnd, encodeOpen, encodePing, encodeRefuse, type Frame } from '../../src/tls/wire.js';
import * as C from '../helpers/container-builder.js';
import * as W from '../helpers/transport-frame-builder.js';
import { startRecv } from '../helpers/transport.js';

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const sessionId = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
const hello = Buffer.from('hello');

/** One of each frame type, with the frames the parsers must give for them. */
function everyType(): { bytes: Buffer; frames: unknown[] } {
  const parts: [Buffer, unknown][] = [
    [W.open({ sessionId, channels: 4, index: 2, codec: W.WireCodec.lz4 }), { type: 1, magic: 0x4d475458, version: 2, sessionId, channels: 4, index: 2, codec: 1 }],
    [W.accept(2), { type: 2, index: 2 }],
    [W.refuse('nope'), { type: 3, reason: 'nope' }],
    [W.data({ seq: 5, raw: hello }), { type: 4, seq: 5, rawLength: 5, codec: 0, payload: hello }],
    [W.data({ seq: 6, raw: Buffer.alloc(0) }), { type: 4, seq: 6, rawLength: 0, codec: 0, payload: Buffer.alloc(0) }],
    [W.ping(), { type: 8 }],
    [W.end(7, 2 ** 40 + 3, 0xdeadbeef01234567n), { type: 5, frames: 7, bytes: 2 ** 40 + 3, digest: 0xdeadbeef01234567n }],
    [W.done(2 ** 33), { type: 6, bytes: 2 ** 33 }],
    [W.abort('boom ✗'), { type: 7, reason: 'boom ✗' }],
  ];
  return { bytes: Buffer.concat(parts.map(([b]) => b)), frames: parts.map(([, f]) => f) };
}

/** Frames with their buffers as plain hex, so equality does not depend on buffer identity. */
const plain = (frames: readonly Frame[]): unknown[] => frames.map((f) => Object.fromEntries(Object.entries(f).map(([k, v]) => [k, Buffer.isBuffer(v) || v instanceof Uint8Array ? hex(v) : v])));
const plainExpected = (frames: readonly unknown[]): unknown[] => plain(frames as Frame[]);

/** The push parser over `chunks`. */
function parse(chunks: Iterable<Buffer>): { frames: Frame[]; pending: number } {
  const parser = new FrameParser();
  const frames: Frame[] = [];
  for (const chunk of chunks) frames.push(...parser.push(chunk));
  return { frames, pending: parser.pending };
}

/** The pull reader over `chunks`, each read filling as much of target() as the chunk holds. */
function pull(chunks: Iterable<Buffer>): { frames: Frame[]; pending: number } {
  const reader = new FrameReader();
  const frames: Frame[] = [];
  for (let chunk of chunks) {
    while (chunk.length > 0) {
      const target = reader.target();
      const n = Math.min(target.length, chunk.length);
      chunk.copy(target, 0, 0, n);
      chunk = chunk.subarray(n);
      frames.push(...reader.filled(n));
    }
  }
  return { frames, pending: reader.pending };
}

function* twoPieces(bytes: Buffer, at: number): Generator<Buffer> {
  yield bytes.subarray(0, at);
  yield bytes.subarray(at);
}
function* byteByByte(bytes: Buffer): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i++) yield bytes.subarray(i, i + 1);
}

describe('exact bytes per frame type (docs/transport.md, "example bytes")', () => {
  test.each([
    ['OPEN', () => W.open({ sessionId, channels: 4, index: 2, codec: 1 }), '0000001c 01 4d475458 0002 000102030405060708090a0b0c0d0e0f 0004 0002 01'],
    ['ACCEPT', () => W.accept(2), '00000003 02 0002'],
    ['REFUSE', () => W.refuse('nope'), '00000005 03 6e6f7065'],
    ['DATA', () => W.data({ seq: 5, raw: hello }), '00000013 04 0000000000000005 00000005 00 68656c6c6f'],
    ['DATA, lz4', () => W.data({ seq: 5, raw: hello, codec: 1, payload: Buffer.from('050000005068656c6c6f', 'hex') }), '00000018 04 0000000000000005 00000005 01 05000000 50 68656c6c6f'],
    ['END', () => W.end(1, 5, 0x25acfe10df4f45e6n), '00000019 05 0000000000000001 0000000000000005 25acfe10df4f45e6'],
    ['DONE', () => W.done(5), '00000009 06 0000000000000005'],
    ['ABORT', () => W.abort('boom'), '00000005 07 626f6f6d'],
    ['PING', () => W.ping(), '00000001 08'],
  ])('%s', (_, make, expected) => {
    expect(hex(make())).toBe(expected.replace(/ /g, ''));
  });

  test('the doc carries these example bytes', () => {
    const doc = readFileSync(join(import.meta.dirname, '../../docs/transport.md'), 'utf8').replace(/[\s`]/g, '');
    const lz4 = Buffer.from('050000005068656c6c6f', 'hex');
    const examples = [
      W.open({ sessionId, channels: 4, index: 2, codec: 1 }),
      W.accept(2),
      W.refuse('nope'),
      W.data({ seq: 5, raw: hello }),
      W.data({ seq: 5, raw: hello, codec: 1, payload: lz4 }),
      W.end(1, 5, W.streamDigest([hello])),
      W.done(5),
      W.abort('boom'),
      W.ping(),
    ];
    for (const bytes of examples) expect(doc.includes(hex(bytes)), hex(bytes)).toBe(true);
    expect(doc.includes(C.xxh64(hello).toString(16))).toBe(true);
  });

  test('the END digest: XXH64(le64 digest ‖ le64 XXH64(frame)) from 0, an empty frame hashing as 0', () => {
    // Values from the Python xxhash package, a third implementation of XXH64.
    expect(W.streamDigest([hello]).toString(16)).toBe('25acfe10df4f45e6');
    expect(W.streamDigest([hello, Buffer.alloc(0), Buffer.from('world')]).toString(16)).toBe('b9998c5bdc5f287d');
    expect(W.streamDigest([])).toBe(0n);
  });
});

describe("the encoders write the builder's bytes", () => {
  test('every frame type', () => {
    expect(hex(encodeOpen({ sessionId, channels: 4, index: 2, codec: 1 }))).toBe(hex(W.open({ sessionId, channels: 4, index: 2, codec: 1 })));
    expect(hex(encodeOpen({ sessionId, channels: 1, index: 0, codec: 3, version: 1 }))).toBe(hex(W.open({ sessionId, channels: 1, index: 0, codec: 3, version: 1 })));
    expect(hex(encodeAccept(0x0102))).toBe(hex(W.accept(0x0102)));
    expect(hex(encodeAccept(65535))).toBe(hex(W.accept(65535)));
    expect(hex(encodeRefuse('nope ✗'))).toBe(hex(W.refuse('nope ✗')));
    expect(hex(encodeAbort(''))).toBe(hex(W.abort('')));
    expect(hex(encodePing())).toBe(hex(W.ping()));
    const payload = Buffer.from('050000005068656c6c6f', 'hex');
    expect(hex(Buffer.concat([encodeDataHeader(2 ** 40, 5, 1, payload.length), payload]))).toBe(hex(W.data({ seq: 2 ** 40, raw: hello, codec: 1, payload })));
    expect(hex(encodeDataHeader(0, 0, 0, 0))).toBe(hex(W.data({ seq: 0, raw: Buffer.alloc(0) })));
    expect(hex(encodeEnd({ frames: 3, bytes: 2 ** 50, digest: 0xffff_ffff_ffff_ffffn }))).toBe(hex(W.end(3, 2 ** 50, 0xffff_ffff_ffff_ffffn)));
    expect(hex(encodeDone(2 ** 53 - 1))).toBe(hex(W.done(2 ** 53 - 1)));
  });

  test("the digest the sender and receiver compute is the builder's", () => {
    const frames = [hello, Buffer.alloc(0), Buffer.from('world'), C.fromHex('00'.repeat(4096)), Buffer.alloc(100_003, 'migstream ')];
    for (let n = 0; n <= frames.length; n++) {
      const digest = new StreamDigest();
      for (const frame of frames.slice(0, n)) digest.update(frame);
      expect(digest.value).toBe(W.streamDigest(frames.slice(0, n)));
    }
  });
});

describe("the parsers take the builder's frames", () => {
  test('whole, split at every offset, and byte by byte: the push parser and the pull reader', () => {
    const { bytes, frames } = everyType();
    const expected = plainExpected(frames);
    for (const read of [parse, pull]) {
      const whole = read([bytes]);
      expect(plain(whole.frames)).toEqual(expected);
      expect(whole.pending).toBe(0);
      for (let at = 0; at <= bytes.length; at++) {
        const split = read(twoPieces(bytes, at));
        expect(plain(split.frames), `${read.name} split at ${at}`).toEqual(expected);
        expect(split.pending).toBe(0);
      }
      expect(plain(read(byteByByte(bytes)).frames)).toEqual(expected);
    }
  });

  test('a cut frame leaves its bytes pending (EOF there means a truncated channel)', () => {
    const { bytes } = everyType();
    for (let n = 1; n < bytes.length; n++) {
      const parsed = parse([bytes.subarray(0, n)]);
      const pulled = pull([bytes.subarray(0, n)]);
      expect(plain(pulled.frames)).toEqual(plain(parsed.frames));
      const whole = parsed.frames.length;
      const used = Buffer.concat(everyTypeParts().slice(0, whole)).length;
      expect(parsed.pending).toBe(n - used);
      expect(pulled.pending).toBe(n - used);
    }
  });
});

function everyTypeParts(): Buffer[] {
  const { bytes } = everyType();
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length;) {
    const length = 4 + bytes.readUInt32BE(at);
    parts.push(bytes.subarray(at, at + length));
    at += length;
  }
  return parts;
}

describe('hostile frames from the builder are refused with ProtocolError (ERR_PROTOCOL)', () => {
  const big = W.FRAME_LIMIT + 1;
  test.each([
    ['length 0', () => W.frame(W.Type.PING, Buffer.alloc(0), 0), /frame length 0 out of range/],
    ['length past 64 MiB', () => W.frame(W.Type.DATA, Buffer.alloc(13), big), /frame length 67108865 out of range/],
    ['type 0', () => W.frame(0), /unknown frame type 0/],
    ['type 9', () => W.frame(9, hello), /unknown frame type 9/],
    ['type 255', () => W.frame(255), /unknown frame type 255/],
    ['OPEN of 26 bytes', () => W.open({ sessionId, channels: 1, index: 0, codec: 0 }).subarray(0, 31).fill(27, 3, 4), /OPEN frame of 26 bytes, expected 27/],
    ['ACCEPT of 3 bytes', () => W.frame(W.Type.ACCEPT, Buffer.alloc(3)), /ACCEPT frame of 3 bytes, expected 2/],
    ['END of 23 bytes', () => W.frame(W.Type.END, Buffer.alloc(23)), /END frame of 23 bytes, expected 24/],
    ['DONE of 9 bytes', () => W.frame(W.Type.DONE, Buffer.alloc(9)), /DONE frame of 9 bytes, expected 8/],
    ['PING with a body', () => W.frame(W.Type.PING, Buffer.alloc(1)), /PING frame of 1 bytes, expected 0/],
    ['DATA shorter than its header', () => W.frame(W.Type.DATA, Buffer.alloc(12)), /DATA frame of 12 bytes/],
    ['DATA announcing more than 64 MiB raw', () => W.data({ seq: 0, raw: hello, codec: 2, rawLength: big }), /DATA frame announces 67108865 raw bytes/],
  ])('%s', (_, make, message) => {
    const bytes = make();
    for (const read of [parse, pull]) {
      for (const chunks of [[bytes], byteByByte(bytes)]) {
        let error: unknown;
        try {
          read(chunks);
        } catch (caught) {
          error = caught;
        }
        expect(error, read.name).toBeInstanceOf(ProtocolError);
        expect(error).toMatchObject({ code: 'ERR_PROTOCOL' });
        expect((error as Error).message).toMatch(message);
      }
    }
  });

  test('admission refuses another version, an unknown codec and a channel count out of range (REFUSE, not a parse error)', () => {
    const opened = (spec: Partial<W.OpenSpec>) => parse([W.open({ sessionId, channels: 2, index: 0, codec: 0, ...spec })]).frames[0] as Extract<Frame, { type: 1 }>;
    expect(admit(undefined, opened({ version: 1 }))).toEqual({ refuse: 'protocol version 1; this receiver speaks version 2' });
    expect(admit(undefined, opened({ codec: 4 }))).toEqual({ refuse: 'unknown codec 4' });
    expect(admit(undefined, opened({ channels: 0 }))).toMatchObject({ refuse: expect.stringMatching(/channel count 0/) });
    for (const codec of [0, 1, 2, 3]) expect(admit(undefined, opened({ codec }))).toHaveProperty('session');
  });
});

/** A TCP connection to recv speaking the builder's bytes; `next()` is the receiver's next frame. */
class Peer {
  private readonly parser = new FrameParser();
  private readonly frames: Frame[] = [];
  private wake: (() => void) | undefined;
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.frames.push(...this.parser.push(chunk));
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new Peer(socket)));
      socket.once('error', reject);
    });
  }

  async next(): Promise<Frame | 'closed'> {
    while (this.frames.length === 0 && !this.closed) await new Promise<void>((resolve) => (this.wake = resolve));
    return this.frames.shift() ?? 'closed';
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  close(): void {
    this.socket.destroy();
  }
}

async function receiver() {
  const recv = await startRecv(['--insecure', '--timeout', '10'], { stdout: 'pipe' });
  const chunks: Buffer[] = [];
  recv.child.stdout!.on('data', (chunk: Buffer) => chunks.push(chunk));
  return { recv, received: () => Buffer.concat(chunks) };
}

describe('migstream recv takes a session the builder wrote (no QEMU)', () => {
  test("OPEN, DATA in every codec (out of order), END with the builder's digest: ACCEPT, the exact stream, DONE", async () => {
    const raws = [Buffer.alloc(5000, 'abc'), hello, Buffer.alloc(0), Buffer.alloc(70_000, 'migstream '), Buffer.from('the end')];
    const codecs = [W.WireCodec.lz4, W.WireCodec.none, W.WireCodec.none, W.WireCodec.zstd, W.WireCodec.zlib];
    const frames: W.DataSpec[] = [];
    for (const [seq, raw] of raws.entries()) {
      const codec = codecs[seq]!;
      frames.push({ seq, raw, codec, payload: await C.encodeWith(codec as C.CodecNumber, raw) });
    }
    const stream = Buffer.concat(raws);
    const { recv, received } = await receiver();
    const peer = await Peer.open(recv.port);
    peer.send(W.open({ sessionId, channels: 1, index: 0, codec: W.WireCodec.zstd }));
    expect(await peer.next()).toMatchObject({ type: W.Type.ACCEPT, index: 0 });
    // Sequence numbers, not arrival order, decide where a frame goes.
    for (const seq of [1, 0, 2, 4, 3]) peer.send(W.data(frames[seq]!));
    peer.send(W.ping());
    peer.send(W.end(raws.length, stream.length, W.streamDigest(raws)));
    expect(await peer.next()).toMatchObject({ type: W.Type.DONE, bytes: stream.length });
    const finished = await recv.exited;
    expect(finished.code, finished.stderr).toBe(0);
    expect(received().equals(stream)).toBe(true);
    peer.close();
  });

  test("an END digest other than the builder's fails the session (ERR_CHECKSUM), nothing written", async () => {
    const { recv, received } = await receiver();
    const peer = await Peer.open(recv.port);
    peer.send(W.open({ sessionId, channels: 1, index: 0, codec: 0 }));
    await peer.next();
    peer.send(Buffer.concat([W.data({ seq: 0, raw: hello }), W.end(1, 5, W.streamDigest([hello]) ^ 1n)]));
    expect(await peer.next()).toMatchObject({ type: W.Type.ABORT, reason: expect.stringMatching(/digest/) });
    const finished = await recv.exited;
    expect(finished.code).toBe(1);
    expect(finished.stderr).toMatch(/stream digest 25acfe10df4f45e6 differs from the sender's 25acfe10df4f45e7/);
    expect(received().length).toBe(0);
    peer.close();
  });

  test('a DATA frame that does not give its raw length fails the session (ERR_PROTOCOL): its channel closed unanswered, nothing written', async () => {
    for (const bad of [
      W.data({ seq: 0, raw: hello, rawLength: 6 }),
      W.data({ seq: 0, raw: hello, codec: 9 }),
      W.data({ seq: 0, raw: hello, codec: W.WireCodec.lz4, payload: Buffer.from('060000005068656c6c6f', 'hex') }),
    ]) {
      const { recv, received } = await receiver();
      const peer = await Peer.open(recv.port);
      peer.send(W.open({ sessionId, channels: 1, index: 0, codec: W.WireCodec.lz4 }));
      await peer.next();
      peer.send(bad);
      // The channel whose bytes failed is closed at once, without ABORT (docs/transport.md).
      expect(await peer.next()).toBe('closed');
      const finished = await recv.exited;
      expect(finished.code).toBe(1);
      expect(finished.stderr).toMatch(/channel 0: frame 0: 5 bytes stored, 6 announced|channel 0: frame 0 does not decompress/);
      expect(received().length).toBe(0);
      peer.close();
    }
  });

  test('strangers are turned away and the session still completes: version 1 gets REFUSE; another magic or no frame at all is closed unanswered', async () => {
    const { recv, received } = await receiver();
    const old = await Peer.open(recv.port);
    old.send(W.open({ sessionId, channels: 1, index: 0, codec: 0, version: 1 }));
    expect(await old.next()).toMatchObject({ type: W.Type.REFUSE, reason: 'protocol version 1; this receiver speaks version 2' });
    expect(await old.next()).toBe('closed');
    for (const bytes of [W.open({ sessionId, channels: 1, index: 0, codec: 0, magic: Buffer.from('MGTY') }), W.frame(W.Type.OPEN, Buffer.alloc(27), 0), W.data({ seq: 0, raw: hello })]) {
      const stranger = await Peer.open(recv.port);
      stranger.send(bytes);
      expect(await stranger.next()).toBe('closed');
    }
    const peer = await Peer.open(recv.port);
    peer.send(Buffer.concat([W.open({ sessionId, channels: 1, index: 0, codec: 0 })]));
    expect(await peer.next()).toMatchObject({ type: W.Type.ACCEPT });
    peer.send(Buffer.concat([W.data({ seq: 0, raw: hello }), W.end(1, 5, W.streamDigest([hello]))]));
    expect(await peer.next()).toMatchObject({ type: W.Type.DONE, bytes: 5 });
    const finished = await recv.exited;
    expect(finished.code, finished.stderr).toBe(0);
    expect(finished.stderr).toMatch(/refused [\d.:]+: protocol version 1/);
    expect(finished.stderr).toMatch(/refused [\d.:]+: not a migstream transport peer \(bad magic\)/);
    expect(finished.stderr).toMatch(/refused [\d.:]+: frame length 0 out of range/);
    expect(finished.stderr).toMatch(/refused [\d.:]+: DATA frame 0 before the channel was accepted/);
    expect(received().toString()).toBe('hello');
    peer.close();
  });
});
