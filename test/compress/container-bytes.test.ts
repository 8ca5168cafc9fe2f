/**
 * The container's bytes against an independent builder (test/helpers/container-builder.ts,
 * written from docs/container.md alone): exact hex per frame kind, the readers on the builder's
 * bytes (whole, split at every offset, byte by byte), the writer's bytes equal to the
 * builder's, and hostile variants refused with the error class docs/container.md names.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import { ContainerReader, type Frame } from '../../src/container/reader.js';
import { decompressBytes } from '../../src/codecs/registry.js';
import { ContainerMagicError, CorruptFrameError, FrameOrderError, TruncatedContainerError } from '../../src/container/errors.js';
import { WorkerPool } from '../../src/workers/pool.js';
import { xxh64Low32Native, xxh32Native } from '../../src/native.js';
import * as blk from '../helpers/block-bytes.js';
import * as C from '../helpers/container-builder.js';
import { compressBuffer, decompressBuffer, decompressDirect } from '../helpers/container.js';
import { PAGE, eosBytes, header as pageHeader, memSizeBytes, pattern, zeroBytes, F } from '../helpers/ram-bytes.js';
import { Bytes, configuration, footer, header, sectionStart } from '../helpers/stream-bytes.js';

let pool: WorkerPool;
let dir: string;
beforeAllOrFail(() => {
  pool = new WorkerPool(2);
  dir = mkdtempSync(join(tmpdir(), 'container-bytes-'));
});
afterAll(async () => {
  await pool.close();
  rmSync(dir, { recursive: true, force: true });
});

const decompress = (bytes: Buffer, chunks?: Iterable<Buffer>): Promise<Buffer> => decompressBuffer(bytes, { pool }, chunks);

async function refusal(bytes: Buffer, chunks?: Iterable<Buffer>): Promise<unknown> {
  try {
    await decompress(bytes, chunks);
  } catch (error) {
    return error;
  }
  return undefined;
}

/** What the push reader makes of `chunks`: the frames, and the error of push() or end(), if any. */
function read(chunks: Iterable<Buffer>): { frames: Frame[]; error: unknown } {
  const reader = new ContainerReader();
  const frames: Frame[] = [];
  try {
    for (const chunk of chunks) frames.push(...reader.push(chunk));
    reader.end();
  } catch (error) {
    return { frames, error };
  }
  return { frames, error: undefined };
}

const summary = (frames: readonly Frame[]): unknown[] => frames.map((f) => [f.kind, f.codec, f.number, f.offset, f.rawLength, f.storedLength, f.rawChecksum, f.storedChecksum, C.hex(f.stored)]);
const builtSummary = (frames: readonly C.BuiltFrame[]): unknown[] =>
  frames.map((f) => [f.kind, f.codec, f.number, f.offset, f.raw.length, f.stored.length, C.dataChecksum(f.raw), C.dataChecksum(f.stored), C.hex(f.stored)]);

function* twoPieces(bytes: Buffer, at: number): Generator<Buffer> {
  yield bytes.subarray(0, at);
  yield bytes.subarray(at);
}
function* byteByByte(bytes: Buffer): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i++) yield bytes.subarray(i, i + 1);
}

const INFO: C.Info = { mode: 'qemu', pageSize: 512, codec: 'none', level: 0, frameBytes: 65536, dedupWindowPages: 4, compacted: false, creator: 'builder' };
const page = (seed: number): Buffer => pattern(seed, 512);

/** Every cut kind and both a segment with and without PAYLOAD: 2 segments, a REF into the first. */
function qemuContainer(version: 1 | 2 = 2, info: C.Info = INFO): C.Built {
  return C.buildContainer({
    info,
    version,
    parts: [
      {
        segment: {
          cuts: [
            { tag: 'page', gap: 3, data: page(1) },
            { tag: 'bytes', gap: 2, data: Buffer.from('chunk') },
            { tag: 'page', gap: 0, data: page(2) },
          ],
          structure: Buffer.from('abcdefghij'),
        },
      },
      { segment: { cuts: [{ tag: 'ref', gap: 4, distance: 2 }], structure: Buffer.from('0123456') } },
      { segment: { cuts: [], structure: Buffer.from('only structure') } },
    ],
  });
}

function rawContainer(): C.Built {
  return C.buildContainer({
    info: { ...INFO, mode: 'raw', pageSize: 4096, dedupWindowPages: 0 },
    parts: [{ data: Buffer.from('hello, ') }, { data: Buffer.from('world') }],
  });
}

describe("the builder's hashes are the published ones", () => {
  test.each([
    ['', 0x02cc5d05, 0xef46db3751d8e999n],
    ['a', 0x550d7456, 0xd24ec4f1a98c6e5bn],
    ['abc', 0x32d153ff, 0x44bc2cf5ad770999n],
  ])('XXH32 and XXH64 of %j (xxhsum -H32 / -H1)', (text, h32, h64) => {
    expect(C.xxh32(Buffer.from(text))).toBe(h32);
    expect(C.xxh64(Buffer.from(text))).toBe(h64);
  });

  test('and agree with the addon on every length up to 300, at any alignment', () => {
    const data = pattern(9, 512);
    for (let n = 0; n <= 300; n++) {
      const view = data.subarray(n % 7, (n % 7) + n);
      expect(C.xxh32(view)).toBe(xxh32Native(view));
      expect(C.dataChecksum(view)).toBe(xxh64Low32Native(view));
    }
  });
});

describe('exact bytes per frame kind (docs/container.md, "example bytes")', () => {
  test('preamble', () => {
    expect(C.hex(C.preamble())).toBe('894d535a0d0a1a0a00020000');
  });

  test("HEADER: the first 40 bytes of the doc's real container (compress -c zstd of an idle guest)", () => {
    const info: C.Info = { mode: 'qemu', pageSize: 4096, codec: 'zstd', level: 3, frameBytes: 4194304, dedupWindowPages: 16384, compacted: false, creator: 'migstream 0.1.0' };
    const bytes = Buffer.concat([C.preamble(), C.headerFrame(info)]);
    expect(bytes.length).toBe(12 + 28 + 148);
    expect(C.hex(bytes.subarray(0, 48))).toBe(C.hex(C.fromHex('894d 535a 0d0a 1a0a 0002 0000 0100 0000 0000 0000 0000 0094 0000 0094 73b4 0b22 73b4 0b22 0340 6621 7b22 6d6f 6465 223a')));
    expect(bytes.subarray(0xb0, 0xbc).toString('latin1')).toBe('ream 0.1.0"}');
  });

  test('META: cut list (PAGE with a 2-byte gap varint, REF, BYTES), then structure bytes', () => {
    const raw = C.metaRaw(
      [
        { tag: 'page', gap: 40, data: Buffer.alloc(4096) },
        { tag: 'ref', gap: 2, distance: 1, checksum: 0x01234567 },
        { tag: 'bytes', gap: 0, data: Buffer.alloc(5) },
      ],
      Buffer.from('STRUCT'),
    );
    // count 3 | uleb(40*4+0)=a0 01 | uleb(2*4+1)=09, distance 01, be32 01234567 | uleb(0*4+2)=02, length 05 | "STRUCT"
    expect(C.hex(raw)).toBe('03' + 'a001' + '09' + '01' + '01234567' + '02' + '05' + '535452554354');
    // kind 2, codec 0, flags 0, number 1, raw = stored = 17, checksums (XXH64 low 32), header XXH32
    expect(C.hex(C.metaFrame(1, raw))).toBe('02000000' + '00000001' + '00000011' + '00000011' + '70f7e68d' + '70f7e68d' + 'b5059067' + C.hex(raw));
  });

  test('PAYLOAD: the payloads back to back, here lz4 (u32 LE raw length, then an LZ4 block of literals)', () => {
    const raw = Buffer.from('hello');
    const stored = C.fromHex('05000000 50 68656c6c6f'); // token 0x50: 5 literals, no match
    expect(C.hex(C.payloadFrame(2, raw, { codec: C.Codec.lz4, stored }))).toBe('03010000' + '00000002' + '00000005' + '0000000a' + '889f6da3' + 'ee23e46d' + '8d134562' + '050000005068656c6c6f');
  });

  test('DATA: stream bytes as they are', () => {
    expect(C.hex(C.dataFrame(1, Buffer.from('hello')))).toBe('04000000' + '00000001' + '00000005' + '00000005' + '889f6da3' + '889f6da3' + 'c6a96689' + '68656c6c6f');
  });

  test('END: be64 stream bytes, be32 frames before END, be32 chain', () => {
    const chain = C.checksumChain([0x889f6da3]);
    expect(chain).toBe(0xdb5305aa);
    const raw = C.endRaw(0x1_0000_0005, 2, chain);
    expect(C.hex(raw)).toBe('0000000100000005' + '00000002' + 'db5305aa');
    expect(C.hex(C.endFrame(2, 0x1_0000_0005, chain))).toBe('05000000' + '00000002' + '00000010' + '00000010' + '922991f1' + '922991f1' + '62d75546' + C.hex(raw));
  });

  test('version 1 carries XXH32 as the data checksum, and only there', () => {
    const v1 = C.dataFrame(1, Buffer.from('hello'), { version: 1 });
    expect(C.hex(v1.subarray(16, 24))).toBe('fb0077f9fb0077f9');
    expect(C.hex(C.preamble({ version: 1 }))).toBe('894d535a0d0a1a0a00010000');
  });

  test('the doc carries these example bytes', () => {
    const doc = readFileSync(join(import.meta.dirname, '../../docs/container.md'), 'utf8').replace(/[\s`]/g, '');
    const examples = [
      C.preamble(),
      C.dataFrame(1, hello),
      C.payloadFrame(2, hello, { codec: C.Codec.lz4, stored: C.fromHex('050000005068656c6c6f') }),
      C.metaFrame(
        1,
        C.metaRaw(
          [
            { tag: 'page', gap: 40, data: Buffer.alloc(4096) },
            { tag: 'ref', gap: 2, distance: 1, checksum: 0x01234567 },
            { tag: 'bytes', gap: 0, data: Buffer.alloc(5) },
          ],
          Buffer.from('STRUCT'),
        ),
      ),
      C.endFrame(2, 0x1_0000_0005, C.checksumChain([C.dataChecksum(hello)])),
    ];
    for (const bytes of examples) {
      const header = bytes.length > 12 ? bytes.subarray(0, 28) : bytes;
      expect(doc.includes(C.hex(header)), C.hex(header)).toBe(true);
      if (bytes.length > 12) expect(doc.includes(C.hex(bytes.subarray(28))), C.hex(bytes.subarray(28))).toBe(true);
    }
    expect(doc.includes(C.hex(C.dataFrame(1, hello, { version: 1 }).subarray(16, 20)))).toBe(true);
  });

  test('lz4-napi compresses "hello" to the hand-written block', async () => {
    expect(C.hex(await C.encodeWith(C.Codec.lz4, Buffer.from('hello')))).toBe('050000005068656c6c6f');
  });
});

describe("the readers take the builder's containers", () => {
  test.each([
    ['qemu mode, version 2', () => qemuContainer(2)],
    ['qemu mode, version 1', () => qemuContainer(1)],
    ['raw mode', rawContainer],
  ])('%s: the push reader gives the built frames, both decompressors the stream', async (_, make) => {
    const built = make();
    const { frames, error } = read([built.bytes]);
    expect(error).toBeUndefined();
    expect(frames.map((f) => [f.kind, f.codec, f.number, f.offset, f.rawLength, f.storedLength, C.hex(f.stored)])).toEqual(
      built.frames.map((f) => [f.kind, f.codec, f.number, f.offset, f.raw.length, f.stored.length, C.hex(f.stored)]),
    );
    expect((await decompress(built.bytes)).equals(built.stream)).toBe(true);
    const direct = await decompressDirect(built.bytes, dir);
    expect(direct.error).toBeUndefined();
    expect(direct.output.equals(built.stream)).toBe(true);
  });

  test('the rebuilt stream is the segments spliced by hand, the REF page copied in', () => {
    const built = qemuContainer();
    expect(
      built.stream.equals(
        Buffer.concat([Buffer.from('abc'), page(1), Buffer.from('de'), Buffer.from('chunk'), page(2), Buffer.from('fghij'), Buffer.from('0123'), page(1), Buffer.from('456'), Buffer.from('only structure')]),
      ),
    ).toBe(true);
  });

  test('frames in every codec (lz4, zstd, zlib from their npm packages / node:zlib)', async () => {
    const cuts: C.Cut[] = [0, 1, 2, 3].map((i) => ({ tag: 'page', gap: 1, data: Buffer.alloc(512, i) }));
    const structure = Buffer.from('.'.repeat(50));
    const meta = C.metaRaw(cuts, structure);
    const payload = C.payloadRaw(cuts);
    const data = Buffer.alloc(3000, 'migstream ');
    for (const codec of [C.Codec.lz4, C.Codec.zstd, C.Codec.zlib]) {
      const qemu = C.buildContainer({
        info: INFO,
        parts: [{ segment: { cuts, structure }, meta: { codec, stored: await C.encodeWith(codec, meta) }, payload: { codec, stored: await C.encodeWith(codec, payload) } }],
      });
      expect(qemu.frames.slice(1, 3).map((f) => f.codec)).toEqual([codec, codec]);
      expect((await decompress(qemu.bytes)).equals(qemu.stream)).toBe(true);
      expect((await decompressDirect(qemu.bytes, dir)).output.equals(qemu.stream)).toBe(true);
      const raw = C.buildContainer({ info: { ...INFO, mode: 'raw' }, parts: [{ data, stored: { codec, stored: await C.encodeWith(codec, data) } }] });
      expect((await decompress(raw.bytes)).equals(data)).toBe(true);
      expect((await decompressDirect(raw.bytes, dir)).output.equals(data)).toBe(true);
    }
  });
});

describe('every split point, and byte by byte', () => {
  test.each([
    ['qemu mode', () => qemuContainer()],
    ['raw mode', rawContainer],
  ])('%s: the push reader gives the same frames however the bytes arrive', (_, make) => {
    const built = make();
    const expected = builtSummary(built.frames);
    for (let at = 0; at <= built.bytes.length; at++) {
      const { frames, error } = read(twoPieces(built.bytes, at));
      expect(error).toBeUndefined();
      expect(summary(frames)).toEqual(expected);
    }
    const { frames, error } = read(byteByByte(built.bytes));
    expect(error).toBeUndefined();
    expect(summary(frames)).toEqual(expected);
  });

  test('the decompressor gives the same stream at every split point and byte by byte', async () => {
    const built = qemuContainer();
    for (let at = 0; at <= built.bytes.length; at++) {
      expect((await decompress(built.bytes, twoPieces(built.bytes, at))).equals(built.stream), `split at ${at}`).toBe(true);
    }
    expect((await decompress(built.bytes, byteByByte(built.bytes))).equals(built.stream)).toBe(true);
  });

  test('every proper prefix is a TruncatedContainerError, for the reader and the decompressor', async () => {
    const built = qemuContainer();
    for (let n = 0; n < built.bytes.length; n++) {
      const prefix = built.bytes.subarray(0, n);
      expect(read([prefix]).error, `prefix ${n}`).toBeInstanceOf(TruncatedContainerError);
      const error = await refusal(prefix);
      expect(error, `prefix ${n}`).toBeInstanceOf(TruncatedContainerError);
      expect((error as TruncatedContainerError).code).toBe('ERR_CONTAINER_TRUNCATED');
    }
  });
});

/** A QEMU stream built by hand, with where each payload lies: the cuts the doc says a writer makes. */
function qemuStream(diskChunk = blk.chunk(5)): { stream: Buffer; payloads: { at: number; data: Buffer; cut: 'page' | 'ref' | 'bytes'; distance?: number }[] } {
  const payloads: { at: number; data: Buffer; cut: 'page' | 'ref' | 'bytes'; distance?: number }[] = [];
  const b = new Bytes();
  header(b);
  configuration(b, 'pc-i440fx-7.2');
  sectionStart(b, 1, 2, 'ram', 0, 4)
    .raw(memSizeBytes([{ idstr: 'pc.ram', length: 8 * PAGE }]))
    .raw(eosBytes());
  footer(b, 2);
  sectionStart(b, 1, 3, 'block', 0, 1).raw(blk.eosBytes());
  footer(b, 3);
  b.u8(0x02).be32(2);
  const ramPage = (block: string | null, index: number, data: Buffer, cut: 'page' | 'ref', distance?: number): void => {
    b.raw(pageHeader(block, index * PAGE, F.PAGE));
    payloads.push({ at: b.length, data, cut, distance });
    b.raw(data);
  };
  ramPage('pc.ram', 0, pattern(1), 'page');
  ramPage(null, 1, pattern(2), 'page');
  b.raw(zeroBytes(null, 2 * PAGE, 0)); // a ZERO record stays in the structure bytes
  ramPage(null, 3, pattern(1), 'ref', 2); // pattern(1) again: 2 stored pages back
  ramPage(null, 4, pattern(3), 'page');
  b.raw(eosBytes());
  footer(b, 2);
  b.u8(0x02).be32(3);
  const disk = blk.dataBytes('disk0', 0, diskChunk);
  b.raw(disk.subarray(0, disk.length - blk.MIB));
  payloads.push({ at: b.length, data: disk.subarray(disk.length - blk.MIB), cut: 'bytes' });
  b.raw(disk.subarray(disk.length - blk.MIB)).raw(blk.eosBytes());
  footer(b, 3);
  b.u8(0x00);
  return { stream: b.build(), payloads };
}

describe("the writer's bytes are the builder's", () => {
  test('raw mode, codec none: DATA frames of frameBytes, byte for byte', async () => {
    const input = Buffer.concat([pattern(1, 65536), pattern(2, 65536), Buffer.from('tail')]);
    const { container } = await compressBuffer(input, { pool, mode: 'raw', codec: 'none', frameBytes: 65536, creator: 'builder' });
    const built = C.buildContainer({
      info: { mode: 'raw', pageSize: 4096, codec: 'none', level: 0, frameBytes: 65536, dedupWindowPages: 0, compacted: false, creator: 'builder' },
      parts: [{ data: input.subarray(0, 65536) }, { data: input.subarray(65536, 131072) }, { data: input.subarray(131072) }],
    });
    expect(C.hex(container)).toBe(C.hex(built.bytes));
  });

  test('qemu mode, codec none: PAGE, REF and BYTES cuts where the doc puts them, byte for byte', async () => {
    const { stream, payloads } = qemuStream();
    const { container } = await compressBuffer(stream, { pool, codec: 'none', creator: 'builder' });
    const cuts: C.Cut[] = [];
    const structure: Buffer[] = [];
    let from = 0;
    for (const p of payloads) {
      structure.push(stream.subarray(from, p.at));
      const gap = p.at - from;
      cuts.push(p.cut === 'ref' ? { tag: 'ref', gap, distance: p.distance! } : { tag: p.cut, gap, data: p.data });
      from = p.at + p.data.length;
    }
    structure.push(stream.subarray(from));
    const built = C.buildContainer({
      info: { mode: 'qemu', pageSize: 4096, codec: 'none', level: 0, frameBytes: 4194304, dedupWindowPages: 16384, compacted: false, creator: 'builder' },
      parts: [{ segment: { cuts, structure: Buffer.concat(structure) } }],
    });
    expect(built.stream.equals(stream)).toBe(true);
    expect(C.hex(container.subarray(0, 4096))).toBe(C.hex(built.bytes.subarray(0, 4096)));
    expect(container.equals(built.bytes)).toBe(true);
  });

  test.each(['lz4', 'zstd', 'zlib'] as const)('codec %s: every frame header and raw bytes as the builder makes them for the stored bytes written', async (codec) => {
    // A compressible disk chunk, so that the PAYLOAD frame shrinks (a frame that does not is stored with codec none).
    const { stream } = qemuStream(Buffer.alloc(blk.MIB, 'disk '));
    const { container } = await compressBuffer(stream, { pool, codec, creator: 'builder' });
    const frames = read([container]).frames;
    expect(frames.map((f) => f.kind)).toEqual([C.Kind.HEADER, C.Kind.META, C.Kind.PAYLOAD, C.Kind.END]);
    const plain = read([(await compressBuffer(stream, { pool, codec: 'none', creator: 'builder' })).container]).frames;
    let rebuilt = C.preamble();
    for (const [i, f] of frames.entries()) {
      const raw = f.codec === C.Codec.none ? f.stored : await decompressBytes(f.codec as 0 | 1 | 2 | 3, f.stored, f.rawLength);
      // The raw bytes are the codec-none container's, but for the HEADER's codec and level.
      if (f.kind !== C.Kind.HEADER) expect(C.hex(raw)).toBe(C.hex(plain[i]!.stored));
      rebuilt = Buffer.concat([rebuilt, C.frame({ kind: f.kind, number: i, raw, codec: f.codec, stored: f.stored })]);
    }
    expect(frames[2]!.codec).toBe(C.Codec[codec]);
    expect(frames.every((f) => f.codec === C.Codec[codec] || f.codec === C.Codec.none)).toBe(true);
    expect(C.hex(rebuilt)).toBe(C.hex(container));
  });
});

/** `written`: stream bytes direct mode may write first (segments that passed their checks and are not the last). */
type Hostile = [name: string, make: () => Buffer, error: new (...args: never[]) => Error, code: string, message: RegExp, written?: number];

const withHeader = (...frames: Buffer[]): Buffer => Buffer.concat([C.preamble(), C.headerFrame(INFO), ...frames]);
const rawInfo: C.Info = { ...INFO, mode: 'raw' };
const withRawHeader = (...frames: Buffer[]): Buffer => Buffer.concat([C.preamble(), C.headerFrame(rawInfo), ...frames]);
const hello = Buffer.from('hello');
const helloEnd = (number: number, options: Parameters<typeof C.endFrame>[3] = {}): Buffer => C.endFrame(number, 5, C.checksumChain([C.dataChecksum(hello)]), options);

const hostile: Hostile[] = [
  ['another magic', () => Buffer.concat([C.preamble({ magic: C.fromHex('884d535a0d0a1a0a') }), C.headerFrame(INFO)]), ContainerMagicError, 'ERR_CONTAINER_MAGIC', /not a migstream container/],
  ['a QEMU stream', () => Buffer.from('QEVM\0\0\0\x03\x07\0\0\0\x0dpc-i440fx-7.2'), ContainerMagicError, 'ERR_CONTAINER_MAGIC', /this is a QEMU migration stream/],
  ['version 3', () => withHeader().fill(3, 9, 10), ContainerMagicError, 'ERR_CONTAINER_MAGIC', /container version 3/],
  ['version 0', () => Buffer.concat([C.preamble({ version: 0 }), C.headerFrame(INFO)]), ContainerMagicError, 'ERR_CONTAINER_MAGIC', /container version 0/],
  ['preamble flags', () => Buffer.concat([C.preamble({ flags: 1 }), C.headerFrame(INFO)]), ContainerMagicError, 'ERR_CONTAINER_MAGIC', /preamble flags 0x1/],
  ['a wrong header checksum', () => withRawHeader(C.dataFrame(1, hello, { headerChecksum: 0 }), helloEnd(2)), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /frame header fails its checksum/],
  [
    'a wrong stored checksum (codec none)',
    () => withRawHeader(C.dataFrame(1, hello, { rawChecksum: 1, storedChecksum: 1 }), helloEnd(2)),
    CorruptFrameError,
    'ERR_CONTAINER_CORRUPT',
    /stored bytes fail their checksum/,
  ],
  [
    'a wrong raw checksum (lz4)',
    () => withRawHeader(C.dataFrame(1, hello, { codec: C.Codec.lz4, stored: C.fromHex('050000005068656c6c6f'), rawChecksum: 1 }), helloEnd(2)),
    CorruptFrameError,
    'ERR_CONTAINER_CORRUPT',
    /fail their checksum/,
  ],
  ['codec none with unequal lengths', () => withRawHeader(C.dataFrame(1, hello, { rawLength: 6 }), helloEnd(2)), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /raw and stored lengths or checksums differ/],
  ['a raw length past 256 MiB', () => withRawHeader(C.dataFrame(1, hello, { codec: C.Codec.zstd, rawLength: C.FRAME_LIMIT + 1 })), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /268435457 raw/],
  [
    'a stored length past 256 MiB',
    () => withRawHeader(C.frameHeader({ kind: C.Kind.DATA, number: 1, raw: hello, codec: C.Codec.zstd, storedLength: C.FRAME_LIMIT + 1 })),
    CorruptFrameError,
    'ERR_CONTAINER_CORRUPT',
    /268435457 stored/,
  ],
  ['unknown kind 6', () => withRawHeader(C.frame({ kind: 6, number: 1, raw: hello }), helloEnd(2)), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /unknown frame kind 6/],
  ['unknown kind 0', () => withRawHeader(C.frame({ kind: 0, number: 1, raw: hello }), helloEnd(2)), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /unknown frame kind 0/],
  ['unknown codec 4', () => withRawHeader(C.dataFrame(1, hello, { codec: 4 }), helloEnd(2)), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /unknown codec 4/],
  ['frame flags', () => withRawHeader(C.dataFrame(1, hello, { flags: 0x8000 }), helloEnd(2)), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /frame flags 0x8000/],
  ['a compressed HEADER', () => Buffer.concat([C.preamble(), C.headerFrame(INFO, { codec: C.Codec.zlib, stored: Buffer.alloc(3) })]), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /compressed HEADER/],
  ['a DATA frame in a qemu-mode container', () => withHeader(C.dataFrame(1, hello), helloEnd(2)), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /DATA frame in a qemu-mode container/],
  ['a META frame in a raw-mode container', () => withRawHeader(C.metaFrame(1, C.metaRaw([], hello)), helloEnd(2)), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /META frame in a raw-mode container/],
  ['HEADER that is not JSON', () => Buffer.concat([C.preamble(), C.headerFrame(Buffer.from('{mode'))]), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /HEADER frame is not JSON/],
  ['HEADER that is a JSON array', () => Buffer.concat([C.preamble(), C.headerFrame(Buffer.from('[]'))]), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /not a JSON object/],
  ...(
    [
      ['mode "zip"', { mode: 'zip' as 'raw' }],
      ['pageSize 1000', { pageSize: 1000 }],
      ['pageSize 256', { pageSize: 256 }],
      ['pageSize 131072', { pageSize: 131072 }],
      ['frameBytes 0', { frameBytes: 0 }],
      ['frameBytes past 256 MiB', { frameBytes: C.FRAME_LIMIT + 1 }],
      ['dedupWindowPages past 2^24', { dedupWindowPages: 2 ** 24 + 1 }],
    ] as const
  ).map(([name, change]): Hostile => [
    `HEADER with ${name}`,
    () => Buffer.concat([C.preamble(), C.headerFrame({ ...INFO, ...change }), C.endFrame(1, 0, C.checksumChain([]))]),
    CorruptFrameError,
    'ERR_CONTAINER_CORRUPT',
    /invalid mode, pageSize, frameBytes or dedupWindowPages/,
  ]),
  [
    'a REF of distance 0',
    () => withHeader(C.metaFrame(1, C.metaRaw([{ tag: 'ref', gap: 0, distance: 0, checksum: 0 }], Buffer.alloc(0))), C.endFrame(2, 0, 0)),
    CorruptFrameError,
    'ERR_CONTAINER_CORRUPT',
    /cut 0 has a zero distance/,
  ],
  [
    'a BYTES cut of length 0',
    () => withHeader(C.metaFrame(1, C.metaRaw([{ tag: 'bytes', gap: 0, data: Buffer.alloc(0) }], Buffer.alloc(0))), C.endFrame(2, 0, 0)),
    CorruptFrameError,
    'ERR_CONTAINER_CORRUPT',
    /cut 0 has a zero length/,
  ],
  ['a cut of unknown tag 3', () => withHeader(C.metaFrame(1, Buffer.from([1, 3])), C.endFrame(2, 0, 0)), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /unknown tag 3/],
  [
    'a PAYLOAD shorter than its cuts',
    () => withHeader(C.metaFrame(1, C.metaRaw([{ tag: 'bytes', gap: 0, data: hello }], Buffer.alloc(0))), C.payloadFrame(2, Buffer.from('hell')), C.endFrame(3, 0, 0)),
    CorruptFrameError,
    'ERR_CONTAINER_CORRUPT',
    /PAYLOAD frame holds 4 bytes, the cuts of its META frame take 5/,
  ],
  [
    'a REF past the window',
    () => withHeader(C.metaFrame(1, C.metaRaw([{ tag: 'ref', gap: 0, distance: 1, checksum: 0 }], Buffer.alloc(0))), C.endFrame(2, 0, 0)),
    CorruptFrameError,
    'ERR_CONTAINER_CORRUPT',
    /reaches 1 stored pages back/,
  ],
  [
    'a REF whose page has another checksum',
    () => {
      const cuts: C.Cut[] = [{ tag: 'page', gap: 0, data: page(1) }];
      return withHeader(
        C.metaFrame(1, C.metaRaw(cuts, Buffer.alloc(0))),
        C.payloadFrame(2, page(1)),
        C.metaFrame(3, C.metaRaw([{ tag: 'ref', gap: 0, distance: 1, checksum: C.dataChecksum(page(1)) ^ 1 }], Buffer.alloc(0))),
        C.endFrame(4, 0, 0),
      );
    },
    CorruptFrameError,
    'ERR_CONTAINER_CORRUPT',
    /not the page the compressor saw/,
    512,
  ],
  ['an END of 15 bytes', () => withRawHeader(C.dataFrame(1, hello), C.frame({ kind: C.Kind.END, number: 2, raw: Buffer.alloc(15) })), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /END frame of 15 bytes/],
  ['an END counting another number of frames', () => withRawHeader(C.dataFrame(1, hello), helloEnd(2, { frames: 3 })), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /END frame counts 3 frames/],
  ['an END with another chain', () => withRawHeader(C.dataFrame(1, hello), C.endFrame(2, 5, 0)), CorruptFrameError, 'ERR_CONTAINER_CORRUPT', /not the ones the compressor wrote/],
  [
    'an END with another stream length',
    () => withRawHeader(C.dataFrame(1, hello), C.endFrame(2, 6, C.checksumChain([C.dataChecksum(hello)]))),
    CorruptFrameError,
    'ERR_CONTAINER_CORRUPT',
    /not the ones the compressor wrote/,
  ],
  ['a frame number out of sequence', () => withRawHeader(C.dataFrame(2, hello), helloEnd(3)), FrameOrderError, 'ERR_CONTAINER_ORDER', /found frame number 2/],
  ['a first frame that is not HEADER', () => Buffer.concat([C.preamble(), C.dataFrame(0, hello)]), FrameOrderError, 'ERR_CONTAINER_ORDER', /the first frame is DATA/],
  ['a second HEADER', () => withRawHeader(C.headerFrame(rawInfo, { number: 1 })), FrameOrderError, 'ERR_CONTAINER_ORDER', /a second HEADER frame/],
  ['a PAYLOAD without META', () => withHeader(C.payloadFrame(1, hello), C.endFrame(2, 0, 0)), FrameOrderError, 'ERR_CONTAINER_ORDER', /PAYLOAD frame without a META frame/],
  ['bytes after END', () => Buffer.concat([withRawHeader(C.dataFrame(1, hello), helloEnd(2)), Buffer.from([0])]), FrameOrderError, 'ERR_CONTAINER_ORDER', /data after the END frame/],
  ['no END', () => withRawHeader(C.dataFrame(1, hello)), TruncatedContainerError, 'ERR_CONTAINER_TRUNCATED', /without an END frame/],
];

describe("hostile containers from the builder are refused with the doc's error", () => {
  test('the good twin of the hostile ones decompresses', async () => {
    expect((await decompress(withRawHeader(C.dataFrame(1, hello), helloEnd(2)))).toString()).toBe('hello');
  });

  test.each(hostile)('%s', async (_, make, Class, code, message, written = 0) => {
    const bytes = make();
    const general = await refusal(bytes);
    expect(general).toBeInstanceOf(Class);
    expect(general).toMatchObject({ code });
    expect((general as Error).message).toMatch(message);
    const direct = await decompressDirect(bytes, dir);
    expect(direct.error).toBeInstanceOf(Class);
    expect(direct.error).toMatchObject({ code });
    expect(direct.output.length).toBe(written);
    // Split anywhere, the general path refuses with the same class.
    for (let at = 1; at < bytes.length; at += 7) expect(await refusal(bytes, twoPieces(bytes, at))).toBeInstanceOf(Class);
  });
});
