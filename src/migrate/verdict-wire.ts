/**
 * The two messages `migrate --verify` and `incoming --verify` exchange once the stream is
 * through, one JSON object per line: the source says what its paused RAM showed against the
 * stream's image, the destination answers with its own result and whether it resumes. Pure
 * codec; the sockets are in verdict-channel.ts.
 */
import { MigstreamError } from '../stream/errors.js';
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

export type VerdictMessage =
  | ({ type: 'source-verdict' } & Verdict)
  | ({ type: 'destination-verdict'; resuming: boolean } & Verdict);

export class VerdictProtocolError extends MigstreamError {
  constructor(message: string) {
    super('ERR_VERDICT_PROTOCOL', message);
  }
}

export function encodeVerdict(message: VerdictMessage): Buffer {
  return Buffer.from(`${JSON.stringify(message)}\n`);
}

function isMismatch(value: unknown): value is RamMismatch {
  const m = value as RamMismatch;
  return typeof m === 'object' && m !== null && typeof m.idstr === 'string' && Number.isSafeInteger(m.offset) && Number.isSafeInteger(m.guestPhysAddr);
}

/** One line (without its newline) → a message, or VerdictProtocolError naming what is wrong. */
export function decodeVerdict(line: string): VerdictMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new VerdictProtocolError('a verdict line is not JSON');
  }
  const v = value as Partial<VerdictMessage> & Record<string, unknown>;
  if (typeof v !== 'object' || v === null) throw new VerdictProtocolError('a verdict is not a JSON object');
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
