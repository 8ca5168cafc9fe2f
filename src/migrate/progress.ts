/**
 * Progress of a running migration, from successive query-migrate answers (and, where the
 * transport reports them, the bytes that left on the wire): one event per sample with rates
 * taken over the last interval, and the one line a terminal shows. Pure.
 */
import type { MigrationInfo } from '../qemu/migration.js';

export interface ProgressInput {
  atMs: number;
  info: MigrationInfo;
  /** Bytes the transport put on the wire so far, when it reports them. */
  wireBytes?: number;
  /** Stream bytes the transport handed to its sockets so far (send-stats leftBytes). */
  leftBytes?: number;
}

export interface ProgressEvent {
  type: 'progress';
  elapsedMs: number;
  status: string;
  /** 100 × (1 − remaining / total): how close the dirty set is to empty. */
  percent: number;
  /** Stream bytes QEMU wrote into our pipe. */
  transferred: number;
  remaining: number;
  total: number;
  /** Bytes per second into QEMU's pipe over the last interval. */
  pipeRate: number;
  /** Bytes per second on the wire over the last 2 s (null: the transport did not say). */
  wireRate: number | null;
  /**
   * Stream bytes per second the transport handed to its sockets (null: it
   * did not say): how fast the link drains QEMU's pipe, what downtime depends on.
   */
  drainRate: number | null;
  /** Bytes per second the guest dirties, as QEMU measures it (dirty-pages-rate × page size). */
  dirtyRate: number;
  /** dirty-sync-count: passes over RAM so far. */
  pass: number;
  /** cpu-throttle-percentage now. */
  throttle: number;
  /** Time left if the link keeps ahead of the dirtying; null when it does not. */
  etaMs: number | null;
}

interface MigrationRam {
  transferred?: number;
  remaining?: number;
  total?: number;
  'dirty-sync-count'?: number;
  'dirty-pages-rate'?: number;
  'page-size'?: number;
}

export class ProgressMeter {
  private previous: ProgressInput | undefined;
  private readonly startMs: number;
  /** The transport's counters over the last TRANSPORT_WINDOW_MS. */
  private readonly window: { atMs: number; wire: number | undefined; left: number | undefined }[] = [];

  constructor(startMs: number) {
    this.startMs = startMs;
  }

  push(input: ProgressInput): ProgressEvent {
    const ram = (input.info.ram ?? {}) as MigrationRam;
    const transferred = ram.transferred ?? 0;
    const remaining = ram.remaining ?? 0;
    const total = ram.total ?? 0;
    const previous = this.previous;
    this.previous = input;
    const seconds = previous ? (input.atMs - previous.atMs) / 1000 : 0;
    const rate = (now: number, before: number): number => (seconds > 0 ? Math.max(0, now - before) / seconds : 0);
    const pipeRate = previous ? rate(transferred, (previous.info.ram as MigrationRam | undefined)?.transferred ?? 0) : 0;
    const dirtyRate = (ram['dirty-pages-rate'] ?? 0) * (ram['page-size'] ?? 4096);
    const { wireRate, drainRate } = this.transportRates(input);
    const sendRate = drainRate ?? pipeRate;
    const etaMs = remaining === 0 ? 0 : sendRate > dirtyRate ? (remaining / (sendRate - dirtyRate)) * 1000 : null;
    return {
      type: 'progress',
      elapsedMs: input.atMs - this.startMs,
      status: input.info.status ?? 'unknown',
      percent: total > 0 ? Math.max(0, Math.min(100, 100 * (1 - remaining / total))) : 0,
      transferred,
      remaining,
      total,
      pipeRate,
      wireRate,
      drainRate,
      dirtyRate,
      pass: ram['dirty-sync-count'] ?? 0,
      throttle: typeof input.info['cpu-throttle-percentage'] === 'number' ? input.info['cpu-throttle-percentage'] : 0,
      etaMs,
    };
  }

  /** Wire and drain rates over the window: send reports only twice a second, we poll faster. */
  private transportRates(input: ProgressInput): { wireRate: number | null; drainRate: number | null } {
    this.window.push({ atMs: input.atMs, wire: input.wireBytes, left: input.leftBytes });
    while (this.window.length > 2 && input.atMs - this.window[1]!.atMs >= TRANSPORT_WINDOW_MS) this.window.shift();
    const oldest = this.window[0]!;
    const seconds = (input.atMs - oldest.atMs) / 1000;
    const rate = (now: number | undefined, before: number | undefined): number | null => (now === undefined ? null : before === undefined || seconds <= 0 ? 0 : Math.max(0, now - before) / seconds);
    return { wireRate: rate(input.wireBytes, oldest.wire), drainRate: rate(input.leftBytes, oldest.left) };
  }
}

/** Long enough to smooth send's twice-a-second reports, short enough to follow the link. */
const TRANSPORT_WINDOW_MS = 2000;

const MB = 1e6;

/** The terminal's one updating line, e.g. "42.0 %  120/380 MB  pipe 95.1 MB/s …". */
export function formatProgressLine(event: ProgressEvent): string {
  const parts = [
    `${event.percent.toFixed(1).padStart(5)} %`,
    `${(event.transferred / MB).toFixed(0)} MB sent, ${(event.remaining / MB).toFixed(0)} MB dirty`,
    event.wireRate === null ? `pipe ${(event.pipeRate / MB).toFixed(1)} MB/s` : `wire ${(event.wireRate / MB).toFixed(1)} MB/s, pipe ${(event.pipeRate / MB).toFixed(1)} MB/s`,
    `dirtying ${(event.dirtyRate / MB).toFixed(1)} MB/s`,
    `pass ${event.pass}`,
  ];
  if (event.throttle > 0) parts.push(`throttle ${event.throttle} %`);
  parts.push(event.etaMs === null ? 'not converging' : `~${Math.ceil(event.etaMs / 1000)} s left`);
  return parts.join('  ');
}
