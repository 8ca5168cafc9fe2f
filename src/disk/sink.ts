/**
 * The disk sink (I/O): applies disk-stream records to the destination QEMU's drive through its
 * writable NBD export, as block_load (migration/block.c) applies `block` records to a drive.
 *
 *   const sink = await DiskSink.open({ qmp, drive: 'disk0', socketPath, header });
 *   for (const record of records) await sink.apply(record);
 *   await sink.finish();                     // waits for every write, then FLUSH
 *   await sink.close();                      // deletes the export, stops the server
 *
 * - block-data: the chunk's bytes up to the drive's end (block_load: nr_sectors clipped to
 *   total_sectors at the last chunk);
 * - block-zero: WRITE_ZEROES over the chunk without NBD_CMD_FLAG_NO_HOLE, i.e. the server may
 *   punch a hole, as block_load's blk_pwrite_zeroes(…, BDRV_REQ_MAY_UNMAP); adjacent ones go as
 *   one WRITE_ZEROES of up to 1 GiB (a first copy zeroes every unallocated chunk);
 * - disk-delta: each run of adjacent sub-blocks as one WRITE;
 * - disk-end: nothing (finish() flushes).
 * Writes are pipelined, at most `windowBytes` in flight; the first failure fails the next
 * apply() or finish(). NBD lets a server complete requests in any order (QEMU's does: a
 * coroutine each), so a write to a chunk waits until the write before it on that chunk settled:
 * a chunk sent again in the next pass never lands under its older copy.
 */
import { NbdClient } from '../nbd/client.js';
import { TransmissionFlag } from '../nbd/constants.js';
import type { QmpExecutor } from '../qemu/qmp.js';
import { ArgumentError } from '../stream/errors.js';
import { DiskSizeError } from './errors.js';
import { BASE_ALLOCATION } from './pass-plan.js';
import { addExport, deleteExport, findDriveNode, startNbdServer, stopNbdServer, type DriveNode } from './qmp-block.js';
import type { DiskRecord, DiskStreamHeader } from './records.js';

export interface DiskSinkOptions {
  readonly qmp: QmpExecutor;
  /** The destination's drive: its `-drive id=`, qdev id or node name. */
  readonly drive: string;
  readonly socketPath: string;
  /** The NBD server already runs on `socketPath`. */
  readonly serverStarted?: boolean;
  /** The disk stream's header: the source drive's size and chunk size. */
  readonly header: DiskStreamHeader;
  /** Export id and NBD name. Default `migstream-<drive>-sink`. */
  readonly exportId?: string;
  /** Bytes of writes in flight at most. Default 16 MiB. */
  readonly windowBytes?: number;
  readonly timeoutMs?: number;
}

export interface SinkStats {
  readonly dataRecords: number;
  readonly zeroRecords: number;
  readonly deltaRecords: number;
  /** Bytes written with WRITE (data and deltas) and zeroed with WRITE_ZEROES. */
  readonly bytesWritten: number;
  readonly bytesZeroed: number;
}

/** The longest WRITE_ZEROES adjacent ZERO_BLOCKs merge into (NBD's lengths are 32-bit). */
const ZERO_RUN_MAX_BYTES = 1024 * 1024 * 1024;
/** What a WRITE_ZEROES counts against the window: it carries no data, but the server works on it. */
const ZERO_WRITE_COST = 64 * 1024;

export class DiskSink {
  readonly header: DiskStreamHeader;
  /** The export, for a consistency check to read (its peer names it in errors). */
  readonly nbd: NbdClient;
  private readonly inFlight = new Set<Promise<void>>();
  private inFlightBytes = 0;
  /** The write in flight on each chunk (by index), which the next write to it waits for. */
  private readonly busy = new Map<number, Promise<void>>();
  /** Adjacent ZERO_BLOCKs not yet sent, as one range. */
  private zeroRun: { offset: number; length: number } | undefined;
  private failure: unknown;
  private readonly stats = { dataRecords: 0, zeroRecords: 0, deltaRecords: 0, bytesWritten: 0, bytesZeroed: 0 };
  private closed = false;

  private constructor(
    private readonly options: DiskSinkOptions,
    readonly node: DriveNode,
    nbd: NbdClient,
    private readonly exportId: string,
    private readonly windowBytes: number,
  ) {
    this.header = options.header;
    this.nbd = nbd;
  }

  /**
   * Starts the NBD server (unless running), exports the drive writable (which activates a node
   * held inactive by `-incoming`: blk_exp_add) and connects. A drive smaller than the source's
   * is a DiskSizeError before anything is written.
   */
  static async open(options: DiskSinkOptions): Promise<DiskSink> {
    const { qmp } = options;
    const node = await findDriveNode(qmp, options.drive);
    const exportId = options.exportId ?? `migstream-${options.drive}-sink`;
    if (!options.serverStarted) await startNbdServer(qmp, options.socketPath);
    let exported = false;
    try {
      await addExport(qmp, { id: exportId, nodeName: node.nodeName, writable: true });
      exported = true;
      // base:allocation: the consistency check (hashDrive) skips what reads as zeros.
      const nbd = await NbdClient.connect({ path: options.socketPath, exportName: exportId, metaContexts: [BASE_ALLOCATION], timeoutMs: options.timeoutMs });
      const sink = new DiskSink(options, node, nbd, exportId, options.windowBytes ?? 16 * 1024 * 1024);
      if (nbd.size < options.header.size) {
        await sink.close().catch(() => undefined);
        throw new DiskSizeError("the destination's export is smaller than the source drive", options.header.size, nbd.size, { drive: options.drive, peer: nbd.peer });
      }
      if (nbd.readOnly) {
        await sink.close().catch(() => undefined);
        throw new ArgumentError(`nbd ${nbd.peer}: the destination export is read-only`);
      }
      return sink;
    } catch (error) {
      if (!(error instanceof DiskSizeError) && !(error instanceof ArgumentError)) {
        if (exported) await deleteExport(qmp, exportId).catch(() => undefined);
        if (!options.serverStarted) await stopNbdServer(qmp).catch(() => undefined);
      }
      throw error;
    }
  }

  /**
   * Queues the writes of one record; resolves once they fit in the window. `done` is called
   * once the record's bytes are no longer needed (its writes finished or failed), e.g. the
   * `done` of DiskSource's EmitRecord, so the source can use the buffer again.
   */
  async apply(record: DiskRecord, done?: () => void): Promise<void> {
    this.throwIfFailed();
    const { chunkSize, size, subBlockSize } = this.header;
    // A whole chunk's write, and a delta's writes, hold the caller's bytes until they settle.
    if (record.type !== 'block-data' && record.type !== 'disk-delta') done?.();
    if (record.type !== 'block-zero') await this.sendZeroRun();
    switch (record.type) {
      case 'block-data': {
        const offset = record.sector * 512;
        const length = this.chunkBytes(offset);
        this.stats.dataRecords++;
        this.stats.bytesWritten += length;
        await this.queue(offset, length, length, () => this.nbd.write(offset, record.data.subarray(0, length)), done);
        return;
      }
      case 'block-zero': {
        const offset = record.sector * 512;
        const length = this.chunkBytes(offset);
        this.stats.zeroRecords++;
        this.stats.bytesZeroed += length;
        if (this.nbd.flags & TransmissionFlag.SEND_WRITE_ZEROES) {
          const run = this.zeroRun;
          if (run !== undefined && run.offset + run.length === offset && run.length + length <= ZERO_RUN_MAX_BYTES) {
            run.length += length;
            return;
          }
          await this.sendZeroRun();
          this.zeroRun = { offset, length };
          return;
        }
        // A server without WRITE_ZEROES gets the zeros written (and no run is ever gathered).
        await this.queue(offset, length, length, () => this.nbd.write(offset, Buffer.alloc(length)));
        return;
      }
      case 'disk-delta': {
        this.chunkBytes(record.offset);
        this.stats.deltaRecords++;
        const { indexes, data } = record;
        // Runs of adjacent sub-blocks, checked before any is written.
        const runs: { offset: number; bytes: Buffer }[] = [];
        for (let i = 0; i < indexes.length;) {
          let j = i + 1;
          while (j < indexes.length && indexes[j] === indexes[j - 1]! + 1) j++;
          const offset = record.offset + indexes[i]! * subBlockSize;
          const bytes = data.subarray(i * subBlockSize, j * subBlockSize);
          if (offset + bytes.length > size || indexes[j - 1]! * subBlockSize >= chunkSize) {
            throw new ArgumentError(`disk-delta at ${record.offset}: sub-blocks ${indexes[i]}..${indexes[j - 1]} run past the chunk or the drive`);
          }
          runs.push({ offset, bytes });
          i = j;
        }
        let unsettled = runs.length;
        const settled = (): void => {
          if (--unsettled === 0) done?.();
        };
        for (const { offset, bytes } of runs) {
          this.stats.bytesWritten += bytes.length;
          await this.queue(offset, bytes.length, bytes.length, () => this.nbd.write(offset, bytes), settled);
        }
        return;
      }
      case 'disk-end':
        return;
    }
  }

  /** Waits for every write, then flushes the drive (NBD_CMD_FLUSH). */
  async finish(): Promise<SinkStats> {
    await this.sendZeroRun();
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    this.throwIfFailed();
    await this.nbd.flush();
    return { ...this.stats };
  }

  /** Closes the connection, deletes the export and stops the server if it was started here. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
    await this.nbd.close();
    await deleteExport(this.options.qmp, this.exportId);
    if (!this.options.serverStarted) await stopNbdServer(this.options.qmp);
  }

  /** Bytes of the chunk at `offset` inside the drive; the offset must start a chunk inside it. */
  private chunkBytes(offset: number): number {
    const { chunkSize, size } = this.header;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % chunkSize !== 0 || offset >= size) {
      throw new ArgumentError(`a record at byte ${offset}: not the start of a chunk of ${chunkSize} bytes inside the drive's ${size}`);
    }
    return Math.min(chunkSize, size - offset);
  }

  /** Sends the adjacent ZERO_BLOCKs gathered so far as one WRITE_ZEROES. */
  private async sendZeroRun(): Promise<void> {
    const run = this.zeroRun;
    if (run === undefined) return;
    this.zeroRun = undefined;
    await this.queue(run.offset, run.length, ZERO_WRITE_COST, () => this.nbd.writeZeroes(run.offset, run.length));
  }

  /**
   * Starts `write` of [offset, offset + length) once the writes before it on the same chunks
   * settled and `cost` fits in the window; `done` runs when it has settled.
   */
  private async queue(offset: number, length: number, cost: number, write: () => Promise<void>, done?: () => void): Promise<void> {
    const { chunkSize } = this.header;
    const first = Math.floor(offset / chunkSize);
    const last = Math.floor((offset + length - 1) / chunkSize);
    // apply() is awaited record by record, so no other write can take these chunks meanwhile.
    for (let chunk = first; chunk <= last; chunk++) {
      const before = this.busy.get(chunk);
      if (before !== undefined) await before;
    }
    this.throwIfFailed();
    while (this.inFlight.size > 0 && this.inFlightBytes + cost > this.windowBytes) {
      await Promise.race(this.inFlight);
      this.throwIfFailed();
    }
    this.inFlightBytes += cost;
    const promise: Promise<void> = write()
      .then(
        () => undefined,
        (error: unknown) => {
          this.failure ??= error;
        },
      )
      .finally(() => {
        this.inFlightBytes -= cost;
        this.inFlight.delete(promise);
        for (let chunk = first; chunk <= last; chunk++) if (this.busy.get(chunk) === promise) this.busy.delete(chunk);
        done?.();
      });
    this.inFlight.add(promise);
    for (let chunk = first; chunk <= last; chunk++) this.busy.set(chunk, promise);
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }
}
