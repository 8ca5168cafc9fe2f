/**
 * QEMU stream (or any bytes) in, container bytes out.
 *
 *   const compressor = new Compressor({ codec: 'zstd', threads: 4 });
 *   await pipeline(compressor.compress(createReadStream('vm.mig')), createWriteStream('vm.msz'));
 *
 * This thread decodes the stream once, only to find where records and their payloads lie (or
 * takes records and encodes them: compressRecords), plans segments (planner.ts) from the
 * records' spans and copies each segment's bytes into a shared slot; the workers split,
 * checksum and compress; frames leave in order. Memory: at most `maxInFlight` segments of
 * about `frameBytes` (plus their compressed frames) and the input chunks of the open segment.
 */
import type { MigrationRecord } from '../codec.js';
import { ArgumentError, EncodeError } from '../stream/errors.js';
import { codecByName, resolveLevel, type CodecInfo, type CodecName } from '../codecs/registry.js';
import { FrameEmitter, type EmitterStats } from './frame-emitter.js';
import { MAX_FRAME_BYTES, type ContainerInfo } from '../container/format.js';
import { InputWindow } from '../bytes/input-window.js';
import { SegmentPlanner, segmentPayloadBytes, type SegmentPlan } from './planner.js';
import { WorkerPool, defaultThreads } from '../workers/pool.js';
import { asBuffer } from '../bytes/transfer.js';
import { decodedSteps, encodedSteps, type RecordSource, type StreamStep } from './stream-steps.js';
import { createPayloadStore, type PayloadStore } from './payload-store.js';
import type { PageHasher } from './dedup-index.js';

export const DEFAULT_FRAME_BYTES = 4 * 1024 * 1024;
const MIN_FRAME_BYTES = 64 * 1024;
/** Default page window of `--dedup`: 64 MiB of 4 KiB pages on each side. */
export const DEFAULT_DEDUP_WINDOW_PAGES = 16384;

export interface CompressOptions {
  codec?: CodecName;
  level?: number;
  /** Worker threads; default: the number of cores. */
  threads?: number;
  /** A pool to run on instead of starting one (it is left running); `threads` is then ignored. */
  pool?: WorkerPool;
  /** Target raw bytes per PAYLOAD or DATA frame. */
  frameBytes?: number;
  /** Segments being compressed or waiting to be written at once; default 2 × threads + 2. */
  maxInFlight?: number;
  /** "raw": the input is opaque bytes (e.g. a RAM dump), cut into DATA frames. */
  mode?: 'qemu' | 'raw';
  /**
   * Store a page equal to one of the last N stored pages as a reference; 0: off. Default
   * DEFAULT_DEDUP_WINDOW_PAGES (QEMU mode).
   */
  dedupWindowPages?: number;
  pageHasher?: PageHasher;
  /** Recorded in the HEADER frame: the input is a compacted stream (compact.ts). */
  compacted?: boolean;
  /** The block section's chunk size (--mig-block-size); found from the stream when absent. */
  blockSize?: number;
  /** Called after each segment's frames are ready. */
  onProgress?: (stats: Readonly<CompressStats>) => void;
  /** "migstream <version>", recorded in the HEADER frame. */
  creator?: string;
}

export interface CompressStats extends EmitterStats {
  /** Input bytes read (= bytes of the stream the container rebuilds). */
  bytesIn: number;
  /** Page payloads stored in PAYLOAD frames, and written as references. */
  pages: number;
  refs: number;
}

interface Settings {
  codec: CodecInfo;
  level: number;
  threads: number;
  frameBytes: number;
  maxInFlight: number;
  dedupWindowPages: number;
}

function settings(options: CompressOptions): Settings {
  const codec = codecByName(options.codec ?? 'zstd');
  const level = resolveLevel(codec, options.level);
  const threads = options.pool?.size ?? options.threads ?? defaultThreads();
  const frameBytes = options.frameBytes ?? DEFAULT_FRAME_BYTES;
  if (!(Number.isInteger(frameBytes) && frameBytes >= MIN_FRAME_BYTES && frameBytes <= MAX_FRAME_BYTES / 4)) {
    throw new ArgumentError(`frame size must be ${MIN_FRAME_BYTES}..${MAX_FRAME_BYTES / 4} bytes, got ${String(frameBytes)}`);
  }
  const maxInFlight = options.maxInFlight ?? 2 * threads + 2;
  if (!(Number.isInteger(maxInFlight) && maxInFlight >= 1)) throw new ArgumentError(`maxInFlight must be a positive integer, got ${String(maxInFlight)}`);
  const dedupWindowPages = options.dedupWindowPages ?? (options.mode === 'raw' ? 0 : DEFAULT_DEDUP_WINDOW_PAGES);
  if (!(Number.isInteger(dedupWindowPages) && dedupWindowPages >= 0 && dedupWindowPages <= 1 << 24)) {
    throw new ArgumentError(`dedup window must be 0..${1 << 24} pages, got ${String(dedupWindowPages)}`);
  }
  return { codec, level, threads, frameBytes, maxInFlight, dedupWindowPages };
}

export class Compressor {
  readonly stats: CompressStats = {
    bytesIn: 0,
    bytesOut: 0,
    frames: 0,
    framesByCodec: { none: 0, lz4: 0, zstd: 0, zlib: 0 },
    pages: 0,
    refs: 0,
  };
  private readonly settings: Settings;
  /** The running compression's emitter, for written(). */
  private emitter: FrameEmitter | undefined;

  constructor(private readonly options: CompressOptions = {}) {
    this.settings = settings(options);
  }

  /** The codec level and thread count in use (defaults resolved). */
  get level(): number {
    return this.settings.level;
  }

  get threads(): number {
    return this.settings.threads;
  }

  /**
   * The consumer of compress()'s chunks has written `chunk` and keeps no reference to it (a
   * write callback fired): the memory of a frame may carry a later frame instead of a fresh
   * buffer's page faults. Optional: chunks never given back go to the garbage collector.
   *
   *   for await (const chunk of compressor.compress(input)) out.write(chunk, () => compressor.written(chunk));
   */
  written(chunk: Uint8Array): void {
    this.emitter?.written(chunk);
  }

  /** Compresses a QEMU stream (or, in raw mode, any bytes): container bytes in order. */
  compress(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<Buffer> {
    return this.run((emitter) => (this.options.mode === 'raw' ? this.raw(input, emitter) : this.qemu(decodedSteps(input, this.options.blockSize), emitter)));
  }

  /**
   * Compresses the stream that `source`'s records encode to (e.g. compact.ts's compacted
   * records): they are encoded here, once, and never decoded again.
   */
  compressRecords(source: RecordSource): AsyncGenerator<Buffer> {
    if (this.options.mode === 'raw') throw new ArgumentError('records are a QEMU stream, not raw bytes');
    return this.run((emitter) => this.qemu(encodedSteps(source), emitter));
  }

  private async *run(body: (emitter: FrameEmitter) => AsyncGenerator<Buffer>): AsyncGenerator<Buffer> {
    const { threads, codec, level, maxInFlight, frameBytes } = this.settings;
    const pool = this.options.pool ?? new WorkerPool(threads);
    try {
      const emitter = new FrameEmitter(pool, codec.id, level, maxInFlight, frameBytes + frameBytes / 4, () => {
        this.stats.bytesOut = emitter.stats.bytesOut;
        this.stats.frames = emitter.stats.frames;
        this.options.onProgress?.(this.stats);
      });
      this.stats.framesByCodec = emitter.stats.framesByCodec;
      this.emitter = emitter;
      yield* body(emitter);
      this.stats.bytesOut = emitter.stats.bytesOut;
      this.stats.frames = emitter.stats.frames;
    } finally {
      this.emitter = undefined;
      if (pool !== this.options.pool) await pool.close();
    }
  }

  private info(mode: 'qemu' | 'raw', pageSize: number): ContainerInfo {
    const { codec, level, frameBytes, dedupWindowPages } = this.settings;
    return {
      mode,
      pageSize,
      codec: codec.name,
      level,
      frameBytes,
      dedupWindowPages: mode === 'qemu' ? dedupWindowPages : 0,
      compacted: this.options.compacted ?? false,
      creator: this.options.creator ?? 'migstream',
    };
  }

  private async *qemu(steps: AsyncIterable<StreamStep>, emitter: FrameEmitter): AsyncGenerator<Buffer> {
    const window = new InputWindow();
    const stats = this.stats;
    let planner: SegmentPlanner | undefined;
    let store: PayloadStore | undefined;
    const early: [MigrationRecord, number][] = [];

    const emit = async (plan: SegmentPlan): Promise<void> => {
      stats.pages += plan.pages;
      stats.refs += plan.refs;
      await emitter.segment(plan, (into, at) => window.copyExcept(plan.start, plan.end, plan.ranges, into, at));
      window.dropBefore(plan.end);
    };
    const plan = async (step: StreamStep): Promise<boolean> => {
      let closed = false;
      for (let i = 0; i < step.records.length; i++) {
        const record = step.records[i]!;
        const end = step.ends[i]!;
        if (planner === undefined) {
          // The page size is known once the configuration section has been read: wait for it.
          if (record.type === 'header') {
            early.push([record, end]);
            continue;
          }
          await emitter.header(this.info('qemu', step.pageSize));
          const { frameBytes, dedupWindowPages, maxInFlight } = this.settings;
          store = createPayloadStore({
            pageSize: step.pageSize,
            segmentBytes: segmentPayloadBytes(frameBytes),
            maxInFlight,
            windowPages: dedupWindowPages,
            pageHasher: this.options.pageHasher,
          });
          planner = new SegmentPlanner({ pageSize: step.pageSize, frameBytes, store });
          for (const [first, firstEnd] of early) planner.add(first, firstEnd);
        }
        const segment = planner.add(record, end);
        if (segment !== undefined) {
          await emit(segment);
          closed = true;
        }
      }
      return closed;
    };

    try {
      for await (const step of steps) {
        for (const bytes of step.bytes) {
          stats.bytesIn += bytes.length;
          window.push(bytes);
        }
        if (await plan(step)) yield* emitter.take();
      }
      if (planner === undefined) throw new EncodeError('the input holds no migration stream');
      if (planner.position !== stats.bytesIn) {
        throw new EncodeError(`records account for ${planner.position} bytes of a ${stats.bytesIn}-byte stream (the record spans disagree with the bytes)`);
      }
      const last = planner.finish();
      if (last !== undefined) await emit(last);
      await emitter.end(stats.bytesIn);
      yield* emitter.take();
    } finally {
      store?.close();
    }
  }

  private async *raw(input: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, emitter: FrameEmitter): AsyncGenerator<Buffer> {
    const { frameBytes } = this.settings;
    const window = new InputWindow();
    await emitter.header(this.info('raw', 4096));
    let start = 0;
    const emit = async (end: number): Promise<void> => {
      const from = start;
      await emitter.data(end - from, (into) => window.copy(from, end, into));
      window.dropBefore(end);
      start = end;
    };
    for await (const chunk of input) {
      const bytes = asBuffer(chunk);
      this.stats.bytesIn += bytes.length;
      window.push(bytes);
      let emitted = false;
      while (this.stats.bytesIn - start >= frameBytes) {
        await emit(start + frameBytes);
        emitted = true;
      }
      if (emitted) yield* emitter.take();
    }
    if (this.stats.bytesIn > start) await emit(this.stats.bytesIn);
    await emitter.end(this.stats.bytesIn);
    yield* emitter.take();
  }
}
