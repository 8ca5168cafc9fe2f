/**
 * The messages `migrate` and `incoming` exchange on the destination's control port, one JSON
 * object per line (the sockets are in verdict-channel.ts). Pure codec.
 *
 * - Verdicts, once the stream is through (--verify): the source says what its paused RAM
 *   showed against the stream's image, the destination answers with its own result and
 *   whether it resumes.
 * - The link probe, before the migration: `link-probe` with the most bytes the source will
 *   send, then that many bytes at most and a half-close; the destination answers
 *   `link-probe-result` with the bytes it counted and the ms from the first to the last, and
 *   the same over the second half of that time (`steadyBytes`, `steadyMs`; optional).
 * - A drive's disk stream (`migrate --disk`): `disk-stream`, then the connection is the disk
 *   protocol's (disk-wire.ts).
 */
import { decodeDiskOpen, type DiskOpenMessage } from './disk-wire.js';
import { VerdictProtocolError } from './errors.js';
import { BoundedLineSplitter } from './line-splitter.js';
import type { RamMismatch } from './ram-compare.js';

/** A verdict line is small (16 named pages at most); anything longer is not a peer of ours. */
export const MAX_VERDICT_LINE = 64 * 1024;

export interface Verdict {
  /** sha256 of the stream image's page hashes (both sides must have seen the same image). */
  digest: string | null;
  pagesCompared: number;
  mismatches: number;
  first: RamMismatch[];
  /** Why this side could not compare at all. */
  error: string | null;
}

export type VerdictMessage = ({ type: 'source-verdict' } & Verdict) | ({ type: 'destination-verdict'; resuming: boolean } & Verdict);

export type LinkProbeMessage = { type: 'link-probe'; maxBytes: number } | { type: 'link-probe-result'; bytes: number; ms: number; steadyBytes?: number; steadyMs?: number };

export type ControlMessage = VerdictMessage | LinkProbeMessage | DiskOpenMessage;

/** The most a link probe may send: a few seconds of a fast link, bounded for the listener. */
export const MAX_LINK_PROBE_BYTES = 1024 * 1024 * 1024;

export { VerdictProtocolError };

export function encodeVerdict(message: ControlMessage): Buffer {
  return Buffer.from(`${JSON.stringify(message)}\n`);
}

function isMismatch(value: unknown): value is RamMismatch {
  const m = value as RamMismatch;
  return typeof m === 'object' && m !== null && typeof m.idstr === 'string' && Number.isSafeInteger(m.offset) && Number.isSafeInteger(m.guestPhysAddr);
}

/** One line (without its newline) → a message, or VerdictProtocolError naming what is wrong. */
export function decodeVerdict(line: string): ControlMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new VerdictProtocolError('a verdict line is not JSON');
  }
  const v = value as Partial<VerdictMessage> & Record<string, unknown>;
  if (typeof v !== 'object' || v === null) throw new VerdictProtocolError('a verdict is not a JSON object');
  if ((v.type as string) === 'link-probe' || (v.type as string) === 'link-probe-result') return decodeLinkProbe(v);
  if ((v.type as string) === 'disk-stream') return decodeDiskOpen(v);
  if (v.type !== 'source-verdict' && v.type !== 'destination-verdict') throw new VerdictProtocolError(`unknown verdict type ${JSON.stringify(v.type)}`);
  const counts = Number.isSafeInteger(v.pagesCompared) && Number.isSafeInteger(v.mismatches) && (v.pagesCompared as number) >= 0 && (v.mismatches as number) >= 0;
  if (!counts) throw new VerdictProtocolError('a verdict has no page counts');
  if (!(v.digest === null || (typeof v.digest === 'string' && /^[0-9a-f]{64}$/.test(v.digest)))) throw new VerdictProtocolError('a verdict digest is not sha256 hex');
  if (!(v.error === null || typeof v.error === 'string')) throw new VerdictProtocolError('a verdict error is not text');
  if (!Array.isArray(v.first) || v.first.length > 64 || !v.first.every(isMismatch)) throw new VerdictProtocolError('a verdict names its pages wrongly');
  const verdict: Verdict = { digest: v.digest, pagesCompared: v.pagesCompared!, mismatches: v.mismatches!, first: v.first, error: v.error };
  if (v.type === 'destination-verdict') {
    if (typeof v.resuming !== 'boolean') throw new VerdictProtocolError('a destination verdict does not say whether it resumes');
    return { type: 'destination-verdict', resuming: v.resuming, ...verdict };
  }
  return { type: 'source-verdict', ...verdict };
}

function decodeLinkProbe(v: Record<string, unknown>): LinkProbeMessage {
  const count = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
  if (v.type === 'link-probe') {
    if (!count(v.maxBytes) || v.maxBytes > MAX_LINK_PROBE_BYTES) throw new VerdictProtocolError(`a link probe must announce 0..${MAX_LINK_PROBE_BYTES} bytes`);
    return { type: 'link-probe', maxBytes: v.maxBytes };
  }
  const time = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x >= 0;
  if (!count(v.bytes) || !time(v.ms)) throw new VerdictProtocolError('a link probe result has no byte count or time');
  if (v.steadyBytes === undefined && v.steadyMs === undefined) return { type: 'link-probe-result', bytes: v.bytes, ms: v.ms };
  if (!count(v.steadyBytes) || !time(v.steadyMs) || v.steadyBytes > v.bytes || v.steadyMs > v.ms) {
    throw new VerdictProtocolError('a link probe result has a second half that is not part of the whole');
  }
  return { type: 'link-probe-result', bytes: v.bytes, ms: v.ms, steadyBytes: v.steadyBytes, steadyMs: v.steadyMs };
}

/** Splits bytes into lines, refusing one longer than MAX_VERDICT_LINE. */
export class VerdictLineSplitter extends BoundedLineSplitter {
  constructor() {
    super(MAX_VERDICT_LINE, () => new VerdictProtocolError(`a verdict line is longer than ${MAX_VERDICT_LINE} bytes`));
  }
}

/** A verdict is good when it compared pages, found none different, and saw `digest`. */
export function verdictProblem(side: string, verdict: Verdict, digest: string | null): string | null {
  if (verdict.error !== null) return `${side}: ${verdict.error}`;
  if (verdict.mismatches > 0) {
    const f = verdict.first[0];
    const where = f ? `; first at ${f.idstr}+0x${f.offset.toString(16)} (guest-physical 0x${f.guestPhysAddr.toString(16)})` : '';
    return `${side}: ${verdict.mismatches} of ${verdict.pagesCompared} pages differ from the stream's image${where}`;
  }
  if (verdict.pagesCompared === 0) return `${side}: no pages were compared`;
  if (digest !== null && verdict.digest !== digest) return `${side}: saw a different stream image (digest ${String(verdict.digest).slice(0, 12)}… vs ${digest.slice(0, 12)}…)`;
  return null;
}
