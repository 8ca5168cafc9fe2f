/**
 * Container versions (docs/container.md, "Versioning"). Version 1 files (XXH32 checksums),
 * committed in test/fixtures/containers as migstream wrote them before version 2, still
 * decompress byte for byte on every path, and damage in them is still found. What is written
 * now is version 2, whose frame and page checksums are the low 32 bits of XXH64.
 *
 * The fixtures hold busyStream({ pages: 64, iterations: 3, disk: false }): v1-lz4.msz in qemu
 * mode (lz4, page window on, so it has REF cuts), v1-raw-zstd.msz in raw mode (zstd).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { xxh32, xxh64Low32 } from '../../src/container/checksum.js';
import { CODEC_IDS, decompressBytes, type CodecId } from '../../src/codecs/registry.js';
import { ContainerReader, type Frame } from '../../src/container/reader.js';
import { CorruptFrameError } from '../../src/container/errors.js';
import { CutTag, FRAME_HEADER_LENGTH, FrameKind } from '../../src/container/format.js';
import { parseCutList } from '../../src/container/cut-list.js';
import { busyStream } from '../helpers/busy-stream.js';
import { compressBuffer, decompressBuffer, decompressDirect } from '../helpers/container.js';

const FIXTURES = new URL('../fixtures/containers/', import.meta.url);
const stream = busyStream({ pages: 64, iterations: 3, disk: false }).bytes;

const dir = mkdtempSync(join(tmpdir(), 'migstream-versions-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fixture(name: string): Buffer {
  return readFileSync(new URL(name, FIXTURES));
}

function read(container: Buffer): { version: number | undefined; frames: Frame[] } {
  const reader = new ContainerReader();
  const frames = reader.push(container);
  reader.end();
  return { version: reader.version, frames };
}

async function raw(frame: Frame): Promise<Buffer> {
  return frame.codec === CODEC_IDS.none ? frame.stored : decompressBytes(frame.codec as CodecId, frame.stored, frame.rawLength);
}

function direct(container: Buffer): Promise<{ output: Buffer; error: unknown }> {
  return decompressDirect(container, dir);
}

describe('version 1 files', () => {
  test.each(['v1-lz4.msz', 'v1-raw-zstd.msz'])('%s decompresses to its stream on 1 and 2 workers and in direct mode', async (name) => {
    const container = fixture(name);
    const { version, frames } = read(container);
    expect(version).toBe(1);
    // Really version 1: XXH32 of each frame's bytes.
    for (const frame of frames) expect(frame.storedChecksum).toBe(xxh32(frame.stored));
    for (const threads of [1, 2]) expect((await decompressBuffer(container, { threads })).equals(stream), `${threads} workers`).toBe(true);
    const { output, error } = await direct(container);
    expect(error).toBeUndefined();
    expect(output.equals(stream)).toBe(true);
  });

  test('the qemu-mode fixture resolves page references checked with XXH32', async () => {
    const { frames } = read(fixture('v1-lz4.msz'));
    let refs = 0;
    for (const frame of frames.filter((f) => f.kind === FrameKind.META)) {
      const parsed = parseCutList(await raw(frame), 4096);
      if (typeof parsed === 'string') throw new Error(parsed);
      for (let i = 0; i < parsed.cuts.count; i++) if (parsed.cuts.tags[i] === CutTag.REF) refs++;
    }
    expect(refs).toBeGreaterThan(0);
  });

  test('damaged stored bytes are reported with the XXH32 they fail, on both paths', async () => {
    const container = fixture('v1-lz4.msz');
    const payload = read(container).frames.find((f) => f.kind === FrameKind.PAYLOAD)!;
    const damaged = Buffer.from(container);
    damaged[payload.offset + FRAME_HEADER_LENGTH + (payload.storedLength >> 1)]! ^= 0x04;
    const general = await decompressBuffer(damaged).then(
      () => undefined,
      (error: unknown) => error,
    );
    const { error } = await direct(damaged);
    for (const caught of [general, error]) {
      expect(caught).toBeInstanceOf(CorruptFrameError);
      expect((caught as Error).message).toMatch(`container frame ${payload.number} (PAYLOAD) at offset ${payload.offset}`);
      expect((caught as Error).message).toMatch(/XXH32 0x[0-9a-f]{8}/);
    }
  });
});

describe('version 2, written now', () => {
  test('every frame carries the low 32 bits of XXH64 of its stored and raw bytes', async () => {
    for (const codec of ['lz4', 'zstd', 'zlib', 'none'] as const) {
      const { container } = await compressBuffer(stream, { codec, frameBytes: 64 * 1024 });
      expect(container.readUInt16BE(8)).toBe(2);
      const { version, frames } = read(container);
      expect(version).toBe(2);
      for (const frame of frames) {
        expect(frame.storedChecksum, `${codec} frame ${frame.number}`).toBe(xxh64Low32(frame.stored));
        expect(frame.rawChecksum, `${codec} frame ${frame.number}`).toBe(xxh64Low32(await raw(frame)));
      }
      expect((await decompressBuffer(container)).equals(stream)).toBe(true);
    }
  });

  test('relabelled as version 1, a version 2 file fails its first checksum', async () => {
    const { container } = await compressBuffer(stream, { codec: 'lz4', frameBytes: 64 * 1024 });
    const relabelled = Buffer.from(container);
    relabelled.writeUInt16BE(1, 8);
    await expect(decompressBuffer(relabelled)).rejects.toThrow(/container frame 0 \(HEADER\) at offset 12 .*HEADER frame fails its checksum; expected XXH32/);
    const { output, error } = await direct(relabelled);
    expect(error).toBeInstanceOf(CorruptFrameError);
    expect(output.length).toBe(0);
  });
});
