import { describe, expect, it } from 'vitest';
import { XbzrleError } from '../../src/ram/errors.js';
import { decodeXbzrle, encodeXbzrle, scanXbzrle } from '../../src/ram/xbzrle.js';
import { DecodeError } from '../../src/stream/errors.js';
import { PAGE, delta, pattern, uleb } from '../helpers/ram-bytes.js';
import { prng, thrown } from './feed.js';

/** Applies runs the obvious way, for comparison. */
function applyRuns(base: Buffer, runs: readonly (readonly [number, Buffer])[]): Buffer {
  const out = Buffer.from(base);
  let at = 0;
  for (const [zrun, bytes] of runs) {
    at += zrun;
    bytes.copy(out, at);
    at += bytes.length;
  }
  return out;
}

/** `count` random edits of random lengths on a copy of `page`. */
function mutate(page: Buffer, random: () => number, count: number, maxRun: number): Buffer {
  const out = Buffer.from(page);
  for (let i = 0; i < count; i++) {
    const at = Math.floor(random() * out.length);
    const length = 1 + Math.floor(random() * maxRun);
    for (let k = at; k < Math.min(out.length, at + length); k++) out[k] = (out[k]! + 1 + Math.floor(random() * 255)) & 0xff;
  }
  return out;
}

describe('decodeXbzrle', () => {
  it('applies runs, one- and two-byte lengths, a first empty zero run', () => {
    const base = pattern(1);
    const runs = [
      [0, Buffer.from([1, 2, 3])],
      [127, Buffer.alloc(128, 9)],
      [300, pattern(2).subarray(0, 1000)],
      [2, Buffer.from([7])],
    ] as const;
    const page = Buffer.from(base);
    expect(decodeXbzrle(delta(runs), page)).toBe(3 + 127 + 128 + 300 + 1000 + 2 + 1);
    expect(page.equals(applyRuns(base, runs))).toBe(true);
  });

  it('leaves the page alone for an empty delta', () => {
    const page = pattern(3);
    expect(decodeXbzrle(Buffer.alloc(0), page)).toBe(0);
    expect(page.equals(pattern(3))).toBe(true);
  });

  it('accepts runs that end exactly at the page end', () => {
    const page = Buffer.alloc(PAGE);
    expect(decodeXbzrle(delta([[PAGE - 2, Buffer.from([5, 6])]]), page)).toBe(PAGE);
    expect(decodeXbzrle(delta([[0, Buffer.alloc(PAGE, 1)]]), page)).toBe(PAGE);
    expect(page.equals(Buffer.alloc(PAGE, 1))).toBe(true);
  });

  const violations: [string, Buffer, number][] = [
    ['a single byte left for a zero run', Buffer.from([5]), 0],
    ['a single byte left for a changed run', Buffer.from([0, 1, 9, 4, 1]), 4],
    ['nothing left for a changed run', Buffer.concat([uleb(0), uleb(1), Buffer.from([9]), uleb(200)]), 5],
    ['a three-byte uleb128 zero run', Buffer.from([0x81, 0x80, 0x01, 1, 1]), 0],
    ['a three-byte uleb128 changed run', Buffer.from([0, 0x81, 0x80, 0x01]), 1],
    ['an empty zero run after the first', Buffer.from([0, 1, 9, 0, 1, 9]), 3],
    ['a zero run past the page', Buffer.concat([uleb(PAGE + 1), uleb(1), Buffer.from([1])]), 0],
    ['an empty changed run', Buffer.from([3, 0, 1]), 1],
    ['a changed run past the page', Buffer.concat([uleb(PAGE - 1), uleb(2), Buffer.from([1, 2])]), 2],
    ['a changed run past the delta', Buffer.concat([uleb(0), uleb(4), Buffer.from([1, 2, 3])]), 2],
  ];
  for (const [what, bad, at] of violations) {
    it(`rejects ${what}`, () => {
      const error = thrown(() => decodeXbzrle(bad, Buffer.alloc(PAGE), { offset: 77 })) as XbzrleError;
      expect(error).toBeInstanceOf(XbzrleError);
      expect(error).toBeInstanceOf(DecodeError);
      expect(error.deltaOffset).toBe(at);
      expect(error.offset).toBe(77);
      expect(scanXbzrle(bad, null, PAGE)).toBeLessThan(0);
    });
  }
});

describe('encodeXbzrle', () => {
  it('writes alternating maximal runs and drops the last zero run', () => {
    const old = Buffer.alloc(PAGE);
    const next = Buffer.from(old);
    next[0] = 1;
    next[1] = 2;
    next.fill(3, 200, 400);
    next[4000] = 4;
    expect(encodeXbzrle(old, next)?.toString('hex')).toBe(
      delta([
        [0, Buffer.from([1, 2])],
        [198, Buffer.alloc(200, 3)],
        [3600, Buffer.from([4])],
      ]).toString('hex'),
    );
  });

  it('returns an empty delta for equal pages (QEMU sends nothing)', () => {
    expect(encodeXbzrle(pattern(1), pattern(1))?.length).toBe(0);
  });

  it('returns null when the delta does not fit in a page (QEMU sends the page)', () => {
    const old = pattern(1);
    expect(encodeXbzrle(old, pattern(2))).toBeNull();
    // Every other byte changed: 2 bytes of header per changed byte.
    const sparse = Buffer.from(old);
    for (let i = 0; i < PAGE; i += 2) sparse[i] = old[i]! ^ 0xff;
    expect(encodeXbzrle(old, sparse)).toBeNull();
    // A 3-byte delta needs dlen 5: xbzrle_encode_buffer checks `d + 2 > dlen` at the top of
    // each pass, before it finds that the rest of the page is unchanged.
    const small = Buffer.from(old);
    small[10] = small[10]! ^ 1;
    expect(encodeXbzrle(old, small, 5)?.length).toBe(3);
    expect(encodeXbzrle(old, small, 4)).toBeNull();
  });

  it('round-trips random edits through decodeXbzrle', () => {
    const random = prng(7);
    let encoded = 0;
    for (let round = 0; round < 300; round++) {
      const old = round % 3 === 0 ? Buffer.alloc(PAGE) : pattern(round);
      const next = mutate(old, random, Math.floor(random() * 40), 1 + Math.floor(random() * 300));
      const d = encodeXbzrle(old, next);
      if (d === null) continue;
      encoded++;
      expect(d.length).toBeLessThanOrEqual(PAGE);
      const page = Buffer.from(old);
      decodeXbzrle(d, page);
      expect(page.equals(next)).toBe(true);
    }
    expect(encoded).toBeGreaterThan(200);
  });

  it('round-trips changes at both page edges and long runs', () => {
    const old = pattern(9);
    for (const [at, length] of [
      [0, 1],
      [PAGE - 1, 1],
      [0, 0x3f00],
      [100, 2000],
      [PAGE - 300, 300],
    ] as const) {
      const next = Buffer.from(old);
      for (let k = at; k < Math.min(PAGE, at + length); k++) next[k] = old[k]! ^ 0x5a;
      const d = encodeXbzrle(old, next);
      if (length >= PAGE - 2) {
        expect(d).toBeNull();
        continue;
      }
      const page = Buffer.from(old);
      decodeXbzrle(d!, page);
      expect(page.equals(next)).toBe(true);
    }
  });
});
