/**
 * The compressor's payload stores (payload-store.ts): segments' payloads back to back in the
 * shared ring, never overwriting one a worker still reads, and the buffer store of the
 * TypeScript path.
 */
import { describe, expect, test } from 'vitest';
import { WorkerError } from '../../src/workers/errors.js';
import { BufferPayloadStore, RingPayloadStore, type SegmentPayload } from '../../src/compress/payload-store.js';

const PAGE = 4096;

function page(seed: number): Buffer {
  return Buffer.alloc(PAGE, seed);
}

describe('RingPayloadStore', () => {
  test('hands out each segment as a view of its own payload bytes, in order', () => {
    const store = new RingPayloadStore({ pageSize: PAGE, segmentBytes: 4 * PAGE, maxInFlight: 2, windowPages: 0 });
    const out: SegmentPayload[] = [];
    for (let segment = 0; segment < 20; segment++) {
      for (let i = 0; i < 3; i++) expect(store.page(page(segment * 3 + i))).toBe(0);
      store.span(Buffer.from([segment]));
      expect(store.length).toBe(3 * PAGE + 1);
      const payload = store.take()!;
      for (let i = 0; i < 3; i++) expect(Buffer.from(payload.bytes.subarray(i * PAGE, (i + 1) * PAGE)).equals(page(segment * 3 + i))).toBe(true);
      expect(payload.bytes[3 * PAGE]).toBe(segment);
      expect(payload.transfer).toEqual([]);
      out.push(payload);
      // At most maxInFlight + 1 out at once, as the frame emitter keeps them.
      if (out.length > 2) out.shift()!.release();
    }
    expect(store.take()).toBeUndefined();
  });

  test('refuses to overwrite a segment that was never released', () => {
    const store = new RingPayloadStore({ pageSize: PAGE, segmentBytes: 4 * PAGE, maxInFlight: 1, windowPages: 0 });
    const held = [];
    let caught: unknown;
    try {
      for (let segment = 0; segment < 40; segment++) {
        store.page(page(segment));
        held.push(store.take()!);
      }
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(WorkerError);
    expect((caught as Error).message).toMatch(/overrun/);
  });

  test('finds repeated pages within the window', () => {
    const store = new RingPayloadStore({ pageSize: PAGE, segmentBytes: 4 * PAGE, maxInFlight: 1, windowPages: 16 });
    expect(store.page(page(1))).toBe(0);
    expect(store.page(page(2))).toBe(0);
    expect(store.page(page(1))).toBe(2);
    expect(store.length).toBe(2 * PAGE);
    store.take()!.release();
    expect(store.page(page(2))).toBe(1);
  });
});

describe('BufferPayloadStore', () => {
  test('a fresh, transferable buffer per segment, growing past frameBytes when it must', () => {
    const store = new BufferPayloadStore({ pageSize: PAGE, segmentBytes: PAGE, maxInFlight: 1, windowPages: 4 });
    expect(store.page(page(1))).toBe(0);
    expect(store.page(page(2))).toBe(0);
    expect(store.page(page(1))).toBe(2);
    const payload = store.take()!;
    expect(payload.bytes.length).toBe(2 * PAGE);
    expect(payload.transfer).toEqual([payload.bytes.buffer]);
    expect(store.take()).toBeUndefined();
  });
});
