/**
 * Byte mutations of a seed, AFL-style: bit flips, interesting values at length-shaped places,
 * truncation, splices from other seeds, duplicated and dropped records, and random chunking of
 * the result. Pure: the same Random gives the same input.
 */
import type { Random } from './random.js';

export interface SeedInput {
  /** Which seed this is, for reports. */
  readonly name: string;
  readonly bytes: Buffer;
  /** Offsets where records (frames, sections) start: dup/drop/splice cut there. */
  readonly boundaries: readonly number[];
}

/** Where each of `lengths` consecutive pieces starts: a seed's record boundaries. */
export function startOffsets(lengths: Iterable<number>): number[] {
  const starts: number[] = [];
  let offset = 0;
  for (const length of lengths) {
    starts.push(offset);
    offset += length;
  }
  return starts;
}

/** Values that break length checks: zero, one, sign edges, powers of two, all ones. */
const INTERESTING = [
  0n,
  1n,
  2n,
  0x7fn,
  0x80n,
  0xffn,
  0x100n,
  0xfffn,
  0x1000n,
  0x7fffn,
  0x8000n,
  0xffffn,
  0x10000n,
  0xfffffn,
  0x100000n,
  0x7fffffffn,
  0x80000000n,
  0xfffffffen,
  0xffffffffn,
  0x100000000n,
  0x1fffffffffffffn,
  0x20000000000000n,
  0x7fffffffffffffffn,
  0x8000000000000000n,
  0xffffffffffffffffn,
];
const WIDTHS = [1, 2, 4, 8] as const;

type Mutation = (bytes: Buffer, random: Random, seed: SeedInput, donors: readonly SeedInput[]) => Buffer;

function flipBits(bytes: Buffer, random: Random): Buffer {
  if (bytes.length === 0) return bytes;
  const out = Buffer.from(bytes);
  for (let n = 1 + random.below(4); n > 0; n--) {
    const at = random.below(out.length);
    out[at]! ^= 1 << random.below(8);
  }
  return out;
}

function randomBytes(bytes: Buffer, random: Random): Buffer {
  if (bytes.length === 0) return bytes;
  const out = Buffer.from(bytes);
  const at = random.below(out.length);
  const n = Math.min(out.length - at, 1 + random.below(16));
  for (let i = 0; i < n; i++) out[at + i] = random.below(256);
  return out;
}

/** An interesting value, big- or little-endian, at an offset near a record start or anywhere. */
function interesting(bytes: Buffer, random: Random, seed: SeedInput): Buffer {
  const width = random.pick(WIDTHS);
  if (bytes.length < width) return bytes;
  const near = seed.boundaries.length > 0 && random.chance(0.6);
  const base = near ? random.pick(seed.boundaries) + random.below(32) : random.below(bytes.length);
  const at = Math.min(base, bytes.length - width);
  const mask = (1n << BigInt(8 * width)) - 1n;
  let value = random.pick(INTERESTING) & mask;
  if (random.chance(0.2)) value = (value + BigInt(random.below(3)) - 1n) & mask;
  const out = Buffer.from(bytes);
  const little = random.chance(0.25);
  for (let i = 0; i < width; i++) {
    const byte = Number((value >> BigInt(8 * i)) & 0xffn);
    out[little ? at + i : at + width - 1 - i] = byte;
  }
  return out;
}

function truncate(bytes: Buffer, random: Random, seed: SeedInput): Buffer {
  const at = seed.boundaries.length > 0 && random.chance(0.3) ? random.pick(seed.boundaries) + random.below(3) - 1 : random.below(bytes.length + 1);
  return bytes.subarray(0, Math.max(0, Math.min(at, bytes.length)));
}

/** A record-sized piece [start, end) of `seed`, by its boundaries (or anywhere). */
function piece(random: Random, seed: SeedInput, length: number): [number, number] {
  const cuts = seed.boundaries.filter((b) => b <= length);
  if (cuts.length >= 2 && random.chance(0.8)) {
    const i = random.below(cuts.length - 1);
    const j = Math.min(cuts.length - 1, i + 1 + random.below(3));
    return [cuts[i]!, cuts[j]!];
  }
  const start = random.below(length + 1);
  return [start, Math.min(length, start + 1 + random.below(4096))];
}

function duplicate(bytes: Buffer, random: Random, seed: SeedInput): Buffer {
  const [start, end] = piece(random, seed, bytes.length);
  return Buffer.concat([bytes.subarray(0, end), bytes.subarray(start, end), bytes.subarray(end)]);
}

function drop(bytes: Buffer, random: Random, seed: SeedInput): Buffer {
  const [start, end] = piece(random, seed, bytes.length);
  return Buffer.concat([bytes.subarray(0, start), bytes.subarray(end)]);
}

/** A piece of another seed put in at a boundary of this one. */
function splice(bytes: Buffer, random: Random, seed: SeedInput, donors: readonly SeedInput[]): Buffer {
  const donor = random.pick(donors);
  const [start, end] = piece(random, donor, donor.bytes.length);
  const cuts = seed.boundaries.filter((b) => b <= bytes.length);
  const at = cuts.length > 0 && random.chance(0.8) ? random.pick(cuts) : random.below(bytes.length + 1);
  const replace = random.chance(0.5) ? piece(random, seed, bytes.length)[1] - at : 0;
  return Buffer.concat([bytes.subarray(0, at), donor.bytes.subarray(start, end), bytes.subarray(Math.max(at, at + replace))]);
}

const MUTATIONS: readonly [Mutation, number][] = [
  [flipBits, 30],
  [randomBytes, 10],
  [interesting, 30],
  [truncate, 8],
  [duplicate, 8],
  [drop, 8],
  [splice, 6],
];
const TOTAL_WEIGHT = MUTATIONS.reduce((sum, [, w]) => sum + w, 0);

function chooseMutation(random: Random): Mutation {
  let roll = random.below(TOTAL_WEIGHT);
  for (const [mutation, weight] of MUTATIONS) {
    if (roll < weight) return mutation;
    roll -= weight;
  }
  return flipBits;
}

/** One to four mutations of `seed` (about one input in twenty is left as it is). */
export function mutate(seed: SeedInput, random: Random, donors: readonly SeedInput[]): Buffer {
  if (random.chance(0.05)) return seed.bytes;
  let bytes = seed.bytes;
  for (let n = 1 + random.below(4); n > 0; n--) bytes = chooseMutation(random)(bytes, random, seed, donors);
  return bytes;
}

/** Random chunk sizes covering `length`: single bytes, small pieces, or a few large ones. */
export function chunking(length: number, random: Random): number[] {
  const style = random.below(4);
  if (style === 0 || length === 0) return [length];
  const sizes: number[] = [];
  // Tiny pieces at most ~4096 of them: 1-byte reads of a 400 KiB seed would only cost time.
  const max = Math.max(style === 1 ? 8 : style === 2 ? 4096 : length >> 1, Math.ceil(length / 4096));
  for (let left = length; left > 0;) {
    const size = Math.min(left, 1 + random.below(max));
    sizes.push(size);
    left -= size;
  }
  // An empty chunk now and then: a read of 0 bytes must change nothing.
  if (random.chance(0.1)) sizes.splice(random.below(sizes.length + 1), 0, 0);
  return sizes;
}

export function* inChunks(bytes: Buffer, sizes: readonly number[]): Generator<Buffer> {
  let at = 0;
  for (const size of sizes) {
    yield bytes.subarray(at, at + size);
    at += size;
  }
}
