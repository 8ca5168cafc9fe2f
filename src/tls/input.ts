/**
 * The sender's input: reads the source stream into frame-sized buffers with one read always
 * in flight, so QEMU's pipe keeps draining while the main thread digests, decodes and hands
 * out the previous frame. (Reading only when the previous frame was done left QEMU blocked on a
 * full 64 KiB pipe for each of those pauses: a live migration ran at 160–190 MB/s.)
 *
 * Reads go through fs.read on libuv's thread pool, so the main thread's event loop stays free
 * for the workers' credits. A descriptor that Node made non-blocking answers EAGAIN, which is
 * waited out. Memory: at most `ahead` finished frames plus the one being filled.
 */
import { read } from 'node:fs';

/** How long a frame that is ready to go waits for a pending read before it is copied out. */
const QUIET_SOURCE_MS = 2;

export interface InputOptions {
  frameBytes: number;
  /** A frame is handed out once it holds this many bytes and someone waits for it. */
  minBytes: number;
  /** Finished frames kept before reading pauses. */
  ahead?: number;
}

export class PrefetchingInput {
  private current: Buffer;
  private filled = 0;
  /** Start of the bytes not yet handed out (non-zero after a quiet source's copy). */
  private base = 0;
  private readonly ready: Buffer[] = [];
  private reading = false;
  private ended = false;
  private closed = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;
  private waiting = false;

  constructor(
    private readonly fd: number,
    private readonly options: InputOptions,
  ) {
    this.current = Buffer.allocUnsafeSlow(options.frameBytes);
    this.pump();
  }

  /** The next frame of the stream, or null once it ended. */
  async next(): Promise<Buffer | null> {
    let waitedForRead = false;
    for (;;) {
      if (this.error) throw this.error;
      const ready = this.ready.shift();
      if (ready !== undefined) {
        this.pump();
        return ready;
      }
      const have = this.filled - this.base;
      if (have >= this.options.minBytes || (this.ended && have > 0)) {
        // The buffer can be handed out whole only while no read writes into it; a read that
        // is still pending after a short wait means a quiet source: its bytes so far go out
        // as a copy, and the pending read goes on filling the buffer behind them.
        if (!this.reading) {
          const frame = this.cut();
          this.pump();
          return frame;
        }
        if (waitedForRead) {
          const frame = Buffer.from(this.current.subarray(this.base, this.filled));
          this.base = this.filled;
          return frame;
        }
      }
      if (this.ended) return null;
      const timer = have >= this.options.minBytes ? setTimeout(() => this.notify(), QUIET_SOURCE_MS) : undefined;
      this.waiting = true;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.waiting = false;
      clearTimeout(timer);
      waitedForRead = timer !== undefined;
    }
  }

  close(): void {
    this.closed = true;
  }

  private cut(): Buffer {
    const frame = this.current.subarray(this.base, this.filled);
    this.current = Buffer.allocUnsafeSlow(this.options.frameBytes);
    this.filled = 0;
    this.base = 0;
    return frame;
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private pump(): void {
    if (this.reading || this.ended || this.closed || this.error || this.ready.length >= (this.options.ahead ?? 2)) return;
    this.reading = true;
    read(this.fd, this.current, this.filled, this.current.length - this.filled, null, (error, n) => {
      this.reading = false;
      if (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          setTimeout(() => this.pump(), 1);
          return;
        }
        this.error = error;
      } else if (n === 0) {
        this.ended = true;
      } else {
        this.filled += n;
        // A full frame is finished; a waiting consumer takes what there is (next()).
        if (this.filled === this.current.length) this.ready.push(this.cut());
      }
      if (this.waiting) this.notify();
      this.pump();
    });
  }
}
