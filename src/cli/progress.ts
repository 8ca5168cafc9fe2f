/**
 * Progress lines on stderr (never stdout, which may carry the migration stream), redrawn in
 * place at most twice a second.
 */
import { formatBytes, formatRate } from './format.js';

/** One status line on stderr: the timing and redrawing every progress display shares. */
export class StatusLine {
  private readonly started = process.hrtime.bigint();
  private lastPrint = 0;
  private printed = false;

  constructor(private readonly enabled: boolean) {}

  /** Seconds since the start. */
  elapsed(): number {
    return Number(process.hrtime.bigint() - this.started) / 1e9;
  }

  /** Redraws the line with `render()` unless disabled or drawn less than 500 ms ago. */
  show(render: () => string): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastPrint < 500) return;
    this.lastPrint = now;
    process.stderr.write(`\r${render()}   `);
    this.printed = true;
  }

  done(): void {
    if (this.printed) process.stderr.write('\n');
    this.printed = false;
  }

  /** " (45.2%, 3 s left)" when the total is known, else "". */
  share(done: number, total: number | null): string {
    if (!total) return '';
    const percent = ((100 * done) / total).toFixed(1);
    const elapsed = this.elapsed();
    if (done <= 0 || elapsed < 0.5) return ` (${percent}%)`;
    const left = (elapsed * (total - done)) / done;
    return ` (${percent}%, ${left < 60 ? `${Math.ceil(left)} s` : `${Math.floor(left / 60)} min ${Math.ceil(left % 60)} s`} left)`;
  }
}

/** "copy: 120.0 MiB (45.2%, 3 s left) at 800 MB/s". */
export class Progress extends StatusLine {
  constructor(
    enabled: boolean,
    private readonly label: string,
    private readonly total: number | null,
  ) {
    super(enabled);
  }

  update(bytes: number): void {
    this.show(() => {
      return `${this.label}: ${formatBytes(bytes)}${this.share(bytes, this.total)} at ${formatRate(bytes, this.elapsed())}`;
    });
  }
}
