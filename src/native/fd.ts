/**
 * Descriptor state only the addon can see or set (native/fd.h), and gathered writes of ranges
 * (native/gather.h).
 */
import { ArgumentError } from '../stream/errors.js';
import { checkInteger, describe, nativeBinding } from './binding.js';

/**
 * Whether `fd` is a pipe or socket whose reading side has gone away, so writing to it would
 * fail with EPIPE. Lets a process that has nothing to write yet (recv waiting for its sender)
 * notice that its reader, the destination QEMU, exited. False for files and terminals.
 */
export function readerGone(fd: number): boolean {
  return nativeBinding().readerGone(checkInteger('readerGone', 'fd', fd, 0, 2 ** 31 - 1));
}

/** What a migration pipe is widened to: fs/pipe-max-size's default, so no privilege is needed. */
export const WIDE_PIPE_BYTES = 1 << 20;

/**
 * Asks for the pipe `fd` to hold `bytes` (at least one page) and returns the capacity it then
 * has, or undefined where that cannot be (not a pipe, over the system's limit or the user's
 * quota): best effort, the pipe keeps working as it was. A pipe is never made smaller.
 *
 * A reader gets at most a pipe's capacity per read, 64 KiB by default on Linux: widening the
 * pipe QEMU writes into means fewer reads and wake-ups (src/tls/input.ts).
 */
export function widenPipe(fd: number, bytes: number = WIDE_PIPE_BYTES): number | undefined {
  checkInteger('widenPipe', 'fd', fd, 0, 2 ** 31 - 1);
  checkInteger('widenPipe', 'bytes', bytes, 4096, 2 ** 30);
  const result = nativeBinding().widenPipe(fd, bytes);
  return result > 0 ? result : undefined;
}

/**
 * Caps the bytes the TCP socket `fd` holds unsent at `bytes` (TCP_NOTSENT_LOWAT): past that
 * the kernel takes no more and the socket polls writable again only below it, so a writer's
 * backlog waits in the writer's own queue, where it is counted and bounded, not in a socket
 * buffer that autotuning grows to megabytes. Returns false where the socket will not take it
 * (not TCP, not a socket, an old kernel): best effort, the socket keeps working as it was.
 *
 * For send: QEMU decides the switch-over from how fast its pipe drains, and bytes parked in a
 * 4 MiB socket buffer drain the pipe early and reach the destination late (src/tls/send-worker.ts).
 */
export function limitUnsent(fd: number, bytes: number): boolean {
  checkInteger('limitUnsent', 'fd', fd, 0, 2 ** 31 - 1);
  checkInteger('limitUnsent', 'bytes', bytes, 1, 2 ** 31 - 1);
  return nativeBinding().limitUnsent(fd, bytes) === bytes;
}

/**
 * The descriptor under a connected net.Socket or tls.TLSSocket (Node keeps it on the socket's
 * handle, or on the TCP handle a TLS handle wraps), or undefined when it has none (not
 * connected, a pipe, another platform).
 */
export function socketDescriptor(socket: object): number | undefined {
  type Handle = { fd?: unknown; _parent?: Handle };
  const handle = (socket as { _handle?: Handle })._handle;
  for (const candidate of [handle, handle?._parent]) {
    if (typeof candidate?.fd === 'number' && candidate.fd >= 0) return candidate.fd;
  }
  return undefined;
}

/**
 * Writes `count` ranges to `fd`, in order, as gathered writes (writev) on libuv's thread pool:
 * range r is `buffers[ranges[3r]].subarray(ranges[3r + 1], ranges[3r + 1] + ranges[3r + 2])`. Resolves
 * with the bytes written once all are; goes on after partial writes and waits out a full
 * non-blocking descriptor. Rejects as Node's fs errors do (`code` "EPIPE" when nobody reads a
 * pipe any more). The buffers must stay untouched until the promise settles.
 *
 * For writing many small ranges (a segment's record headers between its pages) without a JS
 * object per range: src/decompress/direct.ts.
 */
export function writeRanges(fd: number, buffers: readonly Uint8Array[], ranges: Float64Array, count: number): Promise<number> {
  checkInteger('writeRanges', 'fd', fd, 0, 2 ** 31 - 1);
  if (!Array.isArray(buffers)) throw new ArgumentError(`writeRanges: buffers must be an Array of Uint8Arrays, got ${describe(buffers)}`);
  buffers.forEach((buffer, i) => {
    if (!(buffer instanceof Uint8Array)) throw new ArgumentError(`writeRanges: buffers[${i}] must be a Uint8Array, got ${describe(buffer)}`);
  });
  if (!(ranges instanceof Float64Array)) throw new ArgumentError(`writeRanges: ranges must be a Float64Array, got ${describe(ranges)}`);
  checkInteger('writeRanges', 'count', count, 0, Math.floor(ranges.length / 3));
  for (let r = 0; r < count; r++) {
    const index = ranges[3 * r]!;
    const offset = ranges[3 * r + 1]!;
    const length = ranges[3 * r + 2]!;
    const buffer = Number.isInteger(index) ? buffers[index] : undefined;
    if (buffer === undefined || !Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > buffer.length) {
      throw new ArgumentError(`writeRanges: range ${r} (buffer ${index}, offset ${offset}, length ${length}) lies outside its buffer`);
    }
  }
  return nativeBinding().writeRanges(fd, buffers, ranges, count);
}
