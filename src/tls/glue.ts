/**
 * What the glue around the transport's state machines shares: carrying out a `close` action,
 * the watchdog's period, and waiting for the channels' sockets to close on the way out.
 */
import type { Socket } from 'node:net';

/** How often the machines get a `tick`: a sixth of the timeout, within 50 ms..1 s. */
export const tickMs = (timeoutMs: number): number => Math.max(50, Math.min(1000, timeoutMs / 6));

/** A `close` action: end the connection after `last`, and destroy it at `destroyAt` (Date.now()). */
export function closeSocket(socket: Socket | undefined, last: Buffer, destroyAt: number): void {
  socket?.end(last);
  setTimeout(() => socket?.destroy(), Math.max(0, destroyAt - Date.now())).unref();
}

/** A promise resolved when a channel reports its socket closed, or its worker is gone. */
export function closedSignal(): { closed: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const closed = new Promise<void>((done) => (resolve = done));
  return { closed, resolve };
}

/** Until every channel's socket has closed (ABORT or DONE flushed), or `deadlineMs` passed. */
export async function untilClosed(closed: Promise<void>[], deadlineMs: number): Promise<void> {
  let deadline: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(closed), new Promise((resolve) => (deadline = setTimeout(resolve, deadlineMs)))]);
  clearTimeout(deadline);
}
