/**
 * A fixed set of worker threads running worker.ts, one request at a time each, queueing the
 * rest. The first failure of any worker (an uncaught error, an unexpected exit) fails the pool:
 * every pending request is rejected with a WorkerError and the workers are terminated, so a
 * compressor never waits forever on a thread that is gone.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ArgumentError } from '../stream/errors.js';
import { WorkerError } from './errors.js';
import { workerUrl } from './worker-url.js';
import type { FailureReply, PackReply, UnpackReply, WorkerRequest } from './protocol.js';

interface Replies {
  compress: PackReply;
  pack: PackReply;
  decompress: UnpackReply;
  splice: UnpackReply;
}

/** The reply type of each request. */
export type ReplyTo<R extends WorkerRequest> = Replies[R['op']] | FailureReply;

/** Upper bound for -j: far past any useful count, low enough to stop typos. */
export const MAX_THREADS = 256;

export function defaultThreads(): number {
  return availableParallelism();
}

/** The compiled worker (worker-url.ts). */
export function workerEntry(): URL {
  return workerUrl('workers/worker');
}

interface Job {
  readonly request: WorkerRequest;
  readonly transfer: ArrayBuffer[];
  resolve(reply: unknown): void;
  reject(error: Error): void;
}

interface Slot {
  readonly worker: Worker;
  readonly index: number;
  job: Job | undefined;
}

export class WorkerPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private failure: Error | undefined;
  private closing = false;
  private nextId = 0;

  constructor(
    readonly size: number,
    entry: URL = workerEntry(),
  ) {
    if (!(Number.isInteger(size) && size >= 1 && size <= MAX_THREADS)) {
      throw new ArgumentError(`thread count must be an integer in 1..${MAX_THREADS}, got ${String(size)}`);
    }
    for (let index = 0; index < size; index++) {
      // Own stdio streams: by default Node pipes a worker's stdout into process.stdout, which
      // may carry the stream.
      const worker = new Worker(entry, { name: `migstream-worker-${index}`, stdout: true, stderr: true });
      worker.stdout.resume();
      worker.stderr.on('data', (data: Buffer) => process.stderr.write(data));
      const slot: Slot = { worker, index, job: undefined };
      worker.on('message', (reply: { id: number }) => this.settle(slot, reply));
      worker.on('error', (error) => this.fail(new WorkerError(`worker thread ${index} failed: ${error.message}`, { cause: error })));
      worker.on('messageerror', (error) => this.fail(new WorkerError(`worker thread ${index} sent an unreadable message: ${error.message}`)));
      worker.on('exit', (code) => {
        if (!this.closing) this.fail(new WorkerError(`worker thread ${index} exited unexpectedly (exit code ${code})`));
      });
      this.slots.push(slot);
    }
  }

  /** Runs a request on the next free worker; `transfer` lists buffers handed over with it. */
  run<R extends WorkerRequest>(request: R, transfer: ArrayBuffer[] = []): Promise<ReplyTo<R>> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new WorkerError('worker pool closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ request, transfer, resolve: resolve as (reply: unknown) => void, reject });
      this.dispatch();
    });
  }

  /** Terminates the workers; requests still pending are rejected. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.rejectAll(this.failure ?? new WorkerError('worker pool closed'));
    await Promise.all(this.slots.map((slot) => slot.worker.terminate()));
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.job !== undefined) continue;
      const job = this.queue.shift();
      if (job === undefined) continue;
      slot.job = job;
      slot.worker.postMessage({ ...job.request, id: this.nextId++ }, job.transfer);
    }
  }

  private settle(slot: Slot, reply: unknown): void {
    const job = slot.job;
    slot.job = undefined;
    job?.resolve(reply);
    this.dispatch();
  }

  private fail(error: Error): void {
    if (this.failure || this.closing) return;
    this.failure = error;
    this.rejectAll(error);
    void this.close();
  }

  private rejectAll(error: Error): void {
    for (const slot of this.slots) {
      slot.job?.reject(error);
      slot.job = undefined;
    }
    for (const job of this.queue.splice(0)) job.reject(error);
  }
}
