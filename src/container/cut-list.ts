/**
 * A META frame's raw bytes: the cut list, then the stream bytes of the segment with every
 * payload cut out.
 *
 *   uleb128 count
 *   count × cut      uleb128(gap * 4 + tag), then for REF uleb128(distance) and be32 checksum of
 *                    the page, for BYTES uleb128(length) (format.ts, CutTag)
 *   structure bytes  the rest of the frame
 *
 * Rebuilding the segment: copy `gap` structure bytes, then the cut's payload; repeat; then copy
 * the remaining structure bytes.
 */
import { CutTag, writeUleb } from './format.js';

/** Parallel arrays, one entry per cut, to keep large segments cheap. */
export interface CutList {
  readonly count: number;
  readonly tags: Uint8Array;
  readonly gaps: Float64Array;
  /** REF: distance in stored pages; BYTES: length; PAGE: 0. */
  readonly args: Float64Array;
  /** REF: the checksum of the referenced page (the container version's). */
  readonly checks: Uint32Array;
}

export class CutListBuilder {
  private readonly bytes: number[] = [];
  count = 0;
  pages = 0;
  refs = 0;
  /** Payload bytes the cuts take from the PAYLOAD frame. */
  payloadBytes = 0;

  constructor(private readonly pageSize: number) {}

  page(gap: number): void {
    writeUleb(this.bytes, gap * 4 + CutTag.PAGE);
    this.count++;
    this.pages++;
    this.payloadBytes += this.pageSize;
  }

  ref(gap: number, distance: number, checksum: number): void {
    writeUleb(this.bytes, gap * 4 + CutTag.REF);
    writeUleb(this.bytes, distance);
    this.bytes.push(checksum >>> 24, (checksum >>> 16) & 0xff, (checksum >>> 8) & 0xff, checksum & 0xff);
    this.count++;
    this.refs++;
  }

  span(gap: number, length: number): void {
    writeUleb(this.bytes, gap * 4 + CutTag.BYTES);
    writeUleb(this.bytes, length);
    this.count++;
    this.payloadBytes += length;
  }

  /** The cut list as it leads the META frame: count, then the cuts. */
  encode(): Buffer {
    const head: number[] = [];
    writeUleb(head, this.count);
    const out = Buffer.allocUnsafe(head.length + this.bytes.length);
    out.set(head, 0);
    out.set(this.bytes, head.length);
    return out;
  }
}

/**
 * Parses the cut list; a string describes what is wrong (the caller names the frame). The
 * uleb128 numbers are read inline (readUleb's pairs would be two allocations per cut, and a
 * 4 MiB segment has a thousand cuts): `next()` leaves the value in `value` and moves `at`.
 */
export function parseCutList(raw: Buffer, pageSize: number): { cuts: CutList; structureOffset: number; payloadBytes: number } | string {
  const end = raw.length;
  let at = 0;
  let value = 0;
  const next = (): boolean => {
    value = 0;
    let weight = 1;
    while (at < end) {
      const byte = raw[at++]!;
      value += (byte & 0x7f) * weight;
      if (byte < 0x80) return Number.isSafeInteger(value);
      weight *= 0x80;
      if (weight > 2 ** 56) return false;
    }
    return false;
  };
  if (!next()) return 'cut count is not a valid uleb128';
  const count = value;
  // Each cut takes at least one byte: a count past that is damage, not a huge segment.
  if (count > end - at) return `cut count ${count} exceeds the frame`;
  const tags = new Uint8Array(count);
  const gaps = new Float64Array(count);
  const args = new Float64Array(count);
  const checks = new Uint32Array(count);
  let gapTotal = 0;
  let payloadBytes = 0;
  for (let i = 0; i < count; i++) {
    if (!next()) return `cut ${i} is not a valid uleb128`;
    const tag = value % 4;
    const gap = Math.floor(value / 4);
    tags[i] = tag;
    gaps[i] = gap;
    gapTotal += gap;
    if (tag === CutTag.REF || tag === CutTag.BYTES) {
      if (!next()) return `argument of cut ${i} is not a valid uleb128`;
      if (value === 0) return `cut ${i} has a zero ${tag === CutTag.REF ? 'distance' : 'length'}`;
      args[i] = value;
      if (tag === CutTag.REF) {
        if (at + 4 > end) return `cut ${i} ends inside its page checksum`;
        checks[i] = raw.readUInt32BE(at);
        at += 4;
      }
      if (tag === CutTag.BYTES) payloadBytes += value;
    } else if (tag === CutTag.PAGE) {
      payloadBytes += pageSize;
    } else {
      return `cut ${i} has unknown tag ${tag}`;
    }
  }
  if (gapTotal > end - at) return `cuts skip ${gapTotal} structure bytes, the frame holds ${end - at}`;
  return { cuts: { count, tags, gaps, args, checks }, structureOffset: at, payloadBytes };
}
