/**
 * Builds `block` section bytes by hand, following migration/block.c's blk_send and
 * block_save_* directly, without src/block or ByteWriter: a bug in the production encoder
 * cannot hide in the expected bytes.
 *
 * Chunks are any mig-block-size: QEMU's BLK_MIG_BLOCK_SIZE (1 MiB) or a patched build's
 * power of two from 4 KiB to 16 MiB; `data.length` is the size the stream is built with.
 */
export const KIB = 1 << 10;
export const MIB = 1 << 20;

/** The chunk sizes the tests build streams with. */
export const SIZES = [4 * KIB, 64 * KIB, MIB, 16 * MIB] as const;

export const F = { DEVICE_BLOCK: 0x01, EOS: 0x02, PROGRESS: 0x04, ZERO_BLOCK: 0x08 } as const;

/** `be64 (value << 9) | flags`; value may be a bigint for words past 2^53. */
export function word(value: number | bigint, flags: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(((BigInt(value) << 9n) | BigInt(flags)) & 0xffff_ffff_ffff_ffffn);
  return out;
}

function name(device: string): Buffer {
  const bytes = Buffer.from(device, 'latin1');
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

/** blk_send without ZERO_BLOCK: word, name, one chunk (its length is the chunk size). */
export function dataBytes(device: string, sector: number, data: Buffer, flags = F.DEVICE_BLOCK as number): Buffer {
  const size = data.length;
  if (size < 4 * KIB || size > 16 * MIB || (size & (size - 1)) !== 0) {
    throw new Error('test data must be a power of two from 4 KiB to 16 MiB');
  }
  return Buffer.concat([word(sector, flags), name(device), data]);
}

/** blk_send with ZERO_BLOCK: word, name (and QEMU flushes its buffer here). */
export function zeroBytes(device: string, sector: number, flags = F.DEVICE_BLOCK | F.ZERO_BLOCK): Buffer {
  return Buffer.concat([word(sector, flags), name(device)]);
}

export function progressBytes(percent: number, flags: number = F.PROGRESS): Buffer {
  return word(percent, flags);
}

export function eosBytes(flags: number = F.EOS, value = 0): Buffer {
  return word(value, flags);
}

/** save_section_footer: `0x7e be32 section_id`. */
export function footerBytes(sectionId: number): Buffer {
  return Buffer.from([0x7e, sectionId >>> 24, (sectionId >>> 16) & 0xff, (sectionId >>> 8) & 0xff, sectionId & 0xff]);
}

/** A chunk of `size` bytes (1 MiB by default) that depend on `seed` (never all zero). */
export function chunk(seed: number, size: number = MIB): Buffer {
  const out = Buffer.alloc(size);
  let x = (Math.imul(seed, 2654435761) + 1) >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  return out;
}

export interface Disk {
  readonly device: string;
  /** Drive size in bytes. */
  readonly size: number;
  /** The drive's content, `size` bytes. */
  readonly content: Buffer;
}

/**
 * The block section bodies QEMU's source writes for `disks` with `chunkSize` chunks, built the
 * way migration/block.c does, without src/block:
 * - block_save_setup: EOS alone (the START body);
 * - bulk phase (block_save_iterate → blk_mig_save_bulked_block → mig_save_device_bulk): per
 *   drive, chunks from sector 0 in steps of chunkSize / 512, the last one shorter; blk_send
 *   sends the whole buffer, the bytes past the drive's end being padding (here 0xa5, as the
 *   source's g_malloc leaves them undefined); with `zeroBlocks`, a chunk whose buffer is all
 *   zero goes as DEVICE_BLOCK|ZERO_BLOCK with no data; a PROGRESS word whenever the
 *   percentage (completed sectors * 100 / total) changes (QEMU writes it when it submits the
 *   read, so its place among the chunks varies with the reads in flight; here: after the chunk);
 *   `perPart` chunks per PART body, each ending in EOS;
 * - block_save_complete (the END body): PROGRESS 100 and EOS.
 * Returns each body (without section headers or footers) in order: START, PARTs, END.
 */
export function qemuBodies(disks: readonly Disk[], chunkSize: number, options: { zeroBlocks?: boolean; perPart?: number } = {}): Buffer[] {
  const sectorsPerChunk = chunkSize / 512;
  const total = disks.reduce((sum, d) => sum + d.size / 512, 0);
  const bodies: Buffer[] = [eosBytes()];
  let part: Buffer[] = [];
  let inPart = 0;
  let completedBefore = 0;
  let previous = -1;
  for (const disk of disks) {
    const sectors = disk.size / 512;
    for (let sector = 0; sector < sectors; sector += sectorsPerChunk) {
      const nr = Math.min(sectorsPerChunk, sectors - sector);
      const buffer = Buffer.alloc(chunkSize, 0xa5);
      disk.content.copy(buffer, 0, sector * 512, (sector + nr) * 512);
      const zero = options.zeroBlocks === true && buffer.every((b) => b === 0);
      part.push(zero ? zeroBytes(disk.device, sector) : dataBytes(disk.device, sector, buffer));
      // blk_mig_save_bulked_block: completed_sectors of the drive is where this chunk started.
      const progress = Math.floor(((completedBefore + sector) * 100) / total);
      if (progress !== previous) {
        part.push(progressBytes(progress));
        previous = progress;
      }
      if (++inPart === (options.perPart ?? 4)) {
        bodies.push(Buffer.concat([...part, eosBytes()]));
        part = [];
        inPart = 0;
      }
    }
    completedBefore += sectors;
  }
  if (part.length > 0) bodies.push(Buffer.concat([...part, eosBytes()]));
  bodies.push(Buffer.concat([progressBytes(100), eosBytes()]));
  return bodies;
}
