/**
 * The progress line of compress and decompress on stderr (never stdout, which may carry the
 * stream): bytes in, bytes out, ratio and throughput, at most twice a second.
 */
import { UsageError } from './args.js';
import { formatBytes, formatRate } from './format.js';
import { StatusLine } from './progress.js';

export class TransferProgress extends StatusLine {
  constructor(
    enabled: boolean,
    private readonly label: string,
    /** Which side is the stream (for the ratio and the rate): compress reads it, decompress writes it. */
    private readonly streamSide: 'in' | 'out',
    /** Bytes of the input when known (a file): percent and time left. */
    private readonly inputTotal: number | null = null,
  ) {
    super(enabled);
  }

  /** The line: "compress: 120.0 MiB in, 44.1 MiB out, ratio 2.72, 310 MB/s". */
  line(bytesIn: number, bytesOut: number): string {
    const stream = this.streamSide === 'in' ? bytesIn : bytesOut;
    const packed = this.streamSide === 'in' ? bytesOut : bytesIn;
    const ratio = packed > 0 ? (stream / packed).toFixed(2) : '-';
    return `${this.label}: ${formatBytes(bytesIn)} in, ${formatBytes(bytesOut)} out, ratio ${ratio}, ${formatRate(stream, this.elapsed())}`;
  }

  update(bytesIn: number, bytesOut: number): void {
    this.show(() => `${this.line(bytesIn, bytesOut)}${this.share(bytesIn, this.inputTotal)}`);
  }
}

/** "4M", "512K", "1048576" → bytes. */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+)([KMG]?)(i?B)?$/i.exec(text.trim());
  if (!match) return undefined;
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[match[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Number(match[1]) * unit;
}

/** A positive integer option, or undefined when absent; throws the message otherwise. */
export function parseCount(text: string | undefined, what: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!(Number.isInteger(value) && value >= min && value <= max)) throw new UsageError(`${what} must be an integer in ${min}..${max}, got "${text}"`);
  return value;
}
