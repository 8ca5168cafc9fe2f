/**
 * Where the compressor puts the payloads of the open segment (RAM pages and disk chunks) as the
 * planner cuts them out, and where dedup finds earlier pages:
 *
 *   RingPayloadStore    with the native addon: one ring in shared memory (src/native/ring.ts).
 *                       Each payload is copied once, into the ring; workers compress PAYLOAD
 *                       frames from views of it; its stored pages are the dedup window.
 *   BufferPayloadStore  without it: a buffer per segment, handed to the worker, and the
 *                       TypeScript dedup index (dedup-index.ts) with its own copy of the window.
 *
 * Ring memory (ringBytes): the larger of what the dedup window needs and what the segments in
 * flight need, not their sum: the segments being compressed are the newest stored pages, inside
 * the window. Each byte of the ring is page-faulted in once, as it is first written (a ring of
 * 100 MiB was a third of compress's page faults), so it is no larger than that.
 *   - in flight: (maxInFlight + 3) × segmentBytes. A segment's payload is at most segmentBytes
 *     and never wraps (a segment that would start less than segmentBytes before the end of the
 *     ring starts at its beginning), and the frame emitter has at most maxInFlight + 1 segments
 *     out at any write, so nothing a worker still reads is overwritten; `open` checks it all the
 *     same.
 *   - the window: windowPages × pageSize, plus the segment being filled and the gap a wrap may
 *     skip. The last windowPages stored pages then lie in the ring, unless disk chunks (BYTES
 *     payloads) lie between them; native/dedup.h finds only pages still intact.
 */
import { NativePayloadRing } from '../native/ring.js';
import { nativeBinding } from '../native/binding.js';
import { WorkerError } from '../workers/errors.js';
import { DedupIndex, type PageHasher } from './dedup-index.js';

/** One segment's payload, on its way to a worker. */
export interface SegmentPayload {
  readonly bytes: Uint8Array;
  /** Buffers to transfer with it (none for a view of the shared ring). */
  readonly transfer: ArrayBuffer[];
  /** The worker is done with the bytes: the ring may reuse them. */
  release(): void;
}

export interface PayloadStore {
  /** Bytes in the open segment's payload. */
  readonly length: number;
  /** Checksum (format.ts WRITTEN_CHECKSUM) of the page the last page() found. */
  readonly checksum: number;
  /**
   * A RAM page: the distance back to an equal page among the last stored ones (with dedup; then
   * `checksum` is its checksum), or 0 once it is stored in the payload.
   */
  page(data: Uint8Array): number;
  /** Other payload bytes (a disk chunk). */
  span(data: Uint8Array): void;
  /** Closes the open segment's payload (undefined when it is empty); the next one starts. */
  take(): SegmentPayload | undefined;
  /** The compression is over (every payload released or abandoned): the memory may be reused. */
  close(): void;
}

export interface PayloadStoreOptions {
  pageSize: number;
  /** Largest payload of a segment (the planner's segmentPayloadBytes). */
  segmentBytes: number;
  /** Segments out at once (the frame emitter's limit). */
  maxInFlight: number;
  /** Dedup window in stored pages; 0: no dedup. */
  windowPages: number;
  /** Forces the TypeScript path with this page hasher. */
  pageHasher?: PageHasher | undefined;
}

export function createPayloadStore(options: PayloadStoreOptions): PayloadStore {
  if (options.pageHasher === undefined) {
    try {
      nativeBinding();
      return new RingPayloadStore(options);
    } catch {
      // No addon: the buffer store below.
    }
  }
  return new BufferPayloadStore(options);
}

/**
 * The ring of the last compression, kept a few seconds for the next one: a fresh ring costs a
 * page fault per 4 KiB as it fills, a tenth of the time of compressing a 100 MB stream (madvise
 * for huge pages was tried: with the kernel's default "defrag=madvise" a fault may compact
 * memory for 100+ ms). Nothing is kept past that.
 */
let spare: NativePayloadRing | undefined;
let spareTimer: NodeJS.Timeout | undefined;
const SPARE_MS = 10_000;

function ringFor(ringBytes: number, pageSize: number, windowPages: number): NativePayloadRing {
  const ring = spare;
  if (ring !== undefined && ring.ringBytes === ringBytes && ring.pageSize === pageSize && ring.windowPages === windowPages) {
    spare = undefined;
    clearTimeout(spareTimer);
    ring.reset();
    return ring;
  }
  return new NativePayloadRing(ringBytes, pageSize, windowPages);
}

function keepSpare(ring: NativePayloadRing): void {
  spare = ring;
  clearTimeout(spareTimer);
  spareTimer = setTimeout(() => {
    if (spare === ring) spare = undefined;
  }, SPARE_MS);
  spareTimer.unref();
}

interface Region {
  readonly start: number;
  done: boolean;
}

/** The ring's size: see the top of this file. */
export function ringBytes(options: PayloadStoreOptions): number {
  const inFlight = (options.maxInFlight + 3) * options.segmentBytes;
  const window = options.windowPages > 0 ? options.windowPages * options.pageSize + 2 * options.segmentBytes : 0;
  return Math.max(inFlight, window);
}

export class RingPayloadStore implements PayloadStore {
  private readonly ring: NativePayloadRing;
  private readonly size: number;
  private readonly segmentBytes: number;
  /** Logical positions: the open segment's payload is [start, write). */
  private start = 0;
  private write = 0;
  /** Segments handed out, oldest first, until released. */
  private readonly out: Region[] = [];

  constructor(options: PayloadStoreOptions) {
    this.segmentBytes = options.segmentBytes;
    this.size = ringBytes(options);
    this.ring = ringFor(this.size, options.pageSize, options.windowPages);
  }

  close(): void {
    // A worker may still read a segment of a compression that failed: such a ring is not kept.
    if (this.out.length === 0) keepSpare(this.ring);
  }

  get length(): number {
    return this.write - this.start;
  }

  get checksum(): number {
    return this.ring.checksum;
  }

  page(data: Uint8Array): number {
    if (this.write === this.start) this.open();
    const distance = this.ring.storePage(this.write, data);
    if (distance === 0) this.write += data.length;
    return distance;
  }

  span(data: Uint8Array): void {
    if (this.write === this.start) this.open();
    this.ring.copy(this.write, data);
    this.write += data.length;
  }

  take(): SegmentPayload | undefined {
    if (this.write === this.start) return undefined;
    const at = this.start % this.size;
    const bytes = this.ring.bytes.subarray(at, at + (this.write - this.start));
    const region: Region = { start: this.start, done: false };
    this.out.push(region);
    this.start = this.write;
    return {
      bytes,
      transfer: [],
      release: () => {
        region.done = true;
        while (this.out.length > 0 && this.out[0]!.done) this.out.shift();
      },
    };
  }

  /** Starts a segment's payload where segmentBytes fit before the end of the ring. */
  private open(): void {
    const room = this.size - (this.write % this.size);
    if (room < this.segmentBytes) this.write = this.start = this.write + room;
    const oldest = this.out[0];
    if (oldest !== undefined && this.write + this.segmentBytes - oldest.start > this.size) {
      throw new WorkerError(`payload ring of ${this.size} bytes overrun: a segment from ${oldest.start} is still being compressed at ${this.write}`);
    }
  }
}

export class BufferPayloadStore implements PayloadStore {
  checksum = 0;
  private buffer: Buffer;
  private used = 0;
  private readonly dedup: DedupIndex | undefined;

  constructor(private readonly options: PayloadStoreOptions) {
    this.buffer = Buffer.allocUnsafeSlow(options.segmentBytes);
    this.dedup = options.windowPages > 0 ? new DedupIndex(options.windowPages, options.pageSize, options.pageHasher) : undefined;
  }

  get length(): number {
    return this.used;
  }

  page(data: Uint8Array): number {
    if (this.dedup !== undefined) {
      const distance = this.dedup.lookup(data);
      if (distance > 0) {
        this.checksum = this.dedup.checksum;
        return distance;
      }
    }
    this.span(data);
    return 0;
  }

  span(data: Uint8Array): void {
    if (this.used + data.length > this.buffer.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(this.used + data.length, this.buffer.length * 2));
      grown.set(this.buffer.subarray(0, this.used));
      this.buffer = grown;
    }
    this.buffer.set(data, this.used);
    this.used += data.length;
  }

  close(): void {}

  take(): SegmentPayload | undefined {
    if (this.used === 0) return undefined;
    const bytes = this.buffer.subarray(0, this.used);
    this.buffer = Buffer.allocUnsafeSlow(this.options.segmentBytes);
    this.used = 0;
    return { bytes, transfer: [bytes.buffer as ArrayBuffer], release: () => {} };
  }
}
