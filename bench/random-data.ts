/**
 * Seeded data for the benches: the same bits and the same disk images on every run, so runs
 * and machines compare.
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';

const MIB = 1024 * 1024;

/** xorshift32: numbers in [0, 1), the same sequence for the same seed. */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/**
 * A raw image of `bytes` (whole MiB): each MiB `dataAt(mib)` says holds data gets incompressible
 * bytes (no two MiB alike), the others stay a hole. Returns the bytes of data written.
 */
export function writeRandomImage(path: string, bytes: number, dataAt: (mib: number) => boolean = () => true): number {
  const block = Buffer.alloc(MIB);
  let x = 0x9e3779b9;
  for (let i = 0; i < block.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    block.writeUInt32LE(x >>> 0, i);
  }
  const fd = openSync(path, 'w');
  let data = 0;
  try {
    for (let at = 0; at < bytes; at += MIB) {
      if (!dataAt(at / MIB)) continue;
      block.writeUInt32LE(at / MIB, 0);
      writeSync(fd, block, 0, MIB, at);
      data += MIB;
    }
    ftruncateSync(fd, bytes);
  } finally {
    closeSync(fd);
  }
  return data;
}
