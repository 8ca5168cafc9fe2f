/**
 * The probe's parts that need no guest: where the zero-page sample reads, the link-probe lines
 * (hand-built), and the link burst over a real loopback control port, with a peer that sends
 * more than it announced shut out as a stray while the listener keeps serving. And the pieces
 * --verify-sample compares, with the detection probability it states.
 */
import { createConnection } from 'node:net';
import { describe, expect, test } from 'vitest';
import { sampleRanges } from '../../src/migrate/probe.js';
import { chooseSample, detectionProbability, SAMPLE_PIECE_BYTES } from '../../src/migrate/verify-sample.js';
import { linkProbeTimes, probeLink, VerdictListener } from '../../src/migrate/verdict-channel.js';
import { decodeVerdict, MAX_LINK_PROBE_BYTES, VerdictProtocolError } from '../../src/migrate/verdict-wire.js';

const MiB = 1024 * 1024;

describe('zero-page sample ranges', () => {
  const layout = [
    { idstr: 'pc.ram', guestPhysAddr: 0, offsetInBlock: 0, length: 640 * 1024 },
    { idstr: 'pc.ram', guestPhysAddr: 0x100000, offsetInBlock: 0x100000, length: 255 * MiB },
  ];

  test('a guest smaller than the sample is read whole', () => {
    expect(sampleRanges(layout, 512, MiB)).toEqual(layout);
  });

  test('slices are page-aligned, spread over all of RAM, inside their ranges, with matching block offsets', () => {
    const pieces = sampleRanges(layout, 16, MiB);
    expect(pieces).toHaveLength(16);
    expect(pieces[0]).toEqual({ idstr: 'pc.ram', guestPhysAddr: 0, offsetInBlock: 0, length: 640 * 1024 });
    for (const piece of pieces.slice(1)) {
      expect(piece.guestPhysAddr % 4096).toBe(0);
      expect(piece.guestPhysAddr).toBeGreaterThanOrEqual(0x100000);
      expect(piece.guestPhysAddr + piece.length).toBeLessThanOrEqual(0x100000 + 255 * MiB);
      expect(piece.offsetInBlock).toBe(piece.guestPhysAddr);
    }
    const last = pieces.at(-1)!;
    expect(last.guestPhysAddr).toBeGreaterThan(0x100000 + 230 * MiB);
  });
});

describe('link-probe lines', () => {
  test('hand-written probe and result lines decode to their fields', () => {
    expect(decodeVerdict('{"type":"link-probe","maxBytes":1048576}')).toEqual({ type: 'link-probe', maxBytes: 1048576 });
    expect(decodeVerdict('{"type":"link-probe-result","bytes":10,"ms":2.5}')).toEqual({ type: 'link-probe-result', bytes: 10, ms: 2.5 });
    expect(decodeVerdict('{"type":"link-probe-result","bytes":10,"ms":2.5,"steadyBytes":4,"steadyMs":1.25}')).toEqual({
      type: 'link-probe-result',
      bytes: 10,
      ms: 2.5,
      steadyBytes: 4,
      steadyMs: 1.25,
    });
  });

  test("the destination times the probe's second half apart from the whole", () => {
    // A token bucket lets 1 MB through at once, then 1 MB per 100 ms.
    const arrivals = [{ at: 0, bytes: 1e6 }, ...Array.from({ length: 10 }, (_, i) => ({ at: 100 * (i + 1), bytes: 1e6 * (i + 2) }))];
    expect(linkProbeTimes(arrivals)).toEqual({ bytes: 11e6, ms: 1000, steadyBytes: 5e6, steadyMs: 500 });
    expect(linkProbeTimes([])).toEqual({ bytes: 0, ms: 0, steadyBytes: 0, steadyMs: 0 });
    expect(linkProbeTimes([{ at: 5, bytes: 7 }])).toEqual({ bytes: 7, ms: 0, steadyBytes: 0, steadyMs: 0 });
  });

  test.each([
    ['an absurd announcement', JSON.stringify({ type: 'link-probe', maxBytes: MAX_LINK_PROBE_BYTES + 1 }), /announce/],
    ['a negative announcement', JSON.stringify({ type: 'link-probe', maxBytes: -1 }), /announce/],
    ['a result without time', JSON.stringify({ type: 'link-probe-result', bytes: 1 }), /time/],
    ['a second half larger than the whole', JSON.stringify({ type: 'link-probe-result', bytes: 1, ms: 1, steadyBytes: 2, steadyMs: 1 }), /second half/],
    ['a second half without its time', JSON.stringify({ type: 'link-probe-result', bytes: 1, ms: 1, steadyBytes: 1 }), /second half/],
  ])('%s is a VerdictProtocolError', (_name, line, pattern) => {
    expect(() => decodeVerdict(line)).toThrow(VerdictProtocolError);
    expect(() => decodeVerdict(line)).toThrow(pattern);
  });
});

describe('link probe over loopback', () => {
  test('two connections burst for ~300 ms; the destination counts every byte; a peer sending more than announced is a stray', async () => {
    const strays: string[] = [];
    const listener = await VerdictListener.listen({ host: '127.0.0.1', port: 0, tls: null, onStray: (_peer, reason) => strays.push(reason) });
    try {
      const greedy = createConnection({ host: '127.0.0.1', port: listener.port });
      const closed = new Promise((resolve) => greedy.on('close', resolve));
      greedy.on('error', () => undefined);
      greedy.write('{"type":"link-probe","maxBytes":1000}\n');
      greedy.write(Buffer.alloc(5000));
      await closed;
      expect(strays).toEqual(['link probe: sent more than the 1000 bytes it announced']);

      const rate = await probeLink({ host: '127.0.0.1', port: listener.port, tls: null, connections: 2, durationMs: 300, maxBytes: 64 * MiB, timeoutMs: 5000 });
      expect(rate.connections).toBe(2);
      expect(rate.bytes).toBeGreaterThan(0);
      expect(rate.bytes).toBeLessThanOrEqual(64 * MiB);
      expect(rate.ms).toBeGreaterThan(0);
      // Loopback's tail: the last piece's flight and the answer, well under the probe.
      expect(rate.tailMs).toBeGreaterThanOrEqual(0);
      expect(rate.tailMs).toBeLessThan(300);
      // The second half's rate: within a factor of the whole probe's on loopback.
      expect(rate.bytesPerSecond).toBeGreaterThan((rate.bytes * 1000) / rate.ms / 4);
      expect(rate.bytesPerSecond).toBeLessThan(((rate.bytes * 1000) / rate.ms) * 4);
    } finally {
      listener.close();
    }
  });

  test('a control port nobody listens on is a clear error after the timeout', async () => {
    const listener = await VerdictListener.listen({ host: '127.0.0.1', port: 0, tls: null });
    const port = listener.port;
    listener.close();
    await expect(probeLink({ host: '127.0.0.1', port, tls: null, connections: 1, durationMs: 100, maxBytes: MiB, timeoutMs: 300 })).rejects.toThrow(/cannot reach the destination's control port/);
  });
});

describe('sampled verification (--verify-sample)', () => {
  const layout = [
    { idstr: 'pc.ram', guestPhysAddr: 0, offsetInBlock: 0, length: 640 * 1024 },
    { idstr: 'pc.ram', guestPhysAddr: 0x100000, offsetInBlock: 0x100000, length: 255 * MiB },
    { idstr: 'mem1', guestPhysAddr: 0x100000000, offsetInBlock: 0, length: 64 * MiB },
  ];
  // A fixed linear congruential sequence: the draw is the caller's, so tests are repeatable.
  const seeded = (seed: number) => () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;

  test('pieces cover the asked share, in dump order, inside their ranges, at most 1 MiB each, no piece twice', () => {
    const pieces = chooseSample(layout, 0.1, seeded(7));
    const total = layout.reduce((a, r) => a + r.length, 0);
    const bytes = pieces.reduce((a, p) => a + p.length, 0);
    expect(bytes / total).toBeGreaterThan(0.09);
    expect(bytes / total).toBeLessThan(0.11);
    let dumpOffset = 0;
    const seen = new Set<string>();
    for (const piece of pieces) {
      expect(piece.dumpOffset).toBe(dumpOffset);
      dumpOffset += piece.length;
      expect(piece.length).toBeLessThanOrEqual(SAMPLE_PIECE_BYTES);
      const range = layout.find((r) => r.idstr === piece.idstr && piece.guestPhysAddr >= r.guestPhysAddr && piece.guestPhysAddr + piece.length <= r.guestPhysAddr + r.length)!;
      expect(range).toBeDefined();
      expect(piece.offsetInBlock - range.offsetInBlock).toBe(piece.guestPhysAddr - range.guestPhysAddr);
      expect(seen.has(`${piece.idstr}@${piece.guestPhysAddr}`)).toBe(false);
      seen.add(`${piece.idstr}@${piece.guestPhysAddr}`);
    }
    const order = pieces.map((p) => layout.findIndex((r) => r.idstr === p.idstr && p.guestPhysAddr >= r.guestPhysAddr) * 2 ** 40 + p.guestPhysAddr);
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });

  test('the whole layout at 100 %; one piece at the least; nonsense shares refused', () => {
    expect(chooseSample(layout, 1, seeded(1)).reduce((a, p) => a + p.length, 0)).toBe(layout.reduce((a, r) => a + r.length, 0));
    expect(chooseSample(layout, 1e-9, seeded(1))).toHaveLength(1);
    expect(() => chooseSample(layout, 0)).toThrow(/fraction/);
    expect(() => chooseSample(layout, 1.5)).toThrow(/fraction/);
  });

  test('detection probability: one page at the sampled share; the 21 scattered pages 7.2 lost at 10 %', () => {
    expect(detectionProbability(0.1, 1)).toBeCloseTo(0.1, 10);
    expect(detectionProbability(0.1, 21)).toBeCloseTo(1 - 0.9 ** 21, 10);
    expect(detectionProbability(0.1, 21)).toBeGreaterThan(0.88);
    expect(detectionProbability(1, 1)).toBe(1);
  });

  test('over many draws, a given page is in the sample about as often as the share says', () => {
    const random = seeded(42);
    let hits = 0;
    const draws = 2000;
    const page = 0x100000 + 100 * MiB + 4096 * 17;
    for (let i = 0; i < draws; i++) {
      if (chooseSample(layout, 0.1, random).some((p) => page >= p.guestPhysAddr && page < p.guestPhysAddr + p.length && p.idstr === 'pc.ram')) hits++;
    }
    expect(hits / draws).toBeGreaterThan(0.08);
    expect(hits / draws).toBeLessThan(0.12);
  });
});
