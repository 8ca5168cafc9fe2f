/**
 * The writing half of the container: numbers frames, has the pool build and compress them, and
 * hands out container bytes in frame order (OrderedQueue), with at most `limit` jobs in flight.
 *
 * Memory is lent, not allocated per frame: a segment's bytes go to the worker in a buffer of
 * `inputs` (handed back with the reply), and the worker builds each frame in a buffer of
 * `outputs` that leaves with the container bytes. A writer that says when it has written a
 * chunk (written()) gives that buffer back for a later frame; one that does not leaves it to
 * the garbage collector, as a fresh buffer per frame.
 */
import { ChecksumChain } from '../container/checksum.js';
import { CODEC_IDS, CODECS, type CodecId, type CodecName } from '../codecs/registry.js';
import { WorkerError } from '../workers/errors.js';
import { thrownBy } from '../workers/errors.js';
import { FRAME_HEADER_LENGTH, FrameKind, WRITTEN_CHECKSUM, encodeEnd, encodeFrameHeader, encodePreamble, type ContainerEnd, type ContainerInfo, type FrameKindId } from '../container/format.js';
import { OrderedQueue } from '../workers/ordered-queue.js';
import type { SegmentPlan } from './planner.js';
import type { WorkerPool } from '../workers/pool.js';
import type { SegmentPayload } from './payload-store.js';
import type { CompressRequest, FailureReply, PackReply, PackRequest, PackedFrame, Returning } from '../workers/protocol.js';
import { BufferPool } from '../bytes/buffer-pool.js';

interface Numbered {
  readonly first: number;
  readonly kinds: readonly FrameKindId[];
  readonly frames: readonly PackedFrame[];
  /** Stream bytes of a segment or DATA frame (HEADER and END: undefined). */
  readonly streamBytes?: number;
}

export interface EmitterStats {
  /** Container bytes handed out. */
  bytesOut: number;
  frames: number;
  /** Data frames (META, PAYLOAD, DATA) per codec used: one a codec cannot shrink is stored as `none`. */
  framesByCodec: Record<CodecName, number>;
}

export class FrameEmitter {
  readonly stats: EmitterStats = { bytesOut: 0, frames: 0, framesByCodec: { none: 0, lz4: 0, zstd: 0, zlib: 0 } };
  private readonly queue: OrderedQueue<Numbered>;
  /** Segment bytes on their way to a worker (a buffer comes back with each reply). */
  private readonly inputs: BufferPool;
  /** Frame buffers, taken per job and given back by written(). */
  private readonly outputs: BufferPool;
  /** Frame buffers handed out in take()'s chunks and not yet given back (weak: a writer may never). */
  private readonly lentOutputs = new WeakSet<ArrayBuffer>();
  private readonly chain = new ChecksumChain();
  private streamBytes = 0;
  private ready: Buffer[] = [];
  private nextNumber = 0;

  constructor(
    private readonly pool: WorkerPool,
    private readonly codec: CodecId,
    private readonly level: number,
    limit: number,
    slotBytes: number,
    private readonly onFrame: () => void = () => {},
  ) {
    this.queue = new OrderedQueue(limit, (numbered) => this.write(numbered));
    this.inputs = new BufferPool(limit + 2, slotBytes);
    // Frames out at once: the jobs in flight (two frames each) and a writer's queue of as many.
    this.outputs = new BufferPool(4 * limit + 4, slotBytes);
    this.ready.push(encodePreamble());
    this.stats.bytesOut += this.ready[0]!.length;
  }

  /** Container bytes ready to be written, in order. */
  take(): Buffer[] {
    const out = this.ready;
    this.ready = [];
    return out;
  }

  /**
   * A chunk take() handed out has been written: when it is a frame's buffer, a later frame is
   * built in it. Other chunks (headers, HEADER and END frames), and a chunk given twice, are
   * ignored.
   */
  written(chunk: Uint8Array): void {
    const buffer = chunk.buffer as ArrayBuffer;
    if (this.lentOutputs.delete(buffer)) this.outputs.give(buffer);
  }

  header(info: ContainerInfo): Promise<void> {
    return this.uncompressed(FrameKind.HEADER, Buffer.from(JSON.stringify(info), 'utf8'));
  }

  /**
   * Queues one segment: META and, when it has one, PAYLOAD (the plan's payload, released once
   * the worker is done with it). `fill` copies the segment's structure bytes into the META
   * buffer it is given, from `at` on (after the cut list), and returns where they end.
   */
  segment(plan: SegmentPlan, fill: (into: Buffer, at: number) => number): Promise<void> {
    const payload = plan.payload;
    const kinds: FrameKindId[] = payload ? [FrameKind.META, FrameKind.PAYLOAD] : [FrameKind.META];
    const metaLength = plan.cutList.length + plan.structureBytes;
    const fillMeta = (into: Buffer): void => {
      into.set(plan.cutList, 0);
      const end = fill(into, plan.cutList.length);
      if (end !== metaLength) throw new WorkerError(`META of ${end} bytes, expected ${metaLength}`);
    };
    return this.submit(kinds, plan.end - plan.start, metaLength, fillMeta, (meta, outputs) => ({ op: 'pack', codec: this.codec, level: this.level, meta, payload: payload?.bytes, outputs }), payload);
  }

  /** Queues one DATA frame of `length` bytes, copied in by `fill`. */
  data(length: number, fill: (into: Buffer) => void): Promise<void> {
    return this.submit([FrameKind.DATA], length, length, fill, (raw, outputs) => ({ op: 'compress', codec: this.codec, level: this.level, raw, outputs }));
  }

  /**
   * Writes everything outstanding, then the END frame. `streamBytes` is what the caller fed in:
   * the segments must add up to it.
   */
  async end(streamBytes: number): Promise<ContainerEnd> {
    await this.queue.drain();
    if (this.streamBytes !== streamBytes) {
      throw new WorkerError(`the segments hold ${this.streamBytes} bytes of a ${streamBytes}-byte stream`);
    }
    const end: ContainerEnd = { streamBytes, frames: this.nextNumber, streamChecksum: this.chain.value };
    await this.uncompressed(FrameKind.END, encodeEnd(end));
    await this.queue.drain();
    return end;
  }

  /**
   * Copies `slotBytes` bytes into a lent buffer (`fill`) and has a worker pack them, with
   * `payload` (a segment's PAYLOAD bytes, released when the worker replied), into frame buffers
   * lent as well.
   */
  private async submit(
    kinds: FrameKindId[],
    streamBytes: number,
    slotBytes: number,
    fill: (into: Buffer) => void,
    request: (bytes: Buffer, outputs: Buffer[]) => CompressRequest | PackRequest,
    payload?: SegmentPayload,
  ): Promise<void> {
    const first = this.nextNumber;
    this.nextNumber += kinds.length;
    const bytes = this.inputs.take(slotBytes);
    fill(bytes);
    // A frame is built in a buffer of at least its raw length (the worker stores it as it is
    // when the codec cannot shrink it).
    const outputs = [this.outputs.take(slotBytes)];
    if (payload !== undefined) outputs.push(this.outputs.take(payload.bytes.length));
    const transfer = [bytes.buffer as ArrayBuffer, ...outputs.map((output) => output.buffer as ArrayBuffer), ...(payload?.transfer ?? [])];
    const run = this.pool.run(request(bytes, outputs), transfer) as Promise<Returning<PackReply | FailureReply>>;
    const job = run.then(
      (reply) => {
        payload?.release();
        this.inputs.give(reply.returned);
        if (!reply.ok) throw thrownBy(reply) ?? new WorkerError(`building frame ${first}: ${reply.message}`);
        for (const frame of reply.frames) this.lentOutputs.add(frame.stored.buffer as ArrayBuffer);
        return { first, kinds, frames: reply.frames, streamBytes };
      },
      (error: unknown) => {
        payload?.release();
        throw error;
      },
    );
    await this.queue.add(job);
  }

  /** A frame stored without a codec, in order with the others. */
  private async uncompressed(kind: FrameKindId, raw: Buffer): Promise<void> {
    const checksum = WRITTEN_CHECKSUM.of(raw);
    const frame: PackedFrame = { codec: CODEC_IDS.none, stored: raw, rawLength: raw.length, rawChecksum: checksum, storedChecksum: checksum };
    await this.queue.add(Promise.resolve({ first: this.nextNumber++, kinds: [kind], frames: [frame] }));
  }

  private write(numbered: Numbered): void {
    if (numbered.streamBytes !== undefined) {
      this.streamBytes += numbered.streamBytes;
      for (const frame of numbered.frames) this.chain.add(frame.rawChecksum);
    }
    numbered.frames.forEach((frame, i) => {
      const stored = Buffer.from(frame.stored.buffer, frame.stored.byteOffset, frame.stored.byteLength);
      this.ready.push(
        encodeFrameHeader({
          kind: numbered.kinds[i]!,
          codec: frame.codec,
          flags: 0,
          number: numbered.first + i,
          rawLength: frame.rawLength,
          storedLength: stored.length,
          rawChecksum: frame.rawChecksum,
          storedChecksum: frame.storedChecksum,
        }),
        stored,
      );
      this.stats.bytesOut += FRAME_HEADER_LENGTH + stored.length;
      this.stats.frames++;
      if (numbered.streamBytes !== undefined) this.stats.framesByCodec[CODECS.find((c) => c.id === frame.codec)!.name]++;
    });
    if (numbered.frames.length !== numbered.kinds.length) {
      throw new WorkerError(`frame ${numbered.first}: the worker built ${numbered.frames.length} frames, expected ${numbered.kinds.length}`);
    }
    this.onFrame();
  }
}
