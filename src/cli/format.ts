/** Human-readable figures for the text outputs. */

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

/** Decimal MB/s, as throughput is usually quoted. */
export function megabytesPerSecond(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / 1e6 / seconds : 0;
}

export function formatRate(bytes: number, seconds: number): string {
  return `${megabytesPerSecond(bytes, seconds).toFixed(0)} MB/s`;
}

/** Left-aligned first column, right-aligned others. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((row) => row.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? '').length)));
  return cells.map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')).join('\n');
}
