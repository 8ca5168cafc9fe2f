/**
 * Compression benchmark on the recorded QEMU streams (npm run bench:compress), in one run:
 *   1. migstream's lz4 and zstd modes against `lz4 -1` and `zstd -3 -T<cores>` (and `gzip -1`)
 *      on the same files: sizes and MB/s, compress and decompress;
 *   2. the compacted size of the dirtying guest's save against its uncompressed size;
 *   3. restore into QEMU through `-incoming "exec:cat stream.mig"` against
 *      `-incoming "exec:migstream decompress stream.msz"` (idle and dirty guests; with
 *      --filled also a 1 GiB guest with 640 MiB filled, saved once into .cache/bench/: a
 *      stream of about 600 MB, where throughput rather than start-up decides). Next to them, a
 *      Node.js program that only copies the file: the floor of any Node.js program there.
 *      With --cold, each restore also runs with the file it reads evicted from the page cache,
 *      as when a save is restored long after it was written; --disk-mbps N also caps the
 *      reader's disk reads at N MB/s (root, cgroup v1 blkio), for a disk slower than this one.
 * The machine may be shared: every figure is the best of --repeat runs (default 2).
 *
 *   npm run bench:compress [-- --repeat 3] [--skip-restore | --restore-only] [--filled]
 *                             [--cold] [--disk-mbps N] [--svg bench.svg]
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chartPoints, formatRows, rate, runBench, totals, type BenchConfig, type BenchRow } from '../src/cli/bench-run.js';
import { svgChart } from '../src/cli/bench-chart.js';
import { parseBaseline } from '../src/cli/bench-tools.js';
import { launchQemu, type Accel } from '../src/qemu/launcher.js';
import { migrateToFile, restoreFromExec, setParameters, shellQuote } from '../src/qemu/migration.js';
import { HEARTBEAT, REPO_ROOT, guestArgs } from '../test/fixtures/meta.js';
import { loadFixture } from '../test/helpers/qemu.js';
import { compactMemory, evictFromPageCache, readIntoPageCache, removeThrottles, throttledReader } from './disk.js';

const { values } = parseArgs({
  options: {
    repeat: { type: 'string' },
    'skip-restore': { type: 'boolean' },
    'restore-only': { type: 'boolean' },
    filled: { type: 'boolean' },
    cold: { type: 'boolean' },
    'disk-mbps': { type: 'string' },
    svg: { type: 'string' },
  },
  allowPositionals: false,
});
const repeat = Number(values.repeat ?? 2);
const diskMbps = values['disk-mbps'] === undefined ? undefined : Number(values['disk-mbps']);
if (diskMbps !== undefined && !(diskMbps > 0)) throw new Error(`--disk-mbps wants a positive number, not ${values['disk-mbps']}`);
const fromDisk = values.cold === true || diskMbps !== undefined;
const cores = availableParallelism();
const BIN = join(REPO_ROOT, 'bin/migstream');
const root = join(REPO_ROOT, '.cache/fixtures');
const names = existsSync(root) ? readdirSync(root).filter((name) => existsSync(join(root, name, 'stream.mig'))).sort() : [];
if (names.length === 0) {
  console.error('no fixture streams: run the tests once to build .cache/fixtures');
  process.exit(2);
}
const files = names.map((name) => join(root, name, 'stream.mig'));

// 1. Ours against the command-line tools.
if (!values['restore-only']) await compareCompression();

async function compareCompression(): Promise<void> {
  // The defaults of "migstream compress -c lz4|zstd" (dedup on, zstd level 3) first, then what
  // each default gives up or buys: no dedup, level 1.
  const configs: BenchConfig[] = [
    { codec: 'lz4', level: 1, threads: cores, dedup: true },
    { codec: 'zstd', level: 3, threads: cores, dedup: true },
    { codec: 'zstd', level: 3, threads: cores, dedup: false },
    { codec: 'zstd', level: 1, threads: cores, dedup: true },
  ];
  const baselines = ['lz4 -1', `zstd -3 -T${cores}`, 'gzip -1'].map(parseBaseline);
  console.log(`compression on ${names.length} QEMU streams, ${cores} cores, best of ${repeat}`);
  const result = await runBench(files, { configs, baselines, repeat, raw: false, log: (line) => process.stderr.write(`  ${line}\n`) });
  for (const name of names) {
    const rows = result.rows.filter((row) => row.file === name);
    console.log(`\n${name} (${(rows[0]!.inputBytes / 1e6).toFixed(1)} MB)\n${formatRows(rows)}`);
  }
  const all = totals(result.rows);
  console.log(`\nall streams (${(all[0]!.inputBytes / 1e6).toFixed(1)} MB)\n${formatRows(all)}`);
  for (const note of result.notes) console.log(`note: ${note}`);
  if (values.svg) writeFileSync(values.svg, svgChart(`migstream vs lz4/zstd/gzip on ${names.length} QEMU streams`, chartPoints(result.rows)));

  function verdict(ours: BenchRow | undefined, theirs: BenchRow | undefined, what: string): void {
    if (!ours || !theirs) return console.log(`${what}: baseline missing`);
    const size = ours.outputBytes / theirs.outputBytes;
    const speed = rate(ours.inputBytes, ours.compressSeconds) / rate(theirs.inputBytes, theirs.compressSeconds);
    const dspeed = rate(ours.inputBytes, ours.decompressSeconds) / rate(theirs.inputBytes, theirs.decompressSeconds);
    console.log(
      `${what}: ${ours.method} ${ours.outputBytes} B at ${rate(ours.inputBytes, ours.compressSeconds).toFixed(0)} MB/s ` +
        `vs ${theirs.method} ${theirs.outputBytes} B at ${rate(theirs.inputBytes, theirs.compressSeconds).toFixed(0)} MB/s: ` +
        `size ×${size.toFixed(4)}, compress speed ×${speed.toFixed(2)}, decompress speed ×${dspeed.toFixed(2)}`,
    );
  }
  const find = (method: string): BenchRow | undefined => all.find((row) => row.method === method);
  console.log('');
  verdict(find(`zstd:3+dedup j${cores}`), find(`zstd -3 -T${cores}`), 'zstd mode (default: level 3, dedup)');
  verdict(find(`zstd:3 j${cores}`), find(`zstd -3 -T${cores}`), 'zstd level 3, no dedup');
  verdict(find(`zstd:1+dedup j${cores}`), find(`zstd -3 -T${cores}`), 'zstd level 1, dedup');
  verdict(find(`lz4+dedup j${cores}`), find('lz4 -1'), 'lz4 mode (default: dedup)');
  console.log(
    `note: migstream rows are in-process with one worker pool for the whole bench (a command-line run adds the start-up of Node and of ${cores} worker threads, ~40 ms each); the tools' rows are whole runs of the commands`,
  );
}

// 2. Compaction of the dirtying guest's save.
const scratch = mkdtempSync(join(tmpdir(), 'migstream-bench-compress-'));
try {
  if (names.includes('dirty') && !values['restore-only']) {
    const dirty = loadFixture('dirty');
    const compacted = join(scratch, 'dirty-compact.mig');
    const packed = join(scratch, 'dirty-compact.msz');
    run(['compact', '--quiet', dirty.stream, compacted]);
    run(['compress', '--quiet', '--compact', '-c', 'zstd', dirty.stream, '-o', packed]);
    const ram = dirty.meta.memoryBytes;
    console.log(
      `\ncompaction (dirty guest, ${(ram / 1048576).toFixed(0)} MiB pc.ram): stream ${statSync(dirty.stream).size} B -> compacted ` +
        `${statSync(compacted).size} B (×${(statSync(compacted).size / statSync(dirty.stream).size).toFixed(3)}); compacted + zstd ${statSync(packed).size} B`,
    );
  }

  // 3. Restore time into QEMU.
  if (!values['skip-restore']) {
    console.log('\nrestore into QEMU (seconds from migrate-incoming to "completed", best of runs):');
    const scenarios: RestoreScenario[] = ['idle', 'dirty'].filter((n) => names.includes(n)).map(fixtureScenario);
    if (values.filled) scenarios.push(await filledScenario());
    for (const scenario of scenarios) {
      const { name, stream } = scenario;
      // Each method: its label, its command, and the file it reads.
      const methods: [string, string, string][] = [['exec:cat stream.mig', `cat ${shellQuote(stream)}`, stream]];
      // The floor of any Node.js program in QEMU's place: start up, then copy the file.
      const nodeCopy = `fs.createReadStream(${JSON.stringify(stream)}, { highWaterMark: 1 << 20 }).pipe(process.stdout)`;
      methods.push(['exec:node, copying stream.mig', `${shellQuote(process.execPath)} -e ${shellQuote(nodeCopy)}`, stream]);
      for (const codec of ['zstd', 'lz4']) {
        const container = join(scratch, `${name}.${codec}.msz`);
        run(['compress', '--quiet', '-c', codec, stream, '-o', container]);
        const command = `${shellQuote(process.execPath)} ${shellQuote(BIN)} decompress --quiet ${shellQuote(container)}`;
        methods.push([`exec:migstream decompress (${codec})`, command, container]);
        // QEMU hands its environment to the exec: child. NODE_EXTRA_CA_CERTS (set on some CI and
        // sandbox machines) makes every Node start-up parse a CA bundle first: shown apart.
        if (codec === 'zstd' && process.env.NODE_EXTRA_CA_CERTS) methods.push([`  same, without NODE_EXTRA_CA_CERTS`, `env -u NODE_EXTRA_CA_CERTS ${command}`, container]);
      }
      // Rounds over the methods, so that a busy moment of a shared machine hits them alike; the
      // runs from disk after all the others (a slow run from disk slowed the run after it).
      const cached = methods.map(() => Infinity);
      const onDisk = methods.map(() => Infinity);
      for (let i = 0; i < repeat; i++) {
        for (const [m, [, command, file]] of methods.entries()) {
          readIntoPageCache(file);
          cached[m] = Math.min(cached[m]!, await restoreSeconds(scenario, command));
        }
      }
      for (let i = 0; i < (fromDisk ? repeat : 0); i++) {
        for (const [m, [, command, file]] of methods.entries()) {
          evictFromPageCache(file);
          const reader = diskMbps === undefined ? command : `${throttledReader(file, diskMbps)} ${command}`;
          onDisk[m] = Math.min(onDisk[m]!, await restoreSeconds(scenario, reader));
        }
      }
      const streamBytes = statSync(stream).size;
      const diskLabel = diskMbps === undefined ? 'from disk' : `from a ${diskMbps} MB/s disk`;
      for (const [m, [label, , file]] of methods.entries()) {
        const figures = (seconds: number): string => `${seconds.toFixed(2)} s (${rate(streamBytes, seconds).toFixed(0)} MB/s of stream)`;
        const coldFigures = fromDisk ? `   ${diskLabel}: ${figures(onDisk[m]!)}, ${(statSync(file).size / 1e6).toFixed(0)} MB read` : '';
        console.log(`  ${name.padEnd(6)} ${label.padEnd(38)} ${fromDisk ? 'cached: ' : ''}${figures(cached[m]!)}${coldFigures}`);
      }
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
  removeThrottles();
}

function run(args: string[]): void {
  const result = spawnSync(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (result.status !== 0) throw new Error(`migstream ${args.join(' ')} failed`);
}

/** A saved stream and the machine that loads it. */
interface RestoreScenario {
  readonly name: string;
  readonly stream: string;
  readonly machineArgs: readonly string[];
  readonly accel: Accel;
  readonly capabilities?: Readonly<Record<string, boolean>>;
}

function fixtureScenario(name: string): RestoreScenario {
  const { meta, stream } = loadFixture(name);
  return { name, stream, machineArgs: meta.machineArgs, accel: meta.accel, capabilities: meta.destinationCapabilities };
}

/** A 1 GiB guest with 640 MiB filled, saved once into .cache/bench/ (about 600 MB of stream). */
async function filledScenario(): Promise<RestoreScenario> {
  const machineArgs = ['-machine', 'pc-i440fx-7.2', '-m', '1G', '-smp', '1', ...guestArgs('idle', ['fill=640'])];
  const accel = loadFixture('idle').meta.accel;
  const dir = join(REPO_ROOT, '.cache', 'bench');
  const stream = join(dir, 'filled.mig');
  if (!existsSync(stream)) {
    mkdirSync(dir, { recursive: true });
    process.stderr.write('  saving the filled guest once (.cache/bench/filled.mig)\n');
    const vm = await launchQemu({ args: machineArgs, accel, name: 'bench-filled-source', cwd: REPO_ROOT });
    try {
      await vm.waitForSerial(/migstream-memfill done/, 300_000);
      await vm.waitForSerial(HEARTBEAT, 60_000);
      await setParameters(vm, { 'max-bandwidth': 100 * 1024 * 1024 * 1024 });
      // Written to a temporary name and renamed when complete (migrateToFile).
      await migrateToFile(vm, stream, { timeoutMs: 600_000 });
    } finally {
      await vm.quit();
    }
  }
  return { name: 'filled', stream, machineArgs, accel };
}

/** Seconds a paused destination takes to load the output of `command`. */
async function restoreSeconds(scenario: RestoreScenario, command: string): Promise<number> {
  const { name, machineArgs, accel, capabilities } = scenario;
  // QEMU asks for huge pages for guest RAM: on fragmented memory, faulting them in compacts
  // memory on the spot, and a restore took from 0.7 to 1.7 s by that alone. Compacted first
  // (root only), every run starts alike.
  compactMemory();
  const vm = await launchQemu({ args: [...machineArgs, '-S', '-incoming', 'defer'], accel, name: `bench-restore-${name}`, cwd: REPO_ROOT });
  try {
    const started = process.hrtime.bigint();
    await restoreFromExec(vm, command, { capabilities, pollMs: 10, timeoutMs: 5 * 60_000 });
    return Number(process.hrtime.bigint() - started) / 1e9;
  } finally {
    await vm.quit();
  }
}
