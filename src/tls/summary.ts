/** What a finished transfer reports. */
import type { HoldSavings } from '../ram/hot-page-hold.js';

export interface ChannelStats {
  index: number;
  frames: number;
  /** Stream bytes the channel carried. */
  rawBytes: number;
  /** Bytes on the wire before TLS (frame headers included, after compression). */
  wireBytes: number;
}

export interface TransferSummary {
  bytes: number;
  frames: number;
  seconds: number;
  /** The stream's digest (digest.ts), equal on both ends of a completed transfer. */
  digest: bigint;
  codec: string;
  tls: boolean;
  channels: ChannelStats[];
  /** send with a hold (--hold): its size, the stream bytes read and what the hold dropped. */
  hold?: HoldSavings & { limitBytes: number; streamBytes: number };
}
