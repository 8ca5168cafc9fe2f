/**
 * Page-aware compression of a tunnel stream: a guest page sent again is sent as its XOR
 * against the copy sent before, which both tunnel ends keep, so the codec (lz4/zstd) sees
 * zeros wherever the page did not change. XBZRLE's idea (QEMU's migration/xbzrle.c and
 * page_cache.c), done by the tunnel on unpatched QEMU: libvirt never turns XBZRLE on, and
 * multifd cannot carry it at all.
 *
 * The source side decides everything; the destination follows a table:
 *
 *   STREAM_DATA codec byte = base codec | PAGE_TABLE_FLAG (0x10); its payload is
 *     u32 cache slots (the same for the whole stream)
 *     u32 entries
 *     entries × (u32 offset in the raw chunk | u32 slot | u8 op)   ascending, pages apart
 *     the body: the raw chunk with each OP_DELTA page replaced by its XOR, compressed with
 *               the base codec (or raw when the base codec is 0)
 *   OP_STORE (1): the page at `offset` is sent as it is; keep it in `slot`
 *   OP_DELTA (2): the page at `offset` is its XOR with `slot`'s page; undo it, keep the result
 *
 * Each stream has its own cache (`slots` × 4 KiB, allocated as slots are first used), so the
 * two ends change it in the same order: a stream's frames travel in order on one channel.
 * Which slot a page takes is the source's rule (page number mod slots, as page_cache.c's
 * cache_get_cache_pos()), and only a page sent before (a hot page) takes one, as QEMU's
 * XBZRLE caches pages only once its first pass is over (ram.c, rs->xbzrle_started): the first
 * pass over a large guest costs no copying, no cache memory on either side, and does not push
 * the hot pages out. The destination only checks the table: a slot beyond the size it allows, a delta
 * against a slot never filled, or pages that overlap or leave the chunk are protocol errors.
 *
 * Pure: no I/O. Pages are PAGE_DELTA_BYTES (4 KiB: every x86 and most guests' target page).
 */
export const PAGE_DELTA_BYTES = 4096;
export const PAGE_TABLE_FLAG = 0x10;
export const OP_STORE = 1;
export const OP_DELTA = 2;
const ENTRY_BYTES = 9;
const TABLE_HEADER_BYTES = 8;
const WORDS = PAGE_DELTA_BYTES / 4;
/** Slots per arena: caches grow 1 MiB at a time as slots are first used. */
const ARENA_SLOTS = 256;

/** A page's place in a chunk, and which guest page it is. */
export interface PageSpan {
  /** Offset of the page's bytes in the chunk. */
  at: number;
  /** RAMBlock idstr, and the page's byte offset in it. */
  block: string;
  offset: number;
}

export interface PageTableEntry {
  offset: number;
  slot: number;
  op: typeof OP_STORE | typeof OP_DELTA;
}

export interface PageTable {
  slots: number;
  entries: PageTableEntry[];
}

/** `slots` pages, kept in 1 MiB arenas allocated on first use. */
class PageSlots {
  private readonly arenas: (Int32Array | undefined)[];

  constructor(readonly slots: number) {
    this.arenas = new Array<Int32Array | undefined>(Math.ceil(slots / ARENA_SLOTS));
  }

  /** The slot's page as 1024 words (a view: writes change the cache). */
  page(slot: number): Int32Array {
    const index = Math.floor(slot / ARENA_SLOTS);
    const arena = (this.arenas[index] ??= new Int32Array(ARENA_SLOTS * WORDS));
    const first = (slot % ARENA_SLOTS) * WORDS;
    return arena.subarray(first, first + WORDS);
  }

  /** Bytes allocated so far. */
  get bytes(): number {
    return this.arenas.filter((a) => a !== undefined).length * ARENA_SLOTS * PAGE_DELTA_BYTES;
  }
}

/** An aligned page to XOR in: chunk offsets are not 4-byte aligned, so pages are copied through it. */
class Scratch {
  readonly words = new Int32Array(WORDS);
  readonly bytes = Buffer.from(this.words.buffer);
}

/** The source side of one stream: which pages go as deltas, and the cache both ends keep. */
export class PageDeltaEncoder {
  private readonly cache: PageSlots;
  /** Per slot: which page it holds (block number, page number), block -1 when empty. */
  private readonly slotBlock: Int32Array;
  private readonly slotPage: Float64Array;
  private readonly blockIds = new Map<string, number>();
  /** Per block: a bit per page sent before. */
  private readonly sent: Uint8Array[] = [];
  private readonly scratch = new Scratch();
  /** Pages sent as deltas, and the raw bytes they stood for. */
  deltaPages = 0;
  storedPages = 0;

  constructor(readonly slots: number) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`page cache slots must be a positive integer, got ${slots}`);
    this.cache = new PageSlots(slots);
    this.slotBlock = new Int32Array(slots).fill(-1);
    this.slotPage = new Float64Array(slots);
  }

  /**
   * The table for `raw` whose whole pages are `spans` (ascending, not overlapping), and the
   * body: `raw` itself when no page goes as a delta, else a copy with the deltas in place.
   */
  encode(raw: Buffer, spans: readonly PageSpan[]): { table: PageTable; body: Buffer } {
    const entries: PageTableEntry[] = [];
    let body = raw;
    for (const span of spans) {
      const block = this.blockId(span.block);
      const page = span.offset / PAGE_DELTA_BYTES;
      const slot = this.slotOf(block, page);
      const hot = this.wasSent(block, page);
      if (this.slotBlock[slot] === block && this.slotPage[slot] === page) {
        if (body === raw) body = Buffer.from(raw);
        if (this.delta(body, span.at, slot)) {
          entries.push({ offset: span.at, slot, op: OP_DELTA });
          this.deltaPages++;
        } else {
          entries.push({ offset: span.at, slot, op: OP_STORE });
          this.storedPages++;
        }
      } else if (hot) {
        this.store(raw, span.at, slot);
        this.slotBlock[slot] = block;
        this.slotPage[slot] = page;
        entries.push({ offset: span.at, slot, op: OP_STORE });
        this.storedPages++;
      }
    }
    return { table: { slots: this.slots, entries }, body };
  }

  /** Cache memory in use. */
  get cacheBytes(): number {
    return this.cache.bytes;
  }

  /**
   * Replaces the page at `at` in `body` by its XOR with the slot and keeps the new page in the
   * slot; false (page left as it is, slot updated) when most words changed: a rewritten page
   * compresses no better as a delta, and a text page rewritten with other text worse.
   */
  private delta(body: Buffer, at: number, slot: number): boolean {
    const { words, bytes } = this.scratch;
    body.copy(bytes, 0, at, at + PAGE_DELTA_BYTES);
    const cached = this.cache.page(slot);
    let changed = 0;
    for (let i = 0; i < WORDS; i++) {
      const now = words[i]!;
      const x = now ^ cached[i]!;
      cached[i] = now;
      words[i] = x;
      if (x !== 0) changed++;
    }
    if (changed > WORDS / 2) return false;
    bytes.copy(body, at);
    return true;
  }

  private store(raw: Buffer, at: number, slot: number): void {
    const { words, bytes } = this.scratch;
    raw.copy(bytes, 0, at, at + PAGE_DELTA_BYTES);
    this.cache.page(slot).set(words);
  }

  private blockId(name: string): number {
    let id = this.blockIds.get(name);
    if (id === undefined) {
      id = this.blockIds.size;
      this.blockIds.set(name, id);
      this.sent.push(new Uint8Array(0));
    }
    return id;
  }

  private slotOf(block: number, page: number): number {
    // Blocks start at different slots so that page 0 of every block does not share one.
    return (page + block * 0x9e3779b1) % this.slots;
  }

  /** Whether the page was sent before; marks it sent. */
  private wasSent(block: number, page: number): boolean {
    let bits = this.sent[block]!;
    const byte = page >>> 3;
    if (byte >= bits.length) {
      const grown = new Uint8Array(Math.max(byte + 1, bits.length * 2));
      grown.set(bits);
      this.sent[block] = bits = grown;
    }
    const mask = 1 << (page & 7);
    const was = (bits[byte]! & mask) !== 0;
    bits[byte]! |= mask;
    return was;
  }
}

/** The destination side of one stream: undoes the deltas and keeps the same cache. */
export class PageDeltaDecoder {
  private cache: PageSlots | undefined;
  private readonly filled: Uint8Array[] = [];
  private readonly scratch = new Scratch();

  /** `maxSlots`: the most cache the source may make this side keep for the stream. */
  constructor(readonly maxSlots: number) {}

  /** Turns `body` (the decompressed chunk, changed in place) back into the raw chunk. */
  apply(table: PageTable, body: Buffer): Buffer {
    const cache = this.cacheFor(table.slots);
    const { words, bytes } = this.scratch;
    let end = 0;
    for (const { offset, slot, op } of table.entries) {
      if (offset < end || offset + PAGE_DELTA_BYTES > body.length) throw new RangeError(`page at ${offset} overlaps the one before or leaves the ${body.length}-byte chunk`);
      if (slot >= table.slots) throw new RangeError(`page at ${offset} names slot ${slot} of a ${table.slots}-slot cache`);
      end = offset + PAGE_DELTA_BYTES;
      const cached = cache.page(slot);
      body.copy(bytes, 0, offset, end);
      if (op === OP_STORE) {
        cached.set(words);
        this.fill(slot);
        continue;
      }
      if (!this.isFilled(slot)) throw new RangeError(`page at ${offset} is a delta against slot ${slot}, which holds no page`);
      for (let i = 0; i < WORDS; i++) cached[i] = words[i]! ^ cached[i]!;
      body.set(new Uint8Array(cached.buffer, cached.byteOffset, PAGE_DELTA_BYTES), offset);
    }
    return body;
  }

  private cacheFor(slots: number): PageSlots {
    if (this.cache === undefined) {
      if (slots < 1 || slots > this.maxSlots) {
        throw new RangeError(`a page cache of ${slots} slots (${(slots * PAGE_DELTA_BYTES) / 1048576} MiB) is over the ${(this.maxSlots * PAGE_DELTA_BYTES) / 1048576} MiB this stream may keep`);
      }
      this.cache = new PageSlots(slots);
    } else if (slots !== this.cache.slots) {
      throw new RangeError(`a page table for a ${slots}-slot cache on a stream whose cache has ${this.cache.slots}`);
    }
    return this.cache;
  }

  private fill(slot: number): void {
    const index = slot >>> 3;
    (this.filled[index >>> 12] ??= new Uint8Array(4096))[index & 4095]! |= 1 << (slot & 7);
  }

  private isFilled(slot: number): boolean {
    const index = slot >>> 3;
    return ((this.filled[index >>> 12]?.[index & 4095] ?? 0) & (1 << (slot & 7))) !== 0;
  }
}

/** The table's bytes, before the body. */
export function encodePageTable(table: PageTable): Buffer {
  const out = Buffer.allocUnsafe(TABLE_HEADER_BYTES + ENTRY_BYTES * table.entries.length);
  out.writeUInt32BE(table.slots, 0);
  out.writeUInt32BE(table.entries.length, 4);
  let at = TABLE_HEADER_BYTES;
  for (const { offset, slot, op } of table.entries) {
    out.writeUInt32BE(offset, at);
    out.writeUInt32BE(slot, at + 4);
    out.writeUInt8(op, at + 8);
    at += ENTRY_BYTES;
  }
  return out;
}

/** The table at the start of `payload` and the body after it; a malformed table throws RangeError. */
export function decodePageTable(payload: Buffer, rawLength: number): { table: PageTable; body: Buffer } {
  if (payload.length < TABLE_HEADER_BYTES) throw new RangeError(`a page table needs ${TABLE_HEADER_BYTES} bytes, the payload has ${payload.length}`);
  const slots = payload.readUInt32BE(0);
  const count = payload.readUInt32BE(4);
  // A chunk holds at most rawLength / 4 KiB whole pages: bound the count before reading entries.
  if (count > Math.floor(rawLength / PAGE_DELTA_BYTES)) throw new RangeError(`a page table of ${count} pages for a ${rawLength}-byte chunk`);
  const bodyAt = TABLE_HEADER_BYTES + ENTRY_BYTES * count;
  if (payload.length < bodyAt) throw new RangeError(`a page table of ${count} pages needs ${bodyAt} bytes, the payload has ${payload.length}`);
  const entries: PageTableEntry[] = [];
  for (let at = TABLE_HEADER_BYTES; at < bodyAt; at += ENTRY_BYTES) {
    const op = payload.readUInt8(at + 8);
    if (op !== OP_STORE && op !== OP_DELTA) throw new RangeError(`page table entry ${(at - TABLE_HEADER_BYTES) / ENTRY_BYTES}: unknown op ${op}`);
    entries.push({ offset: payload.readUInt32BE(at), slot: payload.readUInt32BE(at + 4), op });
  }
  return { table: { slots, entries }, body: payload.subarray(bodyAt) };
}
