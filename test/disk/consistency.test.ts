/**
 * hashDrive and compareChunkHashes (src/disk/consistency.ts) against an in-memory export: the
 * hashes are XXH64 of each chunk's bytes, chunks wholly inside a ZERO extent are not read, and
 * differences are named.
 */
import { describe, expect, test } from 'vitest';
import { compareChunkHashes, hashDrive } from '../../src/disk/consistency.js';
import { BASE_ALLOCATION } from '../../src/disk/pass-plan.js';
import { hash64 } from '../../src/native.js';
import type { NbdClient } from '../../src/nbd/client.js';
import { NBD_STATE_HOLE, NBD_STATE_ZERO } from '../../src/nbd/constants.js';
import type { Extent } from '../../src/nbd/transmission.js';

const MIB = 1024 * 1024;

/** An export over `bytes` that records its reads; `extents` answers base:allocation when given. */
function memoryExport(bytes: Buffer, extents?: Extent[]): { nbd: NbdClient; reads: number[] } {
  const reads: number[] = [];
  const nbd = {
    size: bytes.length,
    peer: 'memory',
    contexts: extents === undefined ? [] : [BASE_ALLOCATION],
    blockStatus: (offset: number, length: number, context: string): Promise<Extent[]> => {
      expect([offset, length, context]).toEqual([0, bytes.length, BASE_ALLOCATION]);
      return Promise.resolve(extents!);
    },
    read: (offset: number, length: number): Promise<Buffer> => {
      reads.push(offset);
      return Promise.resolve(Buffer.from(bytes.subarray(offset, offset + length)));
    },
  };
  return { nbd: nbd as unknown as NbdClient, reads };
}

describe('hashDrive', () => {
  // 5 MiB + 512 bytes: data in [0, 1.5 MiB) and [4 MiB, end), zeros between.
  const size = 5 * MIB + 512;
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < 1.5 * MIB; i++) bytes[i] = (i * 31 + 7) & 0xff;
  for (let i = 4 * MIB; i < size; i++) bytes[i] = (i * 17 + 3) & 0xff;
  const expected = [0, 1, 2, 3, 4, 5].map((chunk) => hash64(bytes.subarray(chunk * MIB, Math.min(size, (chunk + 1) * MIB))));

  test('without base:allocation every chunk is read and hashed, the last one short', async () => {
    const { nbd, reads } = memoryExport(bytes);
    expect([...(await hashDrive(nbd, { size, chunkSize: MIB }))]).toEqual(expected);
    expect(reads).toEqual([0, 1, 2, 3, 4, 5].map((c) => c * MIB));
  });

  test('chunks wholly inside ZERO extents are not read and get the hash of zeros; a chunk the extent only partly covers is read', async () => {
    const extents: Extent[] = [
      { offset: 0, length: 1.5 * MIB, flags: 0 },
      { offset: 1.5 * MIB, length: 1.5 * MIB, flags: NBD_STATE_HOLE | NBD_STATE_ZERO },
      { offset: 3 * MIB, length: 1 * MIB, flags: NBD_STATE_ZERO },
      { offset: 4 * MIB, length: size - 4 * MIB, flags: 0 },
    ];
    const { nbd, reads } = memoryExport(bytes, extents);
    expect([...(await hashDrive(nbd, { size, chunkSize: MIB }))]).toEqual(expected);
    // Chunk 1 is half data: read. Chunks 2 and 3 are zeros (two extents of different flags, each
    // covering one whole chunk): not read.
    expect(reads).toEqual([0, 1 * MIB, 4 * MIB, 5 * MIB]);
  });

  test('a zero extent that ends inside the last short chunk leaves it unread only if it covers it', async () => {
    const tail = Buffer.alloc(2 * MIB + 512);
    const { nbd, reads } = memoryExport(tail, [{ offset: 0, length: tail.length, flags: NBD_STATE_ZERO }]);
    const hashes = await hashDrive(nbd, { size: tail.length, chunkSize: MIB });
    expect([...hashes]).toEqual([hash64(Buffer.alloc(MIB)), hash64(Buffer.alloc(MIB)), hash64(Buffer.alloc(512))]);
    expect(reads).toEqual([]);
  });
});

describe('compareChunkHashes', () => {
  test('names the first differing chunks and counts them all', () => {
    const a = new BigUint64Array([1n, 2n, 3n, 4n]);
    const b = new BigUint64Array([1n, 9n, 3n, 9n]);
    expect(compareChunkHashes(a, b, MIB)).toEqual({
      count: 2,
      first: [
        { chunk: 1, offset: MIB },
        { chunk: 3, offset: 3 * MIB },
      ],
    });
    expect(compareChunkHashes(a, a, MIB)).toEqual({ count: 0, first: [] });
    expect(() => compareChunkHashes(a, b.subarray(0, 3), MIB)).toThrow(/not the same drive size/);
  });
});
