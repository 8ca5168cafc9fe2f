/**
 * A multifd channel's bytes, as QEMU's multifd_recv_thread() reads them (migration/multifd.c,
 * multifd.h; multifd-nocomp.c on 9.x and later), followed without copying page data:
 *
 *   MultiFDInit_t (64 bytes, once)   u32 magic 0x11223344, u32 version 1, 16 B uuid, u8 id,
 *                                    7 + 32 bytes reserved
 *   then packets, each a fixed-size MultiFDPacket_t and its pages:
 *     u32 magic, u32 version, u32 flags, u32 pages_alloc, u32 normal_pages,
 *     u32 next_packet_size, u64 packet_num, u32 zero_pages (9.0+; reserved before),
 *     28 bytes reserved, char ramblock[256], u64 offset[page count]
 *     (normal pages' offsets first, then zero pages'), then the pages:
 *       without compression (flags bits 1..3 zero) normal_pages × page size bytes: QEMU 7.2
 *       reads them only when normal_pages is non-zero and leaves next_packet_size stale on a
 *       SYNC packet, so the count of normal pages, not next_packet_size, sizes them;
 *       with zlib/zstd/qpl/uadk, next_packet_size bytes.
 *
 * The packet is always sent whole: its size is fixed for the migration by the page count
 * (MULTIFD_PACKET_SIZE 512 KiB ÷ the target page size: 128 offsets, 1344 bytes, for 4 KiB
 * pages), even for a SYNC packet whose pages_alloc is 0 (QEMU 10.0). Big-endian throughout.
 * Checked against migrations recorded from QEMU 7.2 and 10.0 (test/ram/multifd.test.ts).
 *
 * Pure and bounded: `push` keeps at most one packet header; page data is counted, never kept.
 */
import { FramingError, BadMagicError } from '../stream/errors.js';

export const MULTIFD_MAGIC = 0x11223344;
export const MULTIFD_VERSION = 1;
export const MULTIFD_INIT_BYTES = 64;
/** MULTIFD_PACKET_SIZE: a packet carries at most this much page data. */
export const MULTIFD_PACKET_DATA_BYTES = 512 * 1024;
/** The packet before its offsets. */
export const MULTIFD_PACKET_HEADER_BYTES = 320;
export const MULTIFD_FLAG_SYNC = 1;
/** Flags bits 1..3 (and 4): zlib, zstd, qpl, uadk compression of the packet's pages. */
export const MULTIFD_COMPRESSION_MASK = 0xf << 1;

export interface MultifdInit {
  kind: 'init';
  uuid: Buffer;
  id: number;
}

export interface MultifdPacket {
  kind: 'packet';
  flags: number;
  pagesAlloc: number;
  normalPages: number;
  zeroPages: number;
  packetNum: bigint;
  ramblock: string;
  /** Byte offsets in `ramblock`: the normal pages', then the zero pages'. */
  normalOffsets: number[];
  zeroOffsets: number[];
  /** Bytes of page data after the packet. */
  payloadBytes: number;
  /** Channel offset of the packet. */
  at: number;
}

export type MultifdEvent = MultifdInit | MultifdPacket;

export class MultifdChannelReader {
  private readonly packetBytes: number;
  private readonly pageCount: number;
  private header: Buffer[] = [];
  private headerHave = 0;
  private initDone = false;
  /** Page data still to skip before the next packet. */
  private skip = 0;
  /** Bytes consumed so far: the offset errors name. */
  private offset = 0;
  private packetAt = 0;

  constructor(private readonly pageSize = 4096) {
    this.pageCount = MULTIFD_PACKET_DATA_BYTES / pageSize;
    if (!Number.isInteger(this.pageCount) || this.pageCount < 1) throw new RangeError(`page size ${pageSize} does not divide ${MULTIFD_PACKET_DATA_BYTES}`);
    this.packetBytes = MULTIFD_PACKET_HEADER_BYTES + 8 * this.pageCount;
  }

  /** Bytes read so far. */
  get position(): number {
    return this.offset;
  }

  /** The events `chunk` completes. */
  push(chunk: Buffer): MultifdEvent[] {
    const events: MultifdEvent[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
        this.offset += n;
        continue;
      }
      const want = (this.initDone ? this.packetBytes : MULTIFD_INIT_BYTES) - this.headerHave;
      const n = Math.min(want, chunk.length - at);
      if (this.headerHave === 0) this.packetAt = this.offset;
      this.header.push(chunk.subarray(at, at + n));
      this.headerHave += n;
      at += n;
      this.offset += n;
      if (n < want) break;
      const whole = Buffer.concat(this.header);
      this.header = [];
      this.headerHave = 0;
      events.push(this.initDone ? this.packet(whole) : this.init(whole));
    }
    return events;
  }

  /** Bytes of an unfinished header or page run at the end (non-zero: the channel was cut). */
  get pending(): number {
    return this.headerHave + this.skip;
  }

  private init(bytes: Buffer): MultifdInit {
    this.checkMagic(bytes, 'MultiFDInit_t');
    this.initDone = true;
    return { kind: 'init', uuid: Buffer.from(bytes.subarray(8, 24)), id: bytes.readUInt8(24) };
  }

  private packet(bytes: Buffer): MultifdPacket {
    this.checkMagic(bytes, 'MultiFDPacket_t');
    const flags = bytes.readUInt32BE(8);
    const pagesAlloc = bytes.readUInt32BE(12);
    const normalPages = bytes.readUInt32BE(16);
    const nextPacketSize = bytes.readUInt32BE(20);
    const zeroPages = bytes.readUInt32BE(32);
    const details = { offset: this.packetAt, context: 'multifd packet' };
    if (pagesAlloc > this.pageCount || normalPages + zeroPages > this.pageCount) {
      throw new FramingError(`${normalPages} normal and ${zeroPages} zero pages (${pagesAlloc} allocated) in a packet of ${this.pageCount} pages`, {
        ...details,
        expected: `at most ${this.pageCount} pages (${this.pageSize}-byte pages)`,
      });
    }
    const compressed = (flags & MULTIFD_COMPRESSION_MASK) !== 0;
    if (compressed && nextPacketSize > MULTIFD_PACKET_DATA_BYTES * 2) {
      throw new FramingError(`next_packet_size ${nextPacketSize}`, { ...details, expected: `at most ${MULTIFD_PACKET_DATA_BYTES * 2}` });
    }
    const payloadBytes = compressed ? (normalPages === 0 ? 0 : nextPacketSize) : normalPages * this.pageSize;
    this.skip = payloadBytes;
    const name = bytes.subarray(64, 320);
    const end = name.indexOf(0);
    const offsets = (from: number, count: number): number[] => Array.from({ length: count }, (_, i) => Number(bytes.readBigUInt64BE(320 + 8 * (from + i))));
    return {
      kind: 'packet',
      flags,
      pagesAlloc,
      normalPages,
      zeroPages,
      packetNum: bytes.readBigUInt64BE(24),
      ramblock: name.toString('latin1', 0, end === -1 ? 256 : end),
      normalOffsets: offsets(0, normalPages),
      zeroOffsets: offsets(normalPages, zeroPages),
      payloadBytes,
      at: this.packetAt,
    };
  }

  private checkMagic(bytes: Buffer, what: string): void {
    const magic = bytes.readUInt32BE(0);
    const version = bytes.readUInt32BE(4);
    const details = { offset: this.packetAt, context: what };
    if (magic !== MULTIFD_MAGIC) throw new BadMagicError(`magic 0x${magic.toString(16)}`, { ...details, expected: `0x${MULTIFD_MAGIC.toString(16)}` });
    if (version !== MULTIFD_VERSION) throw new BadMagicError(`version ${version}`, { ...details, expected: `version ${MULTIFD_VERSION}` });
  }
}
