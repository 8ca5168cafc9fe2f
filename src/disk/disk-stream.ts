/**
 * The disk stream (docs/format.md, "Disk stream"): migstream's framing of one drive's records,
 * from the source's NBD reads to the destination's NBD writes. Pure: bytes in, records out,
 * and back.
 *
 *   header   "MIGSDISK", be16 version 1, be16 flags 0, be32 chunk size, be32 sub-block size,
 *            be64 drive size, u8 n, name[n]
 *   frames   u8 kind, be32 length, payload[length]
 *            0x01 BLOCK  one `block` section record exactly as QEMU's block_load reads it:
 *                        DEVICE_BLOCK (word, name, one chunk) or DEVICE_BLOCK|ZERO_BLOCK
 *            0x02 DELTA  be64 chunk offset, presence bitmap (1 bit per sub-block of a chunk),
 *                        the present sub-blocks
 *            0x03 END    be64 records before it; nothing may follow
 *
 * Why a stream of our own and not a QEMU `block` section: QEMU's block_load ignores flag bits it
 * does not know next to DEVICE_BLOCK (0x10-0x100), so a delta flagged inside a block section
 * would be read by a QEMU as a whole chunk of garbage; and the section framing has no length
 * per record, so nothing could skip a record it does not know. Each frame has its length, the
 * payload of a BLOCK frame is QEMU's record byte for byte (the BLOCK payloads followed by an
 * EOS word are a valid `block` section body, test/disk/disk-stream.test.ts), and a version in
 * the header lets a later kind be refused by name rather than misread.
 */
import { BDRV_SECTOR_BITS, BLK_MIG_FLAG_DEVICE_BLOCK, BLK_MIG_FLAG_MASK, BLK_MIG_FLAG_ZERO_BLOCK, describeBlockFlags } from '../block/flags.js';
import { blockCodec } from '../block/codec.js';
import { checkBlockSize } from '../block/block-size.js';
import type { BlockDataRecord, BlockZeroRecord } from '../block/records.js';
import { BufferPool } from '../bytes/buffer-pool.js';
import { hex } from '../bytes/hex.js';
import { ArgumentError, BadMagicError, EncodeError, FramingError, LimitExceededError, TruncatedStreamError, UnknownFlagError, type DecodeErrorDetails } from '../stream/errors.js';
import { NEED_MORE, ByteReader } from '../stream/reader.js';
import { ByteWriter } from '../stream/writer.js';
import type { DiskEndRecord, DiskRecord, DiskStreamHeader, SubBlockDeltaRecord } from './records.js';

/** "MIGSDISK": the stream's first 8 bytes. */
export const DISK_STREAM_MAGIC = Buffer.from('MIGSDISK', 'latin1');
export const DISK_STREAM_VERSION = 1;
/** Sub-block of a delta in version 1: a guest page, the hash granule of the source. */
export const SUB_BLOCK_SIZE = 4096;
/** Header bytes before the name: magic 8, version 2, flags 2, chunk 4, sub-block 4, size 8, n 1. */
export const DISK_HEADER_FIXED_BYTES = 29;
/** Frame header: u8 kind, be32 length. */
export const FRAME_HEADER_BYTES = 5;

export const FrameKind = { BLOCK: 0x01, DELTA: 0x02, END: 0x03 } as const;

const SECTION = { id: 0, name: 'disk' } as const;

/** Bytes of a delta's presence bitmap for a chunk: one bit per sub-block, rounded up to bytes. */
export function presenceBytes(chunkSize: number, subBlockSize = SUB_BLOCK_SIZE): number {
  return Math.ceil(chunkSize / subBlockSize / 8);
}

/** Largest frame payload a header allows: a BLOCK record with a 255-byte name, or a full delta. */
function maxPayload(header: DiskStreamHeader): number {
  return Math.max(8 + 1 + 255 + header.chunkSize, 8 + presenceBytes(header.chunkSize, header.subBlockSize) + header.chunkSize);
}

function checkHeader(header: DiskStreamHeader): void {
  checkBlockSize(header.chunkSize, 'the disk stream chunk size');
  if (header.subBlockSize !== SUB_BLOCK_SIZE) throw new ArgumentError(`the sub-block size must be ${SUB_BLOCK_SIZE}, got ${header.subBlockSize}`);
  if (!Number.isSafeInteger(header.size) || header.size <= 0) throw new ArgumentError(`the drive size must be a positive integer, got ${header.size}`);
  const name = Buffer.from(header.device, 'latin1');
  if (name.length === 0 || name.length > 255 || /[^\x00-\xff]/.test(header.device)) {
    throw new ArgumentError(`the drive name must be 1..255 latin1 characters, got ${JSON.stringify(header.device.slice(0, 40))}`);
  }
}

// ---- encoding ----

/** The header's bytes. */
export function encodeDiskHeader(header: DiskStreamHeader): Buffer {
  checkHeader(header);
  const name = Buffer.from(header.device, 'latin1');
  const out = Buffer.alloc(DISK_HEADER_FIXED_BYTES + name.length);
  DISK_STREAM_MAGIC.copy(out, 0);
  out.writeUInt16BE(DISK_STREAM_VERSION, 8);
  out.writeUInt16BE(0, 10);
  out.writeUInt32BE(header.chunkSize, 12);
  out.writeUInt32BE(header.subBlockSize, 16);
  writeU64(out, header.size, 20);
  out.writeUInt8(name.length, 28);
  name.copy(out, 29);
  return out;
}

function writeU64(out: Buffer, value: number, at: number): void {
  const high = Math.floor(value / 0x1_0000_0000);
  out.writeUInt32BE(high, at);
  out.writeUInt32BE(value - high * 0x1_0000_0000, at + 4);
}

function readU64(bytes: Buffer, at: number): number {
  return bytes.readUInt32BE(at) * 0x1_0000_0000 + bytes.readUInt32BE(at + 4);
}

/** Bytes a record takes in the stream, frame header included. */
export function encodedRecordLength(record: DiskRecord, header: DiskStreamHeader): number {
  switch (record.type) {
    case 'block-data':
    case 'block-zero':
      return FRAME_HEADER_BYTES + blockCodec.encodedLength(record);
    case 'disk-delta':
      return FRAME_HEADER_BYTES + 8 + presenceBytes(header.chunkSize, header.subBlockSize) + record.data.length;
    case 'disk-end':
      return FRAME_HEADER_BYTES + 8;
  }
}

/**
 * Encodes records of one drive's stream. Checks each against the header (the drive's name,
 * chunk size and size), so what it writes decodes.
 */
export class DiskStreamEncoder {
  private records = 0;
  private ended = false;

  constructor(readonly header: DiskStreamHeader) {
    checkHeader(header);
  }

  /** The header's bytes: the first thing to send. */
  start(): Buffer {
    return encodeDiskHeader(this.header);
  }

  /** The frame of one record, as a list of buffers (a chunk's data is not copied). */
  encode(record: DiskRecord): Buffer[] {
    if (this.ended) throw new EncodeError('disk stream: a record after the END record');
    const { header } = this;
    const frame = (kind: number, payload: Buffer[]): Buffer[] => {
      const length = payload.reduce((sum, part) => sum + part.length, 0);
      const head = Buffer.alloc(FRAME_HEADER_BYTES);
      head.writeUInt8(kind, 0);
      head.writeUInt32BE(length, 1);
      return [head, ...payload];
    };
    switch (record.type) {
      case 'block-data':
      case 'block-zero': {
        const flags = record.flags ?? (record.type === 'block-zero' ? BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK : BLK_MIG_FLAG_DEVICE_BLOCK);
        const canonical = record.type === 'block-zero' ? BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK : BLK_MIG_FLAG_DEVICE_BLOCK;
        if (flags !== canonical) throw new EncodeError(`disk stream: ${record.type} with flags ${describeBlockFlags(flags)}`);
        if (record.device !== header.device) throw new EncodeError(`disk stream: a record of drive ${JSON.stringify(record.device)} in the stream of ${JSON.stringify(header.device)}`);
        this.checkChunk(record.sector * 512, record.type);
        if (record.type === 'block-data' && record.data.length !== header.chunkSize) {
          throw new EncodeError(`disk stream: a chunk of ${record.data.length} bytes, the stream's chunk size is ${header.chunkSize}`);
        }
        const writer = new ByteWriter(64 * 1024);
        blockCodec.encode(record, writer);
        this.records++;
        return frame(FrameKind.BLOCK, writer.take());
      }
      case 'disk-delta': {
        this.checkChunk(record.offset, 'disk-delta');
        const bitmap = deltaBitmap(record, header);
        const head = Buffer.alloc(8);
        writeU64(head, record.offset, 0);
        this.records++;
        return frame(FrameKind.DELTA, [head, bitmap, record.data]);
      }
      case 'disk-end': {
        if (record.records !== this.records) throw new EncodeError(`disk stream: END counts ${record.records} records, ${this.records} were written`);
        const payload = Buffer.alloc(8);
        writeU64(payload, record.records, 0);
        this.ended = true;
        return frame(FrameKind.END, [payload]);
      }
    }
  }

  /** The END record's frame. */
  end(): Buffer[] {
    return this.encode({ type: 'disk-end', records: this.records });
  }

  private checkChunk(offset: number, what: string): void {
    const { chunkSize, size } = this.header;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % chunkSize !== 0 || offset >= size) {
      throw new EncodeError(`disk stream: ${what} at byte ${offset}: not the start of a chunk of ${chunkSize} bytes inside the drive's ${size}`);
    }
  }
}

/** The presence bitmap of a delta: bit i%8 of byte i/8 set when sub-block i is present. */
function deltaBitmap(record: SubBlockDeltaRecord, header: DiskStreamHeader): Buffer {
  const { chunkSize, subBlockSize, size } = header;
  const perChunk = chunkSize / subBlockSize;
  const inDrive = Math.ceil(Math.min(chunkSize, size - record.offset) / subBlockSize);
  const bitmap = Buffer.alloc(presenceBytes(chunkSize, subBlockSize));
  let previous = -1;
  for (const index of record.indexes) {
    if (!Number.isInteger(index) || index <= previous || index >= perChunk || index >= inDrive) {
      throw new EncodeError(`disk stream: delta at ${record.offset}: sub-block ${index} is out of order or outside the chunk (${Math.min(perChunk, inDrive)} sub-blocks)`);
    }
    bitmap[index >> 3]! |= 1 << (index & 7);
    previous = index;
  }
  if (record.indexes.length === 0) throw new EncodeError(`disk stream: delta at ${record.offset} with no sub-block`);
  if (record.data.length !== record.indexes.length * subBlockSize) {
    throw new EncodeError(`disk stream: delta at ${record.offset}: ${record.data.length} bytes of data for ${record.indexes.length} sub-blocks`);
  }
  return bitmap;
}

// ---- decoding ----

export interface DiskStreamDecoderOptions {
  /** Copy record data out of the pushed chunks (default true), so the caller may reuse them. */
  readonly copy?: boolean;
  /**
   * With `copy: false`: gather a frame that spans pushed chunks (a chunk's frame from a socket
   * always does) into a buffer the decoder reuses, given back with `release(record)` once the
   * record's bytes are written. Without it each such frame gets a new buffer, whose pages fault
   * in as it is filled: on a 2-core machine that cost as much as the rest of the decoding.
   */
  readonly reuseBuffers?: boolean;
}

/** Bytes of gathered frames the decoder keeps for reuse (the sink's window, 16 MiB, and more). */
const REUSED_BYTES = 32 * 1024 * 1024;
/** Smaller frames that span chunks get a buffer of their own: the allocator has those at hand. */
const GATHER_MIN_BYTES = 64 * 1024;

/**
 * Push-based decoder: bytes in any pieces, records out. The header comes first (`header` is set
 * once it is read), then every record; `end()` fails unless the END record was read. Every
 * error is a DecodeError naming the byte offset of the frame (section "disk").
 */
export class DiskStreamDecoder {
  header: DiskStreamHeader | undefined;
  private readonly reader = new ByteReader();
  private records = 0;
  private ended = false;
  private readonly copy: boolean;
  private readonly reuseBuffers: boolean;
  /** Where gathered frames come from (reuseBuffers), made once the header gives the frames' size. */
  private pool: BufferPool | undefined;

  constructor(options: DiskStreamDecoderOptions = {}) {
    this.copy = options.copy ?? true;
    this.reuseBuffers = !this.copy && (options.reuseBuffers ?? false);
  }

  /** Gives a record's gathered buffer back for reuse (reuseBuffers); anything else is left alone. */
  release(record: DiskRecord): void {
    if (record.type === 'disk-end' || record.type === 'block-zero' || this.pool === undefined) return;
    if (this.pool.owns(record.data)) this.pool.give(record.data.buffer as ArrayBuffer);
  }

  /** Whether the END record has been read. */
  get complete(): boolean {
    return this.ended;
  }

  /** Feeds bytes; returns the records they complete. */
  push(chunk: Buffer): DiskRecord[] {
    const out: DiskRecord[] = [];
    if (chunk.length === 0) return out;
    if (this.ended) {
      throw new FramingError('bytes after the END record', this.details(this.reader.offset + this.reader.available, 'disk stream', 'the end of the stream'));
    }
    this.reader.push(chunk);
    for (;;) {
      this.reader.mark();
      try {
        if (this.header === undefined) {
          this.header = this.readHeader();
          if (this.reuseBuffers) {
            const largest = maxPayload(this.header);
            this.pool = new BufferPool(Math.max(4, Math.ceil(REUSED_BYTES / largest)), largest);
          }
          continue;
        }
        if (this.ended) {
          if (this.reader.available > 0) throw new FramingError('bytes after the END record', this.details(this.reader.offset, 'disk stream', 'the end of the stream'));
          break;
        }
        out.push(this.readFrame(this.header));
      } catch (error) {
        if (error !== NEED_MORE) throw error;
        this.reader.rewind();
        break;
      } finally {
        this.reader.dropConsumed();
      }
    }
    return out;
  }

  /** The input is over: throws unless the stream ended with its END record. */
  end(): void {
    if (this.ended) return;
    const offset = this.reader.markOffset;
    const what = this.header === undefined ? 'disk stream header' : 'disk stream frame';
    throw new TruncatedStreamError(this.details(offset, what, this.header === undefined ? 'the header' : 'an END record'), 'the disk stream ends before its END record');
  }

  private details(offset: number, context: string, expected?: string, actual?: unknown): DecodeErrorDetails {
    return { offset, section: SECTION, context, expected, actual };
  }

  private readHeader(): DiskStreamHeader {
    const reader = this.reader;
    const at = reader.markOffset;
    const fixed = reader.bytes(DISK_HEADER_FIXED_BYTES);
    const magic = fixed.subarray(0, 8);
    if (!magic.equals(DISK_STREAM_MAGIC)) {
      throw new BadMagicError(`not a disk stream: magic ${JSON.stringify(magic.toString('latin1'))}`, this.details(at, 'disk stream header', '"MIGSDISK"', magic.toString('hex')));
    }
    const version = fixed.readUInt16BE(8);
    if (version !== DISK_STREAM_VERSION) {
      throw new BadMagicError(`disk stream version ${version}; this migstream reads version ${DISK_STREAM_VERSION}`, this.details(at + 8, 'disk stream header', `version ${DISK_STREAM_VERSION}`, version));
    }
    const flags = fixed.readUInt16BE(10);
    if (flags !== 0) throw new UnknownFlagError(`header flags ${hex(flags)}`, this.details(at + 10, 'disk stream header', 'flags 0', flags));
    const chunkSize = fixed.readUInt32BE(12);
    try {
      checkBlockSize(chunkSize, 'chunk size');
    } catch {
      throw new LimitExceededError(`chunk size ${chunkSize}`, this.details(at + 12, 'disk stream header', 'a power of two from 4096 to 16777216', chunkSize));
    }
    const subBlockSize = fixed.readUInt32BE(16);
    if (subBlockSize !== SUB_BLOCK_SIZE) {
      throw new LimitExceededError(`sub-block size ${subBlockSize}`, this.details(at + 16, 'disk stream header', `${SUB_BLOCK_SIZE}`, subBlockSize));
    }
    const size = readU64(fixed, 20);
    if (size === 0 || size > Number.MAX_SAFE_INTEGER) {
      throw new LimitExceededError(`drive size ${size}`, this.details(at + 20, 'disk stream header', 'a size from 1 to 2^53 - 1', size));
    }
    const nameLength = fixed.readUInt8(28);
    if (nameLength === 0) throw new FramingError('an empty drive name', this.details(at + 28, 'disk stream header', 'a name of 1..255 bytes', 0));
    const device = reader.bytes(nameLength).toString('latin1');
    return { device, size, chunkSize, subBlockSize };
  }

  private readFrame(header: DiskStreamHeader): DiskRecord {
    const reader = this.reader;
    const at = reader.markOffset;
    const kind = reader.u8();
    const length = reader.u32();
    const context = `disk stream frame ${this.records}`;
    if (kind !== FrameKind.BLOCK && kind !== FrameKind.DELTA && kind !== FrameKind.END) {
      throw new UnknownFlagError(`frame kind ${hex(kind)}`, this.details(at, context, 'BLOCK (0x01), DELTA (0x02) or END (0x03)', kind));
    }
    // Checked on the header, before the payload is waited for: a hostile length holds nothing.
    const limit = kind === FrameKind.END ? 8 : maxPayload(header);
    if (length > limit || (kind === FrameKind.END && length !== 8)) {
      throw new LimitExceededError(`a frame of ${length} bytes`, this.details(at, context, kind === FrameKind.END ? 'an END payload of 8 bytes' : `at most ${limit} bytes`, length));
    }
    if (reader.available < length) throw NEED_MORE;
    const payload = this.pool !== undefined && this.gathers(length) ? reader.read(length, this.pool.take(length)) : reader.bytes(length);
    const bytes = this.copy && kind !== FrameKind.END ? Buffer.from(payload) : payload;
    const record = kind === FrameKind.BLOCK ? this.blockRecord(bytes, header, at, context) : kind === FrameKind.DELTA ? this.deltaRecord(bytes, header, at, context) : this.endRecord(bytes, at, context);
    if (record.type !== 'disk-end') this.records++;
    return record;
  }

  /** Whether a payload of `length` bytes (all available) spans pushed chunks and is large enough to gather. */
  private gathers(length: number): boolean {
    return length >= GATHER_MIN_BYTES && length > this.reader.contiguous;
  }

  /** A BLOCK payload, read as block_load reads a record (word, name, chunk), and held to the header. */
  private blockRecord(payload: Buffer, header: DiskStreamHeader, at: number, context: string): BlockDataRecord | BlockZeroRecord {
    const start = at + FRAME_HEADER_BYTES;
    if (payload.length < 10) throw new FramingError(`a BLOCK payload of ${payload.length} bytes`, this.details(at, context, 'a block record: be64 word, u8 n, name[n]', payload.length));
    const high = payload.readUInt32BE(0);
    const low = payload.readUInt32BE(4);
    const flags = low & BLK_MIG_FLAG_MASK;
    const zero = flags === (BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK);
    if (flags !== BLK_MIG_FLAG_DEVICE_BLOCK && !zero) {
      throw new UnknownFlagError(`block record flags ${describeBlockFlags(flags)}`, this.details(start, context, 'DEVICE_BLOCK or DEVICE_BLOCK|ZERO_BLOCK', flags));
    }
    // Sector = word >> BDRV_SECTOR_BITS (block_load), exact below 2^53.
    const sector = high * 2 ** (32 - BDRV_SECTOR_BITS) + (low >>> BDRV_SECTOR_BITS);
    const offset = sector * 512;
    if (offset % header.chunkSize !== 0 || offset >= header.size) {
      throw new FramingError(`a chunk at byte ${offset}`, this.details(start, context, `the start of a chunk of ${header.chunkSize} bytes inside the drive's ${header.size}`, offset));
    }
    const nameLength = payload.readUInt8(8);
    const device = payload.subarray(9, 9 + nameLength).toString('latin1');
    if (device !== header.device || 9 + nameLength > payload.length) {
      throw new FramingError(`a record of drive ${JSON.stringify(device)}`, this.details(start + 8, context, `drive ${JSON.stringify(header.device)}`, device));
    }
    const dataLength = payload.length - 9 - nameLength;
    const expected = zero ? 0 : header.chunkSize;
    if (dataLength !== expected) {
      throw new FramingError(`${dataLength} bytes after the name`, this.details(start, context, `${expected} (${zero ? 'ZERO_BLOCK carries no data' : 'one chunk'})`, dataLength));
    }
    if (zero) return { type: 'block-zero', device, sector };
    return { type: 'block-data', device, sector, data: payload.subarray(9 + nameLength) };
  }

  private deltaRecord(payload: Buffer, header: DiskStreamHeader, at: number, context: string): SubBlockDeltaRecord {
    const { chunkSize, subBlockSize, size } = header;
    const bitmapBytes = presenceBytes(chunkSize, subBlockSize);
    if (payload.length < 8 + bitmapBytes) {
      throw new FramingError(`a DELTA payload of ${payload.length} bytes`, this.details(at, context, `at least ${8 + bitmapBytes} bytes (offset, presence bitmap)`, payload.length));
    }
    const offset = readU64(payload, 0);
    if (offset % chunkSize !== 0 || offset >= size) {
      throw new FramingError(`a delta at byte ${offset}`, this.details(at + FRAME_HEADER_BYTES, context, `the start of a chunk of ${chunkSize} bytes inside the drive's ${size}`, offset));
    }
    const inDrive = Math.ceil(Math.min(chunkSize, size - offset) / subBlockSize);
    const indexes: number[] = [];
    for (let byte = 0; byte < bitmapBytes; byte++) {
      const bits = payload[8 + byte]!;
      for (let bit = 0; bit < 8; bit++) if (bits & (1 << bit)) indexes.push(byte * 8 + bit);
    }
    const last = indexes[indexes.length - 1];
    if (last === undefined || last >= inDrive) {
      throw new FramingError(
        last === undefined ? 'a delta with no sub-block' : `sub-block ${last} of a chunk with ${inDrive} inside the drive`,
        this.details(at + FRAME_HEADER_BYTES + 8, context, `1..${inDrive} present sub-blocks`, last ?? 0),
      );
    }
    const dataLength = payload.length - 8 - bitmapBytes;
    if (dataLength !== indexes.length * subBlockSize) {
      throw new FramingError(`${dataLength} bytes of data for ${indexes.length} sub-blocks`, this.details(at, context, `${indexes.length * subBlockSize} bytes`, dataLength));
    }
    return { type: 'disk-delta', offset, indexes, data: payload.subarray(8 + bitmapBytes) };
  }

  private endRecord(payload: Buffer, at: number, context: string): DiskEndRecord {
    const records = readU64(payload, 0);
    if (records !== this.records) {
      throw new FramingError(`END counts ${records} records, ${this.records} arrived`, this.details(at, context, `${this.records}`, records));
    }
    this.ended = true;
    return { type: 'disk-end', records };
  }
}
