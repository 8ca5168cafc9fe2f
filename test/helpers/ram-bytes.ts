/**
 * Builds `ram` section bytes by hand, following QEMU 7.2 migration/ram.c (save_page_header,
 * save_normal_page, save_zero_page_to_file, save_xbzrle_page, do_compress_ram_page,
 * ram_save_setup) directly, without src/ram or ByteWriter: a bug in the production encoder
 * cannot hide in the expected bytes.
 */
import { deflateSync } from 'node:zlib';

export const PAGE = 4096;

export const F = {
  FULL: 0x01,
  ZERO: 0x02,
  MEM_SIZE: 0x04,
  PAGE: 0x08,
  EOS: 0x10,
  CONTINUE: 0x20,
  XBZRLE: 0x40,
  HOOK: 0x80,
  COMPRESS_PAGE: 0x100,
  MULTIFD_FLUSH: 0x200,
} as const;

export function be64(value: number | bigint): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(value) & 0xffff_ffff_ffff_ffffn);
  return out;
}

export function be32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0);
  return out;
}

export function be16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(value);
  return out;
}

/** `be64 offset | flags`. */
export function word(offset: number | bigint, flags: number): Buffer {
  return be64(BigInt(offset) | BigInt(flags));
}

/** `u8 len, idstr` (latin1). */
export function name(idstr: string): Buffer {
  const bytes = Buffer.from(idstr, 'latin1');
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

/** save_page_header: `block` null means CONTINUE (name omitted). */
export function header(block: string | null, offset: number | bigint, flags: number): Buffer {
  return block === null ? word(offset, flags | F.CONTINUE) : Buffer.concat([word(offset, flags), name(block)]);
}

export function pageBytes(block: string | null, offset: number, data: Buffer): Buffer {
  return Buffer.concat([header(block, offset, F.PAGE), data]);
}

export function zeroBytes(block: string | null, offset: number, fill = 0): Buffer {
  return Buffer.concat([header(block, offset, F.ZERO), Buffer.from([fill])]);
}

export function xbzrleBytes(block: string | null, offset: number, delta: Buffer, encoding = 1): Buffer {
  return Buffer.concat([header(block, offset, F.XBZRLE), Buffer.from([encoding]), be16(delta.length), delta]);
}

export function compressedBytes(block: string | null, offset: number, zdata: Buffer): Buffer {
  return Buffer.concat([header(block, offset, F.COMPRESS_PAGE), be32(zdata.length), zdata]);
}

export function eosBytes(extra: number | bigint = 0): Buffer {
  return be64(BigInt(F.EOS) | BigInt(extra));
}

export interface BlockSpec {
  idstr: string;
  length: number;
  pageSize?: number;
  mrAddr?: number;
}

/** ram_save_setup's block list; `total` defaults to the sum of the lengths. */
export function memSizeBytes(blocks: readonly BlockSpec[], total?: number, flags: number = F.MEM_SIZE): Buffer {
  const sum = total ?? blocks.reduce((s, b) => s + b.length, 0);
  const parts = [word(sum, flags)];
  for (const b of blocks) {
    parts.push(name(b.idstr), be64(b.length));
    if (b.pageSize !== undefined) parts.push(be64(b.pageSize));
    if (b.mrAddr !== undefined) parts.push(be64(b.mrAddr));
  }
  return Buffer.concat(parts);
}

/** One zlib stream of a page, like do_compress_ram_page with compress-level 1. */
export function zlibPage(page: Buffer): Buffer {
  return deflateSync(page, { level: 1 });
}

/** A page whose bytes depend on `seed` (never all zero). */
export function pattern(seed: number, size = PAGE): Buffer {
  const out = Buffer.alloc(size);
  let x = (Math.imul(seed + 1, 2654435761) + 1) >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out.writeUInt32LE(x >>> 0, i);
  }
  return out;
}

/** uleb128 of at most two bytes (uleb128_encode_small). */
export function uleb(n: number): Buffer {
  return n < 0x80 ? Buffer.from([n]) : Buffer.from([(n & 0x7f) | 0x80, n >> 7]);
}

/** An XBZRLE delta from explicit runs: [zrun, bytes] pairs. */
export function delta(runs: readonly (readonly [number, Buffer])[]): Buffer {
  return Buffer.concat(runs.flatMap(([zrun, bytes]) => [uleb(zrun), uleb(bytes.length), bytes]));
}
