/**
 * Body codec of the `block` section: reads and writes the records of QEMU 7.2's
 * migration/block.c (blk_send, block_save_*, block_load), read and write side by side.
 *
 * Wire format: `be64 word = (value << 9) | flags`, then
 *   DEVICE_BLOCK            `u8 len, name[len]`, then BLK_MIG_BLOCK_SIZE bytes of data
 *   DEVICE_BLOCK|ZERO_BLOCK `u8 len, name[len]`, nothing else
 *   PROGRESS                nothing (value is the percentage)
 *   EOS                     nothing (value is ignored)
 *
 * The decoder keeps no state between records (block_load's `blk_prev` is a lookup cache of the
 * destination, not stream state), so a record cut short by NEED_MORE changes nothing.
 */
import {
  EncodeError,
  FramingError,
  LimitExceededError,
  UnknownFlagError,
  hex,
  type DecodeErrorDetails,
} from '../stream/errors.js';
import { wordHex } from '../bytes/hex.js';
import type { ByteReader } from '../stream/reader.js';
import type { SectionBodyDecoder, SectionCodec, SectionContext } from '../stream/section-codec.js';
import type { ByteWriter } from '../stream/writer.js';
import {
  BDRV_SECTOR_BITS,
  BDRV_SECTORS_PER_DIRTY_CHUNK,
  BLK_MIG_BLOCK_SIZE,
  BLK_MIG_FLAG_DEVICE_BLOCK,
  BLK_MIG_FLAG_EOS,
  BLK_MIG_FLAG_MASK,
  BLK_MIG_FLAG_PROGRESS,
  BLK_MIG_FLAG_ZERO_BLOCK,
  describeBlockFlags,
} from './flags.js';
import {
  BLOCK_RECORD_TYPES,
  CANONICAL_FLAGS,
  blockRecordFlags,
  classifyBlockFlags,
  endsBlockBody,
  type BlockRecord,
} from './records.js';

/**
 * Largest sector a chunk may start at: its last byte, `sector * 512 + BLK_MIG_BLOCK_SIZE`, is
 * still a safe integer (2^44 - 2049). QEMU itself would fail on any real drive long before.
 */
export const MAX_BLOCK_SECTOR = 2 ** (53 - BDRV_SECTOR_BITS) - BDRV_SECTORS_PER_DIRTY_CHUNK - 1;

const KNOWN_FLAGS =
  BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_EOS | BLK_MIG_FLAG_PROGRESS | BLK_MIG_FLAG_ZERO_BLOCK;

/** 2^23: the low 32 bits of the word hold 23 bits of value above the 9 flag bits. */
const LOW_VALUE_SPAN = 2 ** (32 - BDRV_SECTOR_BITS);


function details(
  reader: ByteReader,
  ctx: SectionContext,
  extra: Partial<DecodeErrorDetails>,
): DecodeErrorDetails {
  return { offset: reader.markOffset, section: ctx.section, context: 'block record', ...extra };
}

function readRecord(reader: ByteReader, ctx: SectionContext): BlockRecord {
  // block_load: addr = qemu_get_be64(f); flags = addr & 511; addr >>= 9.
  const high = reader.u32();
  const low = reader.u32();
  const flags = low & BLK_MIG_FLAG_MASK;
  const type = classifyBlockFlags(flags);
  // block_load ignores bits 0x10-0x100 next to a known flag; they mean nothing in any QEMU, so
  // a stream carrying them is damaged, and a validating pass-through must say so.
  if (type === undefined || (flags & ~KNOWN_FLAGS) !== 0) {
    // block_load: "Unknown block migration flags: 0x%x" -> -EINVAL.
    throw new UnknownFlagError(
      `unknown block migration flags ${hex(flags)} (${describeBlockFlags(flags)}) ` +
        `in word ${wordHex(high, low)}`,
      details(reader, ctx, { expected: 'DEVICE_BLOCK, PROGRESS or EOS', actual: flags }),
    );
  }
  const isDevice = type === 'block-data' || type === 'block-zero';
  // Exact up to 2^53; above, rounding cannot bring a value back under the bound. Words with the
  // top bit set are negative in QEMU (int64_t addr) and land here as values >= 2^54.
  const value = high * LOW_VALUE_SPAN + (low >>> BDRV_SECTOR_BITS);
  const max = isDevice ? MAX_BLOCK_SECTOR : Number.MAX_SAFE_INTEGER;
  if (value > max) {
    const what = isDevice ? 'sector' : 'value';
    throw new LimitExceededError(
      `${what} of word ${wordHex(high, low)} is out of range`,
      details(reader, ctx, { expected: `a ${what} <= ${max}`, actual: wordHex(high, low) }),
    );
  }
  const extra = flags === CANONICAL_FLAGS[type] ? {} : { flags };

  switch (type) {
    case 'block-progress':
      return { type, percent: value, ...extra };
    case 'block-eos':
      return value === 0 ? { type, ...extra } : { type, ...extra, sector: value };
    case 'block-zero':
    case 'block-data': {
      const length = reader.u8();
      if (length === 0) {
        // blk_by_name("") never finds a drive: "Error unknown block device".
        throw new FramingError(
          'empty device name; block_load finds no drive by that name',
          details(reader, ctx, { expected: 'a drive name', actual: '' }),
        );
      }
      const device = reader.bytes(length).toString('latin1');
      if (type === 'block-zero') return { type, device, sector: value, ...extra };
      const data = reader.bytes(BLK_MIG_BLOCK_SIZE);
      return { type, device, sector: value, data, ...extra };
    }
  }
}

class BlockBodyDecoder implements SectionBodyDecoder<BlockRecord> {
  read(reader: ByteReader, ctx: SectionContext): BlockRecord {
    return readRecord(reader, ctx);
  }

  endsBody(record: BlockRecord): boolean {
    return endsBlockBody(record);
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

function writeRecord(record: BlockRecord, writer: ByteWriter): void {
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
      if (record.type === 'block-data' && record.data.length !== BLK_MIG_BLOCK_SIZE) {
        fail(record, `data is ${record.data.length} bytes, expected ${BLK_MIG_BLOCK_SIZE}`);
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
      return 8 + 1 + record.device.length + BLK_MIG_BLOCK_SIZE;
  }
}

/** Codec of the "block" section body (section version 1). */
export const blockCodec: SectionCodec<BlockRecord> = {
  idstr: 'block',
  recordTypes: BLOCK_RECORD_TYPES,
  newDecoder: () => new BlockBodyDecoder(),
  encode: writeRecord,
  encodedLength,
};
