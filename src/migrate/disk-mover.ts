/**
 * The source side of `migrate --disk DRIVE…` (issue 16 item 4): moves the VM's drives through
 * QEMU's own NBD server and dirty bitmaps (src/disk) to `incoming --disk` over the control port
 * (disk-wire.ts), on any QEMU, around the RAM migration:
 *
 *   start ─▶ first copy ─▶ dirty passes until small (disk-policy.ts; the guest's write limit
 *   lowered while they do not shrink) ─▶ RAM pre-copy starts, dirty passes go on beside it
 *   ─▶ pre-switchover (source paused) ─▶ last pass, END, both drives hashed and compared
 *   ─▶ migrate-continue … ─▶ the write limits put back
 *
 * Any failure throws; the caller cancels the RAM migration (the source resumes) and calls
 * abort(), which puts the limits back and removes bitmaps, exports and the NBD server.
 */
import { join } from 'node:path';
import { hashDrive, compareChunkHashes } from '../disk/consistency.js';
import { DiskStreamEncoder } from '../disk/disk-stream.js';
import { DiskError, DiskMismatchError } from '../disk/errors.js';
import { readIoLimits, setIoLimits, startNbdServer, stopNbdServer, type IoLimits } from '../disk/qmp-block.js';
import { DiskSource, type PassStats } from '../disk/source.js';
import type { QmpClient } from '../qemu/qmp.js';
import type { TlsMaterial } from '../tls/credentials.js';
import { DiskChannel } from './disk-channel.js';
import { DiskPolicy, readyBytesForLink, type DiskDecision } from './disk-policy.js';
import { HASH_CHUNK_BYTES } from './disk-wire.js';
import { WakeablePause } from './wakeable-pause.js';

export type DiskPhase = 'first-copy' | 'before-ram' | 'beside-ram' | 'last';

export type DiskEvent =
  | { type: 'disk-pass'; drive: string; phase: DiskPhase; pass: number; bytes: number; selectedBytes: number; chunks: number; ms: number; elapsedMs: number }
  | { type: 'disk-throttle'; drive: string; bytesPerSecond: number; reason: string; elapsedMs: number }
  | { type: 'disk-ready'; reason: string; elapsedMs: number }
  | { type: 'notice'; message: string; elapsedMs: number };

export interface DiskMoverOptions {
  qmp: QmpClient;
  /** The source's drives (drive id, qdev id or node name), in the order `incoming --disk` names its own. */
  drives: readonly string[];
  /** A directory for QEMU's NBD socket (QEMU must be able to create it there). */
  scratch: string;
  control: { host: string; port: number };
  tls: TlsMaterial | null;
  /** Chunk size of the records (mig-block-size). Default 1 MiB. */
  chunkSize?: number;
  /** Dirty bitmap granularity. Default 64 KiB. */
  granularity?: number;
  /** The link's rate (the probe's): what makes a pass small enough for RAM to start. */
  linkBytesPerSecond?: number;
  /** Lower the guest's write limit when passes stop shrinking. Default true. */
  throttle?: boolean;
  /** The first copy zeroes on the destination what the source reads as zeros (DiskSourceOptions; default true). */
  zeroUnallocated?: boolean;
  /** Pause between dirty passes once RAM runs. Default 500 ms. */
  besideRamPauseMs?: number;
  timeoutMs?: number;
  onEvent?: (event: DiskEvent) => void;
}

export interface DrivePassReport {
  pass: number;
  phase: DiskPhase;
  bytes: number;
  selectedBytes: number;
  chunks: number;
  ms: number;
}

export interface DriveReport {
  drive: string;
  size: number;
  chunkSize: number;
  granularity: number;
  /** Disk-stream bytes sent, all passes. */
  bytesSent: number;
  passes: DrivePassReport[];
  /** Write limits set on the guest (bytes/s), with when (ms from the start). */
  throttle: { atMs: number; bytesPerSecond: number }[];
  /** The destination's write counts. */
  applied: { records: number; bytesWritten: number; bytesZeroed: number } | null;
  /** The consistency check at switch-over: chunks of HASH_CHUNK_BYTES compared, all equal. */
  check: { chunks: number; chunkSize: number; ms: number } | null;
}

export interface DiskMoveReport {
  drives: DriveReport[];
  /** From start to RAM allowed to start. */
  beforeRamMs: number;
  /** The paused source's last pass and check (part of the guest's downtime). */
  switchoverMs: number | null;
  notices: string[];
}

interface Drive {
  name: string;
  source: DiskSource;
  channel: DiskChannel;
  encoder: DiskStreamEncoder;
  policy: DiskPolicy;
  ready: boolean;
  /** The limits before we touched them (undefined: never throttled). */
  limitsBefore: IoLimits | undefined;
  lastPassStartMs: number;
  report: DriveReport;
}

export class DiskMover {
  private readonly startedAtMs = Date.now();
  private beside: Promise<void> | undefined;
  private stopBeside = false;
  private readonly besidePause = new WakeablePause();
  private besideFailure: unknown;
  private readyAtMs: number | undefined;
  private switchoverMs: number | null = null;
  private readonly notices: string[] = [];
  private closed = false;

  private constructor(
    private readonly options: DiskMoverOptions,
    private readonly drives: Drive[],
  ) {}

  /** Starts QEMU's NBD server, finds the drives and opens a disk connection for each. */
  static async start(options: DiskMoverOptions): Promise<DiskMover> {
    const { qmp } = options;
    const socketPath = join(options.scratch, 'disk-nbd.sock');
    await startNbdServer(qmp, socketPath);
    const drives: Drive[] = [];
    const mover = new DiskMover(options, drives);
    try {
      for (const [index, name] of options.drives.entries()) {
        const source = await DiskSource.open({
          qmp,
          drive: name,
          socketPath,
          serverStarted: true,
          chunkSize: options.chunkSize ?? 1024 * 1024,
          granularity: options.granularity ?? 64 * 1024,
          deltas: true,
          zeroUnallocated: options.zeroUnallocated,
          prefix: `migstream-${index}`,
        });
        const { header } = source;
        const channel = await DiskChannel.open({
          ...options.control,
          tls: options.tls,
          open: { type: 'disk-stream', index, drive: name, size: header.size, chunkSize: header.chunkSize },
          timeoutMs: options.timeoutMs ?? 30_000,
        });
        const encoder = new DiskStreamEncoder(header);
        drives.push({
          name,
          source,
          channel,
          encoder,
          policy: new DiskPolicy({ readyBytes: readyBytesForLink(options.linkBytesPerSecond ?? 0), throttle: options.throttle ?? true }),
          ready: false,
          limitsBefore: undefined,
          lastPassStartMs: Date.now(),
          report: { drive: name, size: header.size, chunkSize: header.chunkSize, granularity: source.bitmapGranularity, bytesSent: 0, passes: [], throttle: [], applied: null, check: null },
        });
        await channel.write([encoder.start()]);
      }
    } catch (error) {
      await mover.abort();
      throw error;
    }
    return mover;
  }

  private elapsed(): number {
    return Date.now() - this.startedAtMs;
  }

  private emit(event: DiskEvent): void {
    this.options.onEvent?.(event);
  }

  /** One pass of one drive (the first copy when it has had none), recorded and reported. */
  private async pass(drive: Drive, phase: DiskPhase): Promise<PassStats> {
    const emit = (record: Parameters<DiskStreamEncoder['encode']>[0], done: () => void): Promise<void> => drive.channel.write(drive.encoder.encode(record), done);
    drive.lastPassStartMs = Date.now();
    const stats = await (phase === 'first-copy' ? drive.source.firstCopy(emit) : drive.source.pass(emit)).catch((error: unknown) => {
      // QMP's and the connection's errors do not say which drive they were about (DiskErrors do).
      if (error instanceof Error && !(error instanceof DiskError)) error.message = `disk ${JSON.stringify(drive.name)}, ${phase} pass: ${error.message}`;
      throw error;
    });
    drive.report.bytesSent += stats.bytes;
    const entry = { pass: stats.pass, phase, bytes: stats.bytes, selectedBytes: stats.selectedBytes, chunks: stats.chunks, ms: stats.ms };
    drive.report.passes.push(entry);
    this.emit({ type: 'disk-pass', drive: drive.name, ...entry, elapsedMs: this.elapsed() });
    return stats;
  }

  /**
   * The first copy of every drive, then dirty passes until each is small enough for RAM to
   * start (disk-policy.ts), lowering a drive's write limit while its passes do not shrink.
   */
  async converge(): Promise<void> {
    for (const drive of this.drives) await this.pass(drive, 'first-copy');
    // Without a probe, the link's rate is what the first copies crossed it at.
    if (this.options.linkBytesPerSecond === undefined) {
      const bytes = this.drives.reduce((sum, d) => sum + d.report.bytesSent, 0);
      const ms = this.drives.reduce((sum, d) => sum + d.report.passes[0]!.ms, 0);
      if (bytes >= 8 * 1024 * 1024) for (const drive of this.drives) drive.policy = new DiskPolicy({ readyBytes: readyBytesForLink((bytes * 1000) / Math.max(1, ms)), throttle: this.options.throttle ?? true });
    }
    while (this.drives.some((d) => !d.ready)) {
      for (const drive of this.drives) {
        if (drive.ready) continue;
        const windowMs = Date.now() - drive.lastPassStartMs;
        const stats = await this.pass(drive, 'before-ram');
        await this.carryOut(drive, drive.policy.observe({ bytes: stats.bytes, windowMs }));
      }
    }
    this.readyAtMs = this.elapsed();
  }

  private async carryOut(drive: Drive, decision: DiskDecision): Promise<void> {
    switch (decision.kind) {
      case 'pass-again':
        return;
      case 'throttle': {
        const { qmp } = this.options;
        drive.limitsBefore ??= await readIoLimits(qmp, drive.source.node);
        await setIoLimits(qmp, drive.source.node, { ...drive.limitsBefore, bps_wr: decision.bytesPerSecond });
        drive.report.throttle.push({ atMs: this.elapsed(), bytesPerSecond: decision.bytesPerSecond });
        this.emit({ type: 'disk-throttle', drive: drive.name, bytesPerSecond: decision.bytesPerSecond, reason: decision.reason, elapsedMs: this.elapsed() });
        return;
      }
      case 'start-ram':
        drive.ready = true;
        if (decision.notice !== undefined) {
          this.notices.push(`${drive.name}: ${decision.notice}`);
          this.emit({ type: 'notice', message: `disk ${drive.name}: ${decision.notice}`, elapsedMs: this.elapsed() });
        }
        this.emit({ type: 'disk-ready', reason: `${drive.name}: ${decision.reason}`, elapsedMs: this.elapsed() });
        return;
    }
  }

  /** Dirty passes beside the RAM migration, so the paused source's last one is small. */
  startBesideRam(): void {
    const pauseMs = this.options.besideRamPauseMs ?? 500;
    this.beside = (async () => {
      while (!this.stopBeside) {
        for (const drive of this.drives) {
          if (this.stopBeside) return;
          await this.pass(drive, 'beside-ram');
        }
        // Cut short by switchover(): the guest is paused and waiting for the last pass.
        await this.besidePause.pause(pauseMs);
      }
    })().catch((error: unknown) => {
      this.besideFailure = error;
    });
  }

  /** Throws the failure of a pass beside RAM, if one failed (for the RAM migration's poll). */
  watch(): void {
    if (this.besideFailure !== undefined) throw this.besideFailure;
  }

  /**
   * With the source paused at pre-switchover: the last pass of every drive, END, then both
   * sides hash their drive and compare (each side on its own); throws DiskMismatchError naming
   * the first chunks that differ. Then bitmaps, exports and the NBD server go.
   */
  async switchover(): Promise<void> {
    const started = Date.now();
    this.stopBeside = true;
    this.besidePause.wake();
    await this.beside;
    this.watch();
    for (const drive of this.drives) {
      await this.pass(drive, 'last');
      await drive.channel.write(drive.encoder.end());
    }
    await Promise.all(this.drives.map((drive) => this.check(drive)));
    // The guest is paused: its write limits can go back now (the destination keeps its own).
    await this.restoreLimits();
    await this.closeSources();
    for (const drive of this.drives) drive.channel.close();
    this.switchoverMs = Date.now() - started;
  }

  private async check(drive: Drive): Promise<void> {
    const checkStarted = Date.now();
    const { size } = drive.source.header;
    const own = drive.source.withReader((nbd) => hashDrive(nbd, { size, chunkSize: HASH_CHUNK_BYTES }));
    own.catch(() => undefined);
    // Flushing and hashing take about a second a GiB on each side; give them ten.
    const timeoutMs = 60_000 + (size / 2 ** 30) * 10_000;
    drive.report.applied = await drive.channel.reader.next('disk-applied', timeoutMs, 'confirmation of the disk stream');
    const ours = await own;
    drive.channel.sendHashes(ours, HASH_CHUNK_BYTES);
    const theirs = await drive.channel.reader.next('disk-hashes', timeoutMs, 'hashes of its drive');
    const { count, first } = compareChunkHashes(ours, theirs.hashes, HASH_CHUNK_BYTES);
    if (count > 0) throw new DiskMismatchError(count, first, HASH_CHUNK_BYTES, { drive: drive.name, destination: drive.channel.peer });
    drive.report.check = { chunks: ours.length, chunkSize: HASH_CHUNK_BYTES, ms: Date.now() - checkStarted };
  }

  /** Puts back the write limits changed (after the switch-over, or after a failure). */
  async restoreLimits(): Promise<void> {
    for (const drive of this.drives) {
      if (drive.limitsBefore === undefined) continue;
      await setIoLimits(this.options.qmp, drive.source.node, drive.limitsBefore);
      drive.limitsBefore = undefined;
    }
  }

  private async closeSources(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const drive of this.drives) await drive.source.close().catch(() => undefined);
    await stopNbdServer(this.options.qmp).catch(() => undefined);
  }

  /** After a failure: connections cut, limits put back, bitmaps, exports and the server gone. */
  async abort(): Promise<void> {
    this.stopBeside = true;
    this.besidePause.wake();
    for (const drive of this.drives) drive.channel.destroy();
    await this.beside;
    if (this.options.qmp.closed) return;
    await this.restoreLimits().catch(() => undefined);
    await this.closeSources();
  }

  report(): DiskMoveReport {
    return { drives: this.drives.map((d) => d.report), beforeRamMs: this.readyAtMs ?? this.elapsed(), switchoverMs: this.switchoverMs, notices: this.notices };
  }
}
