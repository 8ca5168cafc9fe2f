/**
 * The walk over a container that both restores share, pure: frame headers in file order in,
 * what to do out. The piped decompressor (piped.ts: chunks in, workers) and direct mode
 * (direct.ts: positional reads, libuv's pool, gathered writes) each bring only their I/O.
 *
 *   header(frame)   HEADER → the container's info (and its page window's numbering)
 *   next(frame)     a META waits for its PAYLOAD; META[+PAYLOAD] → a segment to decode, DATA →
 *                   a frame to decode, END → the end (decode what is under way, then `end`)
 *   accept(…)       a decoded, checked segment, in file order: counted for END's length and
 *                   checksum chain, and held until a later one is accepted or the caller knows
 *                   one follows: the segment the END frame follows (it holds QEMU's EOF) is
 *                   never let out before END confirmed the container
 *   end(frame)      END's checks (docs/container.md); then the held segment may go
 *   window          which stored page a REF cut reaches, within the window (page-window.ts)
 */
import { ChecksumChain, dataChecksum, type DataChecksum } from '../container/checksum.js';
import { checkEnd, checkKindForMode, parseInfo } from '../container/checks.js';
import { FrameOrderError } from '../container/errors.js';
import { FrameKind, type ContainerInfo, type ContainerVersion, type FrameHeader } from '../container/format.js';
import { WindowSlots } from '../container/page-window.js';
import { frameRef } from '../container/reader.js';

/** A frame header and where it lies in the container. */
export interface Located extends FrameHeader {
  readonly offset: number;
}

export type WalkStep<F extends Located> =
  { readonly kind: 'segment'; readonly meta: F; readonly payload: F | undefined } | { readonly kind: 'data'; readonly frame: F } | { readonly kind: 'end'; readonly frame: F };

export class ContainerWalk<F extends Located, S> {
  /** The container version's data checksum. */
  readonly checksum: DataChecksum;
  /** The page window's numbering, when the container has one (from the HEADER on). */
  window: WindowSlots | undefined;
  private containerInfo: ContainerInfo | undefined;
  /** A META frame waiting to see whether a PAYLOAD frame follows. */
  private meta: F | undefined;
  private readonly chain = new ChecksumChain();
  private streamBytes = 0;
  /** The newest segment accepted, until a later one or the END frame lets it go. */
  private held: S | undefined;

  constructor(version: ContainerVersion) {
    this.checksum = dataChecksum(version);
  }

  /** The HEADER's info (known once `header` ran). */
  get info(): ContainerInfo {
    return this.containerInfo!;
  }

  /** Stream bytes of the segments accepted so far. */
  get bytes(): number {
    return this.streamBytes;
  }

  /** The HEADER frame (frame 0: the reader checked it is) with its stored bytes. */
  header(frame: F & { readonly stored: Buffer }): ContainerInfo {
    const info = parseInfo(frame, frameRef(frame), this.checksum);
    this.containerInfo = info;
    if (info.dedupWindowPages > 0) this.window = new WindowSlots(info.dedupWindowPages);
    return info;
  }

  /** The next frame after the HEADER, in file order: what to decode now, in order. */
  next(frame: F): WalkStep<F>[] {
    const ref = frameRef(frame);
    checkKindForMode(frame.kind, this.info, ref);
    if (frame.kind === FrameKind.PAYLOAD) {
      const meta = this.meta;
      if (meta === undefined) throw new FrameOrderError('PAYLOAD frame without a META frame before it', ref);
      this.meta = undefined;
      return [{ kind: 'segment', meta, payload: frame }];
    }
    const steps: WalkStep<F>[] = [];
    if (this.meta !== undefined) steps.push({ kind: 'segment', meta: this.meta, payload: undefined });
    this.meta = undefined;
    if (frame.kind === FrameKind.META) this.meta = frame;
    else if (frame.kind === FrameKind.DATA) steps.push({ kind: 'data', frame });
    else steps.push({ kind: 'end', frame });
    return steps;
  }

  /**
   * A segment (or DATA frame) decoded and checked, in file order: `length` stream bytes from
   * `frames`. Returns what may be written now, in order: the segment held before it, and this
   * one too when `followed` says a later segment exists (else it is held).
   */
  accept(segment: S, length: number, frames: readonly FrameHeader[], followed: boolean): S[] {
    this.streamBytes += length;
    for (const frame of frames) this.chain.add(frame.rawChecksum);
    const out: S[] = [];
    if (this.held !== undefined) out.push(this.held);
    this.held = undefined;
    if (followed) out.push(segment);
    else this.held = segment;
    return out;
  }

  /** Checks the END frame against the segments accepted; returns the held segment, now free to go. */
  end(frame: F, stored: Buffer): S | undefined {
    checkEnd(frame, stored, frameRef(frame), this.checksum, this.streamBytes, this.chain.value);
    const held = this.held;
    this.held = undefined;
    return held;
  }
}
