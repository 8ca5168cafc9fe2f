/**
 * The sender's input: reads the source stream into frame-sized buffers with one read always
 * in flight, so QEMU's pipe keeps draining while the main thread digests, decodes and hands
 * out the previous frame. (Reading only when the previous frame was done left QEMU blocked on a
 * full 64 KiB pipe for each of those pauses: a live migration ran at 160–190 MB/s.)
 *
 * Stdin as a pipe or socket (QEMU's exec: pipe) is read as a libuv stream, straight into the
 * frame being filled. Other descriptors go through fs.read on libuv's
 * thread pool; a pool read blocked on an idle pipe would hold up the process's exit after a
 * failure (libuv joins its pool threads at exit). Memory: at most `ahead` finished frames plus the one
 * being filled, and up to `keep` frame buffers given back for reuse (recycle).
 */
import { fstatSync, read } from 'node:fs';
import { Socket, type OnReadOpts, type SocketConstructorOpts } from 'node:net';
import { widenPipe } from '../native/fd.js';
import { BufferPool } from '../bytes/buffer-pool.js';

/** How long a frame that is ready to go waits for a pending read before it is copied out. */
const QUIET_SOURCE_MS = 2;

export interface InputOptions {
  frameBytes: number;
  /** A frame is handed out once it holds this many bytes and someone waits for it. */
  minBytes: number;
  /** Finished frames kept before reading pauses. */
  ahead?: number;
  /** Frame buffers kept for reuse (recycle). */
  keep?: number;
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
  /** Frame buffers, given back (recycle) once a frame's bytes have left. */
  private readonly pool: BufferPool;

  constructor(
    private readonly fd: number,
    private readonly options: InputOptions,
  ) {
    this.pool = new BufferPool(options.keep ?? 8);
    this.current = this.pool.take(options.frameBytes);
    // Only stdin becomes a stream: a stream takes its descriptor over and closes it, which for
    // stdin nobody else does (a FIFO opened by path keeps fs.read).
    const stat = fstatSync(fd);
    // A read gets at most the pipe's capacity: 64 KiB by default, ten thousand reads and
    // wake-ups per 600 MB. QEMU's pipe widened to 1 MiB took a third off send's CPU.
    if (stat.isFIFO()) widenPipe(fd);
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
        // The buffer can be handed out whole only while no read may write into it; otherwise
        // its bytes so far go out as a copy, and reads go on filling the buffer behind them.
        // A pending fs.read gets a short wait first (it may fill the frame); a stream's reads
        // are never pending across turns, but libuv keeps its target (onread) until the next
        // read, so a buffer handed out could still be written into.
        if (!this.readsInto) {
          const frame = this.cut();
          this.pump();
          return frame;
        }
        if (waitedForRead || this.stream !== undefined) {
          // A buffer of its own (never Buffer's shared pool): frames are transferred to workers.
          const frame = this.pool.take(have);
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

  /** Takes back the buffer of a frame next() handed out, once nothing uses its bytes any more. */
  recycle(buffer: ArrayBuffer): void {
    this.pool.give(buffer);
  }

  close(): void {
    this.closed = true;
    this.stream?.destroy();
  }

  /** Reads land straight in the frame being filled (onread): no chunk is allocated or copied. */
  private openStream(fd: number): Socket {
    const onread: OnReadOpts = {
      buffer: () => this.current.subarray(this.filled),
      // Called before libuv asks buffer() for the next target, so a cut here is safe.
      callback: (n) => {
        this.filled += n;
        if (this.filled === this.current.length) this.ready.push(this.cut());
        if (this.ready.length >= this.limit) stream.pause();
        if (this.waiting) this.notify();
        return true;
      },
    };
    const stream = new Socket({ fd, readable: true, writable: false, onread } as SocketConstructorOpts);
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

  /** Whether a read may still write into `current` (so it cannot be handed out whole). */
  private get readsInto(): boolean {
    return this.stream !== undefined ? !this.ended && this.error === undefined : this.reading;
  }

  private get limit(): number {
    return this.options.ahead ?? 2;
  }

  private cut(): Buffer {
    const frame = this.current.subarray(this.base, this.filled);
    this.current = this.pool.take(this.options.frameBytes);
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
