/**
 * Test-side access to the real-QEMU fixtures (built by test/fixtures/global-setup.ts):
 * load a fixture, restore a stream into a destination QEMU, compare memory dumps.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, open, rm, truncate, writeFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchQemu } from '../../src/qemu/launcher.js';
import { dumpGuestMemory, type DumpRange, type MemoryRange } from '../../src/qemu/memory.js';
import { restoreFromExec, type MigrationInfo } from '../../src/qemu/migration.js';
import { HEARTBEAT, REPO_ROOT, fixturePaths, type FixtureMeta, type FixturePaths } from '../fixtures/meta.js';
import { diskArgs } from '../fixtures/scenarios.js';

export { shellQuote } from '../../src/qemu/migration.js';
export type { FixtureMeta } from '../fixtures/meta.js';

export interface LoadedFixture extends FixturePaths {
  meta: FixtureMeta;
}

/** Reads a fixture's meta.json; throws when the global setup has not built it. */
export function loadFixture(name: string): LoadedFixture {
  const paths = fixturePaths(name);
  if (!existsSync(paths.metaFile)) {
    throw new Error(`fixture ${name} is missing (${paths.metaFile}); it is built by test/fixtures/global-setup.ts`);
  }
  const meta = JSON.parse(readFileSync(paths.metaFile, 'utf8')) as FixtureMeta;
  return { ...paths, meta };
}

export interface RestoreFixtureOptions {
  /** Directory for the dump, disk and serial log; default a new temp dir. */
  outDir?: string;
  /** Destination capabilities; default the fixture's destinationCapabilities. */
  capabilities?: Record<string, boolean>;
  parameters?: Record<string, unknown>;
  timeoutMs?: number;
  /** After dumping RAM, `cont` and wait for a guest heartbeat on the destination console. */
  resume?: boolean;
}

export interface RestoreResult {
  dir: string;
  /** Destination RAM over meta.memoryLayout, same layout as the source dump. */
  dumpPath: string;
  /** The destination's disk after the restore (block fixtures only). */
  diskPath: string | undefined;
  queryMigrate: MigrationInfo;
  serialLogPath: string;
  /** Removes `dir`. */
  cleanup(): Promise<void>;
}

/**
 * Starts a paused destination (`-S -incoming defer`) with the fixture's machine, feeds it the
 * output of `incomingExecCommand` (run by /bin/sh in the repo root, e.g. `cat <stream>`),
 * waits for "completed" and dumps its RAM. The destination always quits before returning.
 */
export async function restoreFixture(name: string, incomingExecCommand: string, options: RestoreFixtureOptions = {}): Promise<RestoreResult> {
  const { meta } = loadFixture(name);
  const dir = options.outDir ?? (await mkdtemp(join(tmpdir(), `migstream-restore-${name}-`)));
  const dumpPath = join(dir, 'dest-ram.bin');
  const serialLogPath = join(dir, 'serial.log');
  const args = [...meta.machineArgs];
  let diskPath: string | undefined;
  if (meta.disk) {
    diskPath = join(dir, 'dest-disk.raw');
    await writeFile(diskPath, '');
    await truncate(diskPath, meta.disk.sizeBytes);
    args.push(...diskArgs(diskPath, { driveId: meta.disk.driveId, sizeMiB: meta.disk.sizeBytes / 1048576 }));
  }
  args.push('-S', '-incoming', 'defer');

  const removeDir = (): Promise<void> => rm(dir, { recursive: true, force: true });
  const vm = await launchQemu({ args, accel: meta.accel, qemu: meta.qemu, name: `restore-${name}`, serialLogPath, cwd: REPO_ROOT }).catch(async (err: unknown) => {
    if (!options.outDir) await removeDir();
    throw err;
  });
  try {
    const queryMigrate = await restoreFromExec(vm, incomingExecCommand, {
      capabilities: options.capabilities ?? meta.destinationCapabilities,
      parameters: options.parameters ?? {},
      timeoutMs: options.timeoutMs ?? 5 * 60_000,
    });
    const ranges: MemoryRange[] = meta.memoryLayout.map(({ dumpOffset: _, ...range }) => range);
    await dumpGuestMemory(vm, ranges, dumpPath);
    if (options.resume) {
      await vm.execute('cont');
      await vm.waitForSerial(HEARTBEAT, 120_000);
    }
    return { dir, dumpPath, diskPath, queryMigrate, serialLogPath, cleanup: removeDir };
  } catch (err) {
    // A temp dir of ours would only leak dumps; the error carries QEMU's stderr.
    if (!options.outDir) {
      await vm.quit();
      await removeDir();
    }
    throw err;
  } finally {
    await vm.quit();
  }
}

const CHUNK = 1024 * 1024;

async function readAt(file: FileHandle, buffer: Buffer, position: number): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await file.read(buffer, filled, buffer.length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

/** Index of the first differing byte of a and b (within their common length), or -1. */
function firstMismatch(a: Buffer, b: Buffer, length: number): number {
  if (a.subarray(0, length).equals(b.subarray(0, length))) return -1;
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/**
 * Byte offset of the first difference between `lengthA` bytes of A at `offsetA` and the same
 * span of B at `offsetB` (a span past the end of B differs where B ends), or -1.
 */
async function compareSpans(a: FileHandle, offsetA: number, b: FileHandle, offsetB: number, length: number): Promise<number> {
  const bufA = Buffer.allocUnsafe(CHUNK);
  const bufB = Buffer.allocUnsafe(CHUNK);
  for (let done = 0; done < length; done += CHUNK) {
    const want = Math.min(CHUNK, length - done);
    const gotA = await readAt(a, bufA.subarray(0, want), offsetA + done);
    const gotB = await readAt(b, bufB.subarray(0, want), offsetB + done);
    const common = Math.min(gotA, gotB);
    const mismatch = firstMismatch(bufA, bufB, common);
    if (mismatch >= 0) return done + mismatch;
    if (common < want) return done + common;
  }
  return -1;
}

/** Streams both files: -1 when identical (size included), else the first differing offset. */
export async function firstDifference(fileA: string, fileB: string): Promise<number> {
  const a = await open(fileA, 'r');
  const b = await open(fileB, 'r');
  try {
    const [sizeA, sizeB] = [(await a.stat()).size, (await b.stat()).size];
    const common = Math.min(sizeA, sizeB);
    const offset = await compareSpans(a, 0, b, 0, common);
    if (offset >= 0) return offset;
    return sizeA === sizeB ? -1 : common;
  } finally {
    await a.close();
    await b.close();
  }
}

export interface RamBlockDifference {
  idstr: string;
  offsetInBlock: number;
  guestPhysAddr: number;
  dumpOffset: number;
}

/**
 * Compares a dump (source or destination, laid out as `layout`) with a file holding one
 * RAMBlock's bytes from offset 0 (e.g. RAM decoded from a stream), over the ranges of
 * `idstr`. A block file that ends early differs where it ends. Returns null when equal.
 */
export async function compareDumpWithRamBlock(dumpPath: string, layout: readonly DumpRange[], idstr: string, blockPath: string): Promise<RamBlockDifference | null> {
  const ranges = layout.filter((range) => range.idstr === idstr);
  if (ranges.length === 0) throw new Error(`no range of RAMBlock ${idstr} in the memory layout`);
  const dump = await open(dumpPath, 'r');
  const block = await open(blockPath, 'r');
  try {
    for (const range of ranges) {
      const at = await compareSpans(dump, range.dumpOffset, block, range.offsetInBlock, range.length);
      if (at >= 0) {
        return { idstr, offsetInBlock: range.offsetInBlock + at, guestPhysAddr: range.guestPhysAddr + at, dumpOffset: range.dumpOffset + at };
      }
    }
    return null;
  } finally {
    await dump.close();
    await block.close();
  }
}
