/**
 * Compaction of a saved stream: every page keeps only its final content, sent once, so a save
 * of a busy guest is no larger than its RAM. The result is still a stream QEMU loads, with the
 * same final RAM:
 *   - a page's records are dropped except the last one (its position, section and order with
 *     the device state are unchanged);
 *   - when that last record is an XBZRLE delta, it becomes a full PAGE (or a ZERO record) with
 *     the page's final content, so no XBZRLE record is left;
 *   - CONTINUE flags are recomputed for the records that remain (a dropped record may have
 *     named the block a CONTINUE relied on); each section names its first block.
 * Everything else (device state, disk chunks, headers, footers, vmdesc) passes unchanged.
 *
 * Two passes over the input: the first finds each page's last record (and its last full one);
 * the second gives the records, to the encoder (compactedBytes) or straight to the compressor
 * (Compressor.compressRecords), which never decodes them again. Memory: 8 bytes per guest page for the tables, plus the content of the
 * pages that are between their last full record and a final XBZRLE delta, which are pages the
 * source's XBZRLE cache held (so at most its cache-size).
 */
import { createDecoder, createEncoder, type MigrationRecord } from '../codec.js';
import { isRamPageRecord, type RamPageLikeRecord, type RamPageRecord, type RamXbzrleRecord, type RamZeroRecord } from './records.js';
import { decodeXbzrle } from './xbzrle.js';
import { inflatePage } from './zlib-page.js';
import { asBuffer } from '../bytes/transfer.js';

export interface CompactStats {
  /** Page records (PAGE, ZERO, XBZRLE, COMPRESS_PAGE) read and written. */
  pageRecordsIn: number;
  pageRecordsOut: number;
  /** Final XBZRLE deltas turned into full pages. */
  materialized: number;
}

/** Per RAMBlock: for each page, the ordinal of its last record and of its last full record. */
class PageTable {
  last: Uint32Array = new Uint32Array(0);
  lastFull: Uint32Array = new Uint32Array(0);

  ensure(index: number): void {
    if (index < this.last.length) return;
    const size = Math.max(index + 1, this.last.length * 2, 1024);
    const grow = (old: Uint32Array): Uint32Array => {
      const next = new Uint32Array(size);
      next.set(old);
      return next;
    };
    this.last = grow(this.last);
    this.lastFull = grow(this.lastFull);
  }
}

export type ByteSource = () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export class Compactor {
  readonly stats: CompactStats = { pageRecordsIn: 0, pageRecordsOut: 0, materialized: 0 };
  private readonly tables = new Map<string, PageTable>();
  private scanned = false;
  private streamPageSize = 4096;

  /**
   * `open` is called twice, and must give the same bytes both times. `blockSize`: the block
   * section's chunk size (--mig-block-size); found from the stream when absent.
   */
  constructor(
    private readonly open: ByteSource,
    private readonly blockSize?: number,
  ) {}

  /** The stream's TARGET_PAGE_SIZE, as far as the records given so far tell (the compressor's RecordSource). */
  get pageSize(): number {
    return this.streamPageSize;
  }

  /** Pass 1: the last record of every page. */
  async scan(): Promise<void> {
    let ordinal = 0;
    for await (const { record, pageSize } of decodeAll(this.open(), this.blockSize)) {
      if (!isRamPageRecord(record)) continue;
      ordinal++;
      const table = this.table(record.block);
      const index = record.offset / pageSize;
      table.ensure(index);
      table.last[index] = ordinal;
      if (record.type !== 'ram-xbzrle') table.lastFull[index] = ordinal;
    }
    this.stats.pageRecordsIn = ordinal;
    this.scanned = true;
  }

  /** Pass 2: the compacted records, in batches. */
  async *records(): AsyncGenerator<MigrationRecord[]> {
    if (!this.scanned) await this.scan();
    let ordinal = 0;
    let lastBlock: string | undefined;
    const tracked = new Map<string, Buffer>();
    let batch: MigrationRecord[] = [];
    for await (const { record, pageSize } of decodeAll(this.open(), this.blockSize)) {
      this.streamPageSize = pageSize;
      if (!isRamPageRecord(record)) {
        if (record.type === 'section-start' || record.type === 'section-resume') lastBlock = undefined;
        if (record.type === 'ram-hook' && record.block !== undefined) lastBlock = record.block;
        batch.push(record);
      } else {
        ordinal++;
        const table = this.tables.get(record.block)!;
        const index = record.offset / pageSize;
        const last = table.last[index] === ordinal;
        const key = `${record.block}\0${index}`;
        if (table.lastFull[index] === ordinal && !last) tracked.set(key, fullContent(record, pageSize));
        // Deltas before the last full record are superseded by it: only later ones matter.
        if (record.type === 'ram-xbzrle' && ordinal > table.lastFull[index]!) {
          const page = tracked.get(key) ?? Buffer.alloc(pageSize);
          if (!tracked.has(key)) tracked.set(key, page);
          decodeXbzrle(record.data, page, { context: `${record.block}+0x${record.offset.toString(16)}` });
        }
        if (last) {
          let out: RamPageLikeRecord = record;
          if (record.type === 'ram-xbzrle') {
            out = materialize(record, tracked.get(key)!);
            tracked.delete(key);
            this.stats.materialized++;
          }
          const continued = lastBlock === out.block;
          if (continued !== out.continued) out = { ...out, continued };
          lastBlock = out.block;
          batch.push(out);
          this.stats.pageRecordsOut++;
        }
      }
      if (batch.length >= 4096) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length > 0) yield batch;
  }

  private table(block: string): PageTable {
    let table = this.tables.get(block);
    if (table === undefined) {
      table = new PageTable();
      this.tables.set(block, table);
    }
    return table;
  }
}

async function* decodeAll(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, blockSize: number | undefined): AsyncGenerator<{ record: MigrationRecord; pageSize: number }> {
  const decoder = createDecoder(blockSize === undefined ? {} : { blockSize });
  for await (const chunk of source) {
    for (const record of decoder.push(asBuffer(chunk))) yield { record, pageSize: decoder.parameters.pageSize };
  }
  for (const record of decoder.end()) yield { record, pageSize: decoder.parameters.pageSize };
}

/** The page a full record leaves (a copy: input chunks are not kept). */
function fullContent(record: RamPageLikeRecord, pageSize: number): Buffer {
  switch (record.type) {
    case 'ram-page':
      return Buffer.from(record.data);
    case 'ram-zero':
      return Buffer.alloc(pageSize, record.fill);
    case 'ram-compressed':
      return inflatePage(record.data, pageSize, { context: `${record.block}+0x${record.offset.toString(16)}` });
    default:
      return Buffer.alloc(pageSize);
  }
}

function materialize(record: RamXbzrleRecord, page: Buffer): RamPageRecord | RamZeroRecord {
  const { block, continued, offset } = record;
  const base = record.wireName === undefined ? { block, continued, offset } : { block, continued, offset, wireName: record.wireName };
  if (isZero(page)) return { type: 'ram-zero', ...base, fill: 0 };
  return { type: 'ram-page', ...base, data: page };
}

let zeroPage = Buffer.alloc(0);

function isZero(page: Buffer): boolean {
  if (zeroPage.length !== page.length) zeroPage = Buffer.alloc(page.length);
  return page.equals(zeroPage);
}

/** The compacted stream as bytes (runs both passes). */
export async function* compactedBytes(compactor: Compactor): AsyncGenerator<Buffer> {
  const encoder = createEncoder();
  for await (const batch of compactor.records()) {
    for (const record of batch) encoder.write(record);
    yield* encoder.take();
  }
}
