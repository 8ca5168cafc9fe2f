/**
 * Damaged containers are detected, never decompressed into a wrong stream: flipped bytes in
 * every part of every frame, truncation anywhere, frames swapped, dropped, repeated or
 * appended. Each case throws a ContainerError naming the frame number and its byte offset, and
 * the decompressor has not written the whole stream (the segment holding QEMU's EOF waits for
 * the END frame).
 */
import { afterAll, describe, expect, test } from 'vitest';
import { ContainerReader, type Frame } from '../../src/compress/container-reader.js';
import { ContainerError } from '../../src/compress/errors.js';
import { FRAME_HEADER_LENGTH, FrameKind, encodeFrameHeader, frameKindName } from '../../src/compress/format.js';
import { xxh32 } from '../../src/compress/checksum.js';
import { WorkerPool } from '../../src/compress/pool.js';
import { busyStream } from '../helpers/busy-stream.js';
import { compressBuffer, decompressUntilError } from '../helpers/container.js';

const stream = busyStream({ pages: 256, iterations: 3 }).bytes;
const { container } = await compressBuffer(stream, { codec: 'zstd', frameBytes: 64 * 1024, dedupWindowPages: 1024 });
const frames: Frame[] = (() => {
  const reader = new ContainerReader();
  const all = reader.push(Buffer.from(container));
  reader.end();
  return all;
})();

function span(frame: Frame): Buffer {
  return container.subarray(frame.offset, frame.offset + FRAME_HEADER_LENGTH + frame.stored.length);
}

// One pool for the hundreds of runs below: each run would otherwise start its own workers.
const pool = new WorkerPool(2);
afterAll(() => pool.close());

async function expectDetected(damaged: Buffer, what: string, frame?: Frame): Promise<ContainerError> {
  const { written, error } = await decompressUntilError(damaged, { pool });
  expect(error, what).toBeInstanceOf(ContainerError);
  const containerError = error as ContainerError;
  expect(containerError.message, what).toMatch(/at offset \d+ \(0x[0-9a-f]+\)/);
  if (frame !== undefined) {
    expect(containerError.frame, what).toBe(frame.number);
    expect(containerError.offset, what).toBe(frame.offset);
    expect(containerError.message, what).toContain(`container frame ${frame.number}`);
  }
  expect(written, `${what}: nothing past the last good segment`).toBeLessThan(stream.length);
  return containerError;
}

describe('corruption', () => {
  test('the undamaged container has every kind of frame', () => {
    const kinds = new Set(frames.map((f) => frameKindName(f.kind)));
    expect([...kinds].sort()).toEqual(['END', 'HEADER', 'META', 'PAYLOAD']);
    expect(frames.length).toBeGreaterThan(20);
  });

  test('a flipped byte in the header, the stored bytes or the checksum of every frame', async () => {
    for (const frame of frames) {
      const length = FRAME_HEADER_LENGTH + frame.stored.length;
      const positions = new Set([0, 5, 9, 13, 17, 21, 25, FRAME_HEADER_LENGTH, length >> 1, length - 1]);
      for (const at of positions) {
        if (at >= length) continue;
        const damaged = Buffer.from(container);
        damaged[frame.offset + at]! ^= 0x40;
        await expectDetected(damaged, `frame ${frame.number} (${frameKindName(frame.kind)}) byte ${at}`, frame);
      }
    }
  }, 60_000);

  test('a flipped byte in the preamble', async () => {
    for (let at = 0; at < 12; at++) {
      const damaged = Buffer.from(container);
      damaged[at]! ^= 0x01;
      const error = await expectDetected(damaged, `preamble byte ${at}`);
      expect(error.code).toBe('ERR_CONTAINER_MAGIC');
    }
  });

  test('truncation at every frame boundary and inside every frame', async () => {
    for (const frame of frames) {
      for (const cut of [frame.offset, frame.offset + 10, frame.offset + FRAME_HEADER_LENGTH + (frame.stored.length >> 1)]) {
        const error = await expectDetected(container.subarray(0, cut), `cut at ${cut}`);
        expect(error.code).toBe('ERR_CONTAINER_TRUNCATED');
      }
    }
    await expectDetected(container.subarray(0, container.length - 1), 'last byte missing');
  }, 60_000);

  test('frames swapped, dropped, repeated, or junk appended', async () => {
    const cases: [string, Buffer, Frame][] = [];
    for (let i = 1; i + 1 < frames.length; i += 3) {
      const a = frames[i]!;
      const b = frames[i + 1]!;
      const before = container.subarray(0, a.offset);
      const after = container.subarray(b.offset + span(b).length);
      cases.push([`swap ${i} and ${i + 1}`, Buffer.concat([before, span(b), span(a), after]), a]);
      cases.push([`drop ${i}`, Buffer.concat([before, container.subarray(b.offset)]), a]);
      cases.push([`repeat ${i}`, Buffer.concat([container.subarray(0, b.offset), span(a), container.subarray(b.offset)]), b]);
    }
    for (const [what, damaged, frame] of cases) {
      const error = await expectDetected(damaged, what);
      expect(error.frame, what).toBe(frame.number);
    }
    const end = frames.at(-1)!;
    const junk = await expectDetected(Buffer.concat([container, Buffer.from('junk')]), 'junk after END');
    expect(junk.message).toMatch(/data after the END frame/);
    expect(end.kind).toBe(FrameKind.END);
  }, 60_000);

  test('a frame rewritten with valid checksums but wrong content is caught by the END chain', async () => {
    // Replace a META frame's bytes (and all its checksums) by those of another segment's META:
    // each frame checks out alone; the stream does not.
    const metas = frames.filter((f) => f.kind === FrameKind.META && f.codec === frames[1]!.codec);
    const [a, b] = [metas[2]!, metas[3]!];
    const raw = b.stored;
    const header = encodeFrameHeader({ kind: a.kind, codec: b.codec, flags: 0, number: a.number, rawLength: b.rawLength, storedLength: raw.length, rawChecksum: b.rawChecksum, storedChecksum: xxh32(raw) });
    const forged = Buffer.concat([container.subarray(0, a.offset), header, raw, container.subarray(a.offset + span(a).length)]);
    const { error, written } = await decompressUntilError(forged, { pool });
    expect(error).toBeInstanceOf(ContainerError);
    expect(written).toBeLessThan(stream.length);
  });
});
