/**
 * Disk consistency (issue 16 item 5): after the last pass, the destination drive must hold
 * what the source drive holds. Each side hashes its drive per chunk (XXH64 of the chunk's bytes
 * inside the drive), read through its NBD export; the hashes are compared (pure), naming the
 * first chunks that differ and how many.
 *
 * Hashes, not bytes, are compared so that each side can hash its own drive where it is and send
 * 8 bytes per chunk (the destination's later travel over the control port; here both exports
 * are read by the caller).
 */
import { hash64 } from '../native.js';
import type { NbdClient } from '../nbd/client.js';
import { NBD_STATE_ZERO } from '../nbd/constants.js';
import type { Extent } from '../nbd/transmission.js';
import { BASE_ALLOCATION } from './pass-plan.js';
import { ArgumentError } from '../stream/errors.js';
import { DiskMismatchError, DiskSizeError, type ChunkDifference } from './errors.js';

/** Chunks named in a mismatch at most. */
export const MISMATCHES_SHOWN = 8;

export interface HashDriveOptions {
  /** Bytes of the drive to hash: the source drive's size. */
  readonly size: number;
  readonly chunkSize: number;
  /** Bytes read ahead at most. Default 16 MiB. */
  readonly windowBytes?: number;
}

/**
 * XXH64 of every chunk of the first `size` bytes of the export, read `windowBytes` ahead. When
 * the connection selected `base:allocation`, a chunk inside one extent that reads as zeros
 * (NBD_STATE_ZERO: proto.md, reads there return zeros) gets the hash of zeros without being read,
 * as `qemu-img compare` skips what both sides report as zero: the check runs with the guest
 * paused, and a sparse drive's holes would otherwise be read in full (bench:disk measures it).
 */
export async function hashDrive(nbd: NbdClient, options: HashDriveOptions): Promise<BigUint64Array> {
  const { size, chunkSize } = options;
  if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new ArgumentError(`chunk size must be a positive integer, got ${chunkSize}`);
  if (nbd.size < size) throw new ArgumentError(`nbd ${nbd.peer}: the export has ${nbd.size} bytes, fewer than the ${size} to hash`);
  const chunks = Math.ceil(size / chunkSize);
  const hashes = new BigUint64Array(chunks);
  const zero = nbd.contexts.includes(BASE_ALLOCATION) ? zeroChunks(await nbd.blockStatus(0, size, BASE_ALLOCATION), size, chunkSize) : undefined;
  const zeroHashes = new Map<number, bigint>();
  const zeroHash = (length: number): bigint => {
    let hash = zeroHashes.get(length);
    if (hash === undefined) zeroHashes.set(length, (hash = hash64(Buffer.alloc(length))));
    return hash;
  };
  const window = Math.max(1, Math.floor((options.windowBytes ?? 16 * 1024 * 1024) / chunkSize));
  const pending: { index: number; read: Promise<Buffer> }[] = [];
  // The window's buffers, reused: a fresh 1 MiB buffer a chunk costs its allocation and page faults.
  const free: Buffer[] = [];
  const finishOldest = async (): Promise<void> => {
    const { index, read } = pending.shift()!;
    const data = await read;
    hashes[index] = hash64(data);
    if (data.length === chunkSize) free.push(data);
  };
  try {
    for (let index = 0; index < chunks; index++) {
      const offset = index * chunkSize;
      if (zero?.[index] === 1) {
        hashes[index] = zeroHash(Math.min(chunkSize, size - offset));
        continue;
      }
      if (pending.length >= window) await finishOldest();
      const length = Math.min(chunkSize, size - offset);
      const read = length === chunkSize ? nbd.read(offset, length, free.pop() ?? Buffer.allocUnsafeSlow(chunkSize)) : nbd.read(offset, length);
      read.catch(() => undefined);
      pending.push({ index, read });
    }
    while (pending.length > 0) await finishOldest();
  } finally {
    await Promise.allSettled(pending.map((p) => p.read));
  }
  return hashes;
}

/** 1 for each chunk that lies wholly inside extents flagged NBD_STATE_ZERO. */
function zeroChunks(extents: readonly Extent[], size: number, chunkSize: number): Uint8Array {
  const zero = new Uint8Array(Math.ceil(size / chunkSize));
  for (const extent of extents) {
    if ((extent.flags & NBD_STATE_ZERO) === 0) continue;
    const end = Math.min(size, extent.offset + extent.length);
    // Chunks from the first that starts inside the extent to the last that ends inside it.
    for (let chunk = Math.ceil(extent.offset / chunkSize); chunk * chunkSize < end; chunk++) {
      if (Math.min(size, (chunk + 1) * chunkSize) <= end) zero[chunk] = 1;
    }
  }
  return zero;
}

export interface HashComparison {
  /** Chunks that differ. */
  readonly count: number;
  /** The first of them, at most MISMATCHES_SHOWN. */
  readonly first: readonly ChunkDifference[];
}

/** Compares two per-chunk hash lists of the same drive size (pure). */
export function compareChunkHashes(source: BigUint64Array, destination: BigUint64Array, chunkSize: number): HashComparison {
  if (source.length !== destination.length) {
    throw new ArgumentError(`hash lists of ${source.length} and ${destination.length} chunks: not the same drive size`);
  }
  let count = 0;
  const first: ChunkDifference[] = [];
  for (let chunk = 0; chunk < source.length; chunk++) {
    if (source[chunk] === destination[chunk]) continue;
    count++;
    if (first.length < MISMATCHES_SHOWN) first.push({ chunk, offset: chunk * chunkSize });
  }
  return { count, first };
}

export interface ConsistencyOptions {
  /** The drive's name, for errors. */
  readonly drive: string;
  /** The source drive's size; the destination's export must be at least as large. */
  readonly size: number;
  /** Hash granule: default 1 MiB. */
  readonly chunkSize?: number;
  readonly windowBytes?: number;
}

export interface ConsistencyReport {
  readonly chunks: number;
  readonly chunkSize: number;
  readonly bytes: number;
  readonly ms: number;
}

/**
 * Hashes both drives and compares them: resolves when every chunk matches, else throws
 * DiskMismatchError naming the first chunks that differ and how many.
 */
export async function checkDiskConsistency(source: NbdClient, destination: NbdClient, options: ConsistencyOptions): Promise<ConsistencyReport> {
  const started = Date.now();
  const chunkSize = options.chunkSize ?? 1024 * 1024;
  const { size, drive } = options;
  if (source.size !== size) throw new DiskSizeError('the source export is not the drive checked', size, source.size, { drive, peer: source.peer });
  if (destination.size < size) throw new DiskSizeError("the destination's export is smaller than the source drive", size, destination.size, { drive, peer: destination.peer });
  const hashOptions = { size, chunkSize, windowBytes: options.windowBytes };
  const [a, b] = await Promise.all([hashDrive(source, hashOptions), hashDrive(destination, hashOptions)]);
  const { count, first } = compareChunkHashes(a, b, chunkSize);
  if (count > 0) throw new DiskMismatchError(count, first, chunkSize, { drive, peer: source.peer, destination: destination.peer });
  return { chunks: a.length, chunkSize, bytes: size, ms: Date.now() - started };
}
