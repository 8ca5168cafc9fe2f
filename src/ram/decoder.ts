/**
 * Reads `ram` section records as QEMU 7.2's ram_load_precopy does (migration/ram.c):
 *
 *   1. word = be64; flags = word & (TARGET_PAGE_SIZE - 1); addr = the rest.
 *   2. With ZERO, PAGE, COMPRESS_PAGE or XBZRLE among the flags, the block is resolved first
 *      (ram_block_from_stream: the previous block for CONTINUE, else `u8 len, idstr`) and the
 *      offset checked against it (host_from_ram_block_offset: offset < used_length).
 *   3. `switch (flags & ~CONTINUE)` must hit one flag exactly; otherwise the word is accepted
 *      only with HOOK (the transport's load hook), else "Unknown combination of migration flags".
 *   4. The body ends at a word with EOS.
 *
 * State lives in the decoder object, one per stream: the CONTINUE block (QEMU's
 * mis->last_recv_block) and the block list of MEM_SIZE. It is written only once a record has
 * been read whole, so a record cut short by NEED_MORE leaves nothing behind.
 *
 * Before any MEM_SIZE, block names are taken as they come and offsets are not checked (there is
 * no list to check against). After it, a name not in the list is a FramingError, as QEMU's
 * destination has no such block, and an offset past used_length is a LimitExceededError.
 *
 * Not checked here: zlib payloads of COMPRESS_PAGE (QEMU inflates them on worker threads and
 * reports a failure only at the end of the section; inflatePage checks them when applied), and
 * whether the destination enabled `compress` (not announced in the stream).
 *
 * Accepted although QEMU 7.2 would refuse it: MULTIFD_FLUSH (0x200), which QEMU 8.0+ writes, and
 * HOOK words, which only an RDMA destination accepts (elsewhere its load hook fails).
 */
import { BadMagicError, FramingError, LimitExceededError, UnknownFlagError, hex } from '../stream/errors.js';
import type { ByteReader } from '../stream/reader.js';
import type { SectionBodyDecoder, SectionContext } from '../stream/section-codec.js';
import {
  ENCODING_FLAG_XBZRLE,
  RAM_PAGE_FLAGS,
  RAM_SAVE_FLAG_COMPRESS_PAGE,
  RAM_SAVE_FLAG_CONTINUE,
  RAM_SAVE_FLAG_EOS,
  RAM_SAVE_FLAG_HOOK,
  RAM_SAVE_FLAG_MEM_SIZE,
  RAM_SAVE_FLAG_MULTIFD_FLUSH,
  RAM_SAVE_FLAG_PAGE,
  RAM_SAVE_FLAG_XBZRLE,
  RAM_SAVE_FLAG_ZERO,
  compressBound,
  describeRamFlags,
} from './flags.js';
import { readMemSize } from './mem-size.js';
import type { RamEosRecord, RamHookRecord, RamMultifdFlushRecord, RamRecord } from './records.js';
import { scanXbzrle, xbzrleFailure } from './xbzrle.js';
import { HIGH_WEIGHT, MAX_HIGH_WORD, details, resolveName, tooLarge, wordHex } from './wire.js';

/** A RAMBlock as the decoder knows it; usedLength -1 when no MEM_SIZE listed it. */
interface BlockState {
  readonly idstr: string;
  usedLength: number;
}

const EOS_RECORD: RamEosRecord = Object.freeze({ type: 'ram-eos' });
const FLUSH_RECORD: RamMultifdFlushRecord = Object.freeze({ type: 'ram-multifd-flush' });

export class RamBodyDecoder implements SectionBodyDecoder<RamRecord> {
  /** mis->last_recv_block[RAM_CHANNEL_PRECOPY]: the block CONTINUE refers to. */
  private last: BlockState | undefined = undefined;
  private readonly blocks = new Map<string, BlockState>();
  private listed = false;
  /** Scratch of the record being read: the name bytes as sent when they differ from idstr. */
  private wire: string | undefined = undefined;

  read(reader: ByteReader, ctx: SectionContext): RamRecord {
    const pageSize = ctx.params.pageSize;
    const high = reader.u32();
    const low = reader.u32();
    if (high >= MAX_HIGH_WORD) throw tooLarge(reader, ctx, 'word', high, low);
    const flags = low & (pageSize - 1);
    const addr = high * HIGH_WEIGHT + (low - flags);
    const continued = (flags & RAM_SAVE_FLAG_CONTINUE) !== 0;

    switch (flags & ~RAM_SAVE_FLAG_CONTINUE) {
      case RAM_SAVE_FLAG_PAGE: {
        const block = this.resolve(reader, ctx, flags, addr);
        const wire = this.wire;
        const data = reader.bytes(pageSize);
        this.last = block;
        return withWire({ type: 'ram-page', block: block.idstr, continued, offset: addr, data }, wire);
      }
      case RAM_SAVE_FLAG_ZERO: {
        const block = this.resolve(reader, ctx, flags, addr);
        const wire = this.wire;
        const fill = reader.u8();
        this.last = block;
        return withWire({ type: 'ram-zero', block: block.idstr, continued, offset: addr, fill }, wire);
      }
      case RAM_SAVE_FLAG_XBZRLE: {
        const block = this.resolve(reader, ctx, flags, addr);
        const wire = this.wire;
        const data = this.readXbzrle(reader, ctx, pageSize);
        this.last = block;
        const encoding = ENCODING_FLAG_XBZRLE;
        return withWire({ type: 'ram-xbzrle', block: block.idstr, continued, offset: addr, encoding, data }, wire);
      }
      case RAM_SAVE_FLAG_COMPRESS_PAGE: {
        const block = this.resolve(reader, ctx, flags, addr);
        const wire = this.wire;
        const length = reader.u32();
        const bound = compressBound(pageSize);
        if (length > bound) {
          // "Invalid compressed data length" (len < 0 || len > compressBound(TARGET_PAGE_SIZE)).
          throw new LimitExceededError(`COMPRESS_PAGE length ${length} exceeds compressBound(${pageSize}) = ${bound}`, details(reader, ctx, { expected: `at most ${bound}`, actual: length }));
        }
        const data = reader.bytes(length);
        this.last = block;
        return withWire({ type: 'ram-compressed', block: block.idstr, continued, offset: addr, data }, wire);
      }
      case RAM_SAVE_FLAG_EOS:
        return addr === 0 && !continued ? EOS_RECORD : strayWord('ram-eos', addr, continued);
      case RAM_SAVE_FLAG_MEM_SIZE: {
        const record = readMemSize(reader, ctx, addr, continued);
        this.commitBlocks(record.blocks);
        return record;
      }
      case RAM_SAVE_FLAG_MULTIFD_FLUSH:
        return addr === 0 && !continued ? FLUSH_RECORD : strayWord('ram-multifd-flush', addr, continued);
      default:
        return this.readOther(reader, ctx, flags, addr, high, low);
    }
  }

  endsBody(record: RamRecord): boolean {
    // ram_load_precopy loops `while (!ret && !(flags & RAM_SAVE_FLAG_EOS))`.
    return record.type === 'ram-eos' || (record.type === 'ram-hook' && (record.flags & RAM_SAVE_FLAG_EOS) !== 0);
  }

  /** ram_block_from_stream + host_from_ram_block_offset. Sets this.wire. */
  private resolve(reader: ByteReader, ctx: SectionContext, flags: number, addr: number): BlockState {
    let block: BlockState | undefined;
    if (flags & RAM_SAVE_FLAG_CONTINUE) {
      this.wire = undefined;
      block = this.last;
      if (block === undefined) {
        // "Ack, bad migration stream!"
        throw new FramingError(`CONTINUE (${describeRamFlags(flags)}) but no RAMBlock has been named yet`, details(reader, ctx, { expected: 'a block name before the first CONTINUE', actual: flags }));
      }
    } else {
      const { idstr, wire } = resolveName(reader.bytes(reader.u8()));
      this.wire = wire;
      block = this.blocks.get(idstr);
      if (block === undefined) {
        if (this.listed || idstr.length === 0) {
          // "Can't find block %s"
          throw new FramingError(
            `unknown RAMBlock ${JSON.stringify(wire ?? idstr)}`,
            details(reader, ctx, {
              expected: this.listed ? `one of ${[...this.blocks.keys()].join(', ')}` : 'a RAMBlock idstr',
              actual: wire ?? idstr,
            }),
          );
        }
        block = { idstr, usedLength: -1 };
      }
    }
    if (block.usedLength >= 0 && addr >= block.usedLength) {
      // "Illegal RAM offset"
      throw new LimitExceededError(
        `offset ${hex(addr)} is past the end of RAMBlock "${block.idstr}" (used_length ${hex(block.usedLength)})`,
        details(reader, ctx, { expected: `an offset below ${hex(block.usedLength)}`, actual: addr }),
      );
    }
    return block;
  }

  /** load_xbzrle: `u8 encoding, be16 len, data[len]`, then xbzrle_decode_buffer's checks. */
  private readXbzrle(reader: ByteReader, ctx: SectionContext, pageSize: number): Buffer {
    const encoding = reader.u8();
    if (encoding !== ENCODING_FLAG_XBZRLE) {
      // "Failed to load XBZRLE page - wrong compression!"
      throw new BadMagicError(`XBZRLE encoding byte ${hex(encoding)}`, details(reader, ctx, { expected: hex(ENCODING_FLAG_XBZRLE), actual: encoding }));
    }
    const length = reader.u16();
    if (length > pageSize) {
      // "Failed to load XBZRLE page - len overflow!"
      throw new LimitExceededError(`XBZRLE length ${length} exceeds the page size ${pageSize}`, details(reader, ctx, { expected: `at most ${pageSize}`, actual: length }));
    }
    const data = reader.bytes(length);
    const covered = scanXbzrle(data, null, pageSize);
    if (covered < 0) {
      throw xbzrleFailure(covered, { offset: reader.markOffset, section: ctx.section, context: 'ram record' });
    }
    return data;
  }

  /** The `default:` branch of ram_load_precopy's switch. */
  private readOther(reader: ByteReader, ctx: SectionContext, flags: number, addr: number, high: number, low: number): RamHookRecord {
    if (!(flags & RAM_SAVE_FLAG_HOOK)) {
      throw new UnknownFlagError(
        `unknown combination of ram flags ${hex(flags)} (${describeRamFlags(flags)}) in word ${wordHex(high, low)}`,
        details(reader, ctx, {
          expected: 'one of ZERO, MEM_SIZE, PAGE, EOS, XBZRLE, COMPRESS_PAGE, MULTIFD_FLUSH (with CONTINUE), or HOOK',
          actual: flags,
        }),
      );
    }
    if (!(flags & RAM_PAGE_FLAGS)) return { type: 'ram-hook', flags, addr };
    const block = this.resolve(reader, ctx, flags, addr);
    this.last = block;
    return withWire({ type: 'ram-hook', flags, addr, block: block.idstr }, this.wire);
  }

  private commitBlocks(list: readonly { idstr: string; usedLength: number }[]): void {
    for (const info of list) {
      // A block named again is resized (qemu_ram_resize); the CONTINUE block sees the new size.
      const known = this.blocks.get(info.idstr);
      if (known !== undefined) known.usedLength = info.usedLength;
      else this.blocks.set(info.idstr, { idstr: info.idstr, usedLength: info.usedLength });
    }
    this.listed = true;
  }
}

/** Adds the name bytes as sent, in the rare case they differ from the idstr (an embedded NUL). */
function withWire<T extends RamRecord>(record: T, wire: string | undefined): T {
  return wire === undefined ? record : { ...record, wireName: wire };
}

function strayWord<T extends 'ram-eos' | 'ram-multifd-flush'>(type: T, addr: number, continued: boolean): { type: T; strayAddr?: number; strayContinue?: boolean } {
  const record: { type: T; strayAddr?: number; strayContinue?: boolean } = { type };
  if (addr !== 0) record.strayAddr = addr;
  if (continued) record.strayContinue = true;
  return record;
}
