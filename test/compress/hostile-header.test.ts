/**
 * Containers whose HEADER or length says something a reader must not act on, found by the
 * fuzzer (npm run fuzz, targets "decompress" and "direct"): each failed before its fix, with
 * a TypeError, a wrong message, or an allocation sized by the file's word.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ContainerReader } from '../../src/compress/container-reader.js';
import { ContainerError, CorruptFrameError, TruncatedContainerError } from '../../src/compress/errors.js';
import { FRAME_HEADER_LENGTH, PREAMBLE_LENGTH, WRITTEN_CHECKSUM, decodeFrameHeader, encodeFrameHeader } from '../../src/compress/format.js';
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
});
