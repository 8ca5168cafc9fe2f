/**
 * Follows one QEMU migration as it crosses the tunnel: the main stream through the stream
 * decoder (passes, re-sent pages, zero pages, heat map, the final RAM's page hashes: as
 * `send` does for `migrate`), and each multifd channel through its packet reader (packets,
 * normal and zero pages, page bytes). Observation only: bytes that do not decode stop the
 * following, with the reason in the report, and never the forwarding.
 */
import { createDecoder } from '../codec.js';
import { PassTracker, type PassSummary } from '../migrate/pass-tracker.js';
import { StreamHashTap, type StreamHashes } from '../migrate/stream-hashes.js';
import { MULTIFD_FLAG_SYNC, MultifdChannelReader } from '../ram/multifd.js';

export interface MultifdCounts {
  channels: number;
  packets: number;
  syncs: number;
  normalPages: number;
  zeroPages: number;
  pageBytes: number;
}

export interface MigrationReport {
  /** Main-stream bytes each way (the return path is the second). */
  streamBytes: number;
  returnBytes: number;
  /** Multifd channels' bytes. */
  multifdBytes: number;
  pageSize: number | null;
  passes: PassSummary['passes'];
  heat: PassSummary['heat'];
  multifd: MultifdCounts;
  /** SHA-256 over the final RAM's page hashes (as `incoming --verify` compares), when asked for and the main stream carried every page. */
  ramDigest: string | null;
  /** Why part of the migration could not be followed, if so. */
  problems: string[];
}

export class MigrationWatch {
  private readonly decoder = createDecoder();
  private tracker: PassTracker | undefined;
  /** Page hashes of the final RAM: only when asked for (a quarter of following's CPU). */
  private readonly hashes: StreamHashTap | undefined;
  private mainBroken = false;
  private mainEnded = false;
  private readonly channels = new Map<number, { reader: MultifdChannelReader; broken: boolean }>();
  private readonly problems: string[] = [];
  private readonly counts: MultifdCounts = { channels: 0, packets: 0, syncs: 0, normalPages: 0, zeroPages: 0, pageBytes: 0 };
  private streamBytes = 0;
  private returnBytes = 0;
  private multifdBytes = 0;

  constructor(options: { pageHashes?: boolean } = {}) {
    this.hashes = options.pageHashes === true ? new StreamHashTap() : undefined;
  }

  /** Bytes of the main stream: `forward` from the source QEMU, else the return path. */
  main(data: Buffer, forward: boolean): void {
    if (!forward) {
      this.returnBytes += data.length;
      return;
    }
    this.streamBytes += data.length;
    if (this.mainBroken) return;
    try {
      const records = this.decoder.push(data);
      const pageSize = (): number => this.decoder.parameters.pageSize;
      for (const record of records) {
        if (record.type === 'ram-mem-size') this.tracker ??= new PassTracker(pageSize());
        this.tracker?.apply(record);
      }
      this.hashes?.apply(records, pageSize);
      this.decoder.releaseInput();
    } catch (error) {
      this.mainBroken = true;
      this.problem(`the main stream did not decode: ${(error as Error).message}`);
    }
  }

  /** Bytes a multifd channel (tunnel stream `stream`) carried from the source. */
  multifd(stream: number, data: Buffer): void {
    this.multifdBytes += data.length;
    let channel = this.channels.get(stream);
    if (channel === undefined) {
      channel = { reader: new MultifdChannelReader(this.pageSizeOr4k()), broken: false };
      this.channels.set(stream, channel);
      this.counts.channels++;
    }
    if (channel.broken) return;
    try {
      for (const event of channel.reader.push(data)) {
        if (event.kind !== 'packet') continue;
        this.counts.packets++;
        if (event.flags & MULTIFD_FLAG_SYNC) this.counts.syncs++;
        this.counts.normalPages += event.normalPages;
        this.counts.zeroPages += event.zeroPages;
        this.counts.pageBytes += event.payloadBytes;
      }
    } catch (error) {
      channel.broken = true;
      this.problem(`multifd stream ${stream} did not parse: ${(error as Error).message}`);
    }
  }

  /** The main stream's source side ended: records the decoder held back are taken in. */
  endMain(): void {
    if (this.mainBroken || this.mainEnded) return;
    this.mainEnded = true;
    try {
      const records = this.decoder.end();
      for (const record of records) this.tracker?.apply(record);
      this.hashes?.apply(records, () => this.decoder.parameters.pageSize);
    } catch (error) {
      this.mainBroken = true;
      this.problem(`the main stream did not decode to its end: ${(error as Error).message}`);
    }
  }

  /**
   * What a live line shows, without building the report: the report sorts the heat map and
   * would finish the page-hash store (`pageHashes()`), which only the end of a stream may do.
   */
  progress(): { passes: number; multifdChannels: number; multifdPageBytes: number } {
    return { passes: this.tracker?.passCount ?? 0, multifdChannels: this.counts.channels, multifdPageBytes: this.counts.pageBytes };
  }

  report(): MigrationReport {
    const summary = this.tracker?.summary() ?? { passes: [], heat: [] };
    const hashes = this.pageHashes();
    return {
      streamBytes: this.streamBytes,
      returnBytes: this.returnBytes,
      multifdBytes: this.multifdBytes,
      pageSize: this.tracker === undefined ? null : this.decoder.parameters.pageSize,
      passes: summary.passes,
      heat: summary.heat.slice(0, 8),
      multifd: { ...this.counts },
      ramDigest: hashes !== undefined && 'digest' in hashes ? hashes.digest : null,
      problems: [...this.problems],
    };
  }

  /**
   * The final RAM's page hashes (the file `send --page-hashes` writes), or why there are none:
   * with multifd most pages never cross the main stream. Undefined when not asked for.
   */
  pageHashes(): StreamHashes | { error: string } | undefined {
    if (this.hashes === undefined) return undefined;
    if (this.counts.channels > 0) return { error: 'pages went over multifd channels, which are counted, not followed page by page' };
    if (this.mainBroken) return { error: this.problems[0] ?? 'the main stream did not decode' };
    return this.hashes.result();
  }

  private pageSizeOr4k(): number {
    return this.tracker === undefined ? 4096 : this.decoder.parameters.pageSize;
  }

  private problem(text: string): void {
    if (this.problems.length < 8) this.problems.push(text);
  }
}
