/**
 * The probe's parts that need no guest: where the zero-page sample reads, the link-probe lines
 * (hand-built), and the link burst over a real loopback control port, with a peer that sends
 * more than it announced shut out as a stray while the listener keeps serving.
 */
import { createConnection } from 'node:net';
import { describe, expect, test } from 'vitest';
import { sampleRanges } from '../../src/migrate/probe.js';
import { probeLink, VerdictListener } from '../../src/migrate/verdict-channel.js';
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
  });

  test.each([
    ['an absurd announcement', JSON.stringify({ type: 'link-probe', maxBytes: MAX_LINK_PROBE_BYTES + 1 }), /announce/],
    ['a negative announcement', JSON.stringify({ type: 'link-probe', maxBytes: -1 }), /announce/],
    ['a result without time', JSON.stringify({ type: 'link-probe-result', bytes: 1 }), /time/],
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
      expect(rate.bytesPerSecond).toBeCloseTo((rate.bytes * 1000) / rate.ms, 0);
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
