/**
 * Direct mode (a container file into a file descriptor, what `-incoming "exec:migstream
 * decompress FILE"` runs): the same bytes as the general path, and the same detection of every
 * kind of damage, naming frame and offset, with the stream never written whole.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ContainerReader, type Frame } from '../../src/container/reader.js';
import { DirectDecompressor } from '../../src/decompress/direct.js';
import { ContainerError } from '../../src/container/errors.js';
import { FRAME_HEADER_LENGTH, frameKindName } from '../../src/container/format.js';
import * as blk from '../helpers/block-bytes.js';
import { busyStream } from '../helpers/busy-stream.js';
import { compressBuffer, decompressDirect } from '../helpers/container.js';
import { PAGE, eosBytes, memSizeBytes, pageBytes, pattern } from '../helpers/ram-bytes.js';
import { Bytes, configuration, footer, header, sectionStart } from '../helpers/stream-bytes.js';

const dir = mkdtempSync(join(tmpdir(), 'migstream-direct-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const stream = busyStream({ pages: 256, iterations: 3 }).bytes;
const { container } = await compressBuffer(stream, { codec: 'lz4', frameBytes: 64 * 1024 });
const frames: Frame[] = (() => {
  const reader = new ContainerReader();
  const all = reader.push(Buffer.from(container));
  reader.end();
  return all;
})();

function direct(bytes: Buffer): Promise<{ output: Buffer; error: unknown }> {
  return decompressDirect(bytes, dir);
}

describe('direct mode', () => {
  test('writes the identical stream', async () => {
    const { output, error } = await direct(container);
    expect(error).toBeUndefined();
    expect(output.equals(stream)).toBe(true);
  });

  test('writes the identical stream of every codec, with and without a page window', async () => {
    for (const codec of ['zstd', 'lz4', 'zlib', 'none'] as const) {
      for (const dedupWindowPages of [0, 2, 1024]) {
        const packed = (await compressBuffer(stream, { codec, frameBytes: 64 * 1024, dedupWindowPages })).container;
        const { output, error } = await direct(packed);
        expect(error, `${codec}, window ${dedupWindowPages}`).toBeUndefined();
        expect(output.equals(stream), `${codec}, window ${dedupWindowPages}`).toBe(true);
      }
    }
  });

  test('resolves page references from PAYLOAD buffers it keeps, reused only once out of the window', async () => {
    // Many more segments than the window spans, pages repeating from far back and near.
    const repeated = busyStream({ pages: 512, iterations: 6 }).bytes;
    const packed = await compressBuffer(repeated, { codec: 'lz4', frameBytes: 64 * 1024, dedupWindowPages: 64 });
    expect(packed.compressor.stats.refs).toBeGreaterThan(0);
    const { output, error } = await direct(packed.container);
    expect(error).toBeUndefined();
    expect(output.equals(repeated)).toBe(true);
  });

  test('detects damage in every frame, names it, and never writes the whole stream', async () => {
    const cases: [string, Buffer, Frame | undefined][] = [];
    for (const frame of frames) {
      for (const at of [3, 21, FRAME_HEADER_LENGTH + (frame.stored.length >> 1)]) {
        const damaged = Buffer.from(container);
        damaged[frame.offset + at]! ^= 0x20;
        cases.push([`frame ${frame.number} (${frameKindName(frame.kind)}) byte ${at}`, damaged, frame]);
      }
      cases.push([`cut inside frame ${frame.number}`, container.subarray(0, frame.offset + FRAME_HEADER_LENGTH + (frame.stored.length >> 1)), undefined]);
    }
    const [a, b] = [frames[3]!, frames[4]!];
    const span = (f: Frame): Buffer => container.subarray(f.offset, f.offset + FRAME_HEADER_LENGTH + f.stored.length);
    cases.push(['swapped frames', Buffer.concat([container.subarray(0, a.offset), span(b), span(a), container.subarray(b.offset + span(b).length)]), a]);
    cases.push(['junk after END', Buffer.concat([container, Buffer.from('x')]), undefined]);
    cases.push(['last byte missing', container.subarray(0, container.length - 1), undefined]);
    for (const [what, damaged, frame] of cases) {
      const { error, output } = await direct(damaged);
      expect(error, what).toBeInstanceOf(ContainerError);
      expect((error as Error).message, what).toMatch(/container frame \d+ .*at offset \d+ \(0x/);
      if (frame) expect((error as ContainerError).frame, what).toBe(frame.number);
      expect(output.length, what).toBeLessThan(stream.length);
    }
    expect(statSync(join(dir, 'out.mig')).size).toBeLessThan(stream.length);
  }, 120_000);

  test('keeps the page window bounded when its pages are spread over large PAYLOAD buffers', async () => {
    // Each segment: a 1 MiB disk chunk and one RAM page, so each PAYLOAD buffer holds a single
    // window page. Kept whole, 64 window pages would pin 64 buffers of over 1 MiB.
    const sparse = sparseStream(120);
    const packed = (await compressBuffer(sparse, { codec: 'lz4', dedupWindowPages: 64 })).container;
    const input = join(dir, 'sparse.msz');
    const output = join(dir, 'sparse.mig');
    writeFileSync(input, packed);
    const fd = openSync(output, 'w');
    const decompressor = new DirectDecompressor();
    try {
      await decompressor.run(input, fd);
    } finally {
      closeSync(fd);
    }
    expect(readFileSync(output).equals(sparse)).toBe(true);
    // Segments in flight take about ten 5 MiB buffers (50 MiB here). The window's 64 pages take
    // 256 KiB, but kept whole, the PAYLOADs holding them pinned 160 MiB more.
    expect(decompressor.memory.peakBufferBytes).toBeGreaterThan(0);
    expect(decompressor.memory.peakBufferBytes).toBeLessThan(80 * 1024 * 1024);
  });
});

/** A stream of `segments` × (a 1 MiB disk chunk, one RAM page). */
function sparseStream(segments: number): Buffer {
  const parts: Buffer[] = [];
  let b = new Bytes();
  header(b);
  configuration(b, 'pc-i440fx-7.2');
  sectionStart(b, 1, 2, 'ram', 0, 4)
    .raw(memSizeBytes([{ idstr: 'pc.ram', length: segments * PAGE }]))
    .raw(eosBytes());
  footer(b, 2);
  sectionStart(b, 1, 3, 'block', 0, 1).raw(blk.eosBytes());
  footer(b, 3);
  for (let i = 0; i < segments; i++) {
    b.u8(0x02).be32(3);
    parts.push(b.build(), blk.dataBytes('disk0', i * 2048, Buffer.alloc(blk.MIB, i)), blk.eosBytes());
    b = new Bytes();
    footer(b, 3);
    b.u8(0x02)
      .be32(2)
      .raw(pageBytes(i === 0 ? 'pc.ram' : null, i * PAGE, pattern(i)))
      .raw(eosBytes());
    footer(b, 2);
  }
  b.u8(0x00);
  parts.push(b.build());
  return Buffer.concat(parts);
}
