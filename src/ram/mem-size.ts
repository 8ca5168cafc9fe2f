/**
 * The MEM_SIZE record: the RAMBlock list of ram_save_setup, read as ram_load_precopy reads it.
 *
 *   be64 total | MEM_SIZE
 *   repeat until the used_lengths add up to total:
 *     u8 len, idstr[len], be64 used_length
 *     [be64 page_size]  postcopy-ram, and the block's page size differs from the host's
 *     [be64 mr_addr]    x-ignore-shared
 *
 * x-ignore-shared is announced by the configuration section (ctx.params.capabilities).
 * page_size is announced only indirectly: the source sends MIG_CMD_POSTCOPY_ADVISE with
 * ram_pagesize_summary() before the ram section, and the destination compares with its own
 * block page sizes. Body codecs do not see commands, so page_size is detected. (Postcopy needs a
 * return path, which exec: lacks, so exec: streams never carry it.) The rule:
 *
 *   After used_length, a be64 whose high 32 bits are zero and whose value is a power of two in
 *   [8 KiB, 1 GiB] is a page_size.
 *
 * It cannot be anything else QEMU accepts:
 *   - the next block starts with its name length, never 0 (an empty name finds no block in
 *     qemu_ram_block_by_name);
 *   - the word after the list (EOS, a hook, a flush) has a known flag bit set, while a power of
 *     two of at least 8 KiB has no bit below the target page size, or one unknown bit.
 * Why 8 KiB and not 4 KiB: the source sends page_size only when it differs from the host page
 * size, which is at least 4 KiB. So a flagless word 0x1000 after the list is still rejected, as
 * QEMU rejects it; a flagless 0x2000 is taken for a page size where QEMU, without postcopy
 * advised, would reject it.
 *
 * With x-ignore-shared the be64 after used_length may instead be mr_addr, which can look like
 * a page size (e.g. 1 GiB). The next 8 bytes decide. If more blocks follow, a non-zero byte is
 * the next name's length (the value was mr_addr) and a zero byte is the top of an mr_addr (it
 * was page_size). After the last block, flag bits mean the next record word (it was mr_addr) and
 * a page-aligned value means an mr_addr (it was page_size).
 */
import { FramingError, LimitExceededError } from '../stream/errors.js';
import type { ByteReader } from '../stream/reader.js';
import type { SectionContext } from '../stream/section-codec.js';
import type { ByteWriter } from '../stream/writer.js';
import { RAM_SAVE_FLAG_CONTINUE, RAM_SAVE_FLAG_MEM_SIZE } from './flags.js';
import type { RamBlockInfo, RamMemSizeRecord } from './records.js';
import { details, peekU32, readSafeU64, resolveName } from './wire.js';

/**
 * ram_save_setup writes page_size only when it differs from qemu_host_page_size, and a block's
 * page size is never below the host's (at least 4 KiB), so a sent page_size is at least 8 KiB.
 */
export const MIN_DETECTED_PAGE_SIZE = 8192;
export const MAX_DETECTED_PAGE_SIZE = 1 << 30;
/** More RAMBlocks than any machine has; bounds the work of re-reading an incomplete list. */
export const MAX_RAM_BLOCKS = 65536;

function isPageSizeCandidate(high: number, low: number): boolean {
  return high === 0 && low >= MIN_DETECTED_PAGE_SIZE && low <= MAX_DETECTED_PAGE_SIZE && (low & (low - 1)) === 0;
}

/** True when the be64 at the cursor is a page_size (see the rule above). */
function pageSizeFollows(reader: ByteReader, ctx: SectionContext, ignoreShared: boolean, lastBlock: boolean): boolean {
  if (!isPageSizeCandidate(peekU32(reader, 0), peekU32(reader, 4))) return false;
  if (!ignoreShared) return true;
  if (!lastBlock) return reader.peekU8(8) === 0;
  return (peekU32(reader, 12) & (ctx.params.pageSize - 1)) === 0;
}

export function readMemSize(reader: ByteReader, ctx: SectionContext, total: number, strayContinue: boolean): RamMemSizeRecord {
  const ignoreShared = ctx.params.capabilities.includes('x-ignore-shared');
  const blocks: RamBlockInfo[] = [];
  let remaining = total;
  while (remaining > 0) {
    if (blocks.length >= MAX_RAM_BLOCKS) {
      throw new LimitExceededError(`MEM_SIZE lists more than ${MAX_RAM_BLOCKS} RAMBlocks`, details(reader, ctx, { expected: `at most ${MAX_RAM_BLOCKS} blocks`, actual: blocks.length }));
    }
    const length = reader.u8();
    const { idstr, wire } = resolveName(reader.bytes(length));
    if (idstr.length === 0) {
      // qemu_ram_block_by_name("") finds nothing: "Unknown ramblock", -EINVAL.
      throw new FramingError('MEM_SIZE lists a RAMBlock with an empty name', details(reader, ctx, { expected: 'a RAMBlock idstr', actual: wire ?? '' }));
    }
    const usedLength = readSafeU64(reader, ctx, `used_length of "${idstr}"`);
    if (usedLength > remaining) {
      // total_ram_bytes is unsigned in QEMU: it would wrap and read garbage as more blocks.
      throw new FramingError(
        `used_length ${usedLength} of "${idstr}" exceeds the ${remaining} bytes left of the MEM_SIZE total ${total}`,
        details(reader, ctx, { expected: `at most ${remaining}`, actual: usedLength }),
      );
    }
    remaining -= usedLength;
    let pageSize: number | undefined;
    if (pageSizeFollows(reader, ctx, ignoreShared, remaining === 0)) {
      pageSize = readSafeU64(reader, ctx, `page_size of "${idstr}"`);
    }
    let mrAddr: number | undefined;
    if (ignoreShared) mrAddr = readSafeU64(reader, ctx, `mr_addr of "${idstr}"`);
    const block: { -readonly [K in keyof RamBlockInfo]: RamBlockInfo[K] } = { idstr, usedLength };
    if (pageSize !== undefined) block.pageSize = pageSize;
    if (mrAddr !== undefined) block.mrAddr = mrAddr;
    if (wire !== undefined) block.wireName = wire;
    blocks.push(block);
  }
  return strayContinue ? { type: 'ram-mem-size', totalBytes: total, blocks, strayContinue: true } : { type: 'ram-mem-size', totalBytes: total, blocks };
}

/** Checks what writeMemSize needs; returns a problem or undefined. */
/** Checks what writeMemSize needs to write bytes that decode back to `record`. */
export function memSizeProblem(record: RamMemSizeRecord): string | undefined {
  const total = record.totalBytes;
  if (!Number.isSafeInteger(total) || total < 0 || total % 1024 !== 0) {
    return `totalBytes ${String(total)} is not a safe integer clear of the flag bits`;
  }
  let sum = 0;
  for (const block of record.blocks) {
    // ram_load_precopy stops reading blocks once the lengths reach the total.
    if (sum >= total) return `block "${block.idstr}" comes after the lengths reach totalBytes ${total}`;
    const name = block.wireName ?? block.idstr;
    if (block.idstr.length === 0 || name.length > 255 || /[^\x00-\xff]/.test(name)) {
      return `block name must be 1..255 latin1 characters: ${JSON.stringify(name.slice(0, 40))}`;
    }
    for (const [field, value] of [
      ['usedLength', block.usedLength],
      ['pageSize', block.pageSize],
      ['mrAddr', block.mrAddr],
    ] as const) {
      if (value !== undefined && !(Number.isSafeInteger(value) && value >= 0)) {
        return `${field} of "${block.idstr}" is not a safe non-negative integer`;
      }
    }
    if (block.pageSize !== undefined && !isPageSizeCandidate(0, block.pageSize)) {
      return `pageSize ${block.pageSize} of "${block.idstr}" would not be detected (power of two in 8 KiB..1 GiB)`;
    }
    sum += block.usedLength;
  }
  if (sum !== total) return `block lengths add up to ${sum}, not totalBytes ${total}`;
  return undefined;
}

export function writeMemSize(record: RamMemSizeRecord, writer: ByteWriter): void {
  writer.u64(record.totalBytes + RAM_SAVE_FLAG_MEM_SIZE + (record.strayContinue ? RAM_SAVE_FLAG_CONTINUE : 0));
  for (const block of record.blocks) {
    writer.shortString(block.wireName ?? block.idstr);
    writer.u64(block.usedLength);
    if (block.pageSize !== undefined) writer.u64(block.pageSize);
    if (block.mrAddr !== undefined) writer.u64(block.mrAddr);
  }
}

export function memSizeLength(record: RamMemSizeRecord): number {
  let length = 8;
  for (const block of record.blocks) {
    length += 1 + (block.wireName ?? block.idstr).length + 8;
    if (block.pageSize !== undefined) length += 8;
    if (block.mrAddr !== undefined) length += 8;
  }
  return length;
}
