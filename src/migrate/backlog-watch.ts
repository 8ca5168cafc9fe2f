/**
 * Hot pages caught in send's backlog: QEMU writes a page again while the frame holding its
 * earlier copy has not yet left for the kernel. Dropping that earlier copy would save its
 * bytes on the wire — unless the new record is an XBZRLE delta, which the destination applies
 * on top of the earlier copy (ram_load_precopy → load_xbzrle), so that copy must arrive.
 *
 * This counts what dropping could save, so the decision whether to rewrite frames in flight
 * rests on a figure. The backlog is small by design: send holds channels × credit frames
 * (about 50 ms of the link, migrate-options.ts frameKiBForLink), because QEMU decides the
 * switch-over from how fast its pipe drains. And QEMU re-sends a page only in a later pass,
 * after a bitmap sync (migration_bitmap_sync), so both copies are in the backlog together
 * only when a whole pass fits in it.
 *
 * A record counts in the frame its last byte arrived in. Memory is bounded by the backlog:
 * only pages of frames not yet gone are remembered. Pure: feed frames and departures.
 */
import type { RamPageLikeRecord } from '../ram/records.js';
import type { BaseRecord } from '../stream/section-codec.js';

/** be64 offset+flags before every page record's payload (ram_save_page). */
const PAGE_HEADER_BYTES = 8;

export interface BacklogSavings {
  /** Earlier copies a later full page made useless while both were in the backlog. */
  droppablePages: number;
  /** Stream bytes those earlier copies took (headers and payloads). */
  droppableBytes: number;
  /** Pages sent again as an XBZRLE delta while the copy it builds on was in the backlog. */
  pinnedPages: number;
}

interface Held {
  seq: number;
  bytes: number;
}

const PAGE_RECORDS = new Set(['ram-page', 'ram-zero', 'ram-xbzrle', 'ram-compressed']);

export class BacklogWatch {
  private readonly held = new Map<string, Held>();
  /** Keys of the pages each frame still in the backlog holds, by frame sequence number. */
  private readonly frames = new Map<number, string[]>();
  private readonly savings: BacklogSavings = { droppablePages: 0, droppableBytes: 0, pinnedPages: 0 };

  /** The records completed by frame `seq`, before it goes to a channel. */
  enter(seq: number, records: readonly BaseRecord[]): void {
    let keys: string[] | undefined;
    for (const record of records) {
      if (!PAGE_RECORDS.has(record.type)) continue;
      const page = record as RamPageLikeRecord;
      const key = `${page.block}\0${page.offset}`;
      const earlier = this.held.get(key);
      if (earlier !== undefined) {
        if (page.type === 'ram-xbzrle') this.savings.pinnedPages++;
        else {
          this.savings.droppablePages++;
          this.savings.droppableBytes += earlier.bytes;
        }
      }
      this.held.set(key, { seq, bytes: PAGE_HEADER_BYTES + (page.type === 'ram-zero' ? 1 : page.data.length) });
      (keys ??= []).push(key);
    }
    if (keys) this.frames.set(seq, keys);
  }

  /** Frame `seq` left for the kernel: its pages can no longer be dropped. */
  left(seq: number): void {
    const keys = this.frames.get(seq);
    if (keys === undefined) return;
    this.frames.delete(seq);
    for (const key of keys) if (this.held.get(key)?.seq === seq) this.held.delete(key);
  }

  /** Pages currently remembered (bounded by what the backlog's frames hold). */
  get heldPages(): number {
    return this.held.size;
  }

  result(): BacklogSavings {
    return { ...this.savings };
  }
}
