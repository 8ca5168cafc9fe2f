/**
 * Non-blocking reads of the source stream for the sender's main thread, which must keep its
 * event loop free for the workers' credits. fs.read runs on libuv's pool; a descriptor that
 * Node made non-blocking answers EAGAIN, which is waited out.
 */
import { read } from 'node:fs';

function readOnce(fd: number, buffer: Buffer, offset: number): Promise<number> {
  return new Promise((resolve, reject) => {
    read(fd, buffer, offset, buffer.length - offset, null, (error, n) => (error ? reject(error) : resolve(n)));
  });
}

/**
 * Fills `buffer` from `fd` until it holds at least `min` bytes (or is full) or the input ends.
 * Returns the bytes filled; fewer than `min` means end of input.
 */
export async function fill(fd: number, buffer: Buffer, min: number): Promise<number> {
  let filled = 0;
  while (filled < min) {
    let n: number;
    try {
      n = await readOnce(fd, buffer, filled);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') throw error;
      await new Promise((resolve) => setTimeout(resolve, 1));
      continue;
    }
    if (n === 0) break;
    filled += n;
  }
  return filled;
}

export interface Input {
  fill(buffer: Buffer, min: number): Promise<number>;
  close(): void;
}

/**
 * The sender's input. A libuv stream reader for pipes (no thread-pool hop per 64 KiB) was
 * tried and measured no faster on a 115 MB QEMU stream, so pipes and files share fs.read.
 */
export function openInput(fd: number): Input {
  return { fill: (buffer, min) => fill(fd, buffer, min), close: () => {} };
}
