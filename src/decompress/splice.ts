/**
 * The reading half of the page-aware split as pure functions on buffers (the writing half is
 * the compressor's planner and payload store):
 *   splice         META raw + PAYLOAD raw → segment bytes (REF cuts left for the caller's window)
 *   segmentRanges  the same as ranges of the frames' buffers, for a gathered write
 */
import { CutTag } from '../container/format.js';
import { parseCutList } from '../container/cut-list.js';

export interface Spliced {
  readonly bytes: Buffer;
  /**
   * With a page window: (output offset, distance, checksum) per PAGE or REF cut in order, distance
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
export function splice(meta: Buffer, payload: Buffer | undefined, pageSize: number, window: boolean): Spliced | { problem: string; frame: 'meta' | 'payload' } {
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
 * The page window of a reader that writes segments as views (direct.ts): stored pages are
 * recorded where they lie in their PAYLOAD buffer, and a REF cut becomes a view of the page it
 * names, after its checks.
 */
export interface PieceWindow {
  /** The next stored page is `pageSize` bytes of `payload` at `at`. */
  stored(payload: Buffer, at: number): void;
  /** The page stored `distance` pages back, checked against its checksum; a string says what is wrong. */
  ref(distance: number, checksum: number): Buffer | string;
}

/** A segment as ranges of buffers, for one gathered write (src/native/fd.ts writeRanges). */
export interface SegmentRanges {
  /** `meta`, `payload` (an empty buffer when there is none), then the page of each REF cut. */
  readonly buffers: Buffer[];
  /** (index into `buffers`, offset, length) per range, in stream order. */
  readonly ranges: Float64Array;
  readonly count: number;
  /** Bytes of the segment. */
  readonly length: number;
}

const NO_PAYLOAD = Buffer.alloc(0);

/**
 * The segment as ranges of `meta` and `payload` (and, for REF cuts, of earlier pages through
 * `window`) in stream order, for a gathered write that needs neither a spliced copy nor a JS
 * object per range.
 */
export function segmentRanges(meta: Buffer, payload: Buffer | undefined, pageSize: number, window?: PieceWindow): SegmentRanges | { problem: string; frame: 'meta' | 'payload' } {
  const parsed = checkedCutList(meta, payload, pageSize);
  if ('problem' in parsed) return parsed;
  const { cuts, structureOffset, payloadBytes } = parsed;
  const buffers = [meta, payload ?? NO_PAYLOAD];
  // At most a structure range and a payload or page range per cut, and the structure tail.
  const ranges = new Float64Array(3 * (2 * cuts.count + 1));
  let count = 0;
  const add = (buffer: number, offset: number, length: number): void => {
    ranges[3 * count] = buffer;
    ranges[3 * count + 1] = offset;
    ranges[3 * count + 2] = length;
    count++;
  };
  let from = structureOffset;
  let taken = 0;
  let refBytes = 0;
  // Consecutive payloads (pages with no bytes between) go out as one range.
  let runStart = -1;
  const flushRun = (): void => {
    if (runStart >= 0 && taken > runStart) add(1, runStart, taken - runStart);
    runStart = -1;
  };
  for (let i = 0; i < cuts.count; i++) {
    const gap = cuts.gaps[i]!;
    if (gap > 0) {
      flushRun();
      add(0, from, gap);
      from += gap;
    }
    const tag = cuts.tags[i]!;
    if (tag === CutTag.REF) {
      if (window === undefined) return { problem: 'META frame has page references but the container has no page window', frame: 'meta' };
      const page = window.ref(cuts.args[i]!, cuts.checks[i]!);
      if (typeof page === 'string') return { problem: page, frame: 'meta' };
      flushRun();
      buffers.push(page);
      add(buffers.length - 1, 0, pageSize);
      refBytes += pageSize;
      continue;
    }
    if (tag === CutTag.PAGE && window !== undefined) window.stored(payload!, taken);
    if (runStart < 0) runStart = taken;
    taken += tag === CutTag.PAGE ? pageSize : cuts.args[i]!;
  }
  flushRun();
  if (from < meta.length) add(0, from, meta.length - from);
  return { buffers, ranges, count, length: meta.length - structureOffset + payloadBytes + refBytes };
}
