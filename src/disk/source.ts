/**
 * The disk source (I/O): copies a running QEMU's drive through its own NBD server, the first
 * copy and then dirty passes, as disk-stream records.
 *
 *   const source = await DiskSource.open({ qmp, drive: 'disk0', socketPath });
 *   await source.firstCopy(emit);          // base:allocation: everything that may hold data
 *   while (…) await source.pass(emit);     // what the guest wrote since the pass before
 *   await qmp.execute('stop');
 *   await source.pass(emit);               // the last pass, the guest paused
 *   await source.close();
 *
 * Each pass: one QMP transaction starts the next bitmap and freezes the current one; the frozen
 * one is exported read-only over NBD (block-export-add … bitmaps), its dirty extents
 * (`qemu:dirty-bitmap:NAME`) planned into chunks (pass-plan.ts), those chunks read from the same
 * export, a window of them in flight, and each turned into a record (chunk-encoder.ts) and
 * handed to `emit`, in drive order, awaited (backpressure). The export is then deleted and the
 * frozen bitmap removed.
 */
import { DEFAULT_BLOCK_SIZE, checkBlockSize } from '../block/block-size.js';
import { NbdClient } from '../nbd/client.js';
import type { QmpExecutor } from '../qemu/qmp.js';
import { ArgumentError } from '../stream/errors.js';
import { ChunkEncoder, recordBytes, type ChunkRecord } from './chunk-encoder.js';
import { SUB_BLOCK_SIZE } from './disk-stream.js';
import { DiskSizeError } from './errors.js';
import { BASE_ALLOCATION, chunkRunBatches, dirtyBitmapContext, extentSelector, planChunks } from './pass-plan.js';
import { addBitmap, addExport, deleteExport, findDriveNode, removeBitmap, rotateBitmap, startNbdServer, stopNbdServer, type DriveNode } from './qmp-block.js';
import type { DiskStreamHeader } from './records.js';

/**
 * Receives each record; the next chunk is turned into a record once its promise settles.
 * `done`, when the receiver calls it, says it no longer holds the record's bytes (its write
 * finished, or it copied them): the chunk's buffer then serves a later read instead of a new
 * one being allocated. A receiver that never calls it costs only that allocation.
 */
export type EmitRecord = (record: ChunkRecord, done: () => void) => void | Promise<void>;

export interface DiskSourceOptions {
  readonly qmp: QmpExecutor;
  /** The drive: its `-drive id=`, qdev id or node name. */
  readonly drive: string;
  /** Where QEMU's NBD server listens (started here unless `serverStarted`). */
  readonly socketPath: string;
  /** The NBD server is already running on `socketPath` (another user of this QEMU started it). */
  readonly serverStarted?: boolean;
  /** Chunk size of the records (mig-block-size): default QEMU's 1 MiB. */
  readonly chunkSize?: number;
  /** Dirty bitmap granularity: default 64 KiB (block-dirty-bitmap-add). */
  readonly granularity?: number;
  /** Sub-block deltas for chunks dirtied again (chunk-encoder.ts). Default false. */
  readonly deltas?: boolean;
  /** ZERO_BLOCK for all-zero chunks. Default true. */
  readonly zeroBlocks?: boolean;
  /**
   * The first copy also sends a ZERO_BLOCK for every chunk base:allocation reads as zeros, so
   * the destination ends equal whatever its drive held before (as QEMU's own block migration
   * and `qemu-img convert -n` do). Default true; false trusts the destination to be blank
   * (qemu-img's --target-is-zero), and the consistency check tells when it was not.
   */
  readonly zeroUnallocated?: boolean;
  /** Bytes of chunks read ahead at most (the memory a pass holds). Default 16 MiB. */
  readonly windowBytes?: number;
  /** Names of this run's bitmaps and exports start with this. Default `migstream-<drive>`. */
  readonly prefix?: string;
  /** NBD silence allowed. Default 30 s. */
  readonly timeoutMs?: number;
}

/** What one pass did. */
export interface PassStats {
  /** 0: the first copy; then 1, 2… */
  readonly pass: number;
  readonly metaContext: string;
  /** Bytes the extents selected (dirty, or allocated for the first copy). */
  readonly selectedBytes: number;
  /** Chunks read. */
  readonly chunks: number;
  /** Records emitted, by kind. */
  readonly dataRecords: number;
  readonly zeroRecords: number;
  readonly deltaRecords: number;
  /** Sub-blocks sent in deltas. */
  readonly subBlocks: number;
  /** Disk-stream bytes of the records emitted (frames included): what the pass sends. */
  readonly bytes: number;
  readonly ms: number;
}

export class DiskSource {
  readonly header: DiskStreamHeader;
  readonly node: DriveNode;
  private readonly encoder: ChunkEncoder;
  private readonly granularity: number;
  private readonly window: number;
  private readonly prefix: string;
  private readonly timeoutMs: number;
  /** The bitmap recording writes now; undefined before the first copy and after close. */
  private bitmap: string | undefined;
  private passes = 0;
  private readers = 0;
  /** Chunk buffers the receivers gave back (EmitRecord's `done`). */
  private readonly freeBuffers: Buffer[] = [];
  private closed = false;

  private constructor(
    private readonly options: DiskSourceOptions,
    node: DriveNode,
  ) {
    this.node = node;
    const chunkSize = checkBlockSize(options.chunkSize ?? DEFAULT_BLOCK_SIZE, 'DiskSource chunkSize');
    this.granularity = options.granularity ?? 64 * 1024;
    this.header = { device: options.drive, size: node.size, chunkSize, subBlockSize: SUB_BLOCK_SIZE };
    this.encoder = new ChunkEncoder(this.header, { deltas: options.deltas ?? false, zeroBlocks: options.zeroBlocks ?? true });
    this.window = Math.max(1, Math.floor((options.windowBytes ?? 16 * 1024 * 1024) / chunkSize));
    this.prefix = options.prefix ?? `migstream-${options.drive}`;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Finds the drive and starts the NBD server (unless told it runs). */
  static async open(options: DiskSourceOptions): Promise<DiskSource> {
    const granularity = options.granularity ?? 64 * 1024;
    if (!Number.isInteger(granularity) || granularity < 512 || granularity > 2 ** 31 || (granularity & (granularity - 1)) !== 0) {
      throw new ArgumentError(`the dirty bitmap granularity must be a power of two from 512 bytes to 2 GiB, got ${granularity}`);
    }
    const node = await findDriveNode(options.qmp, options.drive);
    const source = new DiskSource(options, node);
    if (!options.serverStarted) await startNbdServer(options.qmp, options.socketPath);
    return source;
  }

  /** The bitmap granularity in use. */
  get bitmapGranularity(): number {
    return this.granularity;
  }

  /**
   * The first copy: starts the dirty bitmap (so writes during the copy are caught by the next
   * pass), then reads every chunk `base:allocation` says may hold data and emits it whole.
   */
  async firstCopy(emit: EmitRecord): Promise<PassStats> {
    if (this.passes !== 0 || this.bitmap !== undefined) throw new ArgumentError('DiskSource.firstCopy: already done');
    const name = `${this.prefix}-0`;
    await addBitmap(this.options.qmp, this.node.nodeName, name, this.granularity);
    this.bitmap = name;
    return this.run(BASE_ALLOCATION, [], emit);
  }

  /**
   * One dirty pass: freezes the current bitmap and starts the next in one transaction, then
   * sends what the frozen one marks. With the guest paused this is the last pass.
   */
  async pass(emit: EmitRecord): Promise<PassStats> {
    if (this.bitmap === undefined || this.closed) throw new ArgumentError('DiskSource.pass: run firstCopy first');
    const frozen = this.bitmap;
    const next = `${this.prefix}-${this.passes}`;
    await rotateBitmap(this.options.qmp, this.node.nodeName, frozen, next, this.granularity);
    this.bitmap = next;
    const stats = await this.run(dirtyBitmapContext(frozen), [frozen], emit).catch(async (error: unknown) => {
      // The pass's own failure is the one to tell; cleaning up after it may fail too.
      await removeBitmap(this.options.qmp, this.node.nodeName, frozen).catch(() => undefined);
      throw error;
    });
    await removeBitmap(this.options.qmp, this.node.nodeName, frozen);
    return stats;
  }

  /**
   * Runs `use` with a read-only NBD connection to the drive (an export without bitmaps), e.g.
   * for the consistency check after the last pass; the export is deleted afterwards.
   */
  async withReader<T>(use: (nbd: NbdClient) => Promise<T>): Promise<T> {
    const id = `${this.prefix}-reader-${this.readers++}`;
    const { qmp } = this.options;
    await addExport(qmp, { id, nodeName: this.node.nodeName, writable: false });
    let nbd: NbdClient | undefined;
    try {
      // base:allocation: hashDrive skips what reads as zeros.
      nbd = await NbdClient.connect({ path: this.options.socketPath, exportName: id, metaContexts: [BASE_ALLOCATION], timeoutMs: this.timeoutMs });
      return await use(nbd);
    } finally {
      if (nbd !== undefined) await nbd.close().catch(() => undefined);
      await deleteExport(qmp, id);
    }
  }

  /** Removes the live bitmap and stops the NBD server if it was started here. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const { qmp } = this.options;
    const errors: unknown[] = [];
    if (this.bitmap !== undefined) await removeBitmap(qmp, this.node.nodeName, this.bitmap).catch((e: unknown) => errors.push(e));
    this.bitmap = undefined;
    if (!this.options.serverStarted) await stopNbdServer(qmp).catch((e: unknown) => errors.push(e));
    if (errors.length > 0) throw errors[0];
  }

  /** Exports the node (with `bitmaps`), plans from `metaContext`, reads and emits; deletes the export. */
  private async run(metaContext: string, bitmaps: readonly string[], emit: EmitRecord): Promise<PassStats> {
    const started = Date.now();
    const pass = this.passes++;
    const id = `${this.prefix}-export-${pass}`;
    const { qmp } = this.options;
    await addExport(qmp, { id, nodeName: this.node.nodeName, writable: false, bitmaps });
    let nbd: NbdClient | undefined;
    try {
      nbd = await NbdClient.connect({ path: this.options.socketPath, exportName: id, metaContexts: [metaContext], timeoutMs: this.timeoutMs });
      const context = { drive: this.options.drive, peer: nbd.peer };
      if (nbd.size !== this.header.size) {
        throw new DiskSizeError('the drive changed size since the run started', this.header.size, nbd.size, context);
      }
      const extents = await nbd.blockStatus(0, nbd.size, metaContext);
      const plan = planChunks(extents, { size: this.header.size, chunkSize: this.header.chunkSize, metaContext, context });
      const selected = extentSelector(metaContext);
      let selectedBytes = 0;
      for (const extent of extents) if (selected(extent.flags)) selectedBytes += extent.length;
      const stats = { pass, metaContext, selectedBytes, chunks: 0, dataRecords: 0, zeroRecords: 0, deltaRecords: 0, subBlocks: 0, bytes: 0, ms: 0 };
      const zeroGaps = pass === 0 && (this.options.zeroUnallocated ?? true);
      await this.readChunks(
        nbd,
        chunkRunBatches(plan),
        pass > 0,
        zeroGaps,
        async (record, done) => {
          if (record.type === 'block-data') stats.dataRecords++;
          else if (record.type === 'block-zero') stats.zeroRecords++;
          else {
            stats.deltaRecords++;
            stats.subBlocks += record.indexes.length;
          }
          stats.bytes += recordBytes(record, this.header);
          await emit(record, done);
        },
        () => stats.chunks++,
      );
      await nbd.close();
      nbd = undefined;
      await deleteExport(qmp, id);
      return { ...stats, ms: Date.now() - started };
    } catch (error) {
      // The pass's own failure is the one to tell: the export may be gone with the server.
      if (nbd !== undefined) await nbd.close().catch(() => undefined);
      await deleteExport(qmp, id).catch(() => undefined);
      throw error;
    }
  }

  /**
   * Reads every chunk of `runs` (chunkRunBatches) with up to `window` reads in flight, and encodes and emits them
   * in drive order: memory stays at `window` chunks whatever the pass's size. With `zeroGaps`,
   * every chunk between the runs is emitted as zeros, unread, in its place in that order.
   */
  private async readChunks(nbd: NbdClient, runs: Iterable<Float64Array>, delta: boolean, zeroGaps: boolean, emit: (record: ChunkRecord, done: () => void) => Promise<void>, counted: () => void): Promise<void> {
    const { chunkSize } = this.header;
    /** `read` undefined: a chunk of a gap, zeros. */
    const pending: { index: number; read: Promise<Buffer> | undefined }[] = [];
    let next = 0;
    const zeroUpTo = async (end: number): Promise<void> => {
      if (!zeroGaps) return;
      for (; next < end; next++) {
        if (pending.length >= this.window) await finishOldest();
        pending.push({ index: next, read: undefined });
      }
    };
    const start = (index: number): void => {
      const length = this.encoder.chunkLength(index);
      // The read writes every byte of [0, length) (the client zero-fills OFFSET_HOLE and checks
      // the reply covered the request), so only the padding past the drive's end is zeroed here:
      // blk_send's buffer_is_zero sees the whole chunk. A buffer the receiver gave back is used
      // again (bench:disk: a fresh 1 MiB buffer a chunk, its allocation and page faults, cost
      // as much as the rest of a hash pass).
      const buffer = (this.freeBuffers.pop() ?? Buffer.allocUnsafeSlow(chunkSize)).fill(0, length);
      const read = nbd.read(index * chunkSize, length, buffer.subarray(0, length)).then(() => buffer);
      read.catch(() => undefined); // awaited below, in order; a failure is not unhandled meanwhile
      pending.push({ index, read });
    };
    const finishOldest = async (): Promise<void> => {
      const oldest = pending.shift()!;
      if (oldest.read === undefined) {
        counted();
        await emit(this.encoder.zero(oldest.index), () => undefined);
        return;
      }
      const data = await oldest.read;
      counted();
      const record = this.encoder.encode(oldest.index, data, delta);
      // Only a whole chunk's record holds the buffer itself (a delta copies its sub-blocks).
      if (record?.type !== 'block-data') this.freeBuffers.push(data);
      if (record === undefined) return;
      let given = record.type !== 'block-data';
      await emit(record, () => {
        if (given) return;
        given = true;
        if (this.freeBuffers.length < this.window * 2) this.freeBuffers.push(data);
      });
    };
    try {
      // Each batch holds (first chunk, chunk count) pairs and stays as it is until the loop asks
      // for the next one.
      for (const batch of runs) {
        for (let i = 0; i < batch.length; i += 2) {
          const end = batch[i]! + batch[i + 1]!;
          await zeroUpTo(batch[i]!);
          for (let index = batch[i]!; index < end; index++) {
            if (pending.length >= this.window) await finishOldest();
            start(index);
          }
          next = end;
        }
      }
      await zeroUpTo(Math.ceil(this.header.size / chunkSize));
      while (pending.length > 0) await finishOldest();
    } finally {
      // On failure, let the reads still in flight settle before the client is closed.
      await Promise.allSettled(pending.flatMap((p) => (p.read === undefined ? [] : [p.read])));
    }
  }
}
