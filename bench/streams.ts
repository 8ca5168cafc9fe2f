/**
 * The streams the compress and decode benchmarks measure, each reported on its own:
 *   - every recorded QEMU fixture in .cache/fixtures/<name>/stream.mig (recorded once by the
 *     tests' global setup: idle, dirty, xbzrle, compress = legacy-compressed, block, q35-dimm,
 *     i440fx-10.0, q35-10.0);
 *   - "filled": a 1 GiB guest with 640 MiB filled (about 600 MB of stream), saved once into
 *     .cache/bench/filled.mig by a real QEMU when a bench runs with --filled (a minute or two
 *     under TCG), and measured whenever it is there.
 *
 *   benchStreams()          the streams present, fixtures first
 *   ensureFilledStream()    saves the filled guest once (QEMU), returns its scenario
 *   countRecords(path)      records the in-process decoder gives for a file (untimed)
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createDecoder } from '../src/codec.js';
import { launchQemu, type Accel } from '../src/qemu/launcher.js';
import { migrateToFile, setParameters } from '../src/qemu/migration.js';
import { HEARTBEAT, REPO_ROOT, guestArgs } from '../test/fixtures/meta.js';
import { loadFixture } from '../test/helpers/qemu.js';

export interface BenchStream {
  /** The fixture's name, or "filled". */
  readonly name: string;
  /** As the tables show it: the name, and what the stream is where the name does not say. */
  readonly title: string;
  readonly path: string;
  readonly bytes: number;
}

export const FIXTURES_DIR = join(REPO_ROOT, '.cache', 'fixtures');
export const FILLED_STREAM = join(REPO_ROOT, '.cache', 'bench', 'filled.mig');
export const FILLED_MACHINE_ARGS: readonly string[] = ['-machine', 'pc-i440fx-7.2', '-m', '1G', '-smp', '1', ...guestArgs('idle', ['fill=640'])];

/** The recorded fixture streams (sorted by name), then the filled guest's if it was saved. */
export function benchStreams(): BenchStream[] {
  const names = existsSync(FIXTURES_DIR)
    ? readdirSync(FIXTURES_DIR)
        .filter((name) => existsSync(join(FIXTURES_DIR, name, 'stream.mig')))
        .sort()
    : [];
  const paths: [string, string][] = names.map((name) => [name, join(FIXTURES_DIR, name, 'stream.mig')]);
  if (existsSync(FILLED_STREAM)) paths.push(['filled', FILLED_STREAM]);
  return paths.map(([name, path]) => ({ name, title: TITLES[name] ?? name, path, bytes: statSync(path).size }));
}

const TITLES: Record<string, string> = {
  compress: 'compress (legacy-compressed: zlib pages)',
  block: 'block (RAM and a 32 MiB disk)',
  filled: 'filled (1 GiB guest, 640 MiB filled)',
};

/** A saved stream and the machine that loads it (the restore benchmark's input). */
export interface RestoreScenario {
  readonly name: string;
  readonly stream: string;
  readonly machineArgs: readonly string[];
  readonly accel: Accel;
  readonly capabilities?: Readonly<Record<string, boolean>>;
}

export function fixtureScenario(name: string): RestoreScenario {
  const { meta, stream } = loadFixture(name);
  return { name, stream, machineArgs: meta.machineArgs, accel: meta.accel, capabilities: meta.destinationCapabilities };
}

/** The filled guest's scenario; saves its stream first when .cache/bench/filled.mig is missing. */
export async function ensureFilledStream(): Promise<RestoreScenario> {
  // The accelerator the fixtures were recorded with, so that restores load the same way.
  const accel = loadFixture('idle').meta.accel;
  if (!existsSync(FILLED_STREAM)) {
    mkdirSync(join(REPO_ROOT, '.cache', 'bench'), { recursive: true });
    process.stderr.write(`saving the filled guest once (${FILLED_STREAM}, QEMU ${accel}; a minute or two)\n`);
    const vm = await launchQemu({ args: FILLED_MACHINE_ARGS, accel, name: 'bench-filled-source', cwd: REPO_ROOT });
    try {
      await vm.waitForSerial(/migstream-memfill done/, 300_000);
      await vm.waitForSerial(HEARTBEAT, 60_000);
      await setParameters(vm, { 'max-bandwidth': 100 * 1024 * 1024 * 1024 });
      // Written to a temporary name and renamed when complete (migrateToFile).
      await migrateToFile(vm, FILLED_STREAM, { timeoutMs: 600_000 });
    } finally {
      await vm.quit();
    }
  }
  return { name: 'filled', stream: FILLED_STREAM, machineArgs: FILLED_MACHINE_ARGS, accel };
}

/** How many records the decoder gives for the stream in `path` (1 MiB chunks, in-process). */
export function countRecords(path: string): number {
  const data = readFileSync(path);
  const decoder = createDecoder();
  let records = 0;
  for (let at = 0; at < data.length; at += 1 << 20) records += decoder.push(data.subarray(at, at + (1 << 20))).length;
  return records + decoder.end().length;
}
