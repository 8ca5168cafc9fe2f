/**
 * The tunnel's frames (protocol version 3) against the independent builder written from
 * docs/tunnel.md, the doc's example bytes, both directions, every split point, and hostile
 * frames.
 */
import { describe, expect, test } from 'vitest';
import { ProtocolError } from '../../src/tls/errors.js';
import { FrameParser, encodeAbort, encodeOpen, encodePing } from '../../src/tls/wire.js';
import { classifyConnection } from '../../src/tunnel/classify.js';
import { TUNNEL_PROTOCOL_VERSION, TunnelFrameType, decodeTunnelFrame, encodeStream, encodeStreamDataHeader, encodeStreamEnd, encodeStreamReset, encodeWindow, type TunnelFrame } from '../../src/tunnel/wire.js';
import * as W from '../helpers/transport-frame-builder.js';

const parser = (): FrameParser<TunnelFrame> => new FrameParser<TunnelFrame>(0, undefined, decodeTunnelFrame);
const hex = (text: string): Buffer => Buffer.from(text.replace(/\s/g, ''), 'hex');

describe('tunnel frames', () => {
  test("docs/tunnel.md's example bytes are what the builder and the encoders write", () => {
    const examples: [Buffer, Buffer, Buffer][] = [
      [hex('00000017 09 00000001 2f72756e2f6d69672f71656d752e736f636b'), W.stream(1, '/run/mig/qemu.sock'), encodeStream(1, '/run/mig/qemu.sock')],
      [hex('0000000f 0d 00000001 00 00000005 68656c6c6f'), W.streamData(1, Buffer.from('hello')), Buffer.concat([encodeStreamDataHeader(1, 0, 5, 5), Buffer.from('hello')])],
      [hex('0000000d 0a 00000001 0000000000000005'), W.streamEnd(1, 5), encodeStreamEnd(1, 5)],
      [hex('00000009 0b 00000001 6e6f7065'), W.streamReset(1, 'nope'), encodeStreamReset(1, 'nope')],
      [hex('00000009 0c 00000001 00100000'), W.windowGrant(1, 1 << 20), encodeWindow(1, 1 << 20)],
    ];
    for (const [doc, built, encoded] of examples) {
      expect(built.toString('hex')).toBe(doc.toString('hex'));
      expect(encoded.toString('hex')).toBe(doc.toString('hex'));
    }
    expect(W.TunnelType).toEqual({
      STREAM: TunnelFrameType.STREAM,
      STREAM_END: TunnelFrameType.STREAM_END,
      STREAM_RESET: TunnelFrameType.STREAM_RESET,
      WINDOW: TunnelFrameType.WINDOW,
      STREAM_DATA: TunnelFrameType.STREAM_DATA,
    });
    expect(W.open({ sessionId: Buffer.alloc(16, 7), channels: 2, index: 1, codec: 0, version: W.TUNNEL_VERSION }).toString('hex')).toBe(
      encodeOpen({ version: TUNNEL_PROTOCOL_VERSION, sessionId: Buffer.alloc(16, 7), channels: 2, index: 1, codec: 0 }).toString('hex'),
    );
  });

  test('a run of builder frames parses to the same frames at every split point', () => {
    const payload = Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff));
    const bytes = Buffer.concat([
      W.open({ sessionId: Buffer.alloc(16, 1), channels: 3, index: 0, codec: 0, version: 3 }),
      W.stream(7, '/tmp/ünïcode.sock'),
      W.streamData(7, payload),
      W.streamData(7, Buffer.alloc(0)),
      W.windowGrant(7, 4096),
      W.streamEnd(7, 300n),
      W.streamReset(8, 'ECONNREFUSED'),
      W.ping(),
      W.abort('boom'),
    ]);
    const expected = [
      { type: 1, version: 3, channels: 3, index: 0 },
      { type: 9, stream: 7, target: '/tmp/ünïcode.sock' },
      { type: 13, stream: 7, codec: 0, rawLength: 300 },
      { type: 13, stream: 7, codec: 0, rawLength: 0 },
      { type: 12, stream: 7, bytes: 4096 },
      { type: 10, stream: 7, bytes: 300 },
      { type: 11, stream: 8, reason: 'ECONNREFUSED' },
      { type: 8 },
      { type: 7, reason: 'boom' },
    ];
    for (let split = 0; split <= bytes.length; split += 7) {
      const p = parser();
      const frames = [...p.push(bytes.subarray(0, split)), ...p.push(bytes.subarray(split))];
      expect(frames).toHaveLength(expected.length);
      frames.forEach((frame, i) => expect(frame).toMatchObject(expected[i]!));
      expect((frames[2] as Extract<TunnelFrame, { type: 13 }>).payload.equals(payload)).toBe(true);
      expect(p.pending).toBe(0);
    }
  });

  test('hostile frames: a ProtocolError naming what is wrong, never a crash', () => {
    const cases: [Buffer, RegExp][] = [
      [W.frame(4, Buffer.alloc(13)), /type 4 belongs to protocol version 2/],
      [W.frame(5, Buffer.alloc(24)), /type 5 belongs to protocol version 2/],
      [W.frame(99), /unknown frame type 99/],
      [W.frame(9, Buffer.alloc(3)), /STREAM frame of 3 bytes, expected at least 4/],
      [W.frame(9, Buffer.alloc(4 + 1025)), /STREAM target of 1025 bytes/],
      [W.frame(10, Buffer.alloc(11)), /STREAM_END frame of 11 bytes, expected 12/],
      [W.frame(10, Buffer.concat([Buffer.alloc(4), Buffer.from('ffffffffffffffff', 'hex')])), /STREAM_END announces/],
      [W.frame(11, Buffer.alloc(2)), /STREAM_RESET frame of 2 bytes/],
      [W.frame(12, Buffer.alloc(9)), /WINDOW frame of 9 bytes, expected 8/],
      [W.frame(13, Buffer.alloc(8)), /STREAM_DATA frame of 8 bytes/],
      [W.streamData(1, Buffer.alloc(4), { rawLength: 0x7fffffff }), /announces 2147483647 raw bytes/],
      [W.frame(8, Buffer.alloc(1)), /PING frame of 1 bytes/],
      [Buffer.from('0000000009', 'hex'), /frame length 0 out of range/],
      [Buffer.from('ffffffff09', 'hex'), /frame length 4294967295 out of range/],
    ];
    for (const [bytes, message] of cases) {
      const p = parser();
      expect(() => p.push(bytes), message.source).toThrow(ProtocolError);
      expect(() => parser().push(bytes)).toThrow(message);
    }
  });

  test('the shared frames keep their version 2 encoding', () => {
    expect(parser().push(encodePing())).toEqual([{ type: 8 }]);
    expect(parser().push(encodeAbort('x'.repeat(5000)))[0]).toMatchObject({ type: 7, reason: 'x'.repeat(1000) });
    expect(encodeStreamReset(3, 'y'.repeat(5000)).length).toBe(5 + 4 + 1000);
  });
});

describe('classifyConnection', () => {
  const b = (text: string): Buffer => hex(text);
  test('QEMU main stream, multifd, libvirt RPC and NBD from either direction; null until it can tell', () => {
    expect(classifyConnection(b('5145564d 00000003'), Buffer.alloc(0))).toBe('qemu-main');
    expect(classifyConnection(b('11223344 00000001'), Buffer.alloc(0))).toBe('multifd');
    expect(classifyConnection(b('0000001c 20008086'), Buffer.alloc(0))).toBe('libvirt');
    expect(classifyConnection(Buffer.alloc(0), Buffer.from('NBDMAGICIHAVEOPT'))).toBe('nbd');
    expect(classifyConnection(Buffer.concat([b('00000003'), Buffer.from('IHAVEOPT')]), Buffer.alloc(0))).toBe('nbd');
    expect(classifyConnection(b('5145'), Buffer.alloc(0))).toBeNull();
    expect(classifyConnection(Buffer.alloc(0), Buffer.from('NBDMA'))).toBeNull();
    expect(classifyConnection(Buffer.from('GET / HTTP/1.1\r\n'), Buffer.alloc(0))).toBe('other');
    expect(classifyConnection(Buffer.alloc(0), Buffer.from('SSH-2.0-'))).toBe('other');
  });
});
