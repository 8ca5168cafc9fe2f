/**
 * The page-aware split, on the main thread: records in, segments out. A segment is a stretch of
 * the stream that becomes two frames,
 *   META     the stream's own bytes (record headers, ZERO records, device state, …) with the
 *            page and disk-chunk payloads cut out, led by the cut list (meta.ts);
 *   PAYLOAD  those payloads back to back: many pages in one buffer, as a codec likes them.
 * QEMU's records stay as they are: a ZERO page is still its 1-byte record in META.
 *
 * As records come, each payload (a view of the input: a payload sits at the end of its record,
 * whose span the decoder reports: StreamDecoder.recordEnds) goes into the payload store (payload-store.ts), which also
 * finds pages equal to recent ones (dedup); the plan names the byte ranges cut out, and the
 * caller copies the rest, the structure bytes, from the input when the segment closes. So the
 * frames hold the input's own bytes: what the decompressor splices back is the input, whatever
 * the records say.
 */
import type { MigrationRecord } from '../codec.js';
import { CutListBuilder } from '../container/cut-list.js';
import type { PayloadStore, SegmentPayload } from './payload-store.js';

export interface SegmentPlan {
  /** Stream offsets of the segment: [start, end). */
  readonly start: number;
  readonly end: number;
  /** The cut list that leads the META frame. */
  readonly cutList: Buffer;
  /** Per cut, in order: offset from `start` and length of the bytes cut out of the structure. */
  readonly ranges: Float64Array;
  /** Structure bytes: the segment's bytes that are not cut out (META is the cut list, then them). */
  readonly structureBytes: number;
  /** The PAYLOAD frame's bytes (undefined: no PAYLOAD frame). */
  readonly payload: SegmentPayload | undefined;
  readonly pages: number;
  readonly refs: number;
}

/**
 * The longest payload cut out on its own when it is longer than the frame size: QEMU's disk
 * chunks (BLK_MIG_BLOCK_SIZE, 1 MiB). Longer ones stay in the structure bytes.
 */
export const MAX_CUT_BYTES = 1 << 20;

/** The most payload a segment holds: frameBytes, or one cut of up to MAX_CUT_BYTES alone. */
export function segmentPayloadBytes(frameBytes: number): number {
  return Math.max(frameBytes, MAX_CUT_BYTES);
}

export interface PlannerOptions {
  pageSize: number;
  /**
   * A segment closes before its payload would exceed this (a longer payload makes a segment on
   * its own, up to MAX_CUT_BYTES), or once its structure does.
   */
  frameBytes: number;
  /** Takes the payloads (and finds repeated pages when it dedups). */
  store: PayloadStore;
}

export class SegmentPlanner {
  /** Stream offset where the next record starts. */
  private offset = 0;
  private start = 0;
  private cuts: CutListBuilder;
  private ranges: number[] = [];
  private lastCutEnd = 0;
  /** Bytes of the segment taken by cuts (stored or referenced). */
  private cutBytes = 0;
  private afterEof = false;

  constructor(private readonly options: PlannerOptions) {
    this.cuts = new CutListBuilder(options.pageSize);
  }

  /** Stream bytes accounted for by the records added so far. */
  get position(): number {
    return this.offset;
  }

  /**
   * Adds the next record of the stream, which ends at stream offset `end` (it starts where the
   * one before it ended); returns the segment it closed, if any.
   */
  add(record: MigrationRecord, end: number): SegmentPlan | undefined {
    const data = payloadOf(record, segmentPayloadBytes(this.options.frameBytes));
    let closed: SegmentPlan | undefined;
    // Never split after EOF: the last segment holds EOF and the vmdesc together, so a reader
    // that holds back the last segment keeps QEMU from seeing a complete stream early.
    if (!this.afterEof && this.offset > this.start) {
      const payload = this.cuts.payloadBytes;
      const structure = this.offset - this.start - this.cutBytes;
      const full = data ? payload > 0 && payload + data.length > this.options.frameBytes : structure >= this.options.frameBytes;
      if (full) closed = this.close(this.offset);
    }
    if (data) this.cut(end - data.length, data, record.type === 'ram-page');
    this.offset = end;
    if (record.type === 'eof') this.afterEof = true;
    return closed;
  }

  /** Closes the last segment at the end of the stream. */
  finish(): SegmentPlan | undefined {
    return this.offset > this.start ? this.close(this.offset) : undefined;
  }

  private cut(at: number, data: Buffer, ram: boolean): void {
    const { pageSize, store } = this.options;
    const gap = at - this.lastCutEnd;
    if (ram && data.length === pageSize) {
      const distance = store.page(data);
      if (distance > 0) this.cuts.ref(gap, distance, store.checksum);
      else this.cuts.page(gap);
    } else {
      store.span(data);
      this.cuts.span(gap, data.length);
    }
    this.ranges.push(at - this.start, data.length);
    this.lastCutEnd = at + data.length;
    this.cutBytes += data.length;
  }

  private close(end: number): SegmentPlan {
    const plan: SegmentPlan = {
      start: this.start,
      end,
      cutList: this.cuts.encode(),
      ranges: Float64Array.from(this.ranges),
      structureBytes: end - this.start - this.cutBytes,
      payload: this.options.store.take(),
      pages: this.cuts.pages,
      refs: this.cuts.refs,
    };
    if ((plan.payload?.bytes.length ?? 0) !== this.cuts.payloadBytes) {
      throw new Error(`the payload store holds ${plan.payload?.bytes.length ?? 0} bytes for cuts of ${this.cuts.payloadBytes}`);
    }
    this.start = end;
    this.lastCutEnd = end;
    this.cutBytes = 0;
    this.ranges = [];
    this.cuts = new CutListBuilder(this.options.pageSize);
    return plan;
  }
}

/** The bytes a record carries out of META: a RAM page or a disk chunk (up to `longest` bytes). */
function payloadOf(record: MigrationRecord, longest: number): Buffer | undefined {
  if (record.type !== 'ram-page' && record.type !== 'block-data') return undefined;
  const data = record.data;
  return data.length > 0 && data.length <= longest ? data : undefined;
}
