/**
 * Builds disk-stream bytes by hand, from the tables of docs/format.md ("Disk stream"), without
 * src/disk, src/block or ByteWriter: a bug in the production encoder cannot hide in the
 * expected bytes. BLOCK payloads come from test/helpers/block-bytes.ts (written from
 * migration/block.c).
 */
import { dataBytes, zeroBytes } from './block-bytes.js';

export const SUB = 4096;

function be16(value: number): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(value);
  return out;
}

function be32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value);
  return out;
}

function be64(value: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(value));
  return out;
}

export interface HeaderFields {
  device: string;
  size: number;
  chunkSize: number;
  subBlockSize?: number;
  version?: number;
  flags?: number;
  magic?: string;
}

/** Header: offset 0 magic "MIGSDISK", 8 be16 version, 10 be16 flags, 12 be32 chunk, 16 be32 sub-block, 20 be64 size, 28 u8 n, 29 name. */
export function headerBytes(fields: HeaderFields): Buffer {
  const name = Buffer.from(fields.device, 'latin1');
  return Buffer.concat([
    Buffer.from(fields.magic ?? 'MIGSDISK', 'latin1'),
    be16(fields.version ?? 1),
    be16(fields.flags ?? 0),
    be32(fields.chunkSize),
    be32(fields.subBlockSize ?? SUB),
    be64(fields.size),
    Buffer.from([name.length]),
    name,
  ]);
}

/** Frame: u8 kind, be32 payload length, payload. */
export function frameBytes(kind: number, payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([kind]), be32(payload.length), payload]);
}

/** Kind 0x01: a QEMU block record (DEVICE_BLOCK, word + name + chunk). */
export function blockFrame(device: string, offset: number, data: Buffer): Buffer {
  return frameBytes(0x01, dataBytes(device, offset / 512, data));
}

/** Kind 0x01: a QEMU block record (DEVICE_BLOCK|ZERO_BLOCK, word + name). */
export function zeroFrame(device: string, offset: number): Buffer {
  return frameBytes(0x01, zeroBytes(device, offset / 512));
}

/**
 * Kind 0x02: be64 chunk offset, presence bitmap of ceil(chunk / 4096 / 8) bytes (sub-block i is
 * bit i % 8 of byte i / 8, least significant first), the present sub-blocks in order.
 */
export function deltaFrame(chunkSize: number, offset: number, subBlocks: ReadonlyArray<readonly [number, Buffer]>): Buffer {
  const bitmap = Buffer.alloc(Math.ceil(chunkSize / SUB / 8));
  for (const [index] of subBlocks) bitmap[Math.floor(index / 8)]! |= 1 << (index % 8);
  return frameBytes(0x02, Buffer.concat([be64(offset), bitmap, ...subBlocks.map(([, data]) => data)]));
}

/** Kind 0x03: be64 count of the records before it. */
export function endFrame(records: number): Buffer {
  return frameBytes(0x03, be64(records));
}
