/**
 * The multifd channel reader (src/ram/multifd.ts) on channels built from QEMU's structs
 * (test/helpers/multifd-bytes.ts), at every split point; real channels are checked in
 * test/tunnel/qemu.test.ts, whose page counts must equal QEMU's own.
 */
import { describe, expect, test } from 'vitest';
import { MultifdChannelReader, type MultifdEvent, type MultifdPacket } from '../../src/ram/multifd.js';
import { multifdInit, multifdPacket } from '../helpers/multifd-bytes.js';

const page = (fill: number): Buffer => Buffer.alloc(4096, fill);

function readAll(bytes: Buffer, split: number[] = []): MultifdEvent[] {
  const reader = new MultifdChannelReader();
  const events: MultifdEvent[] = [];
  let from = 0;
  for (const at of [...split, bytes.length]) {
    events.push(...reader.push(bytes.subarray(from, at)));
    from = at;
  }
  expect(reader.pending).toBe(0);
  expect(reader.position).toBe(bytes.length);
  return events;
}

describe('MultifdChannelReader', () => {
  const channel = Buffer.concat([
    multifdInit(3),
    // QEMU 7.2's first SYNC: no pages, next_packet_size stale (it is not read without pages).
    multifdPacket({ flags: 1, nextPacketSize: 524288 }),
    multifdPacket({
      normal: [
        { offset: 0x1000, data: page(1) },
        { offset: 0x3000, data: page(2) },
      ],
      zeroOffsets: [0x2000],
      packetNum: 7n,
      ramblock: 'pc.ram',
    }),
    // QEMU 10.0's SYNC: pages_alloc 0, still a whole packet.
    multifdPacket({ flags: 1, pagesAlloc: 0, nextPacketSize: 0 }),
    multifdPacket({ zeroOffsets: [0, 0x1000, 0x5000], ramblock: 'mem1' }),
    // zstd (flags bits 1..3 = 2): next_packet_size bytes of compressed data follow.
    multifdPacket({ flags: 2 << 1, normal: [{ offset: 0x8000, data: Buffer.alloc(0) }], compressed: Buffer.alloc(777, 9) }),
  ]);

  test('init, then packets with their offsets and page bytes, whatever the chunking', () => {
    const expected = [
      { kind: 'init', id: 3 },
      { kind: 'packet', flags: 1, normalPages: 0, zeroPages: 0, payloadBytes: 0 },
      { kind: 'packet', flags: 0, normalPages: 2, zeroPages: 1, packetNum: 7n, ramblock: 'pc.ram', normalOffsets: [0x1000, 0x3000], zeroOffsets: [0x2000], payloadBytes: 8192 },
      { kind: 'packet', flags: 1, pagesAlloc: 0, payloadBytes: 0 },
      { kind: 'packet', normalPages: 0, zeroPages: 3, ramblock: 'mem1', zeroOffsets: [0, 0x1000, 0x5000], payloadBytes: 0 },
      { kind: 'packet', flags: 4, normalPages: 1, payloadBytes: 777 },
    ];
    const whole = readAll(channel);
    expect(whole).toMatchObject(expected);
    expect((whole[0] as { uuid: Buffer }).uuid.equals(Buffer.alloc(16, 0xab))).toBe(true);
    expect((whole[2] as MultifdPacket).at).toBe(64 + 1344);
    for (let at = 1; at < channel.length; at += 997) expect(readAll(channel, [at])).toMatchObject(expected);
    expect(
      readAll(
        channel,
        Array.from({ length: 40 }, (_, i) => i * 7 + 1),
      ),
    ).toMatchObject(expected);
  });

  test('a cut channel leaves bytes pending; bad magic, version or page counts are framing errors naming the offset', () => {
    const reader = new MultifdChannelReader();
    reader.push(channel.subarray(0, 64 + 1344 + 1344 + 100));
    expect(reader.pending).toBeGreaterThan(0);
    const badMagic = Buffer.concat([multifdInit(0), multifdPacket({ magic: 0xdeadbeef })]);
    expect(() => new MultifdChannelReader().push(badMagic)).toThrow(/MultiFDPacket_t at offset 64 \(0x40\): magic 0xdeadbeef; expected 0x11223344/);
    const badVersion = multifdInit(0);
    badVersion.writeUInt32BE(2, 4);
    expect(() => new MultifdChannelReader().push(badVersion)).toThrow(/version 2; expected version 1/);
    const tooMany = Buffer.concat([multifdInit(0), multifdPacket({ pagesAlloc: 129 })]);
    expect(() => new MultifdChannelReader().push(tooMany)).toThrow(/allocated\) in a packet of 128 pages/);
    const hugeCompressed = multifdPacket({ flags: 2, normal: [{ offset: 0, data: Buffer.alloc(0) }], nextPacketSize: 0x7fffffff });
    expect(() => new MultifdChannelReader().push(Buffer.concat([multifdInit(0), hugeCompressed.subarray(0, 1344)]))).toThrow(/next_packet_size 2147483647/);
  });

  test('64 KiB pages: 8 slots, a 384-byte packet', () => {
    const reader = new MultifdChannelReader(65536);
    const bytes = Buffer.concat([multifdInit(0), multifdPacket({ normal: [{ offset: 0, data: Buffer.alloc(65536, 1) }] }, 8)]);
    expect(reader.push(bytes)).toMatchObject([{ kind: 'init' }, { kind: 'packet', normalPages: 1, payloadBytes: 65536 }]);
    expect(() => new MultifdChannelReader(3000)).toThrow(/page size 3000/);
  });
});
