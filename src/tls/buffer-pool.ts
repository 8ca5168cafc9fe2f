/**
 * Frame buffers that go back and forth between a channel's worker and the main thread, instead
 * of a fresh buffer for every frame: a fresh 4 MiB buffer page-faults its 1024 pages in, and
 * the garbage collector then has to find it (together about a tenth of recv's CPU).
 *
 * take() lends a buffer; whoever ends up with it (after transfers between threads) gives its
 * ArrayBuffer back to the pool of the thread that will take again. A pool keeps at most `keep`
 * buffers; more go to the garbage collector.
 */
// TODO(issue 15, item 1): one buffer pool for the whole tool (compress, stream, tls keep four);
// this one's cross-thread give-back is what the shared one must keep.
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  /** ArrayBuffers of take()'s own: whole, never a slice of Buffer's shared pool. */
  private readonly mine = new WeakSet<ArrayBuffer>();

  constructor(private readonly keep: number) {}

  /** A buffer of `bytes`, over a given-back ArrayBuffer when one is large enough. */
  take(bytes: number): Buffer {
    const index = this.free.findIndex((buffer) => buffer.byteLength >= bytes);
    const buffer = index >= 0 ? this.free.splice(index, 1)[0]! : (Buffer.allocUnsafeSlow(bytes).buffer as ArrayBuffer);
    this.mine.add(buffer);
    return Buffer.from(buffer, 0, bytes);
  }

  /** Whether `view` lies in a buffer take() made, so its ArrayBuffer may be transferred whole. */
  owns(view: Uint8Array): boolean {
    return this.mine.has(view.buffer as ArrayBuffer);
  }

  /** Takes an ArrayBuffer back (a detached one, of length 0, is dropped). */
  give(buffer: ArrayBuffer): void {
    if (buffer.byteLength > 0 && this.free.length < this.keep) this.free.push(buffer);
  }
}
