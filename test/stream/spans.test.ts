/**
 * Record spans (StreamDecoder.recordEnds): every record the decoder returns names where it ends,
 * so the compressor never recomputes a length. Checked against the bytes, on hand-built streams
 * and on every real QEMU fixture, under random chunkings:
 *   - the spans tile the stream: the first starts at 0, each starts where the one before ended,
 *     the last ends at the stream's length;
 *   - each span is the record's encoding: encodedLength(record) is its length and encode(record)
 *     is exactly the stream's bytes there;
 *   - the bytes at the spans re-decode to the records: fed to a new decoder one span at a time,
 *     they give back records equal to the ones they came from, none before its own span.
 */
import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, test } from 'vitest';
import { createDecoder, encodeBuffer, encodedLength, type MigrationRecord } from '../../src/codec.js';
import { busyStream } from '../helpers/busy-stream.js';
import { prng } from '../helpers/feed.js';
import { fixtureStream } from '../helpers/interop.js';
import { sampleStream } from '../helpers/sample-stream.js';
import { SCENARIOS } from '../fixtures/scenarios.js';

interface Spanned {
  readonly records: MigrationRecord[];
  readonly ends: number[];
}

/** Decodes `bytes` pushed in the given chunk lengths, keeping every record's end. */
async function decodeSpans(bytes: Buffer, chunkLengths: () => number): Promise<Spanned> {
  const decoder = createDecoder();
  const records: MigrationRecord[] = [];
  const ends: number[] = [];
  const take = (got: MigrationRecord[]): void => {
    expect(decoder.recordEnds.length).toBe(got.length);
    records.push(...got);
    ends.push(...decoder.recordEnds);
  };
  let pushes = 0;
  for (let at = 0; at < bytes.length;) {
    const next = Math.min(bytes.length, at + chunkLengths());
    take(decoder.push(bytes.subarray(at, next)));
    at = next;
    // Long real streams: let vitest's worker answer its RPC now and then.
    if (++pushes % 256 === 0) await tick();
  }
  take(decoder.end());
  return { records, ends };
}

async function checkSpans(bytes: Buffer, { records, ends }: Spanned): Promise<void> {
  expect(records.length).toBeGreaterThan(0);
  let start = 0;
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    const end = ends[i]!;
    if (end - start !== encodedLength(record)) {
      expect.fail(`record ${i} (${record.type}) spans ${start}..${end}, encodedLength ${encodedLength(record)}`);
    }
    if (!encodeBuffer([record]).equals(bytes.subarray(start, end))) expect.fail(`record ${i} (${record.type}) at ${start}..${end} encodes to other bytes`);
    start = end;
    if (i % 20_000 === 0) await tick();
  }
  expect(start).toBe(bytes.length);
}

/** Feeds the stream one span at a time: the records come back equal, none before its span. */
async function checkRedecode(bytes: Buffer, { records, ends }: Spanned): Promise<void> {
  const decoder = createDecoder();
  let got = 0;
  let start = 0;
  for (let i = 0; i < records.length; i++) {
    for (const record of decoder.push(bytes.subarray(start, ends[i]!))) {
      expect(got).toBeLessThanOrEqual(i);
      if (got < 1000 || got % 97 === 0) expect(record).toEqual(records[got]);
      else expect(record.type).toBe(records[got]!.type);
      got++;
    }
    start = ends[i]!;
    if (i % 20_000 === 0) await tick();
  }
  for (const record of decoder.end()) expect(record).toEqual(records[got++]);
  expect(got).toBe(records.length);
}

/** Hand-built streams, and whether feeding them byte by byte is quick enough (no MiB disk chunks). */
const handBuilt: [string, () => Buffer, boolean][] = [
  ['the sample stream (every ram record kind, device state, vmdesc)', () => sampleStream().bytes, true],
  ['a busy stream with disk chunks', () => busyStream({ pages: 64, iterations: 3, disk: true }).bytes, false],
];

describe('record spans on hand-built streams', () => {
  for (const [name, build, byteByByte] of handBuilt) {
    test(`${name}: whole, ${byteByByte ? 'byte by byte, ' : ''}in random chunks`, async () => {
      const bytes = build();
      const random = prng(7);
      const chunkings = [() => bytes.length, () => 1 + Math.floor(random() * 9000)];
      if (byteByByte) chunkings.push(() => 1);
      for (const lengths of chunkings) {
        const spanned = await decodeSpans(bytes, lengths);
        await checkSpans(bytes, spanned);
        await checkRedecode(bytes, spanned);
      }
    });
  }
});

describe('record spans on the real QEMU fixtures', () => {
  for (const { name } of SCENARIOS) {
    test(`${name}: random chunks`, async () => {
      const bytes = fixtureStream(name);
      const random = prng(name.length);
      const spanned = await decodeSpans(bytes, () => 1 + Math.floor(random() * 300_000));
      await checkSpans(bytes, spanned);
      await checkRedecode(bytes, spanned);
    }, 300_000);
  }
});
