/**
 * The sockets of a drive's disk connection (disk-wire.ts): the source's end (connect, announce,
 * stream frames with backpressure, exchange hashes) and the line reading both ends share. The
 * destination's end, which applies what arrives, is disk-receiver.ts.
 */
import type { Socket } from 'node:net';
import type { TlsMaterial } from '../tls/credentials.js';
import { decodeDiskReply, encodeDiskMessage, maxDiskLine, type DiskOpenMessage, type DiskReply } from './disk-wire.js';
import { BoundedLineSplitter } from './line-splitter.js';
import { openWithRetry, VerdictChannelError } from './verdict-channel.js';
import { VerdictProtocolError } from './errors.js';

/**
 * The lines a peer sends on a disk connection, one at a time, bounded by the drive's hash list.
 * Attach it when lines are what comes next; it resumes the socket.
 */
export class DiskLineReader {
  private readonly lines: DiskReply[] = [];
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  private readonly splitter: BoundedLineSplitter;

  constructor(
    private readonly socket: Socket,
    private readonly size: number,
    private readonly peer: string,
  ) {
    this.splitter = new BoundedLineSplitter(maxDiskLine(size), () => new VerdictProtocolError(`${peer} sent a disk line longer than ${maxDiskLine(size)} bytes`));
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const line of this.splitter.push(chunk)) this.lines.push(decodeDiskReply(line, this.size));
      } catch (error) {
        this.fail(error as Error);
        socket.destroy();
      }
      this.wake?.();
    });
    socket.on('end', () => this.fail(new VerdictChannelError(`${peer} closed the disk connection`)));
    socket.on('close', () => this.fail(new VerdictChannelError(`${peer}: the disk connection closed`)));
    socket.on('error', (error: Error) => this.fail(new VerdictChannelError(`${peer}: ${error.message}`, { cause: error })));
    socket.resume();
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.wake?.();
  }

  /** The next line, which must be of `type` (a `disk-refused` instead is an error naming the reason). */
  async next<T extends DiskReply['type']>(type: T, timeoutMs: number, waitingFor: string): Promise<Extract<DiskReply, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.failure !== undefined) throw this.failure;
      const left = deadline - Date.now();
      if (left <= 0) throw new VerdictChannelError(`${this.peer} sent no ${waitingFor} within ${Math.round(timeoutMs / 1000)} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = undefined;
          resolve();
        };
      });
    }
    const line = this.lines.shift()!;
    if (line.type === 'disk-refused') throw new VerdictChannelError(`${this.peer} refused the disk stream: ${line.reason}`);
    if (line.type !== type) throw new VerdictProtocolError(`${this.peer} sent ${line.type} where ${type} belongs`);
    return line as Extract<DiskReply, { type: T }>;
  }
}

/** How long the destination may take to open its drive's export and answer. */
const READY_MS = 30_000;
/** How long the socket may take no bytes while the disk stream waits to send. */
const STALL_MS = 60_000;

/** The source's end of one drive's disk connection. */
export class DiskChannel {
  private constructor(
    private readonly socket: Socket,
    readonly reader: DiskLineReader,
    readonly peer: string,
  ) {}

  /** Connects to the control port, announces the drive and waits for `disk-ready`. */
  static async open(options: { host: string; port: number; tls: TlsMaterial | null; open: DiskOpenMessage; timeoutMs: number }): Promise<DiskChannel> {
    const peer = `the destination ${options.host}:${options.port} (disk ${options.open.index}, ${JSON.stringify(options.open.drive)})`;
    const socket = await openWithRetry(options.host, options.port, options.tls, Date.now() + options.timeoutMs, peer);
    socket.setNoDelay(true);
    const reader = new DiskLineReader(socket, options.open.size, peer);
    socket.write(encodeDiskMessage(options.open));
    try {
      await reader.next('disk-ready', READY_MS, 'answer to the disk stream');
    } catch (error) {
      socket.destroy();
      throw error;
    }
    return new DiskChannel(socket, reader, peer);
  }

  /**
   * Writes a frame's buffers; resolves once the socket takes more (backpressure). `done` runs
   * once the socket has handed them all to the kernel (TLS: encrypted), so they may be reused.
   */
  async write(buffers: readonly Buffer[], done?: () => void): Promise<void> {
    if (this.socket.destroyed) throw new VerdictChannelError(`${this.peer}: the disk connection is closed`);
    let flushed = true;
    buffers.forEach((buffer, i) => {
      flushed = i === buffers.length - 1 && done !== undefined ? this.socket.write(buffer, (error) => (error === undefined || error === null ? done() : undefined)) : this.socket.write(buffer);
    });
    if (!flushed) {
      await new Promise<void>((resolve, reject) => {
        // A peer (or link) that takes nothing for this long is gone: TCP alone would retry for minutes.
        const timer = setTimeout(() => {
          finish();
          this.socket.destroy();
          reject(new VerdictChannelError(`${this.peer} took no disk bytes for ${STALL_MS / 1000} s`));
        }, STALL_MS);
        const finish = (): void => {
          clearTimeout(timer);
          this.socket.off('drain', onDrain);
          this.socket.off('close', onClose);
        };
        const onDrain = (): void => {
          finish();
          resolve();
        };
        const onClose = (): void => {
          finish();
          reject(new VerdictChannelError(`${this.peer}: the disk connection closed while sending`));
        };
        this.socket.once('drain', onDrain);
        this.socket.once('close', onClose);
      });
    }
  }

  /** Sends this side's hash list (once `disk-applied` came: nothing may follow END before it). */
  sendHashes(hashes: BigUint64Array, chunkSize: number): void {
    this.socket.write(encodeDiskMessage({ type: 'disk-hashes', chunkSize, hashes }));
  }

  close(): void {
    this.socket.end();
    this.socket.destroySoon();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
