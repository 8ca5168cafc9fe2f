/**
 * Hot-page dropping (ram/hot-page-hold.ts), the way send drives it: frames in, the decoder's
 * records and their ends in, frames out after a lag. On hand-built streams the output is the
 * input minus exactly the superseded records' bytes; a copy under an XBZRLE delta, a record
 * naming its block and a record across two frames stay. On real QEMU streams the output decodes
 * to the same guest RAM as the input, with fewer bytes.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { createDecoder, decodeBuffer } from '../../src/codec.js';
import { HotPageHold, type HoldSavings } from '../../src/ram/hot-page-hold.js';
import { MemoryPageStore, RamImage } from '../../src/ram/index.js';
import { PassTracker } from '../../src/migrate/pass-tracker.js';
import { Bytes, configuration, footer, header, sectionStart } from '../helpers/stream-bytes.js';
import { PAGE, delta, eosBytes, memSizeBytes, pageBytes, pattern, xbzrleBytes, zeroBytes } from '../helpers/ram-bytes.js';
import { loadFixture } from '../helpers/qemu.js';

/** Feeds `frames` through a hold; frame i leaves once frame i + lag was added (all at the end). */
function run(frames: readonly Buffer[], lag: number): { out: Buffer; savings: HoldSavings; maxHeld: number } {
  const decoder = createDecoder();
  const hold = new HotPageHold();
  const out: Buffer[] = [];
  let maxHeld = 0;
  for (const frame of frames) {
    const copy = Buffer.from(frame); // the hold compacts frames in place
    hold.addFrame(copy);
    hold.addRecords(decoder.push(copy), decoder.recordEnds);
    decoder.releaseInput();
    maxHeld = Math.max(maxHeld, hold.heldBytes);
    while (hold.heldFrames > lag) out.push(hold.release()!);
  }
  hold.addRecords(decoder.end(), decoder.recordEnds);
  for (let frame = hold.release(); frame !== null; frame = hold.release()) out.push(frame);
  return { out: Buffer.concat(out), savings: hold.result(), maxHeld };
}

/** `bytes` cut at `cuts` (offsets, ascending). */
function split(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const edges = [0, ...cuts, bytes.length];
  return edges.slice(1).map((end, i) => bytes.subarray(edges[i]!, end));
}

/** The guest RAM a stream loads, as one SHA-256 per RAMBlock (deep equality of GiBs is slow). */
function ramOf(stream: Buffer): Record<string, string> {
  const store = new MemoryPageStore();
  const image = new RamImage(store, { pageSize: PAGE });
  for (const record of decodeBuffer(stream)) image.apply(record);
  return Object.fromEntries(image.finish().map((b) => [b.idstr, createHash('sha256').update(b.data).digest('hex')]));
}

/**
 * A stream of two RAM passes. Pass 1 sends pages 0..3 (0 names pc.ram); pass 2 `second` as
 * given. Returns the bytes and where each pass-1 record lies.
 */
function twoPasses(second: (b: Bytes) => void): { bytes: Buffer; pass1: [number, number][]; pass2At: number } {
  const b = new Bytes();
  header(b);
  configuration(b, 'pc-i440fx-7.2');
  sectionStart(b, 1, 2, 'ram', 0, 4)
    .raw(memSizeBytes([{ idstr: 'pc.ram', length: 8 * PAGE }]))
    .raw(eosBytes());
  footer(b, 2);
  b.u8(0x02).be32(2);
  const pass1: [number, number][] = [];
  for (let i = 0; i < 4; i++) {
    const from = b.length;
    b.raw(pageBytes(i === 0 ? 'pc.ram' : null, i * PAGE, pattern(i)));
    pass1.push([from, b.length]);
  }
  b.raw(eosBytes());
  footer(b, 2);
  const pass2At = b.length;
  b.u8(0x02).be32(2);
  second(b);
  b.raw(eosBytes());
  footer(b, 2);
  b.u8(0x00);
  return { bytes: b.build(), pass1, pass2At };
}

const without = (bytes: Buffer, ranges: readonly [number, number][]): Buffer => {
  const kept: Buffer[] = [];
  let at = 0;
  for (const [from, to] of ranges) {
    kept.push(bytes.subarray(at, from));
    at = to;
  }
  kept.push(bytes.subarray(at));
  return Buffer.concat(kept);
};

describe('hot-page hold on hand-built streams', () => {
  test('pages sent again while held: the earlier copies are cut, byte for byte, and the RAM is the same', () => {
    const { bytes, pass1, pass2At } = twoPasses((b) => {
      b.raw(pageBytes(null, 1 * PAGE, pattern(11)));
      b.raw(zeroBytes(null, 2 * PAGE));
      b.raw(pageBytes(null, 3 * PAGE, pattern(13)));
    });
    // Pass 1 in one frame, pass 2 in another, nothing leaves before the end.
    const { out, savings } = run(split(bytes, [pass2At]), Infinity);
    const cut = [pass1[1]!, pass1[2]!, pass1[3]!];
    expect(out.equals(without(bytes, cut))).toBe(true);
    expect(savings).toEqual({ droppedPages: 3, droppedBytes: cut.reduce((a, [f, t]) => a + t - f, 0), pinnedPages: 0, keptPages: 0 });
    expect(ramOf(out)).toEqual(ramOf(bytes));
  });

  test('a copy an XBZRLE delta builds on stays; a full page after the delta cuts the delta', () => {
    const { bytes, pass2At } = twoPasses((b) => {
      b.raw(xbzrleBytes(null, 1 * PAGE, delta([[10, Buffer.from('hot')]])));
    });
    const { out, savings } = run(split(bytes, [pass2At]), Infinity);
    expect(out.equals(bytes)).toBe(true);
    expect(savings).toMatchObject({ droppedPages: 0, pinnedPages: 1 });

    let deltaAt: [number, number] = [0, 0];
    const again = twoPasses((b) => {
      const from = b.length;
      b.raw(xbzrleBytes(null, 1 * PAGE, delta([[10, Buffer.from('hot')]])));
      deltaAt = [from, b.length];
      b.raw(pageBytes(null, 1 * PAGE, pattern(21)));
    });
    const second = run(split(again.bytes, [again.pass2At]), Infinity);
    expect(second.out.equals(without(again.bytes, [deltaAt]))).toBe(true);
    expect(second.savings).toMatchObject({ droppedPages: 1, pinnedPages: 1 });
    expect(ramOf(second.out)).toEqual(ramOf(again.bytes));
  });

  test('a record that names its block stays: the CONTINUE records after it mean that block', () => {
    const { bytes, pass2At } = twoPasses((b) => b.raw(pageBytes('pc.ram', 0, pattern(30))));
    const { out, savings } = run(split(bytes, [pass2At]), Infinity);
    expect(out.equals(bytes)).toBe(true);
    expect(savings).toMatchObject({ droppedPages: 0, keptPages: 1 });
  });

  test('a record across two frames stays (a frame leaves whole); one in a frame that left is out of reach', () => {
    const { bytes, pass1, pass2At } = twoPasses((b) => {
      b.raw(pageBytes(null, 1 * PAGE, pattern(11)));
      b.raw(pageBytes(null, 2 * PAGE, pattern(12)));
    });
    const across = pass1[1]![0] + 100;
    const { out, savings } = run(split(bytes, [across, pass2At]), Infinity);
    expect(out.equals(without(bytes, [pass1[2]!]))).toBe(true);
    expect(savings).toMatchObject({ droppedPages: 1, keptPages: 1 });

    // Each frame leaves as soon as the next one came: pass 1 is gone when pass 2 arrives.
    const gone = run(split(bytes, [pass2At]), 0);
    expect(gone.out.equals(bytes)).toBe(true);
    expect(gone.savings.droppedPages).toBe(0);
  });

  test('every split of the stream gives a stream of the same RAM', () => {
    const { bytes, pass2At } = twoPasses((b) => {
      b.raw(pageBytes(null, 1 * PAGE, pattern(11)));
      b.raw(xbzrleBytes(null, 2 * PAGE, delta([[0, Buffer.from('x')]])));
      b.raw(zeroBytes(null, 3 * PAGE));
    });
    const ram = ramOf(bytes);
    for (let cut = 1; cut < bytes.length; cut += 7) {
      const { out } = run(split(bytes, cut < pass2At ? [cut, pass2At] : [pass2At, cut]), Infinity);
      expect(ramOf(out), `cut at ${cut}`).toEqual(ram);
    }
  });
});

/** The fixture's stream in `frameBytes` frames. */
function frames(path: string, frameBytes: number): Buffer[] {
  const fd = openSync(path, 'r');
  const out: Buffer[] = [];
  try {
    for (;;) {
      const chunk = Buffer.allocUnsafe(frameBytes);
      const n = readSync(fd, chunk, 0, frameBytes, null);
      if (n === 0) return out;
      out.push(chunk.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
}

describe('hot-page hold on real QEMU streams', () => {
  test.each(['dirty', 'xbzrle'])('%s: the same guest RAM from fewer bytes; an endless hold catches every re-send', (name) => {
    const { stream } = loadFixture(name);
    const input = frames(stream, 256 * 1024);
    const bytes = Buffer.concat(input);
    const tracker = new PassTracker(PAGE);
    for (const record of decodeBuffer(bytes)) tracker.apply(record);
    const resent = tracker.summary().passes.reduce((a, p) => a + p.resentPages, 0);
    expect(resent).toBeGreaterThan(0);

    const endless = run(input, Infinity);
    const s = endless.savings;
    expect(s.droppedPages + s.pinnedPages + s.keptPages).toBe(resent);
    expect(s.droppedPages).toBeGreaterThan(0);
    if (name === 'xbzrle') expect(s.pinnedPages).toBeGreaterThan(0);
    expect(endless.out.length).toBe(bytes.length - s.droppedBytes);
    expect(ramOf(endless.out)).toEqual(ramOf(bytes));

    // 16 frames held (4 MiB): fewer drops, bounded memory, the same RAM.
    const bounded = run(input, 16);
    expect(bounded.savings.droppedPages).toBeLessThanOrEqual(s.droppedPages);
    expect(bounded.maxHeld).toBeLessThanOrEqual(17 * 256 * 1024);
    expect(ramOf(bounded.out)).toEqual(ramOf(bytes));
  });
});
