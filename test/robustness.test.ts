/**
 * Damaged and oddly delivered real QEMU streams: any chunking decodes the same; truncation,
 * flipped bytes and absurd lengths give a typed DecodeError with an offset (never a crash, a
 * hang, or a different exception); decoding a stream bigger than the memory it may use works.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { createDecoder, decodeBuffer, encodeBuffer, encodedLength, type MigrationRecord } from '../src/codec.js';
import { DecodeError, LimitExceededError, TruncatedStreamError } from '../src/stream/errors.js';
import { prng } from './helpers/feed.js';
import { fixtureStream } from './helpers/interop.js';
import { loadFixture } from './helpers/qemu.js';
import { Bytes, configuration, header } from './helpers/stream-bytes.js';

/** Decodes `bytes` cut at random points; returns the re-encoded stream. */
function recodeRandomlyChunked(bytes: Buffer, random: () => number, maxChunk: number): Buffer {
  const decoder = createDecoder();
  const records: MigrationRecord[] = [];
  for (let at = 0; at < bytes.length;) {
    const length = 1 + Math.floor(random() * maxChunk);
    records.push(...decoder.push(bytes.subarray(at, at + length)));
    at += length;
  }
  records.push(...decoder.end());
  return encodeBuffer(records);
}

/** Decodes and returns the error, or null when the stream decoded. */
function decodeError(bytes: Buffer): unknown {
  try {
    decodeBuffer(bytes);
    return null;
  } catch (error) {
    return error;
  }
}

describe('real streams under random chunking', () => {
  test.each(['compress', 'block', 'xbzrle'])('%s: random chunk sizes decode to the same bytes', (name) => {
    const bytes = fixtureStream(name);
    const random = prng(name.length * 7919);
    for (const maxChunk of [7, 4099, 65536, 1 << 20]) {
      // Tiny chunks on the first 2 MiB only, to keep the test fast.
      const input = maxChunk < 100 ? bytes.subarray(0, 2 << 20) : bytes;
      const decoder = createDecoder();
      if (maxChunk < 100) {
        let at = 0;
        while (at < input.length) {
          const length = 1 + Math.floor(random() * maxChunk);
          decoder.push(input.subarray(at, at + length));
          at += length;
        }
        expect(decoder.offset).toBeGreaterThan(input.length - 2 * 1048576);
        continue;
      }
      expect(recodeRandomlyChunked(input, random, maxChunk).equals(input), `max chunk ${maxChunk}`).toBe(true);
    }
  });
});

describe('damaged real streams', () => {
  const bytes = fixtureStream('compress');

  test('truncation at random points is a TruncatedStreamError at or before the cut', () => {
    const random = prng(99);
    for (let i = 0; i < 40; i++) {
      const cut = Math.floor(random() * (bytes.length - 1));
      const error = decodeError(bytes.subarray(0, cut));
      expect(error, `cut at ${cut}`).toBeInstanceOf(TruncatedStreamError);
      expect((error as DecodeError).offset).toBeLessThanOrEqual(cut);
    }
  });

  test('flipped bits in page payloads still decode; in record headers they decode or fail typed', () => {
    const random = prng(1234);
    const records = decodeBuffer(bytes);
    // Where each record starts, from the encoded lengths.
    const starts: number[] = [];
    const payloads: [number, number][] = [];
    let offset = 0;
    for (const record of records) {
      starts.push(offset);
      const length = encodedLength(record);
      if (record.type === 'ram-page') payloads.push([offset + length - record.data.length, record.data.length]);
      offset += length;
    }
    expect(offset).toBe(bytes.length);

    for (let i = 0; i < 20; i++) {
      const [start, length] = payloads[Math.floor(random() * payloads.length)]!;
      const damaged = Buffer.from(bytes);
      damaged[start + Math.floor(random() * length)]! ^= 1 << Math.floor(random() * 8);
      expect(encodeBuffer(decodeBuffer(damaged)).equals(damaged)).toBe(true);
    }

    let failed = 0;
    for (let i = 0; i < 100; i++) {
      const at = starts[Math.floor(random() * starts.length)]! + Math.floor(random() * 8);
      const damaged = Buffer.from(bytes);
      damaged[at] = damaged[at]! ^ (1 << Math.floor(random() * 8));
      const error = decodeError(damaged);
      if (error === null) {
        expect(encodeBuffer(decodeBuffer(damaged)).equals(damaged)).toBe(true);
      } else {
        failed++;
        expect(error, `flip at ${at}`).toBeInstanceOf(DecodeError);
        expect((error as DecodeError).offset).toBeLessThanOrEqual(bytes.length);
      }
    }
    // Flipped flag bits, section types and name lengths are caught; flipped offset bits are not
    // (they are valid addresses), so only some of the flips fail.
    expect(failed).toBeGreaterThan(10);
  });

  test('a damaged ram word names the offset and the ram section', () => {
    const damaged = Buffer.from(bytes);
    // The MEM_SIZE word of the ram START section: make its flags unknown.
    const at = bytes.indexOf(Buffer.from('\x03ram', 'latin1')) + 4 + 8 + 7;
    damaged[at] = 0x01;
    const error = decodeError(damaged) as DecodeError;
    expect(error).toBeInstanceOf(DecodeError);
    expect(error.section?.name).toBe('ram');
    expect(error.offset).toBe(at - 7);
  });

  test('absurd lengths are refused before allocating', () => {
    const machine = header(new Bytes()).u8(0x07).be32(0xfffffff0).build();
    expect(decodeError(machine)).toBeInstanceOf(LimitExceededError);
    const vmdesc = header(new Bytes());
    configuration(vmdesc, 'pc-i440fx-7.2').u8(0x00).u8(0x06).be32(0xffffffff);
    expect(decodeError(vmdesc.build())).toBeInstanceOf(LimitExceededError);
  });
});

describe('bounded memory', () => {
  test('decoding a stream larger than the memory it uses', () => {
    const { stream, meta } = loadFixture('dirty');
    // The child samples its current RSS: getrusage's maxRSS would include the pages it shared
    // with this (large) test process when it was forked.
    const script = `
      import { createReadStream } from 'node:fs';
      import { decode } from 'migstream';
      let records = 0;
      let maxRss = 0;
      for await (const record of decode(createReadStream(process.argv[1]))) {
        if (++records % 1000 === 0) maxRss = Math.max(maxRss, process.memoryUsage().rss);
      }
      console.log(JSON.stringify({ records, maxRss }));
    `;
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', script, stream], { encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    const { records, maxRss } = JSON.parse(result.stdout) as { records: number; maxRss: number };
    expect(records).toBeGreaterThan(1000);
    // Node itself takes ~50 MiB; the stream is ~170 MB. Holding it would show.
    expect(maxRss).toBeLessThan(Math.min(150 * 1024 * 1024, meta.streamBytes * 0.75));
  });
});
