/**
 * The QEMU releases migstream is tested against, and where their programs are: the system's
 * 7.2 (Debian bookworm) on PATH, and 10.0 from bookworm-backports unpacked beside it by
 * scripts/setup-qemu10.sh (MIGSTREAM_QEMU10_DIR, default .cache/qemu-10.0 in the checkout).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const QEMU_VERSIONS = ['7.2', '10.0'] as const;
export type QemuVersion = (typeof QEMU_VERSIONS)[number];

export type QemuTool = 'qemu-system-x86_64' | 'qemu-img' | 'qemu-io' | 'qemu-nbd' | 'qemu-storage-daemon';

const CHECKOUT = fileURLToPath(new URL('../../', import.meta.url));

/** Where setup-qemu10.sh unpacked QEMU 10.0. */
export function qemu10Dir(): string {
  return process.env.MIGSTREAM_QEMU10_DIR ?? join(CHECKOUT, '.cache', 'qemu-10.0');
}

/** The command that runs `tool` of QEMU `version`. 7.2's system emulator honours $MIGSTREAM_QEMU. */
export function qemuTool(version: QemuVersion, tool: QemuTool): string {
  if (version === '10.0') return join(qemu10Dir(), 'bin', tool);
  if (tool === 'qemu-system-x86_64') return process.env.MIGSTREAM_QEMU ?? tool;
  return tool;
}
