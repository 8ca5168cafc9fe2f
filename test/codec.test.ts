import { describe, expect, test } from 'vitest';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDecodeStream, createDecoder, createEncodeStream, createEncoder, decode, decodeBuffer, encode, encodeBuffer, encodedLength, type MigrationRecord } from '../src/codec.js';
import { TruncatedStreamError } from '../src/stream/errors.js';
import { MemoryPageStore, RamImage } from '../src/ram/index.js';
import { prng } from './helpers/feed.js';
import { sampleStream } from './helpers/sample-stream.js';

function decodeInChunks(bytes: Buffer, cuts: number[]): MigrationRecord[] {
  const decoder = createDecoder();
  const out: MigrationRecord[] = [];
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    out.push(...decoder.push(bytes.subarray(at, cut)));
    at = cut;
  }
  out.push(...decoder.end());
  return out;
}

describe('whole-stream codec on a hand-built stream with every record kind', () => {
  const sample = sampleStream();

  test('decode then encode gives the identical bytes', () => {
    const records = decodeBuffer(sample.bytes);
    expect(records.map((r) => r.type)).toContain('ram-xbzrle');
    expect(encodeBuffer(records).equals(sample.bytes)).toBe(true);
  });

  test('every split point gives the same records', () => {
    const whole = decodeBuffer(sample.bytes);
    const types = whole.map((r) => r.type).join();
    for (let split = 1; split < sample.bytes.length; split++) {
      const records = decodeInChunks(sample.bytes, [split]);
      // Same record kinds in the same order, and the same bytes back: cheaper than a deep
      // comparison of every page at each of the ~50 000 splits.
      if (records.map((r) => r.type).join() !== types || !encodeBuffer(records).equals(sample.bytes)) {
        expect.fail(`split at ${split} decodes differently`);
      }
    }
  });

  test('random chunkings give the same records and bytes', () => {
    const whole = decodeBuffer(sample.bytes);
    const random = prng(7);
    for (let round = 0; round < 20; round++) {
      const cuts: number[] = [];
      for (let at = 0; ;) {
        at += 1 + Math.floor(random() * 700);
        if (at >= sample.bytes.length) break;
        cuts.push(at);
      }
      const records = decodeInChunks(sample.bytes, cuts);
      expect(records).toEqual(whole);
      expect(encodeBuffer(records).equals(sample.bytes)).toBe(true);
    }
  });

  test('encodedLength sums to the stream length', () => {
    const total = decodeBuffer(sample.bytes).reduce((sum, record) => sum + encodedLength(record), 0);
    expect(total).toBe(sample.bytes.length);
  });

  test('async iterable adapters round-trip', async () => {
    const chunks = [sample.bytes.subarray(0, 1000), sample.bytes.subarray(1000)];
    const out: Buffer[] = [];
    for await (const chunk of encode(decode(chunks))) out.push(chunk);
    expect(Buffer.concat(out).equals(sample.bytes)).toBe(true);
  });

  test('Node Transform adapters round-trip and report damage as a stream error', async () => {
    const out: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        out.push(chunk);
        callback();
      },
    });
    const source = () => Readable.from([sample.bytes.subarray(0, 777), sample.bytes.subarray(777)], { objectMode: false });
    await pipeline(source(), createDecodeStream(), createEncodeStream(), sink);
    expect(Buffer.concat(out).equals(sample.bytes)).toBe(true);

    const truncated = Readable.from([sample.bytes.subarray(0, 5000)], { objectMode: false });
    const records: MigrationRecord[] = [];
    const collect = new Writable({
      objectMode: true,
      write(record: MigrationRecord, _encoding, callback) {
        records.push(record);
        callback();
      },
    });
    await expect(pipeline(truncated, createDecodeStream(), collect)).rejects.toBeInstanceOf(TruncatedStreamError);
    expect(records[0]?.type).toBe('header');
  });

  test('RAM image of the records equals the expected guest RAM', () => {
    const store = new MemoryPageStore();
    const image = new RamImage(store, { pageSize: 4096 });
    for (const record of decodeBuffer(sample.bytes)) image.apply(record);
    const blocks = image.finish();
    expect(blocks.map((b) => b.idstr)).toEqual(Object.keys(sample.ram));
    for (const block of blocks) expect(block.data.equals(sample.ram[block.idstr]!), block.idstr).toBe(true);
  });

  test('one reused input buffer and output slab (releaseInput, drainTo) give the same bytes', () => {
    for (const size of [1, 13, 4096, 5000]) {
      const decoder = createDecoder();
      const encoder = createEncoder(2048);
      const input = Buffer.alloc(size);
      const out: Buffer[] = [];
      const keep = (chunks: Buffer[]): void => {
        for (const chunk of chunks) out.push(Buffer.from(chunk));
      };
      for (let at = 0; at < sample.bytes.length; at += size) {
        const n = sample.bytes.copy(input, 0, at, at + size);
        for (const record of decoder.push(input.subarray(0, n))) encoder.write(record);
        encoder.drainTo(keep);
        decoder.releaseInput();
        input.fill(0xee); // anything still pointing into the buffer would now read garbage
      }
      for (const record of decoder.end()) encoder.write(record);
      encoder.drainTo(keep);
      expect(Buffer.concat(out).equals(sample.bytes), `read size ${size}`).toBe(true);
    }
  });

  test('the encoder flushes in chunks without losing bytes', () => {
    const encoder = createEncoder(1024);
    const parts: Buffer[] = [];
    for (const record of decodeBuffer(sample.bytes)) {
      encoder.write(record);
      parts.push(...encoder.take());
    }
    expect(Buffer.concat(parts).equals(sample.bytes)).toBe(true);
  });
});
