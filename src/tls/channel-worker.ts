/**
 * Starting a channel's worker thread. Workers must load compiled JavaScript: from dist/ the
 * worker sits next to this file; when this module runs from TypeScript sources (vitest,
 * vite-node), the built copy in dist/ is used, so `npm run build` must have run.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ChannelError } from './errors.js';

export type ChannelWorkerName = 'send-worker' | 'recv-worker';

export function workerUrl(name: ChannelWorkerName): URL {
  const fromSource = import.meta.url.endsWith('.ts');
  const url = fromSource ? new URL(`../../dist/tls/${name}.js`, import.meta.url) : new URL(`./${name}.js`, import.meta.url);
  if (fromSource && !existsSync(fileURLToPath(url))) {
    throw new ChannelError(`${fileURLToPath(url)} is missing: run "npm run build" first`);
  }
  return url;
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
