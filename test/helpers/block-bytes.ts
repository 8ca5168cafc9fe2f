/**
 * Builds `block` section bytes by hand, following migration/block.c's blk_send and
 * block_save_* directly, without src/block or ByteWriter: a bug in the production encoder
 * cannot hide in the expected bytes.
 */
export const MIB = 1 << 20;

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

/** blk_send without ZERO_BLOCK: word, name, 1 MiB. */
export function dataBytes(device: string, sector: number, data: Buffer, flags = F.DEVICE_BLOCK as number): Buffer {
  if (data.length !== MIB) throw new Error('test data must be 1 MiB');
  return Buffer.concat([word(sector, flags), name(device), data]);
}

/** blk_send with ZERO_BLOCK: word, name. */
export function zeroBytes(device: string, sector: number, flags = F.DEVICE_BLOCK | F.ZERO_BLOCK): Buffer {
  return Buffer.concat([word(sector, flags), name(device)]);
}

export function progressBytes(percent: number, flags: number = F.PROGRESS): Buffer {
  return word(percent, flags);
}

export function eosBytes(flags: number = F.EOS, value = 0): Buffer {
  return word(value, flags);
}

/** A 1 MiB chunk whose bytes depend on `seed` (never all zero). */
export function chunk(seed: number): Buffer {
  const out = Buffer.alloc(MIB);
  let x = (Math.imul(seed, 2654435761) + 1) >>> 0 || 1;
  for (let i = 0; i < MIB; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  return out;
}
