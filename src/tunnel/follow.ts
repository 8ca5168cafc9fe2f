/**
 * Ties a tunnel's streams to the migrations they belong to: a QEMU main stream or a multifd
 * channel, whichever shows its magic first (QEMU opens the main channel first, but a multifd
 * channel may say its first bytes before the main stream does), starts a MigrationWatch; the
 * others of that migration feed it; when the main stream and its multifd streams have all
 * closed, `onMigration` gets the report. Also keeps the running totals a progress line shows.
 */
import type { StreamRecord, Tunnel } from './host.js';
import { MigrationWatch, type MigrationReport } from './migration-watch.js';

/** A migration's report, with what the tunnel's own compression did for it. */
export type FollowedMigration = MigrationReport & {
  /** Frame bytes both ways over the channels while it ran. */
  wireBytes: number;
  /** Pages this side sent as their difference from an earlier copy (page-aware compression). */
  deltaPages: number;
};

interface Following {
  watch: MigrationWatch;
  /** The channels' frame bytes, and the pages sent as deltas, when the migration began. */
  wireAtStart: { sent: number; received: number };
  deltaPagesAtStart: number;
  /** Undefined while only multifd channels have shown up. */
  main: StreamRecord | undefined;
  multifd: Set<number>;
  mainClosed: boolean;
}

/** How long a migration's report waits for its multifd streams once the main stream closed. */
const MULTIFD_GRACE_MS = 2000;

export class MigrationFollower {
  private current: Following | undefined;
  /** Bytes forwarded, each way, over every stream of the session. */
  forwardBytes = 0;
  backBytes = 0;

  constructor(
    private readonly tunnel: Tunnel,
    private readonly onMigration: (report: FollowedMigration, main: StreamRecord, watch: MigrationWatch) => void,
    private readonly options: { pageHashes?: boolean } = {},
  ) {
    tunnel.on('classified', (record) => {
      if (record.kind !== 'qemu-main' && record.kind !== 'multifd') return;
      // A second main stream, or a channel after the main stream closed, is the next migration.
      if (this.current !== undefined && (this.current.mainClosed || (record.kind === 'qemu-main' && this.current.main !== undefined))) this.finish();
      const current = (this.current ??= {
        watch: new MigrationWatch(this.options),
        wireAtStart: tunnel.wireBytes(),
        deltaPagesAtStart: tunnel.pageDelta().deltaPages,
        main: undefined,
        multifd: new Set(),
        mainClosed: false,
      });
      if (record.kind === 'qemu-main') current.main = record;
      else current.multifd.add(record.id);
    });
    tunnel.on('bytes', (record, fromClient, data) => {
      if (fromClient) this.forwardBytes += data.length;
      else this.backBytes += data.length;
      const current = this.current;
      if (current === undefined) return;
      if (record.id === current.main?.id) current.watch.main(data, fromClient);
      else if (fromClient && current.multifd.has(record.id)) current.watch.multifd(record.id, data);
    });
    tunnel.on('closed', (record) => {
      const current = this.current;
      if (current === undefined) return;
      if (record.id === current.main?.id) {
        current.watch.endMain();
        current.mainClosed = true;
        setTimeout(() => this.current === current && this.finish(), MULTIFD_GRACE_MS).unref();
      }
      current.multifd.delete(record.id);
      if (current.mainClosed && current.multifd.size === 0) this.finish();
    });
    tunnel.on('end', () => this.finish());
  }

  /** The migration in progress, as a live line shows it. */
  progress(): ReturnType<MigrationWatch['progress']> | undefined {
    return this.current?.watch.progress();
  }

  private finish(): void {
    const current = this.current;
    if (current === undefined) return;
    this.current = undefined;
    // Multifd channels whose main stream never came (a refused migration): nothing to report.
    if (current.main === undefined) return;
    // Both ways: the tunnel's frames, for the migration and whatever else crossed meanwhile.
    const wire = this.tunnel.wireBytes();
    const wireBytes = wire.sent - current.wireAtStart.sent + wire.received - current.wireAtStart.received;
    const deltaPages = this.tunnel.pageDelta().deltaPages - current.deltaPagesAtStart;
    this.onMigration({ ...current.watch.report(), wireBytes, deltaPages }, current.main, current.watch);
  }
}
