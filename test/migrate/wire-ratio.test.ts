import { randomBytes } from 'node:crypto';
import { describe, expect, test } from 'vitest';
import { CODEC_IDS, compressBytes } from '../../src/codecs/registry.js';
import { WireRatioSampler } from '../../src/migrate/wire-ratio.js';
import { ArgumentError } from '../../src/stream/errors.js';

const PAGE = 4096;

/** A page of text-like bytes that lz4 shrinks a lot, different per page. */
function textPage(n: number): Buffer {
  const line = Buffer.from(`row ${n}: the quick brown fox jumps over the lazy dog ${n * 7}\n`);
  const page = Buffer.alloc(PAGE);
  for (let at = 0; at < PAGE; at += line.length) line.copy(page, at);
  return page;
}

describe('the wire ratio send will get, from a sample of RAM', () => {
  test('random pages do not shrink; zero-page records shrink to almost nothing', async () => {
    const sampler = new WireRatioSampler({ codec: CODEC_IDS.lz4, level: 1, frameBytes: 1 << 20, pageSize: PAGE });
    for (let i = 0; i < 64; i++) await sampler.addPage(randomBytes(PAGE), false);
    for (let i = 0; i < 64; i++) await sampler.addPage(Buffer.alloc(PAGE), true);
    const r = await sampler.finish();
    // 64 records of 8 + 4096 bytes and 64 of 8 + 1 bytes.
    expect(r.sampledStreamBytes).toBe(64 * 4104 + 64 * 9);
    // Random data: send keeps the frame raw, so the ratio is exactly 1.
    expect(r.normalPages).toBe(1);
    expect(r.firstPass).toBeLessThan(1);
    expect(r.firstPass).toBeGreaterThan((64 * 4104) / r.sampledStreamBytes);
  });

  test('the ratio is what the codec makes of the records, frame by frame', async () => {
    const frameBytes = 3 * 4104;
    const sampler = new WireRatioSampler({ codec: CODEC_IDS.zstd, level: 3, frameBytes, pageSize: PAGE });
    const pages = Array.from({ length: 7 }, (_, i) => textPage(i));
    for (const page of pages) await sampler.addPage(page, false);
    const r = await sampler.finish();
    // The same records built by hand: header = be64(offset | PAGE 0x08 | CONTINUE 0x20).
    const records = pages.map((page, i) => {
      const header = Buffer.alloc(8);
      header.writeBigUInt64BE(BigInt(i * PAGE) | 0x28n);
      return Buffer.concat([header, page]);
    });
    let wire = 0;
    for (let i = 0; i < records.length; i += 3) wire += (await compressBytes(CODEC_IDS.zstd, 3, Buffer.concat(records.slice(i, i + 3)))).length;
    expect(r.normalPages).toBeCloseTo(wire / (7 * 4104), 9);
    expect(r.normalPages).toBeLessThan(0.2);
  });

  test('an empty sample is a ratio of 1; bad sizes are argument errors', async () => {
    const sampler = new WireRatioSampler({ codec: CODEC_IDS.lz4, level: 1, frameBytes: 1 << 16, pageSize: PAGE });
    expect(await sampler.finish()).toEqual({ firstPass: 1, normalPages: 1, sampledStreamBytes: 0 });
    await expect(sampler.addPage(Buffer.alloc(100), false)).rejects.toThrow(ArgumentError);
    expect(() => new WireRatioSampler({ codec: CODEC_IDS.lz4, level: 1, frameBytes: 100, pageSize: PAGE })).toThrow(/frameBytes/);
  });
});
