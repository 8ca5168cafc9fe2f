/**
 * Frames a section body that is not self-describing (device state) by its footer.
 *
 * A vmstate body has no length: QEMU's destination knows the device's fields, we do not. The
 * body ends at `0x7e be32 section_id` (save_section_footer in savevm.c), but those five bytes
 * can also occur inside device data, so a candidate is accepted only when a plausible section
 * header (or EOF and the vmdesc) follows it. The scanner accumulates the body in one growing
 * buffer (each byte copied once) and remembers how far it has searched, so feeding it in
 * pieces costs O(body).
 */
import { SectionType } from './records.js';

export interface BoundaryRules {
  /** Section ids whose START header has been seen (valid after PART/END). */
  isKnownSection(sectionId: number): boolean;
  /** Largest vmdesc length accepted after EOF. */
  maxVmdescBytes: number;
}

export interface FoundBoundary {
  /** The section body, without the footer. */
  body: Buffer;
  /** Bytes after the footer that the scanner took in; they belong to the next record. */
  rest: Buffer;
}

type Verdict = 'yes' | 'no' | 'more';

const FOOTER_LENGTH = 5;

export class FooterScanner {
  private buffer: Buffer = Buffer.allocUnsafe(4096);
  private length = 0;
  /** Every footer candidate before this position has been rejected. */
  private searchFrom = 0;
  private readonly footer: Buffer;

  constructor(sectionId: number) {
    this.footer = Buffer.alloc(FOOTER_LENGTH);
    this.footer[0] = SectionType.FOOTER;
    this.footer.writeUInt32BE(sectionId >>> 0, 1);
  }

  /** Bytes taken in so far. */
  get size(): number {
    return this.length;
  }

  append(views: readonly Buffer[]): void {
    for (const view of views) {
      if (this.length + view.length > this.buffer.length) {
        const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + view.length));
        this.buffer.copy(grown, 0, 0, this.length);
        this.buffer = grown;
      }
      view.copy(this.buffer, this.length);
      this.length += view.length;
    }
  }

  /**
   * Looks for the footer followed by a plausible next record. Returns null when more input is
   * needed to decide; `atEnd` says no more input will come.
   */
  find(rules: BoundaryRules, atEnd: boolean): FoundBoundary | null {
    const data = this.buffer.subarray(0, this.length);
    for (;;) {
      const at = data.indexOf(this.footer, this.searchFrom);
      if (at < 0) {
        // Keep the last bytes searchable: a footer may straddle the next append.
        this.searchFrom = Math.max(0, this.length - FOOTER_LENGTH + 1);
        return null;
      }
      const verdict = nextRecordVerdict(data, at + FOOTER_LENGTH, rules, atEnd);
      if (verdict === 'more') {
        this.searchFrom = at;
        return null;
      }
      if (verdict === 'yes') {
        return { body: data.subarray(0, at), rest: data.subarray(at + FOOTER_LENGTH) };
      }
      this.searchFrom = at + 1;
    }
  }
}

function isPrintable(data: Buffer, start: number, end: number): boolean {
  for (let i = start; i < end; i++) {
    const c = data[i]!;
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/** Decides whether the bytes at `at` can start the record that follows a section footer. */
function nextRecordVerdict(data: Buffer, at: number, rules: BoundaryRules, atEnd: boolean): Verdict {
  const left = data.length - at;
  const need = (n: number): boolean => left >= n;
  if (!need(1)) return atEnd ? 'no' : 'more';
  switch (data[at]) {
    case SectionType.START:
    case SectionType.FULL: {
      // u8 type, be32 section_id, u8 len, idstr[len], be32 instance_id, be32 version_id
      if (!need(6)) return atEnd ? 'no' : 'more';
      const idLength = data[at + 5]!;
      if (idLength === 0) return 'no';
      if (!need(6 + idLength + 8)) return atEnd ? 'no' : 'more';
      return isPrintable(data, at + 6, at + 6 + idLength) ? 'yes' : 'no';
    }
    case SectionType.PART:
    case SectionType.END:
      if (!need(5)) return atEnd ? 'no' : 'more';
      return rules.isKnownSection(data.readUInt32BE(at + 1)) ? 'yes' : 'no';
    case SectionType.COMMAND:
      if (!need(5)) return atEnd ? 'no' : 'more';
      return data.readUInt16BE(at + 1) > 0 && data.readUInt16BE(at + 1) <= 10 ? 'yes' : 'no';
    case SectionType.EOF: {
      // EOF, then either the end of the stream or the vmdesc: 0x06 be32 len '{'.
      if (left === 1) return atEnd ? 'yes' : 'more';
      if (data[at + 1] !== SectionType.VMDESCRIPTION) return 'no';
      if (!need(7)) return atEnd ? 'no' : 'more';
      const jsonLength = data.readUInt32BE(at + 2);
      return jsonLength > 0 && jsonLength <= rules.maxVmdescBytes && data[at + 6] === 0x7b ? 'yes' : 'no';
    }
    default:
      return 'no';
  }
}
