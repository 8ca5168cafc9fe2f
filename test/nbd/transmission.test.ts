/**
 * The transmission phase on hand-built replies (test/helpers/nbd-bytes.ts): requests byte for
 * byte, every reply kind, interleaved replies at every split point, and every way a server
 * can break a reply, each a typed error that names the peer and the request, raised before a
 * hostile length is allocated.
 */
import { describe, expect, test } from 'vitest';
import { NbdCommandError, NbdProtocolError } from '../../src/nbd/errors.js';
import { Transmission, type Completion, type RequestSpec } from '../../src/nbd/transmission.js';
import * as B from '../helpers/nbd-bytes.js';

const PEER = 'unix:/t.sock export ""';
const CONTEXTS = new Map([
  ['base:allocation', 3],
  ['qemu:dirty-bitmap:b0', 4],
]);

function machine(structuredReplies = true, contexts = CONTEXTS): Transmission {
  return new Transmission({ peer: PEER, structuredReplies, contexts });
}

/** Feeds `bytes` cut at `cuts`; every completion in order. */
function feed(t: Transmission, bytes: Buffer, cuts: number[] = []): Completion[] {
  const out: Completion[] = [];
  let from = 0;
  for (const to of [...cuts, bytes.length]) {
    out.push(...t.receive(bytes.subarray(from, to)));
    from = to;
  }
  return out;
}

const pattern = (length: number, seed: number): Buffer => Buffer.from(Array.from({ length }, (_, i) => (i * 7 + seed) & 0xff));

describe('requests', () => {
  test('handles count from 1; each request is its header, byte for byte', () => {
    const t = machine();
    const specs: RequestSpec[] = [
      { type: B.CMD.READ, offset: 4096, length: 512 },
      { type: B.CMD.WRITE, offset: 0, length: 8, flags: 1 },
      { type: B.CMD.BLOCK_STATUS, offset: 0, length: 1 << 20 },
      { type: B.CMD.FLUSH, offset: 0, length: 0 },
    ];
    specs.forEach((spec, i) => {
      const { handle, header } = t.request(spec);
      expect(handle).toBe(BigInt(i + 1));
      expect(header).toEqual(B.request(spec.flags ?? 0, spec.type, i + 1, spec.offset, spec.length));
    });
    expect(t.inFlight).toBe(4);
    // DISC has no reply: it is not held in flight.
    t.request({ type: B.CMD.DISC, offset: 0, length: 0 });
    expect(t.inFlight).toBe(4);
  });
});

describe('replies', () => {
  test('simple replies: a WRITE done, a FLUSH failed with ENOSPC and no payload', () => {
    const t = machine();
    t.request({ type: B.CMD.WRITE, offset: 0, length: 4096 });
    t.request({ type: B.CMD.FLUSH, offset: 0, length: 0 });
    const done = feed(t, Buffer.concat([B.simpleReply(28, 2), B.simpleReply(0, 1)]));
    expect(done.map((c) => [c.handle, c.ok])).toEqual([
      [2n, false],
      [1n, true],
    ]);
    const failed = done[0] as Completion & { ok: false };
    expect(failed.error).toBeInstanceOf(NbdCommandError);
    expect(failed.error).toMatchObject({ errno: 28, errnoName: 'ENOSPC', request: { command: 'FLUSH', offset: 0, length: 0 } });
    expect(failed.error.message).toBe('nbd unix:/t.sock export "": FLUSH offset 0x0 length 0: the server failed the request with ENOSPC');
  });

  test('without structured replies a READ is a simple reply and its data', () => {
    const t = machine(false, new Map());
    t.request({ type: B.CMD.READ, offset: 512, length: 1000 });
    const data = pattern(1000, 1);
    const done = feed(t, B.simpleReply(0, 1, data));
    expect(done).toHaveLength(1);
    expect((done[0] as { data: Buffer }).data).toEqual(data);
  });

  test("a structured READ from data and hole chunks in any order, into the caller's buffer", () => {
    const t = machine();
    const into = Buffer.alloc(12288, 0xee);
    t.request({ type: B.CMD.READ, offset: 8192, length: 12288, into });
    const tail = pattern(4096, 5);
    const head = pattern(4096, 9);
    const done = feed(t, Buffer.concat([B.offsetData(1, 16384, tail), B.offsetHole(1, 12288, 4096), B.offsetData(1, 8192, head), B.none(1)]));
    expect(done).toHaveLength(1);
    const data = (done[0] as { data: Buffer }).data;
    expect(data).toBe(into);
    expect(data).toEqual(Buffer.concat([head, Buffer.alloc(4096), tail]));
  });

  test("directTarget: READ data goes straight into the READ's buffer once nothing is queued ahead of it, structured and simple", () => {
    const t = machine();
    const into = Buffer.alloc(65536, 0xee);
    t.request({ type: B.CMD.READ, offset: 0, length: 65536, into });
    const data = pattern(65536, 3);
    const reply = Buffer.concat([B.offsetData(1, 0, data), B.none(1)]);
    // Nothing is being received yet: no target.
    expect(t.directTarget(1)).toBeUndefined();
    // The chunk header, its offset and 1000 data bytes come through receive(); the rest is direct.
    const dataStart = reply.length - B.none(1).length - data.length;
    expect(t.receive(reply.subarray(0, dataStart + 1000))).toEqual([]);
    expect(t.directTarget(65536 - 1000 + 1)).toBeUndefined();
    const target = t.directTarget(16384)!;
    expect(target.buffer).toBe(into.buffer);
    expect([target.byteOffset - into.byteOffset, target.length]).toEqual([1000, 64536]);
    data.copy(target, 0, 1000, 41000);
    expect(t.receivedDirect(40000)).toEqual([]);
    const rest = t.directTarget(1)!;
    expect(rest.length).toBe(24536);
    data.copy(rest, 0, 41000);
    expect(t.receivedDirect(24536)).toEqual([]);
    // The data is whole; NONE completes the READ.
    expect(t.directTarget(1)).toBeUndefined();
    const done = t.receive(B.none(1));
    expect(done).toHaveLength(1);
    expect((done[0] as { data: Buffer }).data).toEqual(data);

    // A simple reply's data the same way; bytes queued ahead of the data mean no target.
    const simple = machine(false, new Map());
    simple.request({ type: B.CMD.READ, offset: 0, length: 20000 });
    const payload = pattern(20000, 4);
    const bytes = B.simpleReply(0, 1, payload);
    const headerLength = bytes.length - payload.length;
    simple.receive(bytes.subarray(0, headerLength));
    const direct = simple.directTarget(16384)!;
    expect(direct.length).toBe(20000);
    payload.copy(direct);
    const finished = simple.receivedDirect(20000);
    expect(finished).toHaveLength(1);
    expect((finished[0] as { data: Buffer }).data).toEqual(payload);
    // A receivedDirect that no target asked for is a bug of the caller, not a server's breach.
    expect(() => simple.receivedDirect(1)).toThrow(RangeError);
  });

  test('a content chunk may carry DONE itself', () => {
    const t = machine();
    t.request({ type: B.CMD.READ, offset: 0, length: 4 });
    const done = feed(t, B.offsetData(1, 0, Buffer.from('abcd'), true));
    expect((done[0] as { data: Buffer }).data.toString()).toBe('abcd');
  });

  test('BLOCK_STATUS: one chunk per context, extents from the request offset on', () => {
    const t = machine();
    t.request({ type: B.CMD.BLOCK_STATUS, offset: 65536, length: 262144 });
    const done = feed(
      t,
      Buffer.concat([
        B.blockStatus(1, 4, [
          [65536, 0],
          [131072, 1],
        ]),
        B.blockStatus(
          1,
          3,
          [
            [4096, 0],
            [258048, 3],
          ],
          true,
        ),
      ]),
    );
    const extents = (done[0] as Completion & { ok: true }).extents!;
    expect(extents.get(3)).toEqual([
      { offset: 65536, length: 4096, flags: 0 },
      { offset: 69632, length: 258048, flags: 3 },
    ]);
    expect(extents.get(4)).toEqual([
      { offset: 65536, length: 65536, flags: 0 },
      { offset: 131072, length: 131072, flags: 1 },
    ]);
  });

  test('BLOCK_STATUS: the final extent may run past the request (later proto.md); it is clamped', () => {
    const t = machine(true, new Map([['base:allocation', 1]]));
    t.request({ type: B.CMD.BLOCK_STATUS, offset: 0, length: 8192 });
    const done = feed(
      t,
      B.blockStatus(
        1,
        1,
        [
          [4096, 0],
          [1 << 30, 3],
        ],
        true,
      ),
    );
    expect((done[0] as Completion & { ok: true }).extents!.get(1)).toEqual([
      { offset: 0, length: 4096, flags: 0 },
      { offset: 4096, length: 4096, flags: 3 },
    ]);
  });

  test('error chunks fail the request with the first error and its message; the connection goes on', () => {
    const t = machine();
    t.request({ type: B.CMD.READ, offset: 0, length: 8192 });
    t.request({ type: B.CMD.WRITE, offset: 0, length: 512 });
    const done = feed(t, Buffer.concat([B.offsetData(1, 0, pattern(4096, 0)), B.errorOffset(1, 5, 'bad sector', 4096, false), B.errorChunk(1, 22, 'later', true), B.errorChunk(2, 1, '', true)]));
    expect(done.map((c) => c.ok)).toEqual([false, false]);
    const [read, write] = done as (Completion & { ok: false })[];
    expect(read!.error).toMatchObject({ errno: 5, errnoName: 'EIO', serverMessage: 'bad sector (at offset 0x1000)' });
    expect(read!.error.message).toContain('READ offset 0x0 length 8192');
    expect(write!.error).toMatchObject({ errno: 1, errnoName: 'EPERM' });
    expect(t.inFlight).toBe(0);
  });

  test('an error type this client does not know (bit 15) still fails only its request', () => {
    const t = machine();
    t.request({ type: B.CMD.FLUSH, offset: 0, length: 0 });
    const payload = Buffer.concat([B.u32(5), B.u16(2), Buffer.from('hi'), Buffer.alloc(4)]);
    const done = feed(t, B.chunk(B.FLAG_DONE, 0x8000 + 77, 1, payload));
    expect((done[0] as Completion & { ok: false }).error).toMatchObject({ errno: 5, serverMessage: 'hi' });
  });

  test('errors outside the NBD set are told by number', () => {
    const t = machine();
    t.request({ type: B.CMD.FLUSH, offset: 0, length: 0 });
    const done = feed(t, B.simpleReply(99, 1));
    expect((done[0] as Completion & { ok: false }).error.errnoName).toBe('errno 99');
  });
});

describe('interleaved replies at every split point', () => {
  const t0 = (): Transmission => {
    const t = machine();
    t.request({ type: B.CMD.READ, offset: 0, length: 600 });
    t.request({ type: B.CMD.WRITE, offset: 0, length: 16 });
    t.request({ type: B.CMD.BLOCK_STATUS, offset: 0, length: 1 << 16 });
    t.request({ type: B.CMD.READ, offset: 4096, length: 100 });
    return t;
  };
  const transcript = Buffer.concat([
    B.offsetData(1, 300, pattern(300, 3)),
    B.simpleReply(0, 2),
    B.blockStatus(3, 3, [[1 << 16, 2]]),
    B.offsetData(4, 4096, pattern(100, 4), true),
    B.offsetHole(1, 0, 300),
    B.blockStatus(3, 4, [[1 << 16, 1]], true),
    B.errorChunk(1, 5, 'x', false),
    B.none(1),
  ]);
  const summary = (done: Completion[]): unknown => done.map((c) => (c.ok ? { h: c.handle, data: c.data?.toString('hex'), extents: c.extents && [...c.extents] } : { h: c.handle, error: c.error.message }));

  test('one piece, two pieces at every cut, and byte by byte all agree', () => {
    const whole = summary(feed(t0(), transcript));
    expect(whole).toEqual([
      { h: 2n, data: undefined, extents: undefined },
      { h: 4n, data: pattern(100, 4).toString('hex'), extents: undefined },
      {
        h: 3n,
        data: undefined,
        extents: [
          [3, [{ offset: 0, length: 65536, flags: 2 }]],
          [4, [{ offset: 0, length: 65536, flags: 1 }]],
        ],
      },
      { h: 1n, error: 'nbd unix:/t.sock export "": READ offset 0x0 length 600: the server failed the request with EIO: "x"' },
    ]);
    for (let cut = 0; cut <= transcript.length; cut++) expect(summary(feed(t0(), transcript, [cut])), `cut at ${cut}`).toEqual(whole);
    expect(
      summary(
        feed(
          t0(),
          transcript,
          Array.from({ length: transcript.length }, (_, i) => i),
        ),
      ),
    ).toEqual(whole);
  });

  test('lent chunks: one buffer refilled for every piece (as the socket does) gives the same, at every piece size', () => {
    const whole = summary(feed(t0(), transcript));
    for (const size of [1, 3, 7, 20, 64, 333, transcript.length]) {
      const t = t0();
      const lent = Buffer.alloc(size);
      const done: Completion[] = [];
      for (let at = 0; at < transcript.length; at += size) {
        const n = transcript.copy(lent, 0, at, at + size);
        done.push(...t.receive(lent.subarray(0, n), true));
        lent.fill(0xa5); // the owner reuses it
      }
      expect(summary(done), `pieces of ${size}`).toEqual(whole);
    }
  });
});

describe('a hostile server', () => {
  type Setup = (t: Transmission) => void;
  const read =
    (offset: number, length: number): Setup =>
    (t) =>
      void t.request({ type: B.CMD.READ, offset, length });
  const status =
    (offset: number, length: number): Setup =>
    (t) =>
      void t.request({ type: B.CMD.BLOCK_STATUS, offset, length });
  const write: Setup = (t) => void t.request({ type: B.CMD.WRITE, offset: 0, length: 512 });

  const cases: [string, Setup, Buffer, RegExp][] = [
    ['a reply magic that is neither', read(0, 512), Buffer.from('deadbeef00000000000000000000000000000000', 'hex'), /reply magic 0xdeadbeef/],
    ['a reply for a handle not in flight', read(0, 512), B.simpleReply(0, 99), /handle 0x63, which no request in flight has/],
    ['a reply for a request already answered', write, Buffer.concat([B.simpleReply(0, 1), B.simpleReply(0, 1)]), /handle 0x1, which no request/],
    ['a simple reply to a READ once structured', read(0, 512), B.simpleReply(0, 1, Buffer.alloc(512)), /READ offset 0x0 length 512: a simple reply to a READ after structured/],
    ['a successful simple reply to BLOCK_STATUS', status(0, 512), B.simpleReply(0, 1), /need a structured reply/],
    ['OFFSET_DATA longer than asked', read(0, 512), B.chunk(0, B.CHUNK.OFFSET_DATA, 1, Buffer.alloc(8), 8 + 513), /OFFSET_DATA chunk of 521 bytes: longer than the 512 bytes asked/],
    ['OFFSET_DATA of 4 GiB', read(0, 512), B.chunk(0, B.CHUNK.OFFSET_DATA, 1, Buffer.alloc(0), 0xffff_ffff), /longer than the 512 bytes asked/],
    ['OFFSET_DATA before the request', read(4096, 512), B.offsetData(1, 4095, Buffer.alloc(1)), /OFFSET_DATA of 1 bytes at 0xfff lies outside the request/],
    ['OFFSET_DATA past the request', read(4096, 512), B.offsetData(1, 4096 + 500, Buffer.alloc(20)), /lies outside the request/],
    ['OFFSET_DATA at an offset past 2^53', read(0, 512), B.chunk(0, 1, 1, Buffer.concat([B.u64(2n ** 63n), Buffer.alloc(1)])), /past 2\^53/],
    ['OFFSET_DATA of no data', read(0, 512), B.chunk(0, B.CHUNK.OFFSET_DATA, 1, B.u64(0)), /at least 9 bytes/],
    ['overlapping data chunks', read(0, 512), Buffer.concat([B.offsetData(1, 0, Buffer.alloc(256)), B.offsetData(1, 255, Buffer.alloc(2))]), /overlaps an earlier chunk/],
    ['a hole over data', read(0, 512), Buffer.concat([B.offsetData(1, 100, Buffer.alloc(10)), B.offsetHole(1, 0, 512)]), /OFFSET_HOLE of 512 bytes at 0x0 overlaps/],
    ['a hole outside the request', read(0, 512), B.offsetHole(1, 0, 513), /OFFSET_HOLE of 513 bytes at 0x0 lies outside/],
    ['a hole of 0 bytes', read(0, 512), B.offsetHole(1, 0, 0), /OFFSET_HOLE of 0 bytes/],
    ['a hole of the wrong size', read(0, 512), B.chunk(0, B.CHUNK.OFFSET_HOLE, 1, Buffer.alloc(16)), /OFFSET_HOLE is 12 bytes/],
    ['success with half the data', read(0, 512), Buffer.concat([B.offsetData(1, 0, Buffer.alloc(256)), B.none(1)]), /ended with 256 of 512 bytes/],
    ['data in reply to a WRITE', write, B.offsetData(1, 0, Buffer.alloc(1)), /not a reply to WRITE/],
    ['extents in reply to a READ', read(0, 512), B.blockStatus(1, 3, [[512, 0]]), /not a reply to READ/],
    ['NONE with a payload', write, B.chunk(1, 0, 1, Buffer.alloc(1)), /NONE carries no payload/],
    ['NONE without DONE', write, B.chunk(0, 0, 1), /NONE without the DONE flag/],
    ['a chunk type no one knows', write, B.chunk(1, 42, 1, Buffer.alloc(4)), /type 0x2a chunk of 4 bytes: a chunk type this client does not know/],
    ['an extent of length 0', status(0, 8192), B.blockStatus(1, 3, [[0, 0]]), /extent 0 at 0x0 has length 0: it does not advance/],
    [
      'an extent past the request',
      status(0, 8192),
      B.blockStatus(1, 3, [
        [8192, 0],
        [4096, 0],
      ]),
      /extent 1 starts at 0x2000, past the request's end 0x2000/,
    ],
    [
      'an extent not last that runs past the request',
      status(0, 8192),
      B.blockStatus(1, 3, [
        [16384, 0],
        [4096, 0],
      ]),
      /extent 0 of 16384 bytes at 0x0 runs past/,
    ],
    ['extents for a context not selected', status(0, 8192), B.blockStatus(1, 9, [[4096, 0]]), /meta context id 9, which was not selected/],
    ['extents for one context twice', status(0, 8192), Buffer.concat([B.blockStatus(1, 3, [[4096, 0]]), B.blockStatus(1, 3, [[4096, 0]])]), /id 3 twice/],
    ['a reply without a selected context', status(0, 8192), B.blockStatus(1, 3, [[4096, 0]], true), /without extents for meta context "qemu:dirty-bitmap:b0"/],
    ['BLOCK_STATUS without an extent', status(0, 8192), B.chunk(0, 5, 1, B.u32(3)), /at least one/],
    ['BLOCK_STATUS with a broken extent', status(0, 8192), B.chunk(0, 5, 1, Buffer.alloc(4 + 12)), /whole 8-byte extents/],
    ['BLOCK_STATUS past the bound', status(0, 8192), B.chunk(0, 5, 1, Buffer.alloc(0), 4 + 8 * (1 << 21)), /past the bound/],
    ['an error chunk saying 0', write, B.errorChunk(1, 0, 'fine'), /ERROR chunk with error 0/],
    ['an error message longer than its chunk', write, B.chunk(1, B.CHUNK.ERROR, 1, Buffer.concat([B.u32(5), B.u16(100), Buffer.from('short')])), /a message of 100 bytes in 5/],
    ['an error chunk too short', write, B.chunk(1, B.CHUNK.ERROR, 1, B.u32(5)), /too short for an error chunk/],
    ['an error chunk past the bound', write, B.chunk(1, B.CHUNK.ERROR, 1, Buffer.alloc(0), 1 << 20), /past the bound/],
    ['ERROR_OFFSET outside the request', read(0, 512), B.errorOffset(1, 5, '', 512), /ERROR_OFFSET at 0x200 lies outside the request/],
  ];

  test.each(cases)('%s', (_name, setup, bytes, message) => {
    const t = machine();
    setup(t);
    let caught: unknown;
    try {
      feed(t, bytes);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(NbdProtocolError);
    expect((caught as Error).message).toMatch(message);
    expect((caught as NbdProtocolError).peer).toBe(PEER);
  });

  test('a structured chunk when structured replies were not negotiated', () => {
    const t = machine(false, new Map());
    t.request({ type: B.CMD.FLUSH, offset: 0, length: 0 });
    expect(() => t.receive(B.none(1))).toThrow(/structured replies were not negotiated/);
  });

  test('a hostile length is refused from its header alone, before any payload arrives', () => {
    const t = machine();
    t.request({ type: B.CMD.BLOCK_STATUS, offset: 0, length: 4096 });
    const header = B.chunk(0, 5, 1, Buffer.alloc(0), 0xffff_fff4);
    expect(() => t.receive(header)).toThrow(NbdProtocolError);
  });

  test('a READ split into more pieces than any server needs', () => {
    const t = machine();
    const length = 2 * 65537;
    t.request({ type: B.CMD.READ, offset: 0, length });
    // Every other byte: no two pieces merge.
    const pieces = Array.from({ length: 65537 }, (_, i) => B.offsetData(1, 2 * i, Buffer.alloc(1)));
    expect(() => feed(t, Buffer.concat(pieces))).toThrow(/more than 65536 pieces/);
  });
});
