import { describe, expect, test } from 'vitest';
import { ProtocolError } from '../../src/tls/errors.js';
import { BufferPool } from '../../src/bytes/buffer-pool.js';
import { Reorderer } from '../../src/tls/reorder.js';
import { StreamDigest, formatDigest } from '../../src/tls/digest.js';
import { admit } from '../../src/tls/session.js';
import { FrameParser, FrameReader, FrameType, PROTOCOL_VERSION, encodeAbort, encodeDataHeader, encodeDone, encodeEnd, encodeOpen, encodePing } from '../../src/tls/wire.js';

const sessionId = Buffer.alloc(16, 7);

function frames(): Buffer {
  const payload = Buffer.from('hello, stream');
  return Buffer.concat([
    encodeOpen({ sessionId, channels: 4, index: 2, codec: 1 }),
    encodeDataHeader(5, payload.length, 0, payload.length),
    payload,
    encodePing(),
    encodeEnd({ frames: 6, bytes: 2 ** 40 + 3, digest: 0xdeadbeef_01234567n }),
    encodeDone(2 ** 33),
    encodeAbort('boom'),
  ]);
}

describe('wire frames', () => {
  test('round-trip through the parser at every split point', () => {
    const bytes = frames();
    for (let split = 0; split <= bytes.length; split++) {
      const parser = new FrameParser();
      const out = [...parser.push(bytes.subarray(0, split)), ...parser.push(bytes.subarray(split))];
      expect(parser.pending).toBe(0);
      expect(out.map((f) => f.type)).toEqual([FrameType.OPEN, FrameType.DATA, FrameType.PING, FrameType.END, FrameType.DONE, FrameType.ABORT]);
      expect(out[0]).toMatchObject({ channels: 4, index: 2, codec: 1, version: PROTOCOL_VERSION });
      expect(Buffer.from((out[0] as { sessionId: Buffer }).sessionId).equals(sessionId)).toBe(true);
      expect(out[1]).toMatchObject({ seq: 5, rawLength: 13 });
      expect((out[1] as { payload: Buffer }).payload.toString()).toBe('hello, stream');
      expect(out[3]).toMatchObject({ frames: 6, bytes: 2 ** 40 + 3, digest: 0xdeadbeef_01234567n });
      expect(out[4]).toMatchObject({ bytes: 2 ** 33 });
      expect(out[5]).toMatchObject({ reason: 'boom' });
    }
  });

  test('a byte at a time', () => {
    const bytes = frames();
    const parser = new FrameParser();
    const out = [];
    for (let i = 0; i < bytes.length; i++) out.push(...parser.push(bytes.subarray(i, i + 1)));
    expect(out).toHaveLength(6);
  });

  test('large DATA frames cut at random: payloads intact, straddling ones in buffers of their own', () => {
    let seed = 12345;
    const random = (n: number): number => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    const payloads = [70_000, 1, 200_000, 65_536, 13].map((n, i) => Buffer.alloc(n, i + 1).fill(i + 7, n >> 1));
    const bytes = Buffer.concat(payloads.flatMap((p, seq) => [encodeDataHeader(seq, p.length, 0, p.length), p]));
    for (let round = 0; round < 50; round++) {
      const parser = new FrameParser();
      const out = [];
      for (let at = 0; at < bytes.length;) {
        const n = 1 + random(round % 2 === 0 ? 40_000 : 300);
        out.push(...parser.push(bytes.subarray(at, at + n)));
        at += n;
      }
      expect(parser.pending).toBe(0);
      expect(out.map((f) => (f as { seq: number }).seq)).toEqual([0, 1, 2, 3, 4]);
      out.forEach((frame, seq) => {
        const payload = (frame as { payload: Buffer }).payload;
        expect(payload.equals(payloads[seq]!)).toBe(true);
        // A payload is a slice of the chunk that held it whole, or else copied once into a
        // buffer of its own (always so when it is longer than any chunk).
        const owns = payload.byteOffset === 0 && payload.buffer.byteLength === payload.length;
        expect(owns || payload.buffer === bytes.buffer).toBe(true);
        if (payload.length > 40_000) expect(owns).toBe(true);
      });
    }
  });

  test('the pull reader gives the same frames for reads of any size, payloads read in place', () => {
    let seed = 99;
    const random = (n: number): number => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    const payload = Buffer.alloc(100_000, 3).fill(9, 50_000);
    const bytes = Buffer.concat([frames(), encodeDataHeader(6, payload.length, 0, payload.length), payload, encodeDataHeader(7, 0, 0, 0), encodePing()]);
    for (const maxRead of [1, 7, 4096, 1 << 20]) {
      const reader = new FrameReader();
      const out = [];
      for (let at = 0; at < bytes.length;) {
        const target = reader.target();
        const n = Math.min(target.length, bytes.length - at, 1 + random(maxRead));
        bytes.copy(target, 0, at, at + n);
        at += n;
        out.push(...reader.filled(n));
        if (at < bytes.length) expect(reader.target().length).toBeGreaterThan(0);
      }
      expect(reader.pending).toBe(0);
      expect(out.map((f) => f.type)).toEqual([FrameType.OPEN, FrameType.DATA, FrameType.PING, FrameType.END, FrameType.DONE, FrameType.ABORT, FrameType.DATA, FrameType.DATA, FrameType.PING]);
      expect(out[0]).toMatchObject({ channels: 4, index: 2, codec: 1, version: PROTOCOL_VERSION });
      expect((out[1] as { payload: Buffer }).payload.toString()).toBe('hello, stream');
      expect(out[3]).toMatchObject({ frames: 6, bytes: 2 ** 40 + 3, digest: 0xdeadbeef_01234567n });
      expect(out[5]).toMatchObject({ reason: 'boom' });
      const big = out[6] as { seq: number; payload: Buffer };
      expect(big.seq).toBe(6);
      expect(big.payload.equals(payload)).toBe(true);
      expect(big.payload.byteOffset === 0 && big.payload.buffer.byteLength === payload.length).toBe(true);
      expect(out[7]).toMatchObject({ seq: 7, rawLength: 0 });
    }
  });

  test('the pull reader refuses garbage and counts a cut frame as pending', () => {
    const feed = (bytes: Buffer): FrameReader => {
      const reader = new FrameReader();
      readAll(reader, bytes);
      return reader;
    };
    expect(() => feed(Buffer.from('GET / HTTP/1.1\r\n'))).toThrow(/out of range/);
    expect(() => feed(Buffer.alloc(16))).toThrow(/length 0/);
    expect(() => feed(Buffer.from([0, 0, 0, 1, 99]))).toThrow(/unknown frame type 99/);
    expect(() => feed(Buffer.from([0, 0, 0, 5, FrameType.DATA, 0, 0, 0, 0]))).toThrow(/DATA frame of 4 bytes/);
    const cut = encodeDataHeader(1, 1000, 0, 1000);
    expect(feed(Buffer.concat([cut, Buffer.alloc(10)])).pending).toBe(28);
  });

  test('garbage is refused, not buffered', () => {
    expect(() => new FrameParser().push(Buffer.from('GET / HTTP/1.1\r\n'))).toThrow(ProtocolError);
    expect(() => new FrameParser().push(Buffer.alloc(16))).toThrow(/length 0/);
    expect(() => new FrameParser().push(Buffer.from([0, 0, 0, 1, 99]))).toThrow(/unknown frame type 99/);
    expect(() => new FrameParser().push(Buffer.from([0, 0, 0, 2, FrameType.END, 0]))).toThrow(/END frame of 1 bytes/);
  });
});

describe('reorderer', () => {
  test('releases in order and holds the tail until flushed', () => {
    const written: string[] = [];
    const reorder = new Reorderer(3, (chunks) => written.push(...chunks.map(String)));
    expect(reorder.add(1, Buffer.from('bb'), 1)).toEqual([]);
    expect(reorder.add(0, Buffer.from('aa'), 0)).toEqual([0, 1]);
    expect(written).toEqual([]); // 4 bytes released, at least 3 held back
    expect(reorder.add(2, Buffer.from('cc'), 0)).toEqual([2]);
    expect(written).toEqual(['aa']);
    reorder.flush();
    expect(written.join('')).toBe('aabbcc');
    expect(reorder.bytes).toBe(6);
    expect(() => reorder.add(1, Buffer.from('x'), 0)).toThrow(/received twice/);
  });
});

describe('reorderer: buffers back once written', () => {
  test('onWritten gets each frame after write returned with it, never a held one', () => {
    const events: string[] = [];
    const reorder = new Reorderer(
      3,
      (chunks) => events.push(`write ${chunks.map(String).join(',')}`),
      () => {},
      (frame) => events.push(`done ${String(frame)}`),
    );
    reorder.add(1, Buffer.from('bb'), 1);
    reorder.add(0, Buffer.from('aa'), 0);
    reorder.add(2, Buffer.from('cc'), 0);
    reorder.add(3, Buffer.from('dd'), 0);
    expect(events).toEqual(['write aa', 'done aa', 'write bb', 'done bb']);
    // The held tail is written at the end, and nothing reuses it.
    reorder.flush();
    expect(events.slice(4)).toEqual(['write cc,dd']);
  });
});

describe('payload buffers from a pool', () => {
  test('a payload is read into a buffer of the allocator; one given back is used again', () => {
    const pool = new BufferPool(4);
    const payload = Buffer.alloc(100_000, 5);
    const bytes = Buffer.concat([encodeDataHeader(0, payload.length, 0, payload.length), payload]);
    const reader = new FrameReader(undefined, (n) => pool.take(n));
    const parser = new FrameParser(undefined, (n) => pool.take(n));
    const viaReader = readAll(reader, bytes);
    const viaParser = [...parser.push(bytes.subarray(0, 1000)), ...parser.push(bytes.subarray(1000))];
    for (const frame of [...viaReader, ...viaParser]) {
      const got = (frame as { payload: Buffer }).payload;
      expect(got.equals(payload)).toBe(true);
      expect(pool.owns(got)).toBe(true);
    }
    const first = (viaReader[0] as { payload: Buffer }).payload.buffer as ArrayBuffer;
    pool.give(first);
    expect(readAll(reader, bytes).map((f) => (f as { payload: Buffer }).payload.buffer)).toEqual([first]);
  });

  test('take() reuses a large enough buffer, keeps at most `keep`, drops detached ones', () => {
    const pool = new BufferPool(2);
    const a = pool.take(1000);
    const b = pool.take(2000);
    const c = pool.take(3000);
    expect([a, b, c].every((x) => x.byteOffset === 0 && pool.owns(x))).toBe(true);
    pool.give(a.buffer as ArrayBuffer);
    pool.give(b.buffer as ArrayBuffer);
    pool.give(c.buffer as ArrayBuffer); // over `keep`: the smallest (a's) is dropped
    // 1500 bytes fit b's 2000 (the smallest that fits); the view is exactly 1500 long.
    const d = pool.take(1500);
    expect(d.buffer).toBe(b.buffer);
    expect(d.length).toBe(1500);
    expect(pool.take(2500).buffer).toBe(c.buffer);
    expect(pool.take(500).buffer).not.toBe(a.buffer);
    // A transferred-away buffer reads as detached (length 0): dropped, it takes no place.
    const e = pool.take(100);
    structuredClone(e.buffer, { transfer: [e.buffer as ArrayBuffer] });
    pool.give(e.buffer as ArrayBuffer);
    pool.give(e.buffer as ArrayBuffer);
    const [x, y] = [pool.take(700), pool.take(800)];
    pool.give(x.buffer as ArrayBuffer);
    pool.give(y.buffer as ArrayBuffer);
    expect(pool.take(800).buffer).toBe(y.buffer);
    expect(pool.take(700).buffer).toBe(x.buffer);
    expect(pool.owns(Buffer.from('shared pool'))).toBe(false);
  });
});

function readAll(reader: FrameReader, bytes: Buffer): ReturnType<FrameReader['filled']> {
  const out = [];
  for (let at = 0; at < bytes.length;) {
    const target = reader.target();
    const n = Math.min(target.length, bytes.length - at);
    bytes.copy(target, 0, at, at + n);
    at += n;
    out.push(...reader.filled(n));
  }
  return out;
}

describe('session admission', () => {
  const open = { version: PROTOCOL_VERSION, sessionId, channels: 2, index: 0, codec: 0 };
  test('channel 0 opens, others join once, strangers are refused', () => {
    expect(admit(undefined, { ...open, index: 1 })).toEqual({ refuse: expect.stringMatching(/before channel 0/) });
    expect(admit(undefined, { ...open, version: 9 })).toEqual({ refuse: expect.stringMatching(/version 9/) });
    const first = admit(undefined, open);
    if (!('session' in first)) throw new Error('refused');
    const session = first.session;
    expect(admit(session, { ...open, sessionId: Buffer.alloc(16, 1), index: 1 })).toEqual({ refuse: expect.stringMatching(/unknown session/) });
    expect(admit(session, { ...open, index: 1, codec: 1 })).toEqual({ refuse: expect.stringMatching(/differ/) });
    expect(admit(session, { ...open, index: 2 })).toEqual({ refuse: expect.stringMatching(/outside/) });
    expect('session' in admit(session, { ...open, index: 1 })).toBe(true);
    expect(admit(session, { ...open, index: 1 })).toEqual({ refuse: expect.stringMatching(/already joined/) });
  });
});

describe('stream digest', () => {
  const digestOf = (...frames: string[]): bigint => {
    const digest = new StreamDigest();
    for (const frame of frames) digest.update(Buffer.from(frame));
    return digest.value;
  };

  test('covers every byte, the order of the frames and where they are cut', () => {
    const base = digestOf('abc', 'def', '');
    expect(digestOf('abc', 'def', '')).toBe(base);
    expect(digestOf('abd', 'def', '')).not.toBe(base);
    expect(digestOf('def', 'abc', '')).not.toBe(base);
    expect(digestOf('abcd', 'ef', '')).not.toBe(base);
    expect(digestOf('abc', 'def')).not.toBe(base);
    expect(formatDigest(base)).toMatch(/^[0-9a-f]{16}$/);
  });
});
