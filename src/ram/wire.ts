/**
 * Small wire helpers shared by the ram decoder and the MEM_SIZE reader: 64-bit words as safe
 * integers, look-ahead, block names as QEMU reads them, and error details.
 */
import { wordHex } from '../bytes/hex.js';
import { LimitExceededError, type DecodeErrorDetails } from '../stream/errors.js';
import type { ByteReader } from '../stream/reader.js';
import type { SectionContext } from '../stream/section-codec.js';

/** 2^32, the weight of a word's high half. */
export const HIGH_WEIGHT = 0x1_0000_0000;
/**
 * Words whose high half is at least 2^21 are rejected: their value is not a safe integer. No
 * RAM offset or length comes near 2^53 bytes (8 PiB).
 */
export const MAX_HIGH_WORD = 0x20_0000;

export { wordHex };

export function details(reader: ByteReader, ctx: SectionContext, extra: Partial<DecodeErrorDetails> = {}): DecodeErrorDetails {
  return { offset: reader.markOffset, section: ctx.section, context: 'ram record', ...extra };
}

export function tooLarge(reader: ByteReader, ctx: SectionContext, what: string, high: number, low: number): LimitExceededError {
  return new LimitExceededError(`${what} ${wordHex(high, low)} is not a safe integer`, details(reader, ctx, { expected: `a value below 2^53`, actual: wordHex(high, low) }));
}

/** Reads a be64 that must be a safe integer (a length or an address). */
export function readSafeU64(reader: ByteReader, ctx: SectionContext, what: string): number {
  const high = reader.u32();
  const low = reader.u32();
  if (high >= MAX_HIGH_WORD) throw tooLarge(reader, ctx, what, high, low);
  return high * HIGH_WEIGHT + low;
}

/** Big-endian u32 `ahead` bytes past the cursor, without consuming (NEED_MORE if absent). */
export function peekU32(reader: ByteReader, ahead: number): number {
  return ((reader.peekU8(ahead) << 24) | (reader.peekU8(ahead + 1) << 16) | (reader.peekU8(ahead + 2) << 8) | reader.peekU8(ahead + 3)) >>> 0;
}

/** A block name as QEMU resolves it: read into `char id[256]`, looked up with strcmp. */
export interface WireName {
  /** The name up to the first NUL. */
  readonly idstr: string;
  /** The bytes as sent, when they hold a NUL (and so differ from idstr). */
  readonly wire: string | undefined;
}

export function resolveName(raw: Buffer): WireName {
  const nul = raw.indexOf(0);
  if (nul < 0) return { idstr: raw.toString('latin1'), wire: undefined };
  return { idstr: raw.toString('latin1', 0, nul), wire: raw.toString('latin1') };
}
