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

/**
 * One timer for the deadline a machine names (`at`, on performance.now()'s clock): re-armed
 * when the deadline changes, cleared when there is none.
 */
export class Alarm {
  private armed: { at: number; timer: NodeJS.Timeout } | undefined;

  constructor(private readonly fire: (now: number) => void) {}

  set(at: number | undefined): void {
    if (at === this.armed?.at) return;
    this.clear();
    if (at === undefined) return;
    const timer = setTimeout(
      () => {
        this.armed = undefined;
        // The timer fired for `at`: the clock may read a hair earlier.
        this.fire(Math.max(performance.now(), at));
      },
      Math.max(0, at - performance.now()),
    );
    timer.unref();
    this.armed = { at, timer };
  }

  clear(): void {
    clearTimeout(this.armed?.timer);
    this.armed = undefined;
  }
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
