/**
 * Flag bits of the `ram` section words, as in QEMU 7.2 migration/ram.c (RAM_SAVE_FLAG_*), plus
 * RAM_SAVE_FLAG_HOOK from migration/qemu-file.h and RAM_SAVE_FLAG_MULTIFD_FLUSH from QEMU 8.0.
 *
 * Every record starts with `be64 word`: `word & ~(TARGET_PAGE_SIZE - 1)` is an offset (or the
 * total of MEM_SIZE), the low page bits are flags (ram_load_precopy: `flags = addr &
 * ~TARGET_PAGE_MASK`).
 */

/** Obsolete ("not used anymore"); ram_load_precopy rejects it as an unknown combination. */
export const RAM_SAVE_FLAG_FULL = 0x01;
/** Page filled with one byte (the source only sends 0: save_zero_page_to_file). */
export const RAM_SAVE_FLAG_ZERO = 0x02;
/** Setup record: total RAM bytes and the RAMBlock list (ram_save_setup). */
export const RAM_SAVE_FLAG_MEM_SIZE = 0x04;
/** One raw page (save_normal_page). */
export const RAM_SAVE_FLAG_PAGE = 0x08;
/** End of this section's records. */
export const RAM_SAVE_FLAG_EOS = 0x10;
/** Same RAMBlock as the previous page record; the block name is omitted (save_page_header). */
export const RAM_SAVE_FLAG_CONTINUE = 0x20;
/** XBZRLE delta against the destination's current page (save_xbzrle_page). */
export const RAM_SAVE_FLAG_XBZRLE = 0x40;
/** RDMA control hook (migration/qemu-file.h; "0x80 is reserved in migration.h"). */
export const RAM_SAVE_FLAG_HOOK = 0x80;
/** One zlib stream of one page, legacy `compress` capability (do_compress_ram_page). */
export const RAM_SAVE_FLAG_COMPRESS_PAGE = 0x100;
/** QEMU 8.0+: multifd sync point. QEMU 7.2 does not know it (see codec.ts). */
export const RAM_SAVE_FLAG_MULTIFD_FLUSH = 0x200;

/**
 * Flags for which ram_load_precopy reads a block name (unless CONTINUE) and checks the offset
 * against the block before looking at the exact combination.
 */
export const RAM_PAGE_FLAGS = RAM_SAVE_FLAG_ZERO | RAM_SAVE_FLAG_PAGE | RAM_SAVE_FLAG_COMPRESS_PAGE | RAM_SAVE_FLAG_XBZRLE;

/** The XBZRLE header byte, ENCODING_FLAG_XBZRLE in ram.c (load_xbzrle). */
export const ENCODING_FLAG_XBZRLE = 0x01;

/** Smallest TARGET_PAGE_SIZE of any QEMU target (TARGET_PAGE_BITS_MIN 10): flags fit below it. */
export const MIN_TARGET_PAGE_SIZE = 1024;

/** zlib's compressBound(); ram_load_precopy rejects a COMPRESS_PAGE length above it (4110). */
export function compressBound(sourceLength: number): number {
  return sourceLength + Math.floor(sourceLength / 4096) + Math.floor(sourceLength / 16384) + Math.floor(sourceLength / 33554432) + 13;
}

const FLAG_NAMES: readonly (readonly [number, string])[] = [
  [RAM_SAVE_FLAG_FULL, 'FULL'],
  [RAM_SAVE_FLAG_ZERO, 'ZERO'],
  [RAM_SAVE_FLAG_MEM_SIZE, 'MEM_SIZE'],
  [RAM_SAVE_FLAG_PAGE, 'PAGE'],
  [RAM_SAVE_FLAG_EOS, 'EOS'],
  [RAM_SAVE_FLAG_CONTINUE, 'CONTINUE'],
  [RAM_SAVE_FLAG_XBZRLE, 'XBZRLE'],
  [RAM_SAVE_FLAG_HOOK, 'HOOK'],
  [RAM_SAVE_FLAG_COMPRESS_PAGE, 'COMPRESS_PAGE'],
  [RAM_SAVE_FLAG_MULTIFD_FLUSH, 'MULTIFD_FLUSH'],
];

/** "ZERO|CONTINUE|0x400" for error messages. */
export function describeRamFlags(flags: number): string {
  if (flags === 0) return 'none';
  const names: string[] = [];
  let rest = flags;
  for (const [bit, name] of FLAG_NAMES) {
    if (flags & bit) {
      names.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) names.push(`0x${rest.toString(16)}`);
  return names.join('|');
}
