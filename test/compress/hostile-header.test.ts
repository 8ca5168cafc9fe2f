/**
 * Containers whose HEADER or length says something a reader must not act on, found by the
 * fuzzer (npm run fuzz, targets "decompress" and "direct"): each failed before its fix, with
 * a TypeError, a wrong message, or an allocation sized by the file's word.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ContainerReader } from '../../src/container/reader.js';
import { ContainerError, CorruptFrameError, FrameOrderError, TruncatedContainerError } from '../../src/container/errors.js';
import { Decompressor } from '../../src/decompress/piped.js';
import { FRAME_HEADER_LENGTH, FrameKind, PREAMBLE_LENGTH, WRITTEN_CHECKSUM, decodeFrameHeader, encodeFrameHeader } from '../../src/container/format.js';
import { busyStream } from '../helpers/busy-stream.js';
import { compressBuffer, decompressDirect, decompressUntilError } from '../helpers/container.js';

const stream = busyStream({ pages: 64, iterations: 2 }).bytes;
const { container } = await compressBuffer(stream, { codec: 'lz4', frameBytes: 64 * 1024, dedupWindowPages: 1024 });
const dir = mkdtempSync(join(tmpdir(), 'migstream-hostile-header-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The container with its HEADER frame's JSON replaced and every checksum of that frame right. */
function withHeader(json: string): Buffer {
  const { header } = decodeFrameHeader(container.subarray(PREAMBLE_LENGTH, PREAMBLE_LENGTH + FRAME_HEADER_LENGTH));
  const body = Buffer.from(json, 'utf8');
  const sum = WRITTEN_CHECKSUM.of(body);
  const forged = encodeFrameHeader({ ...header, rawLength: body.length, storedLength: body.length, rawChecksum: sum, storedChecksum: sum });
  const rest = container.subarray(PREAMBLE_LENGTH + FRAME_HEADER_LENGTH + header.storedLength);
  return Buffer.concat([container.subarray(0, PREAMBLE_LENGTH), forged, body, rest]);
}

function headerJson(): Record<string, unknown> {
  const frame = new ContainerReader().push(container.subarray(0, 4096))[0]!;
  return JSON.parse(frame.stored.toString('utf8')) as Record<string, unknown>;
}

/** What both readers say about `bytes`. */
async function bothReaders(bytes: Buffer): Promise<unknown[]> {
  return [(await decompressUntilError(bytes)).error, (await decompressDirect(bytes, dir)).error];
}

describe('a container that says what a reader must not act on', () => {
  test('only the 12-byte preamble: truncated before the HEADER frame, in both readers (direct mode threw a TypeError)', async () => {
    for (const error of await bothReaders(container.subarray(0, PREAMBLE_LENGTH))) {
      expect(error).toBeInstanceOf(TruncatedContainerError);
      expect((error as Error).message).toContain('the input ends after the preamble, before the HEADER frame');
    }
  });

  test('a HEADER whose JSON is null, a number or an array is corrupt (was a TypeError)', async () => {
    for (const json of ['null', '7', '[]']) {
      for (const error of await bothReaders(withHeader(json))) {
        expect(error).toBeInstanceOf(CorruptFrameError);
        expect((error as Error).message).toContain('HEADER frame is not a JSON object');
      }
    }
  });

  test('page sizes past 64 KiB and frames past MAX_FRAME_BYTES are refused', async () => {
    for (const change of [{ pageSize: 1 << 20 }, { frameBytes: 2 ** 40 }]) {
      for (const error of await bothReaders(withHeader(JSON.stringify({ ...headerJson(), ...change })))) {
        expect(error).toBeInstanceOf(CorruptFrameError);
        expect((error as Error).message).toContain('HEADER frame has an invalid mode, pageSize, frameBytes or dedupWindowPages');
      }
    }
  });

  test('a window of 2^24 pages costs only the pages stored (64 GiB were allocated up front)', async () => {
    const before = process.memoryUsage().rss;
    for (const error of await bothReaders(withHeader(JSON.stringify({ ...headerJson(), dedupWindowPages: 1 << 24 })))) {
      // The END frame's chain covers the HEADER's raw checksum: the forgery is found there, at the end.
      expect(error === undefined || error instanceof ContainerError, String(error)).toBe(true);
    }
    expect(process.memoryUsage().rss - before).toBeLessThan(512 * 2 ** 20);
  });

  test('an END frame relabelled DATA, its header checksum redone, is refused before the segment holding EOF is written (direct mode wrote the whole stream, then exit 1)', async () => {
    const frames = new ContainerReader().push(container);
    const end = frames.at(-1)!;
    const { header } = decodeFrameHeader(container.subarray(end.offset, end.offset + FRAME_HEADER_LENGTH));
    const forged = Buffer.from(container);
    encodeFrameHeader({ ...header, kind: FrameKind.DATA }).copy(forged, end.offset);
    const piped = await decompressUntilError(forged);
    const direct = await decompressDirect(forged, dir);
    for (const error of [piped.error, direct.error]) {
      expect(error).toBeInstanceOf(CorruptFrameError);
      expect((error as Error).message).toContain('DATA frame in a qemu-mode container');
    }
    expect(piped.written).toBeLessThan(stream.length);
    expect(direct.output.includes(stream.subarray(-256))).toBe(false);
  });

  test('bytes after a good END frame in a later read: refused, and the last segment was not let out (the piped reader wrote the whole stream first)', async () => {
    const out: Buffer[] = [];
    let error: unknown;
    try {
      for await (const piece of new Decompressor({ threads: 1 }).decompress([container, Buffer.from('x')])) out.push(piece);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(FrameOrderError);
    expect((error as Error).message).toContain('data after the END frame');
    expect(Buffer.concat(out).includes(stream.subarray(-256))).toBe(false);
  });

  test('two problems: both readers report the first in file order (the piped reader named the later header problem)', async () => {
    const frames = new ContainerReader().push(container);
    expect(frames.length).toBeGreaterThan(4);
    const damaged = Buffer.from(container);
    // Frame 1's stored bytes fail their checksum; frame 3's header says it is frame 9.
    damaged[frames[1]!.offset + FRAME_HEADER_LENGTH + 10]! ^= 0xff;
    const { header } = decodeFrameHeader(damaged.subarray(frames[3]!.offset, frames[3]!.offset + FRAME_HEADER_LENGTH));
    encodeFrameHeader({ ...header, number: 9 }).copy(damaged, frames[3]!.offset);
    for (const error of await bothReaders(damaged)) {
      expect(error).toBeInstanceOf(CorruptFrameError);
      expect((error as Error).message).toMatch(/^container frame 1 /);
    }
  });
});
