/**
 * What `send` (the exec: child QEMU starts) tells the `migrate` that started it, one JSON
 * object per line over a Unix socket in migrate's private scratch folder: how many stream
 * bytes it read, how many left for the kernel and how many went on the wire, the passes over
 * RAM it saw in the stream (pages, zero pages, re-sent pages; pass-tracker.ts) and what its
 * hold dropped (earlier copies of re-sent pages, ram/hot-page-hold.ts). The last
 * line, once the input ended, adds the heat map. migrate uses the wire figure for its rates
 * and QEMU's avail-switchover-bandwidth, and the passes for its report. Pure codec.
 */
import { MigstreamError } from '../stream/errors.js';
import { BoundedLineSplitter } from './line-splitter.js';
import type { HoldSavings } from '../ram/hot-page-hold.js';
import type { HeatSegment, PassCounts } from './pass-tracker.js';

/** Passes and 16 heat segments fit well below this; a longer line is not our send. */
export const MAX_SEND_STATS_LINE = 256 * 1024;
/** Heat segments a final line carries (hottest first). */
export const MAX_HEAT_SEGMENTS = 16;

export interface SendStats {
  type: 'send-stats';
  /** Stream bytes read from QEMU's pipe. */
  streamBytes: number;
  /** Stream bytes whose frames the sockets took (written to the kernel). */
  leftBytes: number;
  /** Bytes those frames took on the wire (compressed, with frame headers). */
  wireBytes: number;
  passes: PassCounts[];
  /** send's hold for hot-page dropping: its size (0: none) and what it dropped. */
  hold: HoldReport;
  /** Present on the last line, sent when the input ended. */
  heat?: HeatSegment[];
}

export interface HoldReport extends HoldSavings {
  /** The most stream bytes send holds (--hold); 0 when it holds none. */
  limitBytes: number;
}

export class SendStatsProtocolError extends MigstreamError {
  constructor(message: string) {
    super('ERR_SEND_STATS_PROTOCOL', message);
  }
}

export function encodeSendStats(stats: SendStats): Buffer {
  const heat = stats.heat?.slice(0, MAX_HEAT_SEGMENTS);
  return Buffer.from(`${JSON.stringify(heat === undefined ? stats : { ...stats, heat })}\n`);
}

const count = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function isPass(value: unknown): value is PassCounts {
  const p = value as PassCounts;
  return typeof p === 'object' && p !== null && count(p.index) && count(p.pages) && count(p.zeroPages) && count(p.resentPages) && count(p.payloadBytes);
}

function isHold(value: unknown): value is HoldReport {
  const h = value as HoldReport;
  return typeof h === 'object' && h !== null && count(h.limitBytes) && count(h.droppedPages) && count(h.droppedBytes) && count(h.pinnedPages) && count(h.keptPages);
}

function isHeat(value: unknown): value is HeatSegment {
  const h = value as HeatSegment;
  return typeof h === 'object' && h !== null && typeof h.block === 'string' && count(h.offset) && count(h.length) && count(h.resends);
}

/** One line (without its newline) → stats, or SendStatsProtocolError naming what is wrong. */
export function decodeSendStats(line: string): SendStats {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new SendStatsProtocolError('a send-stats line is not JSON');
  }
  const v = value as Partial<SendStats>;
  if (typeof v !== 'object' || v === null || v.type !== 'send-stats') throw new SendStatsProtocolError('a send-stats line is not a send-stats object');
  if (!count(v.streamBytes) || !count(v.leftBytes) || !count(v.wireBytes)) throw new SendStatsProtocolError('send-stats byte counts are missing or not counts');
  if (!isHold(v.hold)) throw new SendStatsProtocolError('send-stats hold counts are missing or malformed');
  if (v.leftBytes + v.hold.droppedBytes > v.streamBytes) throw new SendStatsProtocolError('send-stats say more bytes left or were dropped than were read');
  if (!Array.isArray(v.passes) || !v.passes.every(isPass)) throw new SendStatsProtocolError('send-stats passes are malformed');
  const { limitBytes, droppedPages, droppedBytes, pinnedPages, keptPages } = v.hold;
  const stats: SendStats = {
    type: 'send-stats',
    streamBytes: v.streamBytes,
    leftBytes: v.leftBytes,
    wireBytes: v.wireBytes,
    passes: v.passes,
    hold: { limitBytes, droppedPages, droppedBytes, pinnedPages, keptPages },
  };
  if (v.heat !== undefined) {
    if (!Array.isArray(v.heat) || v.heat.length > MAX_HEAT_SEGMENTS || !v.heat.every(isHeat)) throw new SendStatsProtocolError('send-stats heat map is malformed');
    stats.heat = v.heat;
  }
  return stats;
}

/** Splits bytes into lines, refusing one longer than MAX_SEND_STATS_LINE. */
export class SendStatsLineSplitter extends BoundedLineSplitter {
  constructor() {
    super(MAX_SEND_STATS_LINE, () => new SendStatsProtocolError(`a send-stats line is longer than ${MAX_SEND_STATS_LINE} bytes`));
  }
}
