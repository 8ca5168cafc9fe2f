/**
 * Buffers reused instead of allocated per frame: a fresh multi-MiB buffer page-faults every
 * 4 KiB of it in, and the garbage collector then has to find it. The compressor's and the
 * piped decompressor's slots, the workers' codec scratch, direct mode's decompression buffers
 * and the compressor's frame outputs all take from one of these.
 *
 * take() lends a view over a whole ArrayBuffer of the pool's own; whoever ends up with it (after
 * transfers between threads, or once a writer has written it) gives the ArrayBuffer back to the
 * pool of the thread that takes again. A pool keeps at most `keep` free buffers; more, and
 * buffers never given back, go to the garbage collector.
 */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  /** ArrayBuffers of take()'s own: whole, never a slice of Buffer's shared pool. */
  private readonly mine = new WeakSet<ArrayBuffer>();

  /**
   * `minBytes`: the least a new buffer gets, so that one buffer serves frames of every size. New
   * buffers are not zero-filled: a page is touched when it is first written, not before.
   */
  constructor(
    private readonly keep: number,
    private readonly minBytes = 0,
  ) {}

  /**
   * A buffer of `bytes`, over the smallest given-back ArrayBuffer that is large enough (so a
   * small request does not take the buffer a large one needs next), else a new one.
   */
  take(bytes: number): Buffer {
    let index = -1;
    for (let i = 0; i < this.free.length; i++) {
      const size = this.free[i]!.byteLength;
      if (size >= bytes && (index < 0 || size < this.free[index]!.byteLength)) index = i;
    }
    const buffer = index >= 0 ? this.free.splice(index, 1)[0]! : (Buffer.allocUnsafeSlow(Math.max(bytes, this.minBytes)).buffer as ArrayBuffer);
    this.mine.add(buffer);
    return Buffer.from(buffer, 0, bytes);
  }

  /** Whether `view` lies in a buffer take() made, so its ArrayBuffer may be transferred whole. */
  owns(view: Uint8Array): boolean {
    return this.mine.has(view.buffer as ArrayBuffer);
  }

  /** Takes an ArrayBuffer back (a detached one, of length 0, is dropped; a full pool drops its smallest). */
  give(buffer: ArrayBuffer | undefined): void {
    if (buffer === undefined || buffer.byteLength === 0 || this.keep === 0) return;
    if (this.free.length < this.keep) {
      this.free.push(buffer);
      return;
    }
    let smallest = 0;
    for (let i = 1; i < this.free.length; i++) if (this.free[i]!.byteLength < this.free[smallest]!.byteLength) smallest = i;
    if (this.free[smallest]!.byteLength < buffer.byteLength) this.free[smallest] = buffer;
  }
}
