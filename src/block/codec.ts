/**
 * Body codec of the `block` section: reads and writes the records of QEMU 7.2's
 * migration/block.c (blk_send, block_save_*, block_load), read and write side by side.
 *
 * Wire format: `be64 word = (value << 9) | flags`, then
 *   DEVICE_BLOCK            `u8 len, name[len]`, then one chunk of data (mig-block-size bytes)
 *   DEVICE_BLOCK|ZERO_BLOCK `u8 len, name[len]`, nothing else
 *   PROGRESS                nothing (value is the percentage)
 *   EOS                     nothing (value is ignored)
 *
 * The chunk size is BLK_MIG_BLOCK_SIZE (1 MiB) in QEMU, a `mig-block-size` parameter in
 * patched builds; the stream does not say which (block-size.ts). The decoder takes it from
 * `StreamParameters.blockSize` (DecoderOptions.blockSize) or finds it at the first data chunk:
 * the records after the chunk must parse (see `resolveSize`). Either way the size is settled
 * before that first chunk is handed out, so a wrong size never yields a chunk of garbage.
 *
 * The decoder keeps no state between records but the settled chunk size (block_load's
 * `blk_prev` is a lookup cache of the destination, not stream state), so a record cut short by
 * NEED_MORE changes nothing.
 */
import { EncodeError, FramingError, LimitExceededError, UnknownFlagError, hex, type DecodeErrorDetails } from '../stream/errors.js';
import { wordHex } from '../bytes/hex.js';
import { NEED_MORE, type ByteReader } from '../stream/reader.js';
import type { SectionBodyDecoder, SectionCodec, SectionContext } from '../stream/section-codec.js';
import type { ByteWriter } from '../stream/writer.js';
import { BDRV_SECTOR_BITS, BLK_MIG_FLAG_DEVICE_BLOCK, BLK_MIG_FLAG_EOS, BLK_MIG_FLAG_MASK, BLK_MIG_FLAG_PROGRESS, BLK_MIG_FLAG_ZERO_BLOCK, describeBlockFlags } from './flags.js';
import { BLOCK_RECORD_TYPES, CANONICAL_FLAGS, blockRecordFlags, classifyBlockFlags, endsBlockBody, type BlockRecord, type BlockRecordType } from './records.js';
import { BLOCK_SIZES, DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, checkBlockSize, formatBlockSize, isBlockSize } from './block-size.js';

/**
 * Largest sector a chunk may start at: the last byte of the largest chunk,
 * `sector * 512 + MAX_BLOCK_SIZE`, is still a safe integer (2^44 - 32769). QEMU itself would
 * fail on any real drive long before.
 */
export const MAX_BLOCK_SECTOR = 2 ** (53 - BDRV_SECTOR_BITS) - (MAX_BLOCK_SIZE >> BDRV_SECTOR_BITS) - 1;

const KNOWN_FLAGS = BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_EOS | BLK_MIG_FLAG_PROGRESS | BLK_MIG_FLAG_ZERO_BLOCK;

/** 2^23: the low 32 bits of the word hold 23 bits of value above the 9 flag bits. */
const LOW_VALUE_SPAN = 2 ** (32 - BDRV_SECTOR_BITS);

/** Records read after a first data chunk to accept a chunk size (two, or up to the EOS). */
const PROBE_RECORDS = 2;

function details(reader: ByteReader, ctx: SectionContext, extra: Partial<DecodeErrorDetails>): DecodeErrorDetails {
  return { offset: reader.markOffset, section: ctx.section, context: 'block record', ...extra };
}

type Word =
  | { readonly ok: true; readonly type: BlockRecordType; readonly flags: number; readonly value: number }
  | { readonly ok: false; readonly range: boolean; readonly problem: string; readonly expected: string; readonly actual: unknown };

/** block_load: addr = qemu_get_be64(f); flags = addr & 511; addr >>= 9; and what it accepts. */
function parseWord(high: number, low: number): Word {
  const flags = low & BLK_MIG_FLAG_MASK;
  const type = classifyBlockFlags(flags);
  // block_load ignores bits 0x10-0x100 next to a known flag; they mean nothing in any QEMU, so
  // a stream carrying them is damaged, and a validating pass-through must say so.
  if (type === undefined || (flags & ~KNOWN_FLAGS) !== 0) {
    // block_load: "Unknown block migration flags: 0x%x" -> -EINVAL.
    return {
      ok: false,
      range: false,
      problem: `unknown block migration flags ${hex(flags)} (${describeBlockFlags(flags)}) in word ${wordHex(high, low)}`,
      expected: 'DEVICE_BLOCK, PROGRESS or EOS',
      actual: flags,
    };
  }
  const isDevice = type === 'block-data' || type === 'block-zero';
  // Exact up to 2^53; above, rounding cannot bring a value back under the bound. Words with the
  // top bit set are negative in QEMU (int64_t addr) and land here as values >= 2^54.
  const value = high * LOW_VALUE_SPAN + (low >>> BDRV_SECTOR_BITS);
  const max = isDevice ? MAX_BLOCK_SECTOR : Number.MAX_SAFE_INTEGER;
  if (value > max) {
    const what = isDevice ? 'sector' : 'value';
    return {
      ok: false,
      range: true,
      problem: `${what} of word ${wordHex(high, low)} is out of range`,
      expected: `a ${what} <= ${max}`,
      actual: wordHex(high, low),
    };
  }
  return { ok: true, type, flags, value };
}

/** The device name of a DEVICE_BLOCK record: `u8 len, name[len]` (latin1, byte for byte). */
function readName(reader: ByteReader): string {
  return reader.bytes(reader.u8()).toString('latin1');
}

/** The word and name of a device record, as read: where its data starts and what it was. */
interface DeviceHeader {
  readonly flags: number;
  readonly sector: number;
  readonly device: string;
  /** Bytes from the record's start to its data: word, length byte, name. */
  readonly length: number;
}

/** Why a chunk size does not fit, at which offset. */
interface Misfit {
  readonly offset: number;
  readonly problem: string;
}

/** Thrown by misfit when the input ends before `end` (a stream offset): the bytes it needs next. */
class Short {
  constructor(readonly end: number) {}
}

/** Throws Short unless `length` bytes are there from the cursor. */
function need(reader: ByteReader, length: number): void {
  if (reader.available < length) throw new Short(reader.offset + length);
}

/**
 * What resolveSize learnt about one first data chunk while its bytes were still arriving: sizes
 * already refused, and the input length the next try needs. Keyed by the chunk's offset; the
 * bytes there never change, so a retry after NEED_MORE picks up where the last one stopped
 * instead of probing again (input cut into tiny pieces would otherwise cost a probe per piece).
 */
interface Progress {
  readonly offset: number;
  /** Index in the sizes tried of the next one to try. */
  next: number;
  /** Stream offset the input must reach before the next try. */
  needEnd: number;
  /** Why QEMU's 1 MiB did not fit, once tried (for the message when none does). */
  atDefault: Misfit | undefined;
}

/** A name QEMU could have sent: the first chunk's own, or printable ASCII (qemu id_wellformed ids, legacy drive names). */
function plausibleName(name: string, first: string): boolean {
  return name === first || /^[\x20-\x7e]+$/.test(name);
}

/**
 * Whether the records after the data chunk that starts at the reader's cursor parse when the
 * chunk is `size` bytes: undefined if so, else where and why not. Reads up to PROBE_RECORDS
 * records (skipping the data of a data record, with the same size), or until a record ends the
 * body, after which the section footer `0x7e be32 section_id` must follow (save_section_footer).
 * `plausible` adds what QEMU's source always does (blk_send, block_mig_save_bulked_block): a
 * drive name that is printable or the first chunk's, a percentage of at most 100. Throws
 * NEED_MORE when the bytes are not all there yet.
 */
function misfit(reader: ByteReader, ctx: SectionContext, first: DeviceHeader, size: number, plausible: boolean): Misfit | undefined {
  need(reader, size);
  reader.skip(size);
  let ends = (first.flags & BLK_MIG_FLAG_EOS) !== 0;
  for (let read = 0; ; read++) {
    const offset = reader.offset;
    if (ends) {
      need(reader, ctx.params.sectionFooters === false ? 1 : 5);
      if (ctx.params.sectionFooters === false) {
        const type = reader.u8();
        if ([0x00, 0x01, 0x02, 0x03, 0x04, 0x08].includes(type)) return undefined;
        return { offset, problem: `byte ${hex(type)} after the EOS is no section header` };
      }
      const mark = reader.u8();
      const id = reader.u32();
      if (mark === 0x7e && id === ctx.section.id) return undefined;
      return { offset, problem: `no section footer after the EOS (found ${hex(mark)} ${hex(id)})` };
    }
    if (read === PROBE_RECORDS) return undefined;
    need(reader, 8);
    const word = parseWord(reader.u32(), reader.u32());
    if (!word.ok) return { offset, problem: word.problem };
    ends = (word.flags & BLK_MIG_FLAG_EOS) !== 0;
    if (word.type === 'block-progress' && plausible && word.value > 100) {
      return { offset, problem: `a progress of ${word.value} %` };
    }
    if (word.type === 'block-data' || word.type === 'block-zero') {
      need(reader, 1);
      need(reader, 1 + reader.peekU8());
      const name = readName(reader);
      if (name.length === 0) return { offset, problem: 'a device record with an empty name' };
      if (plausible && !plausibleName(name, first.device)) {
        return { offset, problem: `a device record named ${JSON.stringify(name.slice(0, 40))}` };
      }
      if (word.type === 'block-data') {
        // The last record read needs only its header, unless its EOS asks for the footer.
        if (read + 1 === PROBE_RECORDS && !ends) return undefined;
        need(reader, size);
        reader.skip(size);
      }
    }
  }
}

class BlockBodyDecoder implements SectionBodyDecoder<BlockRecord> {
  /** The chunk size once settled (given, or found at the first data chunk). */
  private size: number | undefined;
  private progress: Progress | undefined;

  read(reader: ByteReader, ctx: SectionContext): BlockRecord {
    const high = reader.u32();
    const low = reader.u32();
    const word = parseWord(high, low);
    if (!word.ok) {
      const info = details(reader, ctx, { expected: word.expected, actual: word.actual });
      throw word.range ? new LimitExceededError(word.problem, info) : new UnknownFlagError(word.problem, info);
    }
    const { type, flags, value } = word;
    const extra = flags === CANONICAL_FLAGS[type] ? {} : { flags };

    switch (type) {
      case 'block-progress':
        return { type, percent: value, ...extra };
      case 'block-eos':
        return value === 0 ? { type, ...extra } : { type, ...extra, sector: value };
      case 'block-zero':
      case 'block-data': {
        const device = readName(reader);
        if (device.length === 0) {
          // blk_by_name("") never finds a drive: "Error unknown block device".
          throw new FramingError('empty device name; block_load finds no drive by that name', details(reader, ctx, { expected: 'a drive name', actual: '' }));
        }
        if (type === 'block-zero') return { type, device, sector: value, ...extra };
        const header: DeviceHeader = { flags, sector: value, device, length: 9 + device.length };
        const size = this.size ?? this.resolveSize(reader, ctx, header);
        const data = reader.bytes(size);
        if (this.size === undefined) {
          this.size = size;
          if (ctx.params.blockSize !== size) {
            ctx.params.blockSize = size;
            ctx.params.blockSizeSource = 'stream';
          }
        }
        return { type, device, sector: value, data, ...extra };
      }
    }
  }

  endsBody(record: BlockRecord): boolean {
    return endsBlockBody(record);
  }

  /**
   * The chunk size, settled at the first data chunk with the cursor at its data (left there).
   * Given: the records after the chunk must parse with it, as block_load would read them.
   * Not given: each size from 4 KiB up, the first after which the records parse and look like
   * QEMU's (misfit's `plausible`); sizes are tried in order and each waits for its bytes, so the
   * answer does not depend on how the input was cut.
   * Waiting for the records after the chunk does not stall a live stream: block_save_iterate
   * writes every record of an iteration, then the EOS, in one go (flush_blks, blk_send; the
   * zero-block flush of blk_send only pushes out what is already written). Zero chunks carry no
   * data, so they are handed out at once and never wait.
   */
  private resolveSize(reader: ByteReader, ctx: SectionContext, header: DeviceHeader): number {
    const atData = (): void => {
      // The record's start is the mark (the caller's, before each record): back to it, then past
      // the word and the name.
      reader.rewind();
      reader.skip(header.length);
    };
    const given = ctx.params.blockSizeSource === 'stream' ? undefined : ctx.params.blockSize;
    const sizes = given === undefined ? BLOCK_SIZES : [checkBlockSize(given, 'the block chunk size (mig-block-size)')];
    const offset = reader.markOffset;
    if (this.progress?.offset !== offset) this.progress = { offset, next: 0, needEnd: 0, atDefault: undefined };
    const progress = this.progress;
    if (reader.offset + reader.available < progress.needEnd) throw NEED_MORE;
    for (; progress.next < sizes.length; progress.next++) {
      const size = sizes[progress.next]!;
      let wrong: Misfit | undefined;
      try {
        wrong = misfit(reader, ctx, header, size, given === undefined);
      } catch (error) {
        if (!(error instanceof Short)) throw error;
        progress.needEnd = error.end;
        throw NEED_MORE;
      }
      atData();
      if (wrong === undefined) {
        this.progress = undefined;
        return size;
      }
      if (given !== undefined) {
        throw new FramingError(
          `with ${formatBlockSize(size)} chunks (mig-block-size ${size}) the record after this chunk does not parse: ` +
            `at offset ${wrong.offset} (${hex(wrong.offset)}), ${wrong.problem}; ` +
            'the stream was sent with another mig-block-size (leave the size out to find it from the stream)',
          details(reader, ctx, { expected: `a block record after ${size} bytes of data`, actual: wrong.problem }),
        );
      }
      if (size === DEFAULT_BLOCK_SIZE) progress.atDefault = wrong;
    }
    const atDefault = progress.atDefault!;
    throw new FramingError(
      `no chunk size from 4 KiB to 16 MiB makes the records after this DEVICE_BLOCK parse ` +
        `(with QEMU's 1 MiB: at offset ${atDefault.offset} (${hex(atDefault.offset)}), ${atDefault.problem}); ` +
        'the stream is damaged here',
      details(reader, ctx, { expected: 'a block record after the chunk', actual: atDefault.problem }),
    );
  }
}

function fail(record: BlockRecord, problem: string): never {
  throw new EncodeError(`cannot encode ${record.type} record: ${problem}`);
}

function checkValue(record: BlockRecord, name: string, value: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    fail(record, `${name} ${String(value)} is not an integer in 0..${max}`);
  }
}

/** Writes `be64 (value << 9) | flags` for a value up to 2^53 - 1. */
function writeWord(writer: ByteWriter, value: number, flags: number): void {
  const high = Math.floor(value / LOW_VALUE_SPAN);
  const low = value - high * LOW_VALUE_SPAN;
  writer.u32(high);
  writer.u32(((low << BDRV_SECTOR_BITS) | flags) >>> 0);
}

function writeDeviceName(writer: ByteWriter, record: BlockRecord, device: string): void {
  // The name goes out byte for byte (latin1), as the decoder read it.
  if (device.length === 0 || device.length > 255 || /[^\x00-\xff]/.test(device)) {
    fail(record, `device name must be 1..255 latin1 characters: ${JSON.stringify(device.slice(0, 40))}`);
  }
  writer.u8(device.length);
  writer.bytes(Buffer.from(device, 'latin1'));
}

function writeRecord(record: BlockRecord, writer: ByteWriter, blockSize: number | undefined): void {
  const flags = blockRecordFlags(record);
  const valid = Number.isInteger(flags) && flags >= 0 && flags <= BLK_MIG_FLAG_MASK;
  if (!valid || classifyBlockFlags(flags) !== record.type) {
    fail(record, `flags ${String(flags)} would not decode as ${record.type}`);
  }
  switch (record.type) {
    case 'block-progress':
      checkValue(record, 'percent', record.percent, Number.MAX_SAFE_INTEGER);
      writeWord(writer, record.percent, flags);
      return;
    case 'block-eos': {
      const value = record.sector ?? 0;
      checkValue(record, 'sector', value, Number.MAX_SAFE_INTEGER);
      writeWord(writer, value, flags);
      return;
    }
    case 'block-zero':
    case 'block-data':
      checkValue(record, 'sector', record.sector, MAX_BLOCK_SECTOR);
      if (record.type === 'block-data') {
        // blk_send writes exactly one chunk: the stream's size, whatever the drive's end.
        const length = record.data.length;
        if (blockSize !== undefined && length !== blockSize) {
          fail(record, `data is ${length} bytes, expected ${blockSize} (the encoder's mig-block-size)`);
        }
        if (!isBlockSize(length)) fail(record, `data is ${length} bytes, not a chunk size (a power of two from 4 KiB to 16 MiB)`);
      }
      writeWord(writer, record.sector, flags);
      writeDeviceName(writer, record, record.device);
      // ByteWriter hands payloads above its chunk size through as a view: no 1 MiB copy.
      if (record.type === 'block-data') writer.bytes(record.data);
      return;
  }
}

/** Bytes writeRecord writes: the word, then name and data for device records. */
function encodedLength(record: BlockRecord): number {
  switch (record.type) {
    case 'block-progress':
    case 'block-eos':
      return 8;
    case 'block-zero':
      return 8 + 1 + record.device.length;
    case 'block-data':
      return 8 + 1 + record.device.length + record.data.length;
  }
}

export interface BlockCodecOptions {
  /**
   * The chunk size (mig-block-size): every data record must carry exactly this many bytes.
   * Omitted: any chunk size from 4 KiB to 16 MiB, record by record (a decoded stream's records
   * all carry the size it was sent with).
   */
  readonly blockSize?: number;
}

/** A codec of the "block" section body whose encoder holds data records to `options.blockSize`. */
export function createBlockCodec(options: BlockCodecOptions = {}): SectionCodec<BlockRecord> {
  const blockSize = options.blockSize === undefined ? undefined : checkBlockSize(options.blockSize, 'blockSize');
  return {
    idstr: 'block',
    recordTypes: BLOCK_RECORD_TYPES,
    newDecoder: () => new BlockBodyDecoder(),
    encode: (record, writer) => writeRecord(record, writer, blockSize),
    encodedLength,
  };
}

/** Codec of the "block" section body (section version 1), any chunk size. */
export const blockCodec: SectionCodec<BlockRecord> = createBlockCodec();
