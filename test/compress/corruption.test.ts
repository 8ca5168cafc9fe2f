/**
 * Damaged containers are detected, never decompressed into a wrong stream: flipped bytes in
 * every part of every frame, truncation anywhere, frames swapped, dropped, repeated or
 * appended. Each case throws a ContainerError naming the frame number and its byte offset, and
 * the decompressor has not written the whole stream (the segment holding QEMU's EOF waits for
 * the END frame).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ContainerReader, type Frame } from '../../src/container/reader.js';
import { ContainerError } from '../../src/container/errors.js';
import { CODEC_IDS, decompressBytes, type CodecId } from '../../src/codecs/registry.js';
import { CutTag, FRAME_HEADER_LENGTH, FrameKind, WRITTEN_CHECKSUM, encodeFrameHeader, frameKindName } from '../../src/container/format.js';
import { CutListBuilder, parseCutList } from '../../src/container/cut-list.js';
import { WorkerPool } from '../../src/workers/pool.js';
import { busyStream } from '../helpers/busy-stream.js';
import { compressBuffer, decompressDirect, decompressUntilError } from '../helpers/container.js';

const stream = busyStream({ pages: 256, iterations: 3 }).bytes;
const { container } = await compressBuffer(stream, { codec: 'zstd', frameBytes: 64 * 1024, dedupWindowPages: 1024 });
const frames: Frame[] = (() => {
  const reader = new ContainerReader();
  const all = reader.push(Buffer.from(container));
  reader.end();
  return all;
})();
/** REF cuts per META frame, from its cut list. */
const refCounts = new Map<number, number>();
for (const frame of frames.filter((f) => f.kind === FrameKind.META)) {
  const parsed = parseCutList(frame.codec === CODEC_IDS.none ? frame.stored : await rawBytes(frame), 4096);
  if (typeof parsed === 'string') throw new Error(parsed);
  let refs = 0;
  for (let i = 0; i < parsed.cuts.count; i++) if (parsed.cuts.tags[i] === CutTag.REF) refs++;
  refCounts.set(frame.number, refs);
}
const dir = mkdtempSync(join(tmpdir(), 'migstream-corruption-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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
    const header = encodeFrameHeader({
      kind: a.kind,
      codec: b.codec,
      flags: 0,
      number: a.number,
      rawLength: b.rawLength,
      storedLength: raw.length,
      rawChecksum: b.rawChecksum,
      storedChecksum: b.storedChecksum,
    });
    const forged = Buffer.concat([container.subarray(0, a.offset), header, raw, container.subarray(a.offset + span(a).length)]);
    const { error, written } = await decompressUntilError(forged, { pool });
    expect(error).toBeInstanceOf(ContainerError);
    // Caught by what the frames say together (END chain, cut list, page window), not by the
    // forged frame's own checksums, which are valid.
    expect((error as Error).message).not.toMatch(/fails? (its|their) checksum/);
    expect(written).toBeLessThan(stream.length);
  });

  test('a page reference whose page is not the one the compressor saw, on both paths', async () => {
    // A META frame rewritten (stored uncompressed, every checksum valid) with its first REF
    // cut's page checksum changed: only the check of the resolved page can tell.
    const meta = frames.find((f) => f.kind === FrameKind.META && f.codec !== CODEC_IDS.none && (refCounts.get(f.number) ?? 0) > 0)!;
    const parsed = parseCutList(await rawBytes(meta), 4096);
    if (typeof parsed === 'string') throw new Error(parsed);
    const builder = new CutListBuilder(4096);
    let changed = false;
    for (let i = 0; i < parsed.cuts.count; i++) {
      const gap = parsed.cuts.gaps[i]!;
      const tag = parsed.cuts.tags[i]!;
      if (tag === CutTag.PAGE) builder.page(gap);
      else if (tag === CutTag.BYTES) builder.span(gap, parsed.cuts.args[i]!);
      else {
        builder.ref(gap, parsed.cuts.args[i]!, changed ? parsed.cuts.checks[i]! : (parsed.cuts.checks[i]! ^ 1) >>> 0);
        changed = true;
      }
    }
    const raw = Buffer.concat([builder.encode(), (await rawBytes(meta)).subarray(parsed.structureOffset)]);
    const sum = WRITTEN_CHECKSUM.of(raw);
    const header = encodeFrameHeader({ kind: FrameKind.META, codec: CODEC_IDS.none, flags: 0, number: meta.number, rawLength: raw.length, storedLength: raw.length, rawChecksum: sum, storedChecksum: sum });
    const forged = Buffer.concat([container.subarray(0, meta.offset), header, raw, container.subarray(meta.offset + span(meta).length)]);
    const general = await expectDetected(forged, 'general path', meta);
    expect(general.message).toMatch(/the page referenced \d+ stored pages back is not the page the compressor saw: expected XXH64 \(low 32 bits\) 0x[0-9a-f]{8}, got 0x[0-9a-f]{8}/);
    const direct = await decompressDirect(forged, dir);
    expect(direct.error).toBeInstanceOf(ContainerError);
    expect((direct.error as Error).message).toBe(general.message);
    expect(direct.output.length).toBeLessThan(stream.length);
  });
});

async function rawBytes(frame: Frame): Promise<Buffer> {
  return decompressBytes(frame.codec as CodecId, frame.stored, frame.rawLength);
}
