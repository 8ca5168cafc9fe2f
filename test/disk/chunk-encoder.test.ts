/**
 * Chunks into records (src/disk/chunk-encoder.ts): QEMU's ZERO_BLOCK rule (blk_send), and
 * sub-block deltas against the hashes of what was sent.
 */
import { describe, expect, test } from 'vitest';
import { ChunkEncoder, type DiskStreamHeader } from '../../src/disk/index.js';

const KIB = 1024;
const header: DiskStreamHeader = { device: 'disk0', size: 1024 * KIB, chunkSize: 256 * KIB, subBlockSize: 4096 };

function chunk(fill: (data: Buffer) => void): Buffer {
  const data = Buffer.alloc(256 * KIB);
  fill(data);
  return data;
}

describe('whole chunks', () => {
  test('an all-zero chunk is ZERO_BLOCK with zero-blocks, data without (blk_send)', () => {
    const zero = chunk(() => undefined);
    expect(new ChunkEncoder(header).encode(1, zero, false)).toEqual({ type: 'block-zero', device: 'disk0', sector: 512 });
    expect(new ChunkEncoder(header, { zeroBlocks: false }).encode(1, zero, false)).toMatchObject({ type: 'block-data', sector: 512 });
    const one = chunk((d) => (d[100] = 1));
    expect(new ChunkEncoder(header).encode(0, one, false)).toMatchObject({ type: 'block-data', sector: 0 });
  });
});

describe('sub-block deltas', () => {
  test('only the sub-blocks changed since the last send; nothing when none changed; whole when cheaper', () => {
    const encoder = new ChunkEncoder(header, { deltas: true });
    const first = chunk((d) => d.fill(7));
    expect(encoder.encode(2, first, false)).toMatchObject({ type: 'block-data' });
    const second = Buffer.from(first);
    second[5 * 4096 + 3] = 1;
    second[9 * 4096] = 2;
    second[10 * 4096 + 4095] = 3;
    const delta = encoder.encode(2, second, true);
    expect(delta).toMatchObject({ type: 'disk-delta', offset: 512 * KIB, indexes: [5, 9, 10] });
    expect((delta as { data: Buffer }).data.equals(Buffer.concat([second.subarray(5 * 4096, 6 * 4096), second.subarray(9 * 4096, 11 * 4096)]))).toBe(true);
    expect(encoder.encode(2, Buffer.from(second), true)).toBeUndefined();
    const all = chunk((d) => d.fill(9));
    expect(encoder.encode(2, all, true)).toMatchObject({ type: 'block-data' });
  });

  test('a chunk never sent is compared with a blank destination', () => {
    const encoder = new ChunkEncoder(header, { deltas: true });
    const data = chunk((d) => (d[3 * 4096] = 1));
    expect(encoder.encode(3, data, true)).toMatchObject({ type: 'disk-delta', offset: 768 * KIB, indexes: [3] });
  });

  test('zero(): a chunk sent as zeros unread is compared with zeros afterwards (its older content is gone at the destination)', () => {
    const encoder = new ChunkEncoder(header, { deltas: true });
    const full = chunk((d) => d.fill(7));
    expect(encoder.encode(1, full, false)).toMatchObject({ type: 'block-data' });
    expect(encoder.zero(1)).toEqual({ type: 'block-zero', device: 'disk0', sector: 512 });
    // One sub-block written after the zeroing: the delta is that sub-block, not the whole chunk.
    const one = chunk((d) => d.fill(7, 6 * 4096, 7 * 4096));
    expect(encoder.encode(1, one, true)).toMatchObject({ type: 'disk-delta', offset: 256 * KIB, indexes: [6] });
    // Without zero-blocks, the zeros go as data.
    const plain = new ChunkEncoder(header, { zeroBlocks: false });
    const record = plain.zero(3);
    expect(record).toMatchObject({ type: 'block-data', sector: 1536 });
    expect(record.type === 'block-data' && record.data.equals(Buffer.alloc(256 * KIB))).toBe(true);
  });

  test('needs a drive size in whole sub-blocks', () => {
    expect(() => new ChunkEncoder({ ...header, size: 1024 * KIB + 512 }, { deltas: true })).toThrow(/multiple of 4096/);
  });
});
