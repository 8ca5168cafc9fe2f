/**
 * Bytes → lines for the small JSON-lines channels between our own processes (verdicts,
 * send-stats), bounded so a peer that never sends a newline costs at most `maxLine` bytes.
 * Pure. (QMP has its own splitter, qmp-wire.ts: QEMU ends lines in "\r\n" too.)
 */
export class BoundedLineSplitter {
  /** The bytes of an unfinished line, in the pieces they came in (a long line is not re-scanned). */
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(
    private readonly maxLine: number,
    /** The error to throw for a line longer than maxLine. */
    private readonly tooLong: () => Error,
  ) {}

  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let from = 0;
    for (let newline = chunk.indexOf(0x0a); newline !== -1; newline = chunk.indexOf(0x0a, from)) {
      this.keep(chunk.subarray(from, newline));
      lines.push(Buffer.concat(this.pending, this.pendingBytes).toString('utf8'));
      this.pending = [];
      this.pendingBytes = 0;
      from = newline + 1;
    }
    this.keep(chunk.subarray(from));
    return lines;
  }

  private keep(piece: Buffer): void {
    if (piece.length === 0) return;
    this.pendingBytes += piece.length;
    if (this.pendingBytes > this.maxLine) throw this.tooLong();
    this.pending.push(piece);
  }
}
