/**
 * The destination side of `incoming --disk DRIVE…`: takes each drive's disk connection from
 * the control port (verdict-channel.ts hands it over after its first line), writes what it
 * carries into the drive through the destination QEMU's own writable NBD export (DiskSink),
 * flushes at END, and checks the drive against the source's hashes (disk-wire.ts). `incoming`
 * resumes the guest only when every drive arrived whole and checked out (waitAll).
 *
 * A connection that fails leaves its drive failed, and the guest is not resumed; a connection
 * for a drive that is already arriving, or that this side does not take, is refused and does
 * not disturb the one that is.
 */
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { compareChunkHashes, hashDrive } from '../disk/consistency.js';
import { DiskStreamDecoder, SUB_BLOCK_SIZE } from '../disk/disk-stream.js';
import { DiskMismatchError } from '../disk/errors.js';
import { findDriveNode, startNbdServer, stopNbdServer } from '../disk/qmp-block.js';
import { DiskSink } from '../disk/sink.js';
import type { QmpClient } from '../qemu/qmp.js';
import { DiskLineReader } from './disk-channel.js';
import { encodeDiskMessage, HASH_CHUNK_BYTES, type DiskOpenMessage } from './disk-wire.js';
import { DiskStreamMissingError } from './errors.js';

export interface DriveArrival {
  drive: string;
  /** The source's name of it. */
  sourceDrive: string;
  peer: string;
  records: number;
  bytesWritten: number;
  bytesZeroed: number;
  /** Hash chunks compared, all equal. */
  chunksChecked: number;
  ms: number;
}

type DriveState = { state: 'waiting' } | { state: 'arriving'; peer: string } | { state: 'done'; arrival: DriveArrival } | { state: 'failed'; error: Error };

export type DiskReceiveEvent =
  | { type: 'disk-arriving'; drive: string; peer: string }
  | { type: 'disk-applied'; drive: string; records: number }
  | { type: 'disk-checked'; drive: string; ms: number }
  | { type: 'disk-failed'; drive: string; message: string };

export class DiskReceiver {
  private readonly states: DriveState[];
  private readonly sockets = new Set<Socket>();
  private changed: (() => void) | undefined;

  private constructor(
    private readonly qmp: QmpClient,
    private readonly drives: readonly string[],
    private readonly socketPath: string,
    private readonly onEvent: (event: DiskReceiveEvent) => void,
  ) {
    this.states = drives.map(() => ({ state: 'waiting' }));
  }

  /** Finds the drives (a clear error for a missing one) and starts QEMU's NBD server. */
  static async prepare(options: { qmp: QmpClient; drives: readonly string[]; scratch: string; onEvent?: (event: DiskReceiveEvent) => void }): Promise<DiskReceiver> {
    for (const drive of options.drives) await findDriveNode(options.qmp, drive);
    const socketPath = join(options.scratch, 'disk-nbd.sock');
    await startNbdServer(options.qmp, socketPath);
    return new DiskReceiver(options.qmp, options.drives, socketPath, options.onEvent ?? (() => undefined));
  }

  /** For VerdictListener's onDiskStream. */
  readonly accept = (socket: Socket, open: DiskOpenMessage, peer: string): void => {
    const refuse = (reason: string): void => {
      socket.end(encodeDiskMessage({ type: 'disk-refused', reason }));
    };
    const state = this.states[open.index];
    if (state === undefined) {
      refuse(`this side takes ${this.drives.length} drive(s) (incoming --disk), not drive ${open.index} (${open.drive})`);
      return;
    }
    if (state.state === 'arriving' || state.state === 'done') {
      refuse(`drive ${open.index} (${this.drives[open.index]}) is ${state.state === 'done' ? 'already here' : `already arriving from ${state.peer}`}`);
      return;
    }
    this.states[open.index] = { state: 'arriving', peer };
    this.sockets.add(socket);
    socket.on('error', () => undefined);
    const drive = this.drives[open.index]!;
    this.onEvent({ type: 'disk-arriving', drive, peer });
    this.receive(socket, open, drive, peer).then(
      (arrival) => this.settle(open.index, { state: 'done', arrival }),
      (error: unknown) => {
        // A refusal already ended the socket with its reason: let that line go out.
        if (socket.writableEnded) socket.destroySoon();
        else socket.destroy();
        const failure = error instanceof Error ? error : new Error(String(error));
        failure.message = `disk ${drive} from ${peer}: ${failure.message}`;
        this.onEvent({ type: 'disk-failed', drive, message: failure.message });
        this.settle(open.index, { state: 'failed', error: failure });
      },
    );
  };

  private settle(index: number, state: DriveState): void {
    this.states[index] = state;
    this.changed?.();
  }

  private async receive(socket: Socket, open: DiskOpenMessage, drive: string, peer: string): Promise<DriveArrival> {
    const started = Date.now();
    const header = { device: open.drive, size: open.size, chunkSize: open.chunkSize, subBlockSize: SUB_BLOCK_SIZE };
    let sink: DiskSink;
    try {
      sink = await DiskSink.open({ qmp: this.qmp, drive, socketPath: this.socketPath, serverStarted: true, header, exportId: `migstream-sink-${open.index}` });
    } catch (error) {
      socket.end(encodeDiskMessage({ type: 'disk-refused', reason: (error as Error).message }));
      throw error;
    }
    try {
      socket.write(encodeDiskMessage({ type: 'disk-ready' }));
      const records = await this.applyStream(socket, sink, open);
      const stats = await sink.finish();
      socket.write(encodeDiskMessage({ type: 'disk-applied', records, bytesWritten: stats.bytesWritten, bytesZeroed: stats.bytesZeroed }));
      this.onEvent({ type: 'disk-applied', drive, records });
      const reader = new DiskLineReader(socket, open.size, `the source ${peer}`);
      const ours = await hashDrive(sink.nbd, { size: open.size, chunkSize: HASH_CHUNK_BYTES });
      socket.write(encodeDiskMessage({ type: 'disk-hashes', chunkSize: HASH_CHUNK_BYTES, hashes: ours }));
      const theirs = await reader.next('disk-hashes', 60_000 + (open.size / 2 ** 30) * 10_000, 'hashes of its drive');
      const { count, first } = compareChunkHashes(theirs.hashes, ours, HASH_CHUNK_BYTES);
      if (count > 0) throw new DiskMismatchError(count, first, HASH_CHUNK_BYTES, { drive, destination: `${sink.nbd.peer}, checked against the source ${peer}` });
      this.onEvent({ type: 'disk-checked', drive, ms: Date.now() - started });
      return { drive, sourceDrive: open.drive, peer, records, bytesWritten: stats.bytesWritten, bytesZeroed: stats.bytesZeroed, chunksChecked: ours.length, ms: Date.now() - started };
    } finally {
      await sink.close().catch(() => undefined);
    }
  }

  /** Decodes the disk stream from `socket` into `sink` until its END; the socket is paused while writes catch up. */
  private applyStream(socket: Socket, sink: DiskSink, open: DiskOpenMessage): Promise<number> {
    // Records point into the received chunks, which are not reused: no copy. A chunk's frame
    // spans the socket's reads: it is gathered into a buffer the decoder reuses once written.
    const decoder = new DiskStreamDecoder({ copy: false, reuseBuffers: true });
    let records = 0;
    return new Promise<number>((resolve, reject) => {
      const stop = (error: Error | null): void => {
        socket.off('data', onData);
        socket.off('close', onClose);
        socket.pause();
        if (error) reject(error);
        else resolve(records);
      };
      const onClose = (): void => stop(new Error('the connection closed before the disk stream ended'));
      const onData = (chunk: Buffer): void => {
        socket.pause();
        void (async () => {
          try {
            for (const record of decoder.push(chunk)) {
              const h = decoder.header!;
              if (h.size !== open.size || h.chunkSize !== open.chunkSize || h.device !== open.drive) {
                throw new Error(`the disk stream's header (${h.device}, ${h.size} bytes, chunks of ${h.chunkSize}) is not what its first line announced`);
              }
              await sink.apply(record, () => decoder.release(record));
              if (record.type !== 'disk-end') records++;
            }
            if (decoder.complete) stop(null);
            else socket.resume();
          } catch (error) {
            stop(error as Error);
          }
        })();
      };
      socket.on('data', onData);
      socket.on('close', onClose);
      socket.resume();
    });
  }

  /**
   * While RAM loads: every drive must have arrived or be arriving (the source sends the disk
   * before RAM starts), and none may have failed.
   */
  watch(): void {
    for (const [index, state] of this.states.entries()) {
      if (state.state === 'failed') throw state.error;
      if (state.state === 'waiting') {
        throw new DiskStreamMissingError(`RAM is arriving but no disk stream came for drive ${this.drives[index]} (is the source running "migrate --disk"?)`);
      }
    }
  }

  /** Waits until every drive arrived and checked out; throws the first failure. */
  async waitAll(timeoutMs: number): Promise<DriveArrival[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.watch();
      if (this.states.every((s) => s.state === 'done')) return this.states.map((s) => (s as { arrival: DriveArrival }).arrival);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new DiskStreamMissingError(`the disk of ${this.drives.filter((_, i) => this.states[i]!.state !== 'done').join(', ')} did not finish arriving within ${Math.round(timeoutMs / 1000)} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 1000));
        this.changed = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.changed = undefined;
    }
  }

  /** Cuts connections still open and stops QEMU's NBD server. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    if (!this.qmp.closed) await stopNbdServer(this.qmp).catch(() => undefined);
  }
}
