/**
 * The sender's input: reads the source stream into frame-sized buffers with one read always
 * in flight, so QEMU's pipe keeps draining while the main thread digests, decodes and hands
 * out the previous frame. (Reading only when the previous frame was done left QEMU blocked on a
 * full 64 KiB pipe for each of those pauses: a live migration ran at 160–190 MB/s.)
 *
 * Stdin as a pipe or socket (QEMU's exec: pipe) is read as a libuv stream: its bytes are
 * copied from Node's read chunks into the frame. Other descriptors go through fs.read on libuv's
 * thread pool; a pool read blocked on an idle pipe would hold up the process's exit after a
 * failure (libuv joins its pool threads at exit). Memory: at most `ahead` finished frames plus the one
 * being filled.
 */
import { fstatSync, read } from 'node:fs';
import { Socket } from 'node:net';

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
  /** The source as a stream (pipes, sockets); undefined for a regular file. */
  private readonly stream: Socket | undefined;

  constructor(
    private readonly fd: number,
    private readonly options: InputOptions,
  ) {
    this.current = Buffer.allocUnsafeSlow(options.frameBytes);
    // Only stdin becomes a stream: a stream takes its descriptor over and closes it, which for
    // stdin nobody else does (a FIFO opened by path keeps fs.read).
    const stat = fstatSync(fd);
    this.stream = fd === 0 && (stat.isFIFO() || stat.isSocket()) ? this.openStream(fd) : undefined;
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
          // A buffer of its own (never Buffer's shared pool): frames are transferred to workers.
          const frame = Buffer.allocUnsafeSlow(have);
          this.current.copy(frame, 0, this.base, this.filled);
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
    this.stream?.destroy();
  }

  private openStream(fd: number): Socket {
    const stream = new Socket({ fd, readable: true, writable: false });
    stream.on('data', (chunk: Buffer) => {
      for (let at = 0; at < chunk.length; ) {
        const n = chunk.copy(this.current, this.filled, at);
        this.filled += n;
        at += n;
        if (this.filled === this.current.length) this.ready.push(this.cut());
      }
      if (this.ready.length >= this.limit) stream.pause();
      if (this.waiting) this.notify();
    });
    stream.on('end', () => {
      this.ended = true;
      this.notify();
    });
    stream.on('error', (error) => {
      this.error = error;
      this.notify();
    });
    return stream;
  }

  private get limit(): number {
    return this.options.ahead ?? 2;
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
    if (this.ended || this.closed || this.error || this.ready.length >= this.limit) return;
    if (this.stream !== undefined) {
      if (this.stream.isPaused()) this.stream.resume();
      return;
    }
    if (this.reading) return;
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
