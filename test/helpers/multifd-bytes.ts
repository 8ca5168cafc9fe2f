/**
 * Builds multifd channel bytes by hand from QEMU's structs (migration/multifd.h: MultiFDInit_t,
 * MultiFDPacket_t), independently of src/ram/multifd.ts: big-endian fields at their struct
 * offsets, a fixed-size packet of 320 bytes + 8 per page slot, then the pages.
 */
export interface PacketSpec {
  flags?: number;
  /** pages_alloc as QEMU fills it (0 in QEMU 10.0's SYNC packets). */
  pagesAlloc?: number;
  ramblock?: string;
  normal?: { offset: number; data: Buffer }[];
  zeroOffsets?: number[];
  /** next_packet_size as sent (QEMU 7.2 leaves a stale value on SYNC packets). */
  nextPacketSize?: number;
  packetNum?: bigint;
  /** Compressed payload to append instead of the normal pages' data. */
  compressed?: Buffer;
  magic?: number;
}

export function multifdInit(id: number, uuid = Buffer.alloc(16, 0xab)): Buffer {
  const out = Buffer.alloc(64);
  out.writeUInt32BE(0x11223344, 0);
  out.writeUInt32BE(1, 4);
  uuid.copy(out, 8);
  out.writeUInt8(id, 24);
  return out;
}

export function multifdPacket(spec: PacketSpec, slots = 128): Buffer {
  const normal = spec.normal ?? [];
  const zero = spec.zeroOffsets ?? [];
  const header = Buffer.alloc(320 + 8 * slots);
  header.writeUInt32BE(spec.magic ?? 0x11223344, 0);
  header.writeUInt32BE(1, 4);
  header.writeUInt32BE(spec.flags ?? 0, 8);
  header.writeUInt32BE(spec.pagesAlloc ?? slots, 12);
  header.writeUInt32BE(normal.length, 16);
  const pageBytes = normal.reduce((n, page) => n + page.data.length, 0);
  header.writeUInt32BE(spec.nextPacketSize ?? spec.compressed?.length ?? pageBytes, 20);
  header.writeBigUInt64BE(spec.packetNum ?? 0n, 24);
  header.writeUInt32BE(zero.length, 32);
  header.write(spec.ramblock ?? 'pc.ram', 64, 'latin1');
  [...normal.map((p) => p.offset), ...zero].forEach((offset, i) => header.writeBigUInt64BE(BigInt(offset), 320 + 8 * i));
  return Buffer.concat([header, spec.compressed ?? Buffer.concat(normal.map((p) => p.data))]);
}
