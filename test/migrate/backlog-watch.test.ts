/**
 * Hot pages in send's backlog (backlog-watch.ts): a later full page makes an earlier copy
 * still in the backlog droppable, a later XBZRLE delta pins it, a copy that left is out of
 * reach; on real streams, with nothing ever leaving, every re-send the pass tracker counts is
 * either droppable or pinned.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { createDecoder } from '../../src/codec.js';
import { BacklogWatch } from '../../src/migrate/backlog-watch.js';
import { PassTracker } from '../../src/migrate/pass-tracker.js';
import type { BaseRecord } from '../../src/stream/section-codec.js';
import { loadFixture } from '../helpers/qemu.js';

const PAGE = 4096;
const page = (offset: number, type = 'ram-page', bytes = PAGE): BaseRecord =>
  ({ type, block: 'pc.ram', offset, continued: true, data: Buffer.alloc(type === 'ram-zero' ? 0 : bytes), fill: 0 }) as unknown as BaseRecord;

describe('backlog watch', () => {
  test('a full page again while the earlier copy waits: droppable, its header and payload counted', () => {
    const w = new BacklogWatch();
    w.enter(0, [page(0), page(PAGE, 'ram-zero')]);
    w.enter(1, [page(0), page(PAGE)]);
    expect(w.result()).toEqual({ droppablePages: 2, droppableBytes: 8 + PAGE + 8 + 1, pinnedPages: 0 });
  });

  test('an XBZRLE delta builds on the earlier copy: pinned, not droppable', () => {
    const w = new BacklogWatch();
    w.enter(0, [page(0)]);
    w.enter(1, [page(0, 'ram-xbzrle', 40)]);
    // A full page after the delta supersedes the delta (40 bytes + header) and what it built on.
    w.enter(2, [page(0)]);
    expect(w.result()).toEqual({ droppablePages: 1, droppableBytes: 8 + 40, pinnedPages: 1 });
  });

  test('once a frame left, its pages are out of reach and forgotten', () => {
    const w = new BacklogWatch();
    w.enter(0, [page(0), page(PAGE)]);
    w.enter(1, [page(2 * PAGE)]);
    w.left(0);
    expect(w.heldPages).toBe(1);
    w.enter(2, [page(0), page(2 * PAGE)]);
    expect(w.result()).toEqual({ droppablePages: 1, droppableBytes: 8 + PAGE, pinnedPages: 0 });
    // Frame 1's copy of page 2 was replaced by frame 2's: frame 1 leaving keeps the newer one.
    w.left(1);
    expect(w.heldPages).toBe(2);
    w.left(2);
    expect(w.heldPages).toBe(0);
  });
});

/** The fixture's stream in 1 MiB frames; a frame leaves once `backlog` newer ones entered. */
function watch(path: string, backlog: number): { savings: ReturnType<BacklogWatch['result']>; resent: number; maxHeld: number } {
  const decoder = createDecoder();
  const w = new BacklogWatch();
  const tracker = new PassTracker(PAGE);
  const fd = openSync(path, 'r');
  let maxHeld = 0;
  try {
    for (let seq = 0; ; seq++) {
      const chunk = Buffer.allocUnsafe(1024 * 1024);
      const n = readSync(fd, chunk, 0, chunk.length, null);
      const records = n === 0 ? decoder.end() : decoder.push(chunk.subarray(0, n));
      for (const record of records) tracker.apply(record);
      w.enter(seq, records);
      if (seq >= backlog) w.left(seq - backlog);
      maxHeld = Math.max(maxHeld, w.heldPages);
      if (n === 0) break;
    }
  } finally {
    closeSync(fd);
  }
  const resent = tracker.summary().passes.reduce((a, p) => a + p.resentPages, 0);
  return { savings: w.result(), resent, maxHeld };
}

describe('backlog watch on real QEMU streams', () => {
  test.each(['dirty', 'xbzrle'])('%s: with an endless backlog every re-send is droppable or pinned; with 16 frames fewer, memory bounded', (name) => {
    const { stream } = loadFixture(name);
    const endless = watch(stream, Infinity);
    expect(endless.resent).toBeGreaterThan(0);
    expect(endless.savings.droppablePages + endless.savings.pinnedPages).toBe(endless.resent);
    if (name === 'xbzrle') expect(endless.savings.pinnedPages).toBeGreaterThan(0);
    else expect(endless.savings.pinnedPages).toBe(0);
    const bounded = watch(stream, 16);
    expect(bounded.savings.droppablePages).toBeLessThanOrEqual(endless.savings.droppablePages);
    // 16 frames of 1 MiB hold at most 17 MiB of records: 4352 pages, and zero pages are 9 bytes.
    expect(bounded.maxHeld).toBeLessThan(endless.maxHeld);
  });
});
