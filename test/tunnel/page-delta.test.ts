/**
 * Page-aware compression of tunnel streams (src/tunnel/page-delta.ts, page-finder.ts,
 * frame-codec.ts): a migration stream's pages sent again go as deltas and every byte comes
 * back, for a main stream and a multifd channel cut into any chunks; the receiver refuses
 * page tables that would read outside the chunk, name slots it does not keep, or make it keep
 * more cache than it allows. Streams and tables are built by hand (test/helpers), not by the
 * code under test.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { codecByName } from '../../src/codecs/registry.js';
import { frameCodec, type FrameCodec } from '../../src/tunnel/frame-codec.js';
import { PageFinder } from '../../src/tunnel/page-finder.js';
import { FrameParser } from '../../src/tls/wire.js';
import { TunnelFrameType, decodeTunnelFrame, type TunnelFrame } from '../../src/tunnel/wire.js';
import { prng } from '../helpers/feed.js';
import { multifdInit, multifdPacket } from '../helpers/multifd-bytes.js';
import { PAGE, eosBytes, memSizeBytes, pageBytes, zeroBytes } from '../helpers/ram-bytes.js';
import { Bytes, configuration, footer, header, sectionStart } from '../helpers/stream-bytes.js';
import { PAGE_TABLE_FLAG, PageOp, pageTable } from '../helpers/transport-frame-builder.js';

const MIB = 1024 * 1024;

function codec(options: { pageCacheBytes?: number; pageCacheLimitBytes?: number } = {}, name = 'lz4'): FrameCodec {
  const made = frameCodec(codecByName(name), name === 'zstd' ? 3 : 1, options);
  if (typeof made === 'string') throw new Error(made);
  return made;
}

/** Random pages, each pass re-sending the hot ones with 16 bytes changed (as guest/memfill.c's busy mode writes). */
function guestPages(pages: number, seed: number): Buffer[] {
  const random = prng(seed);
  return Array.from({ length: pages }, () => Buffer.from(Array.from({ length: PAGE }, () => Math.floor(random() * 256))));
}

function touch(page: Buffer, pass: number): void {
  page.writeUInt32LE((pass * 2654435761) >>> 0, (pass * 16) % PAGE);
}

/** A QEMU main stream: a first pass over every page (every fifth a zero page), then passes re-sending `hot` pages. */
function mainStream(pages: number, passes: number, hot: number): { bytes: Buffer; pageRecords: number } {
  const content = guestPages(pages, 7);
  const b = new Bytes();
  header(b);
  configuration(b, 'pc-i440fx-7.2');
  sectionStart(b, 1, 2, 'ram', 0, 4)
    .raw(memSizeBytes([{ idstr: 'pc.ram', length: pages * PAGE }]))
    .raw(eosBytes());
  footer(b, 2);
  let pageRecords = 0;
  for (let pass = 0; pass < passes; pass++) {
    b.u8(pass === passes - 1 ? 0x03 : 0x02).be32(2);
    let named = false;
    for (let page = 0; page < (pass === 0 ? pages : hot); page++) {
      const block = named ? null : 'pc.ram';
      named = true;
      if (pass === 0 && page % 5 === 4) {
        b.raw(zeroBytes(block, page * PAGE));
        continue;
      }
      if (pass > 0) touch(content[page]!, pass);
      b.raw(pageBytes(block, page * PAGE, content[page]!));
      pageRecords++;
    }
    b.raw(eosBytes());
    footer(b, 2);
  }
  b.u8(0x00);
  return { bytes: b.build(), pageRecords };
}

/** A multifd channel: packets of up to 128 pages, the hot pages again and again. */
function multifdStream(pages: number, passes: number): Buffer {
  const content = guestPages(pages, 11);
  const parts = [multifdInit(0)];
  let packetNum = 0n;
  for (let pass = 0; pass < passes; pass++) {
    for (let first = 0; first < pages; first += 128) {
      const normal = [];
      for (let page = first; page < Math.min(pages, first + 128); page++) {
        if (pass > 0) touch(content[page]!, pass);
        normal.push({ offset: page * PAGE, data: Buffer.from(content[page]!) });
      }
      parts.push(multifdPacket({ normal, packetNum: packetNum++ }));
    }
    parts.push(multifdPacket({ flags: 1, packetNum: packetNum++ }));
  }
  return Buffer.concat(parts);
}

/** Cuts `bytes` into chunks of 1..`max` bytes, the first few tiny (a stream's magic may come a byte at a time). */
function chunks(bytes: Buffer, seed: number, max = 70_000): Buffer[] {
  const random = prng(seed);
  const out: Buffer[] = [];
  let at = 0;
  for (const tiny of [1, 2]) {
    out.push(bytes.subarray(at, at + tiny));
    at += tiny;
  }
  while (at < bytes.length) {
    const n = 1 + Math.floor(random() * max);
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** Sends `pieces` as stream 1 from `sender` to `receiver`; what came out, and the payload bytes sent. */
function carry(sender: FrameCodec, receiver: FrameCodec, pieces: Buffer[]): { out: Buffer; wire: number; tables: number } {
  const out: Buffer[] = [];
  let wire = 0;
  let tables = 0;
  for (const piece of pieces) {
    const { codec: id, payload } = sender.compress(1, piece);
    wire += payload.length;
    if (id & PAGE_TABLE_FLAG) tables++;
    out.push(id === 0 ? payload : receiver.decompress(1, id, payload, piece.length));
  }
  return { out: Buffer.concat(out), wire, tables };
}

describe('page-aware tunnel compression', () => {
  test.each(['lz4', 'zstd'])('a main stream whose hot pages change 16 bytes a pass comes back byte for byte, %s, at a fraction of plain compression', (name) => {
    const { bytes, pageRecords } = mainStream(600, 8, 200);
    const pieces = chunks(bytes, 3);
    const aware = codec({ pageCacheBytes: 8 * MIB }, name);
    const withDelta = carry(aware, codec({}, name), pieces);
    expect(withDelta.out.equals(bytes)).toBe(true);
    const plain = carry(codec({}, name), codec({}, name), pieces);
    expect(plain.out.equals(bytes)).toBe(true);
    expect(plain.tables).toBe(0);
    // The 480 pages of the first pass are not kept; the 200 hot ones are on the second pass
    // and go as deltas on the 6 after it, less those a chunk boundary cut (one a boundary;
    // with chunks of 35 KB on average, about one page in nine) and the pass after such a cut,
    // which keeps the page again.
    const { deltaPages, storedPages } = aware.pageDelta();
    expect(storedPages + deltaPages).toBeLessThanOrEqual(pageRecords - 480);
    expect(deltaPages).toBeGreaterThan(0.75 * 6 * 200);
    // Random pages: plain lz4/zstd cannot shrink them; the deltas are 16 bytes each.
    expect(withDelta.wire).toBeLessThan(0.6 * plain.wire);
  });

  test('a multifd channel comes back byte for byte, its repeated pages as deltas', () => {
    const bytes = multifdStream(300, 6);
    const aware = codec({ pageCacheBytes: 4 * MIB });
    const result = carry(aware, codec(), chunks(bytes, 5, 200_000));
    expect(result.out.equals(bytes)).toBe(true);
    // Kept on the second pass, deltas on the four after it.
    expect(aware.pageDelta().deltaPages).toBeGreaterThan(0.8 * 4 * 300);
    expect(result.wire).toBeLessThan(0.45 * bytes.length);
  });

  test('a cache far smaller than the guest: pages share slots, hot pages take them over, every byte still comes back', () => {
    const { bytes } = mainStream(400, 5, 100);
    const aware = codec({ pageCacheBytes: 64 * PAGE });
    const result = carry(aware, codec(), chunks(bytes, 9));
    expect(result.out.equals(bytes)).toBe(true);
    // 64 slots for 100 hot pages: pages p and p + 64 (p < 36) take each other's slot every
    // pass (but where a chunk boundary cut one of them), the 28 others go as deltas on the
    // last three passes: fewer than the 300 with room for all.
    expect(aware.pageDelta().deltaPages).toBeGreaterThan(0);
    expect(aware.pageDelta().deltaPages).toBeLessThan(3 * 60);
  });

  test('streams that are not a migration (NBD, libvirt RPC, noise) carry no page table', () => {
    const aware = codec({ pageCacheBytes: 4 * MIB });
    const nbd = Buffer.concat([Buffer.from('\0\0\0\x03IHAVEOPT'), Buffer.alloc(64 * 1024, 0x61)]);
    expect(carry(aware, codec(), [nbd, Buffer.alloc(64 * 1024, 0x62)]).tables).toBe(0);
    expect(carry(aware, codec(), [randomBytes(8192)]).tables).toBe(0);
  });

  test('a stream that stops decoding is forwarded as it is, no longer page-aware', () => {
    const { bytes } = mainStream(100, 2, 50);
    const broken = Buffer.concat([bytes.subarray(0, 200_000), Buffer.alloc(4096, 0xff), bytes.subarray(200_000)]);
    const finder = new PageFinder();
    const aware = codec({ pageCacheBytes: 4 * MIB });
    const pieces = chunks(broken, 4, 30_000);
    for (const piece of pieces) finder.push(piece);
    expect(finder.stopped).toBeDefined();
    expect(carry(aware, codec(), pieces).out.equals(broken)).toBe(true);
  });

  test('the page finder reports only pages whose bytes are all in the chunk', () => {
    const { bytes } = mainStream(20, 1, 0);
    // Cut in the middle of every page: no page is whole in any chunk.
    const finder = new PageFinder();
    const found = chunks(bytes, 1, 2000).flatMap((piece) => finder.push(piece));
    const whole = new PageFinder().push(bytes);
    expect(whole.length).toBe(16);
    expect(whole.every((span) => bytes.subarray(span.at + PAGE - 4, span.at + PAGE).length === 4)).toBe(true);
    expect(found.length).toBeLessThan(16);
  });
});

describe('page tables from the wire (hand-built)', () => {
  const page = (fill: number): Buffer => Buffer.alloc(PAGE, fill);

  test('a stored page, then a delta against it: the receiver gives back the raw bytes', () => {
    const receiver = codec();
    const first = Buffer.concat([Buffer.from('head'), page(0x11)]);
    const stored = receiver.decompress(1, PAGE_TABLE_FLAG, Buffer.concat([pageTable(8, [[4, 3, PageOp.store]]), first]), first.length);
    expect(stored.equals(first)).toBe(true);
    // The page again with one byte changed: 0x11 ^ 0x11 = 0 everywhere but there.
    const changed = page(0x11);
    changed[100] = 0x99;
    const xor = Buffer.alloc(PAGE);
    xor[100] = 0x11 ^ 0x99;
    const second = receiver.decompress(1, PAGE_TABLE_FLAG, Buffer.concat([pageTable(8, [[0, 3, PageOp.delta]]), xor, Buffer.from('tail')]), PAGE + 4);
    expect(second.equals(Buffer.concat([changed, Buffer.from('tail')]))).toBe(true);
    // Stream 2 has its own (empty) cache: the same delta is refused there.
    expect(() => receiver.decompress(2, PAGE_TABLE_FLAG, Buffer.concat([pageTable(8, [[0, 3, PageOp.delta]]), xor]), PAGE)).toThrow(/delta against slot 3, which holds no page/);
  });

  test("docs/tunnel.md's example frame: a 4100-byte chunk whose page is kept in slot 3", () => {
    const hex = '0000101f 0d 00000001 10 00001004 00000008 00000001 00000004 00000003 01 68656164';
    const bytes = Buffer.concat([Buffer.from(hex.replaceAll(' ', ''), 'hex'), page(0x11)]);
    const frames = new FrameParser<TunnelFrame>(0, undefined, decodeTunnelFrame).push(bytes);
    expect(frames).toHaveLength(1);
    const frame = frames[0]!;
    if (frame.type !== TunnelFrameType.STREAM_DATA) throw new Error(`frame type ${frame.type}`);
    expect([frame.stream, frame.codec, frame.rawLength]).toEqual([1, PAGE_TABLE_FLAG, 4100]);
    expect(
      codec()
        .decompress(frame.stream, frame.codec, frame.payload, frame.rawLength)
        .equals(Buffer.concat([Buffer.from('head'), page(0x11)])),
    ).toBe(true);
  });

  test.each([
    ['an unknown op', pageTable(8, [[0, 0, 3]]), PAGE, /unknown op 3/],
    [
      'more pages than the chunk holds',
      pageTable(8, [
        [0, 0, 1],
        [PAGE, 1, 1],
      ]),
      PAGE,
      /a page table of 2 pages for a 4096-byte chunk/,
    ],
    ['a table cut short', pageTable(8, [[0, 0, 1]]).subarray(0, 12), 0, /needs 17 bytes/],
    ['a page leaving the chunk', pageTable(8, [[10, 0, 1]]), PAGE + 5, /page at 10 overlaps the one before or leaves the 4101-byte chunk/],
    [
      'overlapping pages',
      pageTable(8, [
        [0, 0, 1],
        [100, 1, 1],
      ]),
      2 * PAGE + 100,
      /page at 100 overlaps/,
    ],
    ['a slot beyond the cache', pageTable(8, [[0, 8, 1]]), PAGE, /names slot 8 of a 8-slot cache/],
    [
      'a cache over the receiver’s limit',
      pageTable(1 << 20, [[0, 0, 1]]),
      PAGE,
      /a page cache of 1048576 slots \(4096 MiB\) would take this side's page caches to 4096 MiB, over its 1 MiB for all streams together/,
    ],
    ['a cache of no slots', pageTable(0, [[0, 0, 1]]), PAGE, /a page cache of 0 slots/],
  ])('refused: %s', (_name, table, bodyLength, message) => {
    const receiver = codec({ pageCacheLimitBytes: MIB });
    // The raw length a STREAM_DATA announces: the body's, or a page for a table without one.
    const rawLength = bodyLength || PAGE;
    expect(() => receiver.decompress(1, PAGE_TABLE_FLAG, Buffer.concat([table, Buffer.alloc(bodyLength)]), rawLength)).toThrow(message);
  });

  test('the limit is for all streams together: a stream over what the others left is refused, and a closed stream gives its share back', () => {
    const receiver = codec({ pageCacheLimitBytes: MIB });
    const table = (stream: number): Buffer => receiver.decompress(stream, PAGE_TABLE_FLAG, Buffer.concat([pageTable(128, [[0, 0, 1]]), page(stream)]), PAGE);
    expect(table(1).equals(page(1))).toBe(true);
    expect(table(2).equals(page(2))).toBe(true);
    expect(() => table(3)).toThrow(/would take this side's page caches to 1.5 MiB, over its 1 MiB for all streams together/);
    receiver.forget(1);
    expect(table(3).equals(page(3))).toBe(true);
  });

  test('refused: the cache size changing within a stream; a base codec this side lacks', () => {
    const receiver = codec();
    receiver.decompress(1, PAGE_TABLE_FLAG, Buffer.concat([pageTable(8, [[0, 0, 1]]), page(1)]), PAGE);
    expect(() => receiver.decompress(1, PAGE_TABLE_FLAG, Buffer.concat([pageTable(16, [[0, 0, 1]]), page(1)]), PAGE)).toThrow(/a page table for a 16-slot cache on a stream whose cache has 8/);
    expect(() => receiver.decompress(1, PAGE_TABLE_FLAG | 7, Buffer.concat([pageTable(8, []), page(1)]), PAGE)).toThrow(/codec 7 is not available/);
  });
});
