/**
 * Records of the `ram` section body (QEMU 7.2 migration/ram.c, section version 4).
 *
 * Each record holds exactly what is needed to write its bytes back. The usual record carries
 * only the documented fields; the optional fields exist for words that QEMU's ram_load_precopy
 * tolerates although its own source never writes them, so that decoding and re-encoding any
 * accepted stream gives the same bytes:
 *   - `wireName`: the block name as sent, when it differs from the resolved idstr. QEMU looks
 *     names up as C strings, so "pc.ram\0junk" names the block "pc.ram".
 *   - `strayContinue`, `strayAddr`: the CONTINUE bit and the offset bits of an EOS, MEM_SIZE
 *     or MULTIFD_FLUSH word, which QEMU ignores (`switch (flags & ~RAM_SAVE_FLAG_CONTINUE)`).
 */

/** One RAMBlock of the MEM_SIZE list (ram_save_setup). */
export interface RamBlockInfo {
  /** Resolved RAMBlock id, e.g. "pc.ram", "0000:00:02.0/vga.vram", "/rom@etc/acpi/tables". */
  readonly idstr: string;
  /** used_length in bytes. */
  readonly usedLength: number;
  /** Block page size; sent only with postcopy-ram when it differs from the host page size. */
  readonly pageSize?: number;
  /** mr->addr; sent for every block with the x-ignore-shared capability. */
  readonly mrAddr?: number;
  /** Name bytes as sent (latin1), only when they differ from `idstr`. */
  readonly wireName?: string;
}

export interface RamMemSizeRecord {
  readonly type: 'ram-mem-size';
  /** Sum of the blocks' used_length (the word's offset part). */
  readonly totalBytes: number;
  blocks: RamBlockInfo[];
  readonly strayContinue?: boolean;
}

/** Fields shared by the records that address one page of one RAMBlock. */
export interface RamPageAddress {
  /** Resolved RAMBlock idstr, also for CONTINUE records. */
  readonly block: string;
  /** True when the word has CONTINUE and the block name is omitted. */
  readonly continued: boolean;
  /** Byte offset of the page in the block. */
  readonly offset: number;
  /** Block name bytes as sent (latin1), only when they differ from `block`. */
  readonly wireName?: string;
}

/** RAM_SAVE_FLAG_PAGE: the raw page (a view into the input when possible). */
export interface RamPageRecord extends RamPageAddress {
  readonly type: 'ram-page';
  readonly data: Buffer;
}

/** RAM_SAVE_FLAG_ZERO: the page is all `fill` (QEMU sends 0; ram_handle_compressed takes any). */
export interface RamZeroRecord extends RamPageAddress {
  readonly type: 'ram-zero';
  readonly fill: number;
}

/** RAM_SAVE_FLAG_XBZRLE: a delta against the destination's current page. */
export interface RamXbzrleRecord extends RamPageAddress {
  readonly type: 'ram-xbzrle';
  /** Header byte; always ENCODING_FLAG_XBZRLE (1) in a decoded record. */
  readonly encoding: number;
  /** The encoded delta (see xbzrle.ts). */
  readonly data: Buffer;
}

/** RAM_SAVE_FLAG_COMPRESS_PAGE: one complete zlib stream of one page. */
export interface RamCompressedRecord extends RamPageAddress {
  readonly type: 'ram-compressed';
  readonly data: Buffer;
}

export interface RamEosRecord {
  readonly type: 'ram-eos';
  readonly strayAddr?: number;
  readonly strayContinue?: boolean;
}

/** QEMU 8.0+ RAM_SAVE_FLAG_MULTIFD_FLUSH. */
export interface RamMultifdFlushRecord {
  readonly type: 'ram-multifd-flush';
  readonly strayAddr?: number;
  readonly strayContinue?: boolean;
}

/**
 * A word with RAM_SAVE_FLAG_HOOK and no other valid combination: ram_load_precopy calls the
 * transport's load hook (RDMA reads its own channel; nothing more follows in the stream). When
 * the flags include ZERO/PAGE/XBZRLE/COMPRESS_PAGE, QEMU first reads a block name (unless
 * CONTINUE) as for a page, and `block` is set. A hook with EOS also ends the section body.
 */
export interface RamHookRecord {
  readonly type: 'ram-hook';
  /** All flag bits of the word, HOOK and CONTINUE included. */
  readonly flags: number;
  /** The offset bits of the word. */
  readonly addr: number;
  /** Resolved block, when the flags made QEMU read one. */
  readonly block?: string;
  readonly wireName?: string;
}

export type RamRecord = RamMemSizeRecord | RamPageRecord | RamZeroRecord | RamXbzrleRecord | RamCompressedRecord | RamEosRecord | RamMultifdFlushRecord | RamHookRecord;

export type RamPageLikeRecord = RamPageRecord | RamZeroRecord | RamXbzrleRecord | RamCompressedRecord;

/** Whether `record` addresses one page of one RAMBlock (PAGE, ZERO, XBZRLE, COMPRESS_PAGE). */
export function isRamPageRecord(record: { readonly type: string }): record is RamPageLikeRecord {
  return record.type === 'ram-page' || record.type === 'ram-zero' || record.type === 'ram-xbzrle' || record.type === 'ram-compressed';
}

export const RAM_RECORD_TYPES: readonly RamRecord['type'][] = ['ram-mem-size', 'ram-page', 'ram-zero', 'ram-xbzrle', 'ram-compressed', 'ram-eos', 'ram-multifd-flush', 'ram-hook'];
