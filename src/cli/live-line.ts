/**
 * One updating status line on stderr for long QMP-driven runs (`migrate`, `incoming`): on a
 * terminal it rewrites itself in place; with --progress on a pipe or file it prints a line
 * at most once a second; notes always get a line of their own (unless --quiet / --json).
 */
import { progressWanted, type ReportValues } from './conventions.js';

export class LiveLine {
  private readonly shown: boolean;
  private readonly tty = process.stderr.isTTY === true;
  private dirty = false;
  private lastPrintMs = 0;

  constructor(private readonly values: ReportValues) {
    this.shown = progressWanted(values);
  }

  update(text: string): void {
    if (!this.shown) return;
    if (this.tty) {
      process.stderr.write(`\r${text}\x1b[K`);
      this.dirty = true;
    } else if (Date.now() - this.lastPrintMs >= 1000) {
      this.lastPrintMs = Date.now();
      process.stderr.write(`${text}\n`);
    }
  }

  note(text: string): void {
    if (this.values.quiet === true || this.values.json === true) return;
    this.done();
    process.stderr.write(`${text}\n`);
  }

  done(): void {
    if (this.dirty) process.stderr.write('\r\x1b[K');
    this.dirty = false;
  }
}
