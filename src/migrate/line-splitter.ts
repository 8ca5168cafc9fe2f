/**
 * Bytes → lines for the small JSON-lines channels between our own processes (verdicts,
 * send-stats), bounded so a peer that never sends a newline costs at most `maxLine` bytes.
 * Pure. (QMP has its own splitter, qmp-wire.ts: QEMU ends lines in "\r\n" too.)
 */
export class BoundedLineSplitter {
  private pending = '';

  constructor(
    private readonly maxLine: number,
    /** The error to throw for a line longer than maxLine. */
    private readonly tooLong: () => Error,
  ) {}

  push(chunk: Buffer): string[] {
    this.pending += chunk.toString('utf8');
    const lines = this.pending.split('\n');
    this.pending = lines.pop()!;
    if (this.pending.length > this.maxLine || lines.some((l) => l.length > this.maxLine)) throw this.tooLong();
    return lines;
  }
}
