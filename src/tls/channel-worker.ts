/** Starting a channel's worker thread (its compiled code found as every worker's is: src/workers/worker-url.ts). */
import { Worker } from 'node:worker_threads';
import { workerUrl as compiledWorker } from '../workers/worker-url.js';
import { ChannelError } from './errors.js';

export type ChannelWorkerName = 'send-worker' | 'recv-worker';

export function workerUrl(name: ChannelWorkerName): URL {
  return compiledWorker(`tls/${name}`, (message) => new ChannelError(message));
}

/**
 * The worker gets stdio streams of its own. By default Node pipes a worker's stdout into
 * process.stdout, and creating process.stdout makes fd 1 non-blocking: recv's blocking writes
 * of the stream to QEMU then meet EAGAIN at every full pipe and wait a millisecond each time,
 * which capped a live migration at 64 MB/s. Nothing a worker prints may reach the stream anyway.
 */
export function startChannelWorker(url: URL, workerData: unknown, name: string): Worker {
  const worker = new Worker(url, { workerData, name, stdout: true, stderr: true });
  worker.stdout.resume();
  worker.stderr.on('data', (data: Buffer) => process.stderr.write(data));
  return worker;
}
