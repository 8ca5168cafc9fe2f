/**
 * Where the guest pages are in the bytes a tunnel stream carries from the source QEMU, chunk by
 * chunk, for page-delta.ts: a main migration stream through the stream decoder (RAM_SAVE_FLAG_PAGE
 * records end with their page), a multifd channel through its packet reader (the packet's
 * normal pages follow it in its offsets' order, uncompressed). Anything else, or bytes that
 * stop parsing, gives no pages from then on: the stream is still forwarded, only not page-aware.
 *
 * A page is reported in the chunk holding all of its bytes; one cut by a chunk boundary is
 * left to the codec as it is. Pure: no I/O.
 */
import { createDecoder } from '../codec.js';
import { MULTIFD_COMPRESSION_MASK, MULTIFD_PACKET_DATA_BYTES, MULTIFD_PACKET_HEADER_BYTES, MultifdChannelReader } from '../ram/multifd.js';
import { classifyConnection, type ConnectionKind } from './classify.js';
import { PAGE_DELTA_BYTES, type PageSpan } from './page-delta.js';

/** A multifd packet before its pages, for 4 KiB pages. */
const PACKET_BYTES = MULTIFD_PACKET_HEADER_BYTES + 8 * (MULTIFD_PACKET_DATA_BYTES / PAGE_DELTA_BYTES);

interface PendingPage {
  /** Stream offset of the page's first byte. */
  from: number;
  block: string;
  offset: number;
}

export class PageFinder {
  private mode: 'undecided' | 'main' | 'multifd' | 'none' = 'undecided';
  private head = Buffer.alloc(0);
  private decoder: ReturnType<typeof createDecoder> | undefined;
  private multifd: MultifdChannelReader | undefined;
  /** Multifd pages announced by a packet whose bytes have not all passed yet. */
  private pending: PendingPage[] = [];
  /** Stream offset of the next chunk. */
  private position = 0;
  /** Why the stream stopped being followed, if it did. */
  stopped: string | undefined;

  /** The whole pages in `chunk`, the next bytes of the stream. */
  push(chunk: Buffer): PageSpan[] {
    const start = this.position;
    this.position += chunk.length;
    if (this.mode === 'none') return [];
    let bytes = chunk;
    let from = start;
    if (this.mode === 'undecided') {
      // The stream's first bytes say what it is (classify.ts); they may come in more than one chunk.
      this.head = Buffer.concat([this.head, chunk]);
      const kind = classifyConnection(this.head, Buffer.alloc(0));
      if (kind === null) return [];
      const mode = this.decide(kind);
      this.mode = mode;
      bytes = this.head;
      from = 0;
      this.head = Buffer.alloc(0);
      if (mode === 'none') return [];
    }
    try {
      const spans = this.mode === 'main' ? this.mainPages(bytes, from) : this.multifdPages(bytes, from);
      // Spans are relative to `bytes`; a head that began in an earlier chunk shifts them.
      return from === start ? spans : spans.filter((s) => s.at >= start - from).map((s) => ({ ...s, at: s.at - (start - from) }));
    } catch (error) {
      this.stop((error as Error).message);
      return [];
    }
  }

  private decide(kind: ConnectionKind): 'main' | 'multifd' | 'none' {
    if (kind === 'qemu-main') {
      this.decoder = createDecoder();
      return 'main';
    }
    if (kind === 'multifd') {
      this.multifd = new MultifdChannelReader(PAGE_DELTA_BYTES);
      return 'multifd';
    }
    return 'none';
  }

  private mainPages(chunk: Buffer, start: number): PageSpan[] {
    const decoder = this.decoder!;
    const records = decoder.push(chunk);
    const ends = decoder.recordEnds;
    const spans: PageSpan[] = [];
    if (decoder.parameters.pageSize === PAGE_DELTA_BYTES) {
      for (let i = 0; i < records.length; i++) {
        const record = records[i]!;
        if (record.type !== 'ram-page') continue;
        const from = ends[i]! - PAGE_DELTA_BYTES;
        if (from >= start) spans.push({ at: from - start, block: record.block, offset: record.offset });
      }
    }
    decoder.releaseInput();
    return spans;
  }

  private multifdPages(chunk: Buffer, start: number): PageSpan[] {
    for (const event of this.multifd!.push(chunk)) {
      if (event.kind !== 'packet' || (event.flags & MULTIFD_COMPRESSION_MASK) !== 0) continue;
      const first = event.at + PACKET_BYTES;
      event.normalOffsets.forEach((offset, i) => this.pending.push({ from: first + i * PAGE_DELTA_BYTES, block: event.ramblock, offset }));
    }
    const end = start + chunk.length;
    const spans: PageSpan[] = [];
    let taken = 0;
    for (const page of this.pending) {
      if (page.from + PAGE_DELTA_BYTES > end) break;
      taken++;
      if (page.from >= start) spans.push({ at: page.from - start, block: page.block, offset: page.offset });
    }
    this.pending = taken === this.pending.length ? [] : this.pending.slice(taken);
    return spans;
  }

  private stop(reason: string): void {
    this.mode = 'none';
    this.stopped = reason;
    this.decoder = undefined;
    this.multifd = undefined;
    this.pending = [];
  }
}
