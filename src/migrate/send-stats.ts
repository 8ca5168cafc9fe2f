/**
 * The Unix socket behind send-stats-wire.ts. `migrate` listens in its own 0700 scratch folder
 * and hands the path to the `send` QEMU starts; send reports twice a second and once more when
 * its input ended. Stats are advice, not data: a send that cannot reach the socket carries on
 * (migrate then falls back to QEMU's own figures), and a connection that sends something else
 * is closed without disturbing the one that reports.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { decodeSendStats, encodeSendStats, SendStatsLineSplitter, type SendStats } from './send-stats-wire.js';

export class SendStatsListener {
  /** The newest report, and the one sent once the input ended (it carries the heat map). */
  latest: SendStats | undefined;
  final: SendStats | undefined;
  /** Connections refused for what they sent, for the report. */
  readonly refused: string[] = [];
  private readonly waiters: (() => void)[] = [];

  private constructor(private readonly server: Server) {}

  static listen(path: string): Promise<SendStatsListener> {
    return new Promise((resolve, reject) => {
      const server = createServer();
      const listener = new SendStatsListener(server);
      server.on('connection', (socket) => listener.follow(socket));
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve(listener);
      });
    });
  }

  /** Resolves once the final report arrived or `timeoutMs` passed. */
  waitForFinal(timeoutMs: number): Promise<SendStats | undefined> {
    if (this.final) return Promise.resolve(this.final);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.final), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve(this.final);
      });
    });
  }

  close(): void {
    this.server.close();
  }

  private follow(socket: Socket): void {
    const splitter = new SendStatsLineSplitter();
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const line of splitter.push(chunk)) {
          const stats = decodeSendStats(line);
          this.latest = stats;
          if (stats.heat !== undefined) {
            this.final = stats;
            for (const wake of this.waiters.splice(0)) wake();
          }
        }
      } catch (error) {
        this.refused.push((error as Error).message);
        socket.destroy();
      }
    });
    socket.on('error', () => socket.destroy());
  }
}

/** send's end: connects once, writes a line whenever asked, never fails the transfer. */
export class SendStatsReporter {
  private readonly socket: Socket;
  private broken = false;

  constructor(path: string) {
    this.socket = createConnection(path);
    // Advice only: it must never keep send's process alive (a failed send must exit).
    this.socket.unref();
    this.socket.on('error', () => {
      this.broken = true;
      this.socket.destroy();
    });
  }

  report(stats: SendStats): void {
    if (!this.broken && this.socket.writableLength < 1024 * 1024) this.socket.write(encodeSendStats(stats));
  }

  close(): void {
    this.broken = true;
    this.socket.destroy();
  }

  /** Writes the last line and waits (at most `timeoutMs`) for it to leave. */
  finish(stats: SendStats, timeoutMs = 1000): Promise<void> {
    if (this.broken) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.socket.end(encodeSendStats(stats), done);
      this.socket.once('close', done);
    });
  }
}
