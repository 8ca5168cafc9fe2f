/** What a finished transfer reports, and its text form for stderr. */
import { formatBytes, formatRate, table } from '../cli/format.js';

export interface ChannelStats {
  index: number;
  frames: number;
  /** Stream bytes the channel carried. */
  rawBytes: number;
  /** Bytes on the wire before TLS (frame headers included, after compression). */
  wireBytes: number;
}

export interface TransferSummary {
  bytes: number;
  frames: number;
  seconds: number;
  crc: number;
  codec: string;
  tls: boolean;
  channels: ChannelStats[];
}

export function formatSummary(label: string, summary: TransferSummary): string {
  const rows = summary.channels.map((c) => [
    `channel ${c.index}`,
    c.frames,
    formatBytes(c.rawBytes),
    formatBytes(c.wireBytes),
    formatRate(c.rawBytes, summary.seconds),
  ]);
  rows.push(['total', summary.frames, formatBytes(summary.bytes), formatBytes(summary.channels.reduce((n, c) => n + c.wireBytes, 0)), formatRate(summary.bytes, summary.seconds)]);
  const head = `${label}: ${formatBytes(summary.bytes)} in ${summary.seconds.toFixed(2)} s (${formatRate(summary.bytes, summary.seconds)}), ${summary.channels.length} channel(s), ${summary.tls ? 'TLS 1.3' : 'plaintext'}, codec ${summary.codec}, crc32 ${summary.crc.toString(16).padStart(8, '0')}, stream complete`;
  return `${head}\n${table(['', 'frames', 'stream', 'wire', 'rate'], rows)}\n`;
}
