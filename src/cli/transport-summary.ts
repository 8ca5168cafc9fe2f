/** The summary `send` and `recv` print on stderr when a transfer ends. */
import { formatDigest } from '../tls/digest.js';
import type { TransferSummary } from '../tls/summary.js';
import { formatBytes, formatRate, table } from './format.js';

/** The summary as JSON: the digest as 16 hex digits. */
export function summaryJson(summary: TransferSummary): object {
  return { ...summary, digest: formatDigest(summary.digest) };
}

export function formatSummary(label: string, summary: TransferSummary): string {
  const rows = summary.channels.map((c) => [`channel ${c.index}`, c.frames, formatBytes(c.rawBytes), formatBytes(c.wireBytes), formatRate(c.rawBytes, summary.seconds)]);
  rows.push(['total', summary.frames, formatBytes(summary.bytes), formatBytes(summary.channels.reduce((n, c) => n + c.wireBytes, 0)), formatRate(summary.bytes, summary.seconds)]);
  const head = `${label}: ${formatBytes(summary.bytes)} in ${summary.seconds.toFixed(2)} s (${formatRate(summary.bytes, summary.seconds)}), ${summary.channels.length} channel(s), ${summary.tls ? 'TLS 1.3' : 'plaintext'}, codec ${summary.codec}, digest ${formatDigest(summary.digest)}, stream complete`;
  const hold = summary.hold;
  const dropped = hold
    ? `hot pages: ${hold.droppedPages} earlier copies (${formatBytes(hold.droppedBytes)} of ${formatBytes(hold.streamBytes)} read) dropped in a ${formatBytes(hold.limitBytes)} hold; ${hold.pinnedPages} kept under an XBZRLE delta, ${hold.keptPages} naming their block or across frames\n`
    : '';
  return `${head}\n${table(['', 'frames', 'stream', 'wire', 'rate'], rows)}\n${dropped}`;
}
