/**
 * Puts frames from several channels back in sequence order, and holds back the newest
 * `holdBytes` of the in-order stream until the end frame has been verified: QEMU must not see
 * the stream's last bytes (its EOF section and vmdesc) of a transfer that then fails its
 * checksum.
 */
import { ProtocolError } from './errors.js';

export class Reorderer {
  private readonly waiting = new Map<number, Buffer>();
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** Next sequence number to release. */
  next = 0;
  /** Bytes released in order so far (written or held). */
  bytes = 0;

  constructor(
    private readonly holdBytes: number,
    private readonly write: (chunks: Buffer[]) => void,
    private readonly onRelease: (frame: Buffer) => void = () => {},
    /** A frame `write` is done with: its buffer may be reused. */
    private readonly onWritten: (frame: Buffer) => void = () => {},
  ) {}

  /** Frames received but waiting for an earlier one. */
  get pendingFrames(): number {
    return this.waiting.size;
  }

  /** Adds frame `seq`; returns the sequence numbers released by it. */
  add(seq: number, data: Buffer, channel: number): number[] {
    if (seq < this.next || this.waiting.has(seq)) throw new ProtocolError(`frame ${seq} received twice`, channel);
    this.waiting.set(seq, data);
    const released: number[] = [];
    const out: Buffer[] = [];
    for (let frame = this.waiting.get(this.next); frame !== undefined; frame = this.waiting.get(this.next)) {
      this.waiting.delete(this.next);
      released.push(this.next);
      this.next++;
      this.bytes += frame.length;
      this.onRelease(frame);
      this.held.push(frame);
      this.heldBytes += frame.length;
      while (this.held.length > 0 && this.heldBytes - this.held[0]!.length >= this.holdBytes) {
        const head = this.held.shift()!;
        this.heldBytes -= head.length;
        out.push(head);
      }
    }
    if (out.length > 0) {
      this.write(out);
      out.forEach(this.onWritten);
    }
    return released;
  }

  /** Writes the held tail: call only once the whole stream is verified. */
  flush(): void {
    const out = this.held;
    this.held = [];
    this.heldBytes = 0;
    if (out.length > 0) this.write(out);
  }
}
