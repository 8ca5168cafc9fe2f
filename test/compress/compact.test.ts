/**
 * Compaction keeps the final RAM and sends each page once: checked with RamImage against the
 * original stream, on the hand-built streams (the real-QEMU loads are in qemu-restore tests).
 */
import { describe, expect, test } from 'vitest';
import { decodeBuffer, type MigrationRecord } from '../../src/codec.js';
import { Compactor, compactedBytes } from '../../src/ram/compact.js';
import { ContainerReader } from '../../src/container/reader.js';
import { MemoryPageStore, RamImage } from '../../src/ram/index.js';
import { busyStream } from '../helpers/busy-stream.js';
import { compressBuffer, decompressBuffer, pieces } from '../helpers/container.js';
import { sampleStream } from '../helpers/sample-stream.js';

async function compact(data: Buffer): Promise<{ bytes: Buffer; compactor: Compactor }> {
  const compactor = new Compactor(() => pieces(data, 100_000));
  const out: Buffer[] = [];
  for await (const chunk of compactedBytes(compactor)) out.push(chunk);
  return { bytes: Buffer.concat(out), compactor };
}

function finalRam(records: readonly MigrationRecord[]): Map<string, Buffer> {
  const image = new RamImage(new MemoryPageStore(), { pageSize: 4096 });
  for (const record of records) image.apply(record);
  return new Map(image.finish().map((block) => [block.idstr, block.data]));
}

function pageKeys(records: readonly MigrationRecord[]): string[] {
  return records.flatMap((r) => ('offset' in r && 'block' in r && r.type.startsWith('ram-') ? [`${r.block}:${r.offset}`] : []));
}

describe('compaction', () => {
  for (const [name, data] of [
    ['busy stream', busyStream().bytes],
    ['sample stream', sampleStream().bytes],
  ] as const) {
    test(`${name}: same final RAM, every page once, no XBZRLE left`, async () => {
      const { bytes, compactor } = await compact(data);
      const before = decodeBuffer(data);
      const after = decodeBuffer(bytes); // also checks CONTINUE: a bad one does not decode
      const [ramAfter, ramBefore] = [finalRam(after), finalRam(before)];
      expect([...ramAfter.keys()]).toEqual([...ramBefore.keys()]);
      for (const [idstr, content] of ramBefore) expect(ramAfter.get(idstr)!.equals(content), idstr).toBe(true);
      const keys = pageKeys(after);
      expect(new Set(keys).size).toBe(keys.length);
      expect(new Set(keys)).toEqual(new Set(pageKeys(before)));
      expect(after.some((r) => r.type === 'ram-xbzrle')).toBe(false);
      expect(bytes.length).toBeLessThan(data.length);
      expect(compactor.stats.pageRecordsOut).toBe(keys.length);
      // Everything but RAM pages is kept, in order.
      const other = (records: readonly MigrationRecord[]): string[] => records.filter((r) => !r.type.startsWith('ram-') || r.type === 'ram-eos' || r.type === 'ram-mem-size').map((r) => r.type);
      expect(other(after)).toEqual(other(before));
    });
  }

  test('XBZRLE deltas on top of earlier pages are materialized', async () => {
    const { compactor } = await compact(busyStream().bytes);
    expect(compactor.stats.materialized).toBeGreaterThan(5);
  });

  test('compacting is idempotent', async () => {
    const once = (await compact(busyStream().bytes)).bytes;
    expect((await compact(once)).bytes.equals(once)).toBe(true);
  });

  test('compress --compact: the container says so and restores the compacted stream', async () => {
    const data = busyStream().bytes;
    const { bytes } = await compact(data);
    const { container } = await compressBuffer(Buffer.alloc(0), { compacted: true }, compactedBytes(new Compactor(() => pieces(data))));
    const reader = new ContainerReader();
    const [header] = reader.push(container);
    expect(JSON.parse(header!.stored.toString()).compacted).toBe(true);
    expect((await decompressBuffer(container)).equals(bytes)).toBe(true);
  });
});
