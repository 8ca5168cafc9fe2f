/**
 * Hot-page dropping: send holds the stream's frames for a while before they go to a channel,
 * and when QEMU writes a page again while the frame with its earlier copy is still held, that
 * earlier copy is cut out. The destination loads the later copy over the page anyway
 * (ram_load_precopy writes each record where it points), so the earlier one only cost wire.
 *
 * Never cut:
 *   - a copy that an XBZRLE delta builds on: load_xbzrle decodes the delta against the page as
 *     the destination holds it, so the copy before a delta must arrive (the delta pins it);
 *   - a record that carries its block's name (no CONTINUE): the records after it with CONTINUE
 *     name no block and mean the last one named (ram_block_from_stream), so the name stays;
 *   - a record whose bytes lie across two frames (a frame leaves whole or not at all).
 *
 * QEMU writes a page again only in a later pass, after a bitmap sync (migration_bitmap_sync),
 * and each pass walks the blocks in the same order (ram_find_and_save_block), so the two
 * copies of a page lie about one pass apart: dropping happens once passes are shorter than
 * the hold, which is at the end of a converging migration, when the guest's hottest pages
 * are all that is left. Pure: chunks and records in, frames out; the frame's own buffer is
 * compacted in place when it leaves.
 */
import { isRamPageRecord, type RamPageLikeRecord } from './records.js';
import type { BaseRecord } from '../stream/section-codec.js';

export interface HoldSavings {
  /** Earlier copies cut out because a later full copy of the page came while they were held. */
  droppedPages: number;
  /** Stream bytes those copies took (record headers and payloads). */
  droppedBytes: number;
  /** Pages sent again as an XBZRLE delta while the copy it builds on was held: kept. */
  pinnedPages: number;
  /** Held copies superseded but kept because they carry their block's name or span two frames. */
  keptPages: number;
}

interface HeldFrame {
  /** The frame's buffer as the input gave it. */
  readonly data: Buffer;
  /** Stream offset of its first byte. */
  readonly start: number;
  /** Byte ranges (frame-relative, [from, to)) to cut out when it leaves. */
  readonly cuts: [number, number][];
  /** Keys of the pages it holds, so they are forgotten when it leaves. */
  readonly keys: string[];
}

interface HeldCopy {
  readonly frame: HeldFrame;
  readonly from: number;
  readonly to: number;
  /** Can be cut: no block name, inside one frame. */
  readonly cuttable: boolean;
}

export class HotPageHold {
  private readonly frames: HeldFrame[] = [];
  private readonly held = new Map<string, HeldCopy>();
  private readonly savings: HoldSavings = { droppedPages: 0, droppedBytes: 0, pinnedPages: 0, keptPages: 0 };
  /** Stream offset just past the last frame added. */
  private streamEnd = 0;
  /** Stream offset where the next record reported starts (the last one's end). */
  private recordStart = 0;
  /** Bytes held, after cuts. */
  private bytes = 0;

  /** Held frames' bytes, with what was cut out already taken off. */
  get heldBytes(): number {
    return this.bytes;
  }

  get heldFrames(): number {
    return this.frames.length;
  }

  /** A frame read from the input, next in the stream. */
  addFrame(data: Buffer): void {
    this.frames.push({ data, start: this.streamEnd, cuts: [], keys: [] });
    this.streamEnd += data.length;
    this.bytes += data.length;
  }

  /**
   * The records the decoder completed with the frames added so far, and where each ends in the
   * stream (the decoder's recordEnds): a record starts where the one before it ended.
   */
  addRecords(records: readonly BaseRecord[], ends: readonly number[]): void {
    for (let i = 0; i < records.length; i++) {
      const from = this.recordStart;
      const to = ends[i]!;
      this.recordStart = to;
      const record = records[i]!;
      if (isRamPageRecord(record)) this.addPage(record, from, to);
    }
  }

  /** The oldest frame, with its dropped copies cut out (a view of its own buffer); null when none is held. */
  release(): Buffer | null {
    const frame = this.frames.shift();
    if (frame === undefined) return null;
    for (const key of frame.keys) if (this.held.get(key)?.frame === frame) this.held.delete(key);
    const data = frame.cuts.length === 0 ? frame.data : compact(frame.data, frame.cuts);
    this.bytes -= data.length;
    return data;
  }

  result(): HoldSavings {
    return { ...this.savings };
  }

  private addPage(page: RamPageLikeRecord, from: number, to: number): void {
    const frame = this.frameHolding(to - 1);
    const key = `${page.block}\0${page.offset}`;
    const earlier = this.held.get(key);
    if (earlier !== undefined) {
      if (page.type === 'ram-xbzrle') this.savings.pinnedPages++;
      else if (!earlier.cuttable) this.savings.keptPages++;
      else {
        earlier.frame.cuts.push([earlier.from - earlier.frame.start, earlier.to - earlier.frame.start]);
        this.savings.droppedPages++;
        this.savings.droppedBytes += earlier.to - earlier.from;
        this.bytes -= earlier.to - earlier.from;
      }
    }
    // A record completed by a frame that already left (the decoder reports it late only at
    // the stream's end, or after a release between push and report) is out of reach.
    if (frame === undefined) {
      this.held.delete(key);
      return;
    }
    this.held.set(key, { frame, from, to, cuttable: page.continued && from >= frame.start });
    frame.keys.push(key);
  }

  /** The held frame holding stream offset `at` (the newest frames are searched first). */
  private frameHolding(at: number): HeldFrame | undefined {
    for (let i = this.frames.length - 1; i >= 0; i--) {
      const frame = this.frames[i]!;
      if (at >= frame.start) return at < frame.start + frame.data.length ? frame : undefined;
    }
    return undefined;
  }
}

/** `data` without the `cuts` ranges, moved down within its own buffer. */
function compact(data: Buffer, cuts: [number, number][]): Buffer {
  cuts.sort((a, b) => a[0] - b[0]);
  let write = cuts[0]![0];
  for (let i = 0; i < cuts.length; i++) {
    const keepFrom = cuts[i]![1];
    const keepTo = i + 1 < cuts.length ? cuts[i + 1]![0] : data.length;
    data.copyWithin(write, keepFrom, keepTo);
    write += keepTo - keepFrom;
  }
  return data.subarray(0, write);
}
