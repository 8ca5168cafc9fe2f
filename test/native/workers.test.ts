/**
 * The addon in worker_threads (as the compression workers load it): each load gets its own
 * state, runs alongside the others, and is released when its thread ends, also when the thread
 * is terminated in the middle of its work.
 */
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import { nativeBinding } from '../../src/native.js';

const ADDON = fileURLToPath(new URL('../../build/Release/migstream_native.node', import.meta.url));

// CommonJS, run by each worker: load the addon, hand it an error class, work, report.
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const addon = require(workerData.addon);
class WorkerArgumentError extends Error {}
addon.init(WorkerArgumentError);
parentPort.postMessage({ loaded: addon.liveInstances() });
const bits = 1 << 20;
let checksum = 0n;
for (let round = 0; round < workerData.rounds; round++) {
  const storage = new ArrayBuffer(addon.hbitmapBytes(bits));
  addon.hbSet(storage, bits, (round * 4099) % (bits - 100), 100);
  const out = new Float64Array(2);
  addon.hbDirtyAreas(storage, bits, 0, bits, 64, out);
  checksum += BigInt(out[0] + out[1]);
  const page = new Uint8Array(4096).fill(round & 0xff);
  const hashes = new BigUint64Array(1);
  addon.hashPages(page, 4096, hashes);
  checksum ^= hashes[0];
}
let typed = false;
try { addon.hbSet(new ArrayBuffer(8), bits, 0, 1); } catch (error) { typed = error instanceof WorkerArgumentError; }
parentPort.postMessage({ done: true, checksum: checksum.toString(), typed, live: addon.liveInstances() });
if (workerData.spin) for (;;) addon.hbitmapBytes(bits);
`;

function start(rounds: number, spin = false): { worker: Worker; messages: Record<string, unknown>[]; exited: Promise<number> } {
  const worker = new Worker(WORKER, { eval: true, workerData: { addon: ADDON, rounds, spin } });
  const messages: Record<string, unknown>[] = [];
  worker.on('message', (message: Record<string, unknown>) => messages.push(message));
  const exited = new Promise<number>((resolve, reject) => {
    worker.on('exit', resolve);
    worker.on('error', reject);
  });
  return { worker, messages, exited };
}

describe('the addon in worker_threads', () => {
  test('each thread loads its own instance, and its state is released when the thread ends', async () => {
    const raw = nativeBinding();
    const base = raw.liveInstances();
    expect(base).toBeGreaterThanOrEqual(1);
    const runs = [start(2000), start(2000), start(2000), start(2000)];
    await Promise.all(runs.map((run) => run.exited));
    const results = runs.map((run) => run.messages.find((m) => m.done));
    for (const result of results) {
      expect(result).toMatchObject({ done: true, typed: true });
      expect(result!.live as number).toBeGreaterThan(base);
    }
    // Same work, same answer in every thread.
    expect(new Set(results.map((r) => r!.checksum)).size).toBe(1);
    expect(raw.liveInstances()).toBe(base);
  });

  test('a thread terminated while busy releases its instance too', async () => {
    const raw = nativeBinding();
    const base = raw.liveInstances();
    const run = start(10, true);
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (run.messages.some((m) => m.done)) {
          clearInterval(poll);
          resolve();
        }
      }, 5);
    });
    expect(raw.liveInstances()).toBe(base + 1);
    await run.worker.terminate();
    await run.exited;
    expect(raw.liveInstances()).toBe(base);
  });

  test('the main thread keeps working while workers hash', async () => {
    const runs = [start(3000), start(3000)];
    const raw = nativeBinding();
    const storage = new ArrayBuffer(raw.hbitmapBytes(4096));
    for (let i = 0; i < 10_000; i++) raw.hbSet(storage, 4096, i % 4096, 1);
    expect(raw.hbCount(storage, 4096, 0, 4096)).toBe(4096);
    await Promise.all(runs.map((run) => run.exited));
  });
});
