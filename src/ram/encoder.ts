/**
 * Writes `ram` records back to their exact bytes (save_page_header, save_normal_page,
 * save_zero_page_to_file, save_xbzrle_page, do_compress_ram_page, ram_save_setup in QEMU 7.2
 * migration/ram.c). The encoder is stateless: a record's `continued` says whether its block name
 * was sent, so re-encoding never depends on what came before.
 */
import { EncodeError, hex } from '../stream/errors.js';
import type { ByteWriter } from '../stream/writer.js';
import {
  MIN_TARGET_PAGE_SIZE,
  RAM_PAGE_FLAGS,
  RAM_SAVE_FLAG_COMPRESS_PAGE,
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_HOOK,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_XBZRLE,
  RAM_SAVE_FLAG_ZERO,
} from './flags.js';
import { memSizeLength, memSizeProblem, writeMemSize } from './mem-size.js';
import type { RamPageLikeRecord, RamRecord } from './records.js';
import { HIGH_WEIGHT, MAX_HIGH_WORD } from './wire.js';

/** Largest offset whose word still decodes (high half below 2^21). */
const MAX_OFFSET = MAX_HIGH_WORD * HIGH_WEIGHT - MIN_TARGET_PAGE_SIZE;

function fail(record: RamRecord, problem: string): never {
  throw new EncodeError(`cannot encode ${record.type} record: ${problem}`);
}

/** An offset that leaves the flag bits free on every target (pages are at least 1 KiB). */
function checkAddr(record: RamRecord, name: string, value: number): void {
  if (!(Number.isInteger(value) && value >= 0 && value <= MAX_OFFSET && value % MIN_TARGET_PAGE_SIZE === 0)) {
    fail(record, `${name} ${String(value)} is not a multiple of ${MIN_TARGET_PAGE_SIZE} in 0..${MAX_OFFSET}`);
  }
}

function nameOf(record: { block?: string; wireName?: string }): string {
  return record.wireName ?? record.block ?? '';
}

function checkName(record: RamRecord, name: string): void {
  if (name.length === 0 || name.length > 255 || /[^\x00-\xff]/.test(name)) {
    fail(record, `block name must be 1..255 latin1 characters: ${JSON.stringify(name.slice(0, 40))}`);
  }
}

/** save_page_header: the word, then `u8 len, idstr` unless CONTINUE. */
function writeHeader(record: RamPageLikeRecord, flag: number, writer: ByteWriter): void {
  checkAddr(record, 'offset', record.offset);
  if (record.continued) {
    writer.u64(record.offset + flag + RAM_SAVE_FLAG_CONTINUE);
    return;
  }
  const name = nameOf(record);
  checkName(record, name);
  writer.u64(record.offset + flag);
  writer.shortString(name);
}

function headerLength(record: { continued: boolean; block: string; wireName?: string }): number {
  return record.continued ? 8 : 9 + nameOf(record).length;
}

function strayWord(record: RamRecord & { strayAddr?: number; strayContinue?: boolean }, flag: number): number {
  const addr = record.strayAddr ?? 0;
  if (addr !== 0) checkAddr(record, 'strayAddr', addr);
  return addr + flag + (record.strayContinue ? RAM_SAVE_FLAG_CONTINUE : 0);
}

export function encodeRamRecord(record: RamRecord, writer: ByteWriter): void {
  switch (record.type) {
    case 'ram-page':
      writeHeader(record, RAM_SAVE_FLAG_PAGE, writer);
      writer.bytes(record.data);
      return;
    case 'ram-zero':
      if (!(Number.isInteger(record.fill) && record.fill >= 0 && record.fill <= 0xff)) {
        fail(record, `fill ${String(record.fill)} is not a byte`);
      }
      writeHeader(record, RAM_SAVE_FLAG_ZERO, writer);
      writer.u8(record.fill);
      return;
    case 'ram-xbzrle':
      if (!(Number.isInteger(record.encoding) && record.encoding >= 0 && record.encoding <= 0xff)) {
        fail(record, `encoding ${String(record.encoding)} is not a byte`);
      }
      if (record.data.length > 0xffff) fail(record, `delta of ${record.data.length} bytes exceeds be16`);
      writeHeader(record, RAM_SAVE_FLAG_XBZRLE, writer);
      writer.u8(record.encoding);
      writer.u16(record.data.length);
      writer.bytes(record.data);
      return;
    case 'ram-compressed':
      writeHeader(record, RAM_SAVE_FLAG_COMPRESS_PAGE, writer);
      writer.u32(record.data.length);
      writer.bytes(record.data);
      return;
    case 'ram-eos':
      writer.u64(strayWord(record, RAM_SAVE_FLAG_EOS));
      return;
    case 'ram-multifd-flush':
      writer.u64(strayWord(record, RAM_SAVE_FLAG_MULTIFD_FLUSH));
      return;
    case 'ram-mem-size': {
      const problem = memSizeProblem(record);
      if (problem !== undefined) fail(record, problem);
      writeMemSize(record, writer);
      return;
    }
    case 'ram-hook': {
      const { flags } = record;
      // Flags may reach bit 15 on targets with 64 KiB pages; they must not overlap the addr.
      if (!(Number.isInteger(flags) && flags >= 0 && flags <= 0xffff && flags & RAM_SAVE_FLAG_HOOK)) {
        fail(record, `flags ${String(flags)} must include HOOK and fit in 16 bits`);
      }
      checkAddr(record, 'addr', record.addr);
      if ((record.addr % HIGH_WEIGHT) & flags) fail(record, `flags ${hex(flags)} overlap addr ${hex(record.addr)}`);
      writer.u64(record.addr + flags);
      if (flags & RAM_PAGE_FLAGS && !(flags & RAM_SAVE_FLAG_CONTINUE)) {
        const name = nameOf(record);
        checkName(record, name);
        writer.shortString(name);
      }
      return;
    }
    default:
      fail(record, 'not a ram record');
  }
}

/** Bytes encodeRamRecord writes for `record`. */
export function ramRecordLength(record: RamRecord): number {
  switch (record.type) {
    case 'ram-page':
      return headerLength(record) + record.data.length;
    case 'ram-zero':
      return headerLength(record) + 1;
    case 'ram-xbzrle':
      return headerLength(record) + 3 + record.data.length;
    case 'ram-compressed':
      return headerLength(record) + 4 + record.data.length;
    case 'ram-eos':
    case 'ram-multifd-flush':
      return 8;
    case 'ram-mem-size':
      return memSizeLength(record);
    case 'ram-hook':
      return record.flags & RAM_PAGE_FLAGS && !(record.flags & RAM_SAVE_FLAG_CONTINUE) ? 9 + nameOf(record).length : 8;
    default:
      return 0;
  }
}
