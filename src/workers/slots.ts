/**
 * Reusable buffers for handing bytes to workers. The main thread copies a segment (or a stored
 * frame) into a slot and transfers the slot's ArrayBuffer with the request; the worker transfers
 * it back with its reply and the slot is reused. Reuse spares the page faults and GC of a fresh
 * multi-MiB buffer per frame; the slots in use (at most the jobs in flight) bound the memory.
 *
 * Why not a SharedArrayBuffer: V8 copies into shared memory with relaxed atomics, byte by byte
 * when source and target are not equally aligned, which made the copy the slowest step.
 */
export class Slot {
  private buffer: ArrayBuffer;

  constructor(capacity: number) {
    this.buffer = new ArrayBuffer(capacity);
  }

  /** A view of `length` bytes, growing the slot when it is too small. */
  view(length: number): Buffer {
    if (length > this.buffer.byteLength) this.buffer = new ArrayBuffer(Math.max(Math.ceil(length * 1.25), this.buffer.byteLength * 2));
    return Buffer.from(this.buffer, 0, length);
  }

  /** The buffer to transfer; the slot is empty until `restore`. */
  lend(): ArrayBuffer {
    const buffer = this.buffer;
    this.buffer = new ArrayBuffer(0);
    return buffer;
  }

  restore(buffer: ArrayBuffer | undefined): void {
    if (buffer !== undefined && buffer.byteLength > this.buffer.byteLength) this.buffer = buffer;
  }
}

export class SlotPool {
  private readonly free: Slot[] = [];

  constructor(private readonly capacity: number) {}

  acquire(): Slot {
    return this.free.pop() ?? new Slot(this.capacity);
  }

  release(slot: Slot): void {
    this.free.push(slot);
  }
}
