/**
 * Both halves of the page-aware split as pure functions on buffers, run in the workers:
 *   split   segment bytes + plan ranges → META raw and PAYLOAD raw
 *   splice  META raw + PAYLOAD raw → segment bytes (REF cuts left for the caller's page window)
 */
import { CutTag } from './format.js';
import { parseCutList } from './meta.js';

/** Grows and reuses one scratch buffer per purpose (a worker runs one job at a time). */
export class Scratch {
  private buffer = Buffer.alloc(0);

  get(length: number): Buffer {
    if (this.buffer.length < length) this.buffer = Buffer.allocUnsafeSlow(Math.max(length, this.buffer.length * 2));
    return this.buffer.subarray(0, length);
  }
}

/**
 * Cuts a segment along its plan. `ranges` holds (offset, length, stored) triples in order;
 * stored ranges go to PAYLOAD, references go nowhere, the rest goes to META after the cut list.
 */
export function split(
  segment: Uint8Array,
  cutList: Uint8Array,
  ranges: Float64Array,
  payloadBytes: number,
  scratch: { meta: Scratch; payload: Scratch },
): { meta: Buffer; payload: Buffer } {
  let cut = 0;
  for (let i = 1; i < ranges.length; i += 3) cut += ranges[i]!;
  const meta = scratch.meta.get(cutList.length + segment.length - cut);
  const payload = scratch.payload.get(payloadBytes);
  meta.set(cutList, 0);
  let m = cutList.length;
  let p = 0;
  let from = 0;
  for (let i = 0; i < ranges.length; i += 3) {
    const at = ranges[i]!;
    const length = ranges[i + 1]!;
    meta.set(segment.subarray(from, at), m);
    m += at - from;
    if (ranges[i + 2] === 1) {
      payload.set(segment.subarray(at, at + length), p);
      p += length;
    }
    from = at + length;
  }
  meta.set(segment.subarray(from), m);
  return { meta, payload };
}

export interface Spliced {
  readonly bytes: Buffer;
  /**
   * With a page window: (output offset, distance, XXH32) per PAGE or REF cut in order, distance
   * 0 for a stored page. The caller copies REF pages in, checks them, and records stored pages
   * in its window.
   */
  readonly pages: Float64Array | undefined;
}

type SegmentProblem = { problem: string; frame: 'meta' | 'payload' };

/** Parses a META frame's cut list and checks it takes exactly the PAYLOAD frame's bytes. */
function checkedCutList(meta: Buffer, payload: Buffer | undefined, pageSize: number): Exclude<ReturnType<typeof parseCutList>, string> | SegmentProblem {
  const parsed = parseCutList(meta, pageSize);
  if (typeof parsed === 'string') return { problem: `META frame: ${parsed}`, frame: 'meta' };
  const given = payload?.length ?? 0;
  if (parsed.payloadBytes !== given) {
    return payload === undefined
      ? { problem: `META cuts take ${parsed.payloadBytes} payload bytes but no PAYLOAD frame follows`, frame: 'meta' }
      : { problem: `PAYLOAD frame holds ${given} bytes, the cuts of its META frame take ${parsed.payloadBytes}`, frame: 'payload' };
  }
  return parsed;
}

/** Rebuilds a segment; a string says what is wrong and which frame is to blame. */
export function splice(
  meta: Buffer,
  payload: Buffer | undefined,
  pageSize: number,
  window: boolean,
): Spliced | { problem: string; frame: 'meta' | 'payload' } {
  const parsed = checkedCutList(meta, payload, pageSize);
  if ('problem' in parsed) return parsed;
  const { cuts, structureOffset, payloadBytes } = parsed;
  let refs = 0;
  for (let i = 0; i < cuts.count; i++) if (cuts.tags[i] === CutTag.REF) refs++;
  if (refs > 0 && !window) return { problem: 'META frame has page references but the container has no page window', frame: 'meta' };
  const out = Buffer.allocUnsafeSlow(meta.length - structureOffset + payloadBytes + refs * pageSize);
  const pages = window ? new Float64Array(3 * cuts.count) : undefined;
  let pageEntries = 0;
  let from = structureOffset;
  let taken = 0;
  let at = 0;
  for (let i = 0; i < cuts.count; i++) {
    const gap = cuts.gaps[i]!;
    // TypedArray#set, not Buffer#copy: thousands of small copies per segment, each paying
    // Buffer#copy's argument checks.
    if (gap > 0) out.set(meta.subarray(from, from + gap), at);
    from += gap;
    at += gap;
    const tag = cuts.tags[i]!;
    if (tag === CutTag.REF) {
      if (pages) {
        pages[pageEntries++] = at;
        pages[pageEntries++] = cuts.args[i]!;
        pages[pageEntries++] = cuts.checks[i]!;
      }
      at += pageSize;
      continue;
    }
    const length = tag === CutTag.PAGE ? pageSize : cuts.args[i]!;
    if (tag === CutTag.PAGE && pages) {
      pages[pageEntries++] = at;
      pages[pageEntries++] = 0;
      pages[pageEntries++] = 0;
    }
    out.set(payload!.subarray(taken, taken + length), at);
    taken += length;
    at += length;
  }
  out.set(meta.subarray(from), at);
  return { bytes: out, pages: pages?.subarray(0, pageEntries) };
}

/**
 * The segment as a list of views of `meta` and `payload` in stream order, for a gathered write
 * (writev) that needs no spliced copy. No REF cuts: direct mode has no page window.
 */
export function segmentPieces(meta: Buffer, payload: Buffer | undefined, pageSize: number): { pieces: Buffer[]; length: number } | { problem: string; frame: 'meta' | 'payload' } {
  const parsed = checkedCutList(meta, payload, pageSize);
  if ('problem' in parsed) return parsed;
  const { cuts, structureOffset, payloadBytes } = parsed;
  const pieces: Buffer[] = [];
  let from = structureOffset;
  let taken = 0;
  // Consecutive payloads (pages with no bytes between) go out as one piece.
  let runStart = -1;
  const flushRun = (): void => {
    if (runStart >= 0 && taken > runStart) pieces.push(payload!.subarray(runStart, taken));
    runStart = -1;
  };
  for (let i = 0; i < cuts.count; i++) {
    const gap = cuts.gaps[i]!;
    if (gap > 0) {
      flushRun();
      pieces.push(meta.subarray(from, from + gap));
      from += gap;
    }
    const tag = cuts.tags[i]!;
    if (tag === CutTag.REF) return { problem: 'META frame has page references but the container has no page window', frame: 'meta' };
    if (runStart < 0) runStart = taken;
    taken += tag === CutTag.PAGE ? pageSize : cuts.args[i]!;
  }
  flushRun();
  if (from < meta.length) pieces.push(meta.subarray(from));
  return { pieces, length: meta.length - structureOffset + payloadBytes };
}
