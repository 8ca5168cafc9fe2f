/**
 * The disk connection's lines (src/migrate/disk-wire.ts), built here by hand from its module
 * comment (JSON lines; hashes as little-endian u64s in base64), and the time-slicing and QoS
 * policy (src/migrate/disk-policy.ts) on pass sequences.
 */
import { describe, expect, test } from 'vitest';
import { decodeVerdict, VerdictProtocolError } from '../../src/migrate/verdict-wire.js';
import { decodeDiskReply, encodeDiskMessage, HASH_CHUNK_BYTES, hashCount, maxDiskLine } from '../../src/migrate/disk-wire.js';
import { BoundedLineSplitter } from '../../src/migrate/line-splitter.js';
import { DEFAULT_FLOOR_BYTES_PER_SECOND, DiskPolicy, readyBytesForLink } from '../../src/migrate/disk-policy.js';

const MIB = 1024 * 1024;

describe('disk lines', () => {
  const open = { type: 'disk-stream', index: 0, drive: 'disk0', size: 64 * MIB, chunkSize: MIB };

  test('the opening line is a control message, its fields checked', () => {
    expect(decodeVerdict(JSON.stringify(open))).toEqual(open);
    for (const [bad, pattern] of [
      [{ ...open, index: 256 }, /drive index/],
      [{ ...open, drive: '' }, /names no drive/],
      [{ ...open, size: 0 }, /drive size/],
      [{ ...open, size: 2 ** 51 }, /drive size/],
      [{ ...open, chunkSize: 3000 }, /chunk size 3000 is not a power of two/],
      [{ ...open, chunkSize: 32 * MIB }, /not a power of two from 4 KiB to 16 MiB/],
    ] as const) {
      expect(() => decodeVerdict(JSON.stringify(bad))).toThrow(VerdictProtocolError);
      expect(() => decodeVerdict(JSON.stringify(bad))).toThrow(pattern);
    }
  });

  test('a hash list written by hand (little-endian u64s in base64) decodes to its values; the encoder writes the same bytes', () => {
    const size = 3 * MIB + 1; // 4 chunks, the last one byte long
    expect(hashCount(size)).toBe(4);
    const values = [0n, 1n, 0x0123456789abcdefn, 0xffffffffffffffffn];
    const raw = Buffer.concat(values.map((v) => Buffer.from(v.toString(16).padStart(16, '0'), 'hex').reverse()));
    const line = JSON.stringify({ type: 'disk-hashes', chunkSize: HASH_CHUNK_BYTES, count: 4, hashes: raw.toString('base64') });
    const decoded = decodeDiskReply(line, size);
    expect(decoded).toEqual({ type: 'disk-hashes', chunkSize: HASH_CHUNK_BYTES, hashes: new BigUint64Array(values) });
    expect(encodeDiskMessage({ type: 'disk-hashes', chunkSize: HASH_CHUNK_BYTES, hashes: new BigUint64Array(values) }).toString()).toBe(`${line}\n`);
    expect(Buffer.byteLength(line)).toBeLessThan(maxDiskLine(size));
  });

  test('replies of the wrong shape are refused by name', () => {
    const size = 2 * MIB;
    const hashes = Buffer.alloc(16).toString('base64');
    for (const [line, pattern] of [
      ['{"type":', /not JSON/],
      ['"text"', /not a JSON object/],
      [JSON.stringify({ type: 'disk-hello' }), /unknown disk line type "disk-hello"/],
      [JSON.stringify({ type: 'disk-refused' }), /no reason/],
      [JSON.stringify({ type: 'disk-applied', records: -1, bytesWritten: 0, bytesZeroed: 0 }), /no counts/],
      [JSON.stringify({ type: 'disk-hashes', chunkSize: 4096, count: 2, hashes }), /4096-byte chunks/],
      [JSON.stringify({ type: 'disk-hashes', chunkSize: MIB, count: 3, hashes }), /3 chunks; a drive of 2097152 bytes has 2/],
      [JSON.stringify({ type: 'disk-hashes', chunkSize: MIB, count: 2, hashes: Buffer.alloc(15).toString('base64') }), /15 bytes for 2 chunks/],
    ] as const) {
      expect(() => decodeDiskReply(line, size)).toThrow(VerdictProtocolError);
      expect(() => decodeDiskReply(line, size)).toThrow(pattern);
    }
    expect(decodeDiskReply(JSON.stringify({ type: 'disk-refused', reason: 'x'.repeat(5000) }), size)).toEqual({ type: 'disk-refused', reason: 'x'.repeat(1000) });
  });

  test('a 1 TiB drive: its hash line fits the bound, an endless line stops at it', () => {
    expect(maxDiskLine(2 ** 40)).toBeGreaterThan(Math.ceil((2 ** 20 * 8) / 3) * 4);
    expect(maxDiskLine(2 ** 40)).toBeLessThan(12e6);
  });
});

describe('the bounded line splitter', () => {
  test('lines split at every byte come out whole, multi-byte characters included; a long line is refused at its bound', () => {
    const text = 'first é line\nsecond\n\nthird ☃\n';
    const bytes = Buffer.from(text);
    for (let split = 0; split <= bytes.length; split++) {
      const splitter = new BoundedLineSplitter(100, () => new Error('too long'));
      const lines = [...splitter.push(bytes.subarray(0, split)), ...splitter.push(bytes.subarray(split))];
      expect(lines).toEqual(['first é line', 'second', '', 'third ☃']);
    }
    const splitter = new BoundedLineSplitter(10, () => new Error('too long'));
    expect(splitter.push(Buffer.from('0123456789'))).toEqual([]);
    expect(() => splitter.push(Buffer.from('x'))).toThrow('too long');
  });
});

describe('disk policy: when RAM starts, how the write limit falls', () => {
  test('a pass within a second of the link lets RAM start', () => {
    const policy = new DiskPolicy({ readyBytes: readyBytesForLink(25e6) });
    expect(policy.observe({ bytes: 80e6, windowMs: 4000 })).toEqual({ kind: 'pass-again' });
    expect(policy.observe({ bytes: 30e6, windowMs: 3000 })).toEqual({ kind: 'pass-again' });
    const start = policy.observe({ bytes: 20e6, windowMs: 1000 });
    expect(start.kind).toBe('start-ram');
    expect(policy.limit).toBeUndefined();
  });

  test('passes that stop shrinking (within 5 %) lower the limit: half the write rate, then half again, down to the floor; then RAM starts with a notice', () => {
    const policy = new DiskPolicy({ readyBytes: 1 * MIB });
    expect(policy.observe({ bytes: 40e6, windowMs: 2000 })).toEqual({ kind: 'pass-again' });
    // 39 MB after 40: not 5 % less. The guest wrote 39 MB in 2 s: 19.5 MB/s, so the limit is 9.75 MB/s.
    const first = policy.observe({ bytes: 39e6, windowMs: 2000 });
    expect(first).toMatchObject({ kind: 'throttle', bytesPerSecond: 9_750_000 });
    // Shrinking by more than 5 %: no new step.
    expect(policy.observe({ bytes: 20e6, windowMs: 2000 })).toEqual({ kind: 'pass-again' });
    const steps: number[] = [];
    for (let i = 0; i < 10; i++) {
      const decision = policy.observe({ bytes: 20e6, windowMs: 2000 });
      if (decision.kind !== 'throttle') {
        expect(decision.kind).toBe('start-ram');
        expect(decision).toHaveProperty('notice', expect.stringMatching(/does not converge with the guest's writes limited to 1\.0 MB\/s/));
        break;
      }
      steps.push(decision.bytesPerSecond);
    }
    expect(steps).toEqual([4_875_000, 2_437_500, 1_218_750, DEFAULT_FLOOR_BYTES_PER_SECOND]);
  });

  test('without throttling, or after maxPasses, RAM starts anyway and says why', () => {
    const flat = new DiskPolicy({ readyBytes: 1 * MIB, throttle: false, maxPasses: 3 });
    expect(flat.observe({ bytes: 10e6, windowMs: 1000 })).toEqual({ kind: 'pass-again' });
    expect(flat.observe({ bytes: 10e6, windowMs: 1000 })).toEqual({ kind: 'pass-again' });
    expect(flat.observe({ bytes: 10e6, windowMs: 1000 })).toMatchObject({ kind: 'start-ram', notice: expect.stringMatching(/did not converge in 3 passes/) });
    expect(flat.limit).toBeUndefined();
  });

  test('readyBytes: a second of the link, at least 1 MiB', () => {
    expect(readyBytesForLink(0)).toBe(MIB);
    expect(readyBytesForLink(100e6)).toBe(100e6);
  });
});
