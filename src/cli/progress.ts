/**
 * Progress lines on stderr (never stdout, which may carry the migration stream).
 */
import { formatBytes, formatRate } from './format.js';

export class Progress {
  private readonly started = process.hrtime.bigint();
  private lastPrint = 0;
  private printed = false;

  constructor(
    private readonly enabled: boolean,
    private readonly label: string,
    private readonly total: number | null,
  ) {}

  /** Seconds since the start. */
  elapsed(): number {
    return Number(process.hrtime.bigint() - this.started) / 1e9;
  }

  update(bytes: number): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastPrint < 500) return;
    this.lastPrint = now;
    const share = this.total ? ` (${((100 * bytes) / this.total).toFixed(1)}%)` : '';
    process.stderr.write(`\r${this.label}: ${formatBytes(bytes)}${share} at ${formatRate(bytes, this.elapsed())}   `);
    this.printed = true;
  }

  done(): void {
    if (this.printed) process.stderr.write('\n');
  }
}
