/**
 * The main job, end to end on a real guest (run with `npm run demo` after scripts/setup.sh):
 *
 *  1. boot a tiny guest (Debian cloud kernel + busybox initramfs that fills memory with mixed
 *     data and writes to it continuously);
 *  2. save it through migstream: `migrate "exec:migstream copy - vm.mig"`;
 *  3. `migstream inspect` and `migstream extract-ram` the save file;
 *  4. restore it through migstream: `-incoming "exec:migstream copy vm.mig"`;
 *  5. compress the save (`migstream compress -c zstd`) and restore that too:
 *     `-incoming "exec:migstream decompress vm.msz"`;
 *  6. compare each destination's RAM with the source's (all paused) and resume the guest;
 *  7. move a busy guest with its disk between two QEMUs: `migstream incoming --disk disk0 --verify`
 *     on the destination, `migstream migrate --disk disk0 --verify --converge auto` on the source
 *     (the disk through each QEMU's NBD server and dirty bitmaps, while the guest writes to it)
 *     (probe, progress, throttle, RAM check on both sides before the destination resumes),
 *     then compare RAM and disk byte for byte and see the guest run on.
 *
 * Prints the figures on the way; exits non-zero if anything does not match.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { launchQemu } from '../src/qemu/launcher.js';
import { dumpGuestMemory, guestMemoryLayout } from '../src/qemu/memory.js';
import { migrateToExec, restoreFromExec, shellQuote } from '../src/qemu/migration.js';
import { chooseAccel, ensureGuest } from '../test/fixtures/build.js';
import { HEARTBEAT, REPO_ROOT, guestArgs } from '../test/fixtures/meta.js';
import { diskArgs } from '../test/fixtures/scenarios.js';
import { compareDumpWithRamBlock, firstDifference } from '../test/helpers/qemu.js';

const work = join(REPO_ROOT, '.cache', 'demo');
const bin = join(REPO_ROOT, 'bin', 'migstream');
const migstream = `${shellQuote(process.execPath)} ${shellQuote(bin)}`;
// 8 KiB over a round size: QEMU 7.2 under TCG loses dirty pages of RAMBlocks whose length is a
// multiple of 256 KiB (see test/fixtures/scenarios.ts).
const machine = ['-machine', 'pc-i440fx-7.2', '-m', `${256 * 1024 + 8}K`, '-smp', '1'];

const started = Date.now();
const step = (text: string): void => {
  process.stdout.write(`\n[${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s] ${text}\n`);
};

function runMigstream(args: string[]): string {
  return runMigstreamFull(args).stdout;
}

function runMigstreamFull(args: string[]): { stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`migstream ${args.join(' ')} failed:\n${result.stderr}`);
  return result;
}

async function main(): Promise<number> {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const streamPath = join(work, 'vm.mig');

  step('Preparing QEMU and the guest (scripts/setup-qemu.sh, scripts/build-guest.sh)');
  await ensureGuest();
  const accel = await chooseAccel();

  step(`Booting a 256 MiB guest that keeps dirtying memory (${accel})`);
  const source = await launchQemu({ args: [...machine, ...guestArgs('dirty')], accel, name: 'demo-source', cwd: REPO_ROOT });
  const destinations: Awaited<ReturnType<typeof launchQemu>>[] = [];
  try {
    await source.waitForSerial(HEARTBEAT, 180_000);
    const layout = await guestMemoryLayout(source);

    step('Saving: migrate "exec:migstream copy - vm.mig" (bandwidth capped so the guest dirties pages between passes)');
    const saveStarted = Date.now();
    const saved = await migrateToExec(source, `${migstream} copy --quiet - ${shellQuote(streamPath)}`, {
      parameters: { 'max-bandwidth': 64 * 1024 * 1024 },
    });
    const ram = saved.ram!;
    process.stdout.write(
      `  QEMU: ${saved.status} in ${((Date.now() - saveStarted) / 1000).toFixed(1)} s, ${ram['dirty-sync-count']} dirty-sync passes, ` +
        `${ram.normal} normal + ${ram.duplicate} zero pages, downtime ${saved.downtime ?? '?'} ms\n`,
    );
    // QEMU reports "completed" before its exec: child has finished writing; wait for it.
    for (let size = -1; ;) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const now = statSync(streamPath).size;
      if (now === size) break;
      size = now;
    }
    const sourceDump = join(work, 'source-ram.bin');
    const dumpLayout = await dumpGuestMemory(source, layout, sourceDump);

    step('migstream inspect vm.mig');
    const report = runMigstream(['inspect', streamPath]);
    process.stdout.write(report.replace(/^/gm, '  '));
    const counts = JSON.parse(runMigstream(['inspect', '--json', streamPath])) as { ram: { totals: { normal: number; zero: number } } };
    const countsAgree = counts.ram.totals.normal === ram.normal && counts.ram.totals.zero === ram.duplicate;
    process.stdout.write(`  page counts agree with QEMU's query-migrate: ${countsAgree ? 'yes' : 'NO'}\n`);

    step('migstream extract-ram vm.mig -o ram/');
    const ramDir = join(work, 'ram');
    process.stdout.write(runMigstream(['extract-ram', streamPath, '-o', ramDir]).replace(/^/gm, '  '));
    const extracted = JSON.parse(runMigstream(['extract-ram', streamPath, '-o', join(work, 'ram-check'), '--json'])) as {
      blocks: { idstr: string; path: string }[];
    };
    const pcRam = extracted.blocks.find((block) => block.idstr === 'pc.ram')!;
    const extractDiff = await compareDumpWithRamBlock(sourceDump, dumpLayout, 'pc.ram', pcRam.path);
    process.stdout.write(`  extracted pc.ram equals the source's RAM: ${extractDiff === null ? 'yes' : `NO (${JSON.stringify(extractDiff)})`}\n`);

    /** A paused destination loads `command`'s output; its RAM is compared with the source's. */
    const restoreAndCompare = async (name: string, command: string): Promise<boolean> => {
      const destination = await launchQemu({
        args: [...machine, ...guestArgs('dirty'), '-S', '-incoming', 'defer'],
        accel,
        name,
        cwd: REPO_ROOT,
      });
      destinations.push(destination);
      const restoreStarted = Date.now();
      const restored = await restoreFromExec(destination, command);
      process.stdout.write(`  QEMU: ${restored.status} in ${((Date.now() - restoreStarted) / 1000).toFixed(1)} s\n`);
      const destDump = join(work, `${name}-ram.bin`);
      await dumpGuestMemory(destination, layout, destDump);
      const difference = await firstDifference(sourceDump, destDump);
      const dumpBytes = statSync(sourceDump).size;
      process.stdout.write(`  destination RAM equals source RAM (${dumpBytes} bytes compared): ${difference === -1 ? 'yes' : `NO, first difference at ${difference}`}\n`);
      return difference === -1;
    };

    step('Restoring: qemu -incoming "exec:migstream copy vm.mig"');
    const copyRestored = await restoreAndCompare('demo-destination', `${migstream} copy --quiet ${shellQuote(streamPath)}`);

    step('migstream compress -c zstd vm.mig -o vm.msz');
    const packedPath = join(work, 'vm.msz');
    process.stdout.write(`  ${runMigstreamFull(['compress', '-c', 'zstd', streamPath, '-o', packedPath]).stderr.trim()}\n`);

    step('Restoring the compressed save: qemu -incoming "exec:migstream decompress vm.msz"');
    const decompressRestored = await restoreAndCompare('demo-destination-2', `${migstream} decompress --quiet ${shellQuote(packedPath)}`);

    const destination = destinations.at(-1)!;
    await destination.execute('cont');
    const heartbeat = await destination.waitForSerial(HEARTBEAT, 120_000);
    process.stdout.write(`  guest runs on at the destination: "${heartbeat[0]}"\n`);

    const moved = await moveBusyGuestWithDisk(accel);

    const ok = countsAgree && extractDiff === null && copyRestored && decompressRestored && moved;
    step(ok ? 'Done: saved, inspected, extracted, compressed and restored byte for byte; moved a busy guest with its disk, verified.' : 'FAILED: see above.');
    process.stdout.write(`  stream: ${streamPath} (${statSync(streamPath).size} bytes); compressed: ${packedPath} (${statSync(packedPath).size} bytes)\n`);
    return ok ? 0 : 1;
  } finally {
    for (const destination of destinations) await destination.quit();
    await source.quit();
  }
}

/** Runs migstream with `args`, its stderr shown as it comes (the progress line, the report). */
function runLive(args: string[]): Promise<number | null> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.on('data', (chunk: Buffer) =>
    process.stdout.write(
      chunk
        .toString()
        .replace(/\r/g, '\n')
        .replace(/^(?=.)/gm, '  '),
    ),
  );
  return new Promise((resolve) => child.on('close', resolve));
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function moveBusyGuestWithDisk(accel: Awaited<ReturnType<typeof chooseAccel>>): Promise<boolean> {
  step('Moving a busy guest with its disk: migstream incoming --disk disk0 --verify / migstream migrate --disk disk0 --verify --converge auto');
  const disk = { driveId: 'disk0', sizeMiB: 64 };
  const srcDisk = join(work, 'move-src.raw');
  const dstDisk = join(work, 'move-dst.raw');
  writeFileSync(srcDisk, randomBytes(disk.sizeMiB * 1024 * 1024));
  writeFileSync(dstDisk, Buffer.alloc(disk.sizeMiB * 1024 * 1024));
  // The guest rewrites a 32 MiB working set at 48 MiB/s, faster than the 24 MiB/s cap, and
  // writes random 4 KiB blocks to its disk at 2 MiB/s.
  const busy = guestArgs('busy', ['wss=32', 'rate=48', 'disk=4096:2:7']);
  const srcQmp = join(work, 'move-src.qmp');
  const dstQmp = join(work, 'move-dst.qmp');
  const qmpArg = (path: string): string[] => ['-qmp', `unix:${path},server=on,wait=off`];
  const [source, destination] = await Promise.all([
    launchQemu({ args: [...machine, ...busy, ...diskArgs(srcDisk, disk), ...qmpArg(srcQmp)], accel, name: 'move-source', cwd: REPO_ROOT }),
    launchQemu({ args: [...machine, ...busy, ...diskArgs(dstDisk, disk), ...qmpArg(dstQmp), '-S', '-incoming', 'defer'], accel, name: 'move-destination', cwd: REPO_ROOT }),
  ]);
  try {
    await source.waitForSerial(/migstream-disk \d+/, 180_000);
    const port = await freePort();
    const to = `127.0.0.1:${port}`;
    const [migrated, received] = await Promise.all([
      runLive(['migrate', '--qmp', srcQmp, '--to', to, '--insecure', '--disk', 'disk0', '--verify', '--converge', 'auto', '--max-bandwidth', '24M', '--timeout', '300']),
      runLive(['incoming', '--qmp', dstQmp, '--listen', to, '--insecure', '--disk', 'disk0', '--verify', '--no-resume', '--timeout', '400']),
    ]);
    if (migrated !== 0 || received !== 0) {
      process.stdout.write(`  migrate exited ${migrated}, incoming ${received}\n`);
      return false;
    }
    const layout = await guestMemoryLayout(source);
    const sourceDump = join(work, 'move-src-ram.bin');
    const destDump = join(work, 'move-dst-ram.bin');
    await dumpGuestMemory(source, layout, sourceDump);
    await dumpGuestMemory(destination, layout, destDump);
    const ramSame = (await firstDifference(sourceDump, destDump)) === -1;
    const diskSame = readFileSync(srcDisk).equals(readFileSync(dstDisk));
    process.stdout.write(`  independent check: destination RAM equals source RAM: ${ramSame ? 'yes' : 'NO'}; destination disk equals source disk (${disk.sizeMiB} MiB): ${diskSame ? 'yes' : 'NO'}\n`);
    await destination.execute('cont');
    const work0 = destination.serialText().match(/migstream-work \d+/g)?.length ?? 0;
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const runs = (destination.serialText().match(/migstream-work \d+/g)?.length ?? 0) > work0;
    process.stdout.write(`  the guest works on at the destination: ${runs ? 'yes' : 'NO'}\n`);
    return ramSame && diskSame && runs;
  } finally {
    await Promise.all([source.quit(), destination.quit()]);
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
