/**
 * Reads a paused VM's guest-physical memory through `pmemsave` into a FIFO, so the bytes pass
 * through this process once (to be hashed) and are never written to a disk.
 *
 * QEMU runs pmemsave on its main thread: it opens the file, writes, closes, and only then
 * answers. A FIFO nobody reads would hang QEMU inside open(), so the read end is opened (non-
 * blocking) before the command is sent, and a write end of our own keeps the FIFO from
 * reading as ended before QEMU opens it; that end is closed once QEMU has answered, so the
 * read side ends right after QEMU's last byte. If this process dies, QEMU's writes fail with
 * EPIPE and pmemsave returns an error: QEMU itself carries on.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { widenPipe } from '../native/fd.js';
import type { QmpExecutor } from '../qemu/qmp.js';
import type { MemoryRange } from '../qemu/memory.js';
import { pmemsave } from '../qemu/migration.js';
import { MigstreamError } from '../stream/errors.js';

export class GuestMemoryReadError extends MigstreamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_GUEST_MEMORY_READ', message, options);
  }
}

/** Hands every byte of the ranges, in order, to `onBytes` (chunks of any size, not kept). */
export async function readGuestMemory(vm: QmpExecutor, ranges: readonly MemoryRange[], onBytes: (chunk: Buffer) => void): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'migstream-pmem-'));
  const fifo = join(dir, 'ram');
  try {
    const made = spawnSync('mkfifo', ['-m', '600', fifo], { encoding: 'utf8' });
    if (made.status !== 0) throw new GuestMemoryReadError(`mkfifo ${fifo} failed: ${made.stderr || made.error?.message || `status ${made.status}`}`);
    let total = 0;
    for (const range of ranges) total += await readRange(vm, range, fifo, onBytes);
    return total;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function readRange(vm: QmpExecutor, range: MemoryRange, fifo: string, onBytes: (chunk: Buffer) => void): Promise<number> {
  const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
  let holdFd: number | undefined = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
  widenPipe(readFd);
  const reader = new Socket({ fd: readFd, readable: true, writable: false });
  let received = 0;
  let consumerError: unknown;
  const ended = new Promise<void>((resolve, reject) => {
    reader.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (consumerError !== undefined) return;
      try {
        onBytes(chunk);
      } catch (error) {
        consumerError = error;
      }
    });
    reader.once('end', resolve);
    reader.once('error', reject);
  });
  const releaseHold = (): void => {
    if (holdFd !== undefined) closeSync(holdFd);
    holdFd = undefined;
  };
  const where = `${range.length} bytes of ${range.idstr} at guest-physical 0x${range.guestPhysAddr.toString(16)}`;
  try {
    await pmemsave(vm, range.guestPhysAddr, range.length, fifo);
  } catch (error) {
    releaseHold();
    reader.destroy();
    throw new GuestMemoryReadError(`pmemsave of ${where} failed: ${(error as Error).message}`, { cause: error });
  }
  releaseHold();
  await ended;
  reader.destroy();
  if (consumerError !== undefined) throw consumerError;
  if (received !== range.length) throw new GuestMemoryReadError(`pmemsave of ${where} gave ${received} bytes`);
  return received;
}
