/**
 * What a forwarded connection is, from its first bytes in either direction, as QEMU's
 * `migration_ioc_process_incoming()` tells its main stream from multifd channels (it peeks at
 * the magic). Pure: the tunnel's edge feeds the first bytes each way and asks again until it
 * gets an answer.
 *
 *   client → server  "QEVM" (QEMU_VM_FILE_MAGIC)                 QEMU's main migration stream
 *                    u32 0x11223344 (MULTIFD_MAGIC)               a multifd channel
 *                    u32 length, u32 0x20008086 (REMOTE_PROGRAM)  libvirt's RPC (p2p control)
 *                    u32 flags, "IHAVEOPT"                        an NBD client (QEMU's drive-mirror)
 *   server → client  "NBDMAGIC"                                   an NBD server (nbd/server.c greets first)
 */
export type ConnectionKind = 'qemu-main' | 'multifd' | 'libvirt' | 'nbd' | 'other';

export const CONNECTION_KIND_NAMES: Record<ConnectionKind, string> = {
  'qemu-main': 'QEMU migration stream',
  multifd: 'QEMU multifd channel',
  libvirt: 'libvirt RPC',
  nbd: 'NBD',
  other: 'other',
};

const QEMU_VM_FILE_MAGIC = 0x5145564d;
const MULTIFD_MAGIC = 0x11223344;
const LIBVIRT_REMOTE_PROGRAM = 0x20008086;
const NBD_MAGIC = Buffer.from('NBDMAGIC', 'latin1');
const NBD_OPTS_MAGIC = Buffer.from('IHAVEOPT', 'latin1');

/** The kind, or null while neither direction has shown enough bytes to tell. */
export function classifyConnection(fromClient: Buffer, fromServer: Buffer): ConnectionKind | null {
  if (fromServer.length >= 8 && fromServer.subarray(0, 8).equals(NBD_MAGIC)) return 'nbd';
  if (fromClient.length >= 4) {
    const magic = fromClient.readUInt32BE(0);
    if (magic === QEMU_VM_FILE_MAGIC) return 'qemu-main';
    if (magic === MULTIFD_MAGIC) return 'multifd';
  }
  if (fromClient.length >= 12 && fromClient.subarray(4, 12).equals(NBD_OPTS_MAGIC)) return 'nbd';
  if (fromClient.length >= 8 && fromClient.readUInt32BE(4) === LIBVIRT_REMOTE_PROGRAM) return 'libvirt';
  // Twelve bytes from the client or eight from the server and no match: something else.
  if (fromClient.length >= 12 || fromServer.length >= 8) return 'other';
  return null;
}
