/**
 * Constants of the `block` section, mirroring QEMU 7.2 migration/block.c.
 *
 * Every record starts with `be64 word = (sector << BDRV_SECTOR_BITS) | flags`; the flags are the
 * low 9 bits (`addr & (BDRV_SECTOR_SIZE - 1)` in block_load), the rest is a sector number, a
 * percentage or nothing, depending on the flags.
 */

/** BLK_MIG_FLAG_DEVICE_BLOCK: `u8 len, device_name[len]`, then one chunk of data unless ZERO_BLOCK. */
export const BLK_MIG_FLAG_DEVICE_BLOCK = 0x01;
/** BLK_MIG_FLAG_EOS: last record of the section body. */
export const BLK_MIG_FLAG_EOS = 0x02;
/** BLK_MIG_FLAG_PROGRESS: `word >> 9` is a percentage (block_mig_save_bulked_block). */
export const BLK_MIG_FLAG_PROGRESS = 0x04;
/** BLK_MIG_FLAG_ZERO_BLOCK: with DEVICE_BLOCK, the chunk is all zero and no data follows. */
export const BLK_MIG_FLAG_ZERO_BLOCK = 0x08;

/** BDRV_SECTOR_BITS / BDRV_SECTOR_SIZE (include/block/block-common.h). */
export const BDRV_SECTOR_BITS = 9;
export const BDRV_SECTOR_SIZE = 1 << BDRV_SECTOR_BITS;
/** block_load: `flags = addr & (BDRV_SECTOR_SIZE - 1)`. */
export const BLK_MIG_FLAG_MASK = BDRV_SECTOR_SIZE - 1;

/**
 * BLK_MIG_BLOCK_SIZE (1 << 20): in QEMU every data record carries exactly this many bytes;
 * builds with a mig-block-size parameter send another size (block-size.ts).
 */
export const BLK_MIG_BLOCK_SIZE = 1 << 20;
/** BDRV_SECTORS_PER_DIRTY_CHUNK: sectors covered by one data record of QEMU's size. */
export const BDRV_SECTORS_PER_DIRTY_CHUNK = BLK_MIG_BLOCK_SIZE >> BDRV_SECTOR_BITS;

/** Names for messages, lowest bit first. */
export const BLOCK_FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [BLK_MIG_FLAG_DEVICE_BLOCK, 'DEVICE_BLOCK'],
  [BLK_MIG_FLAG_EOS, 'EOS'],
  [BLK_MIG_FLAG_PROGRESS, 'PROGRESS'],
  [BLK_MIG_FLAG_ZERO_BLOCK, 'ZERO_BLOCK'],
];

/** "DEVICE_BLOCK|EOS|0x10" for error messages. */
export function describeBlockFlags(flags: number): string {
  const names: string[] = [];
  let rest = flags;
  for (const [bit, name] of BLOCK_FLAG_NAMES) {
    if (flags & bit) {
      names.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) names.push(`0x${rest.toString(16)}`);
  return names.length > 0 ? names.join('|') : 'none';
}
