/**
 * The page-aware split, planned on the main thread: records in, segment plans out. A segment is
 * a stretch of the stream that becomes two frames,
 *   META     the stream's own bytes (record headers, ZERO records, device state, …) with the
 *            page and disk-chunk payloads cut out, led by the cut list (meta.ts);
 *   PAYLOAD  those payloads back to back: many pages in one buffer, as a codec likes them.
 * QEMU's records stay as they are: a ZERO page is still its 1-byte record in META.
 *
 * A plan only names byte ranges of the input (a payload sits at the end of its record, whose
 * length is encodedLength), and a worker cuts the input bytes along them (split.ts), so the
 * frames hold the input's own bytes: what the decompressor splices back is the input, whatever
 * the records say.
 */
import { encodedLength, type MigrationRecord } from '../codec.js';
import { xxh32 } from './checksum.js';
import { CutListBuilder } from './meta.js';
import type { DedupIndex } from './window.js';

export interface SegmentPlan {
  /** Stream offsets of the segment: [start, end). */
  readonly start: number;
  readonly end: number;
  /** The cut list that leads the META frame. */
  readonly cutList: Buffer;
  /** Per cut: offset from `start`, length, 1 when stored in PAYLOAD (0: a dedup reference). */
  readonly ranges: Float64Array;
  /** Bytes of the PAYLOAD frame (0: no PAYLOAD frame). */
  readonly payloadBytes: number;
  readonly pages: number;
  readonly refs: number;
}

export interface PlannerOptions {
  pageSize: number;
  /** A segment closes before its payload would exceed this, or once its META does. */
  frameBytes: number;
  dedup?: DedupIndex | undefined;
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

  /** Adds the next record of the stream; returns the segment it closed, if any. */
  add(record: MigrationRecord): SegmentPlan | undefined {
    const length = encodedLength(record);
    const data = payloadOf(record);
    let closed: SegmentPlan | undefined;
    // Never split after EOF: the last segment holds EOF and the vmdesc together, so a reader
    // that holds back the last segment keeps QEMU from seeing a complete stream early.
    if (!this.afterEof && this.offset > this.start) {
      const payload = this.cuts.payloadBytes;
      const structure = this.offset - this.start - this.cutBytes;
      const full = data ? payload > 0 && payload + data.length > this.options.frameBytes : structure >= this.options.frameBytes;
      if (full) closed = this.close(this.offset);
    }
    if (data) this.cut(this.offset + length - data.length, data, record.type === 'ram-page');
    this.offset += length;
    if (record.type === 'eof') this.afterEof = true;
    return closed;
  }

  /** Closes the last segment at the end of the stream. */
  finish(): SegmentPlan | undefined {
    return this.offset > this.start ? this.close(this.offset) : undefined;
  }

  private cut(at: number, data: Buffer, ram: boolean): void {
    const { pageSize, dedup } = this.options;
    const gap = at - this.lastCutEnd;
    let stored = 1;
    if (!ram || data.length !== pageSize) {
      this.cuts.span(gap, data.length);
    } else if (dedup === undefined) {
      this.cuts.page(gap);
    } else {
      const hash = dedup.hash(data);
      const distance = dedup.find(hash, data);
      if (distance > 0) {
        this.cuts.ref(gap, distance, xxh32(data));
        stored = 0;
      } else {
        this.cuts.page(gap);
        dedup.add(hash, data);
      }
    }
    this.ranges.push(at - this.start, data.length, stored);
    this.lastCutEnd = at + data.length;
    this.cutBytes += data.length;
  }

  private close(end: number): SegmentPlan {
    const plan: SegmentPlan = {
      start: this.start,
      end,
      cutList: this.cuts.encode(),
      ranges: Float64Array.from(this.ranges),
      payloadBytes: this.cuts.payloadBytes,
      pages: this.cuts.pages,
      refs: this.cuts.refs,
    };
    this.start = end;
    this.lastCutEnd = end;
    this.cutBytes = 0;
    this.ranges = [];
    this.cuts = new CutListBuilder(this.options.pageSize);
    return plan;
  }
}

/** The bytes a record carries out of META: a RAM page or a disk chunk. */
function payloadOf(record: MigrationRecord): Buffer | undefined {
  if (record.type === 'ram-page' || record.type === 'block-data') return record.data.length > 0 ? record.data : undefined;
  return undefined;
}
