/**
 * Compression benchmark (npm run bench:compress), each stream on its own (bench/streams.ts:
 * every recorded QEMU fixture, and the 1 GiB filled guest once saved with --filled):
 *   1. `migstream compress` (-c zstd, -c lz4, -c none) and `migstream decompress` timed as whole
 *      processes, stdin from the file and stdout to tmpfs (compress) or /dev/null (decompress),
 *      exactly as the baselines in the same rounds: `zstd -3 -T<cores>`, `lz4 -1`, `zstd -d`,
 *      `lz4 -d`, and `migstream copy` / `cat` for -c none (bench/process-timing.ts: best of
 *      --repeat, migstream less its start-up, page faults from the child's rusage). Records per
 *      second over the records the decoder finds (counted in-process, untimed). Beside them
 *      the in-process figure (Compressor/Decompressor on one warm worker pool; --no-in-process
 *      drops it), and a verdict against issue 15's targets;
 *   2. the compacted size of the dirtying guest's save against its uncompressed size;
 *   3. with --restore (or --restore-only): restore into QEMU through
 *      `-incoming "exec:cat stream.mig"` against `-incoming "exec:migstream decompress
 *      stream.msz"` (idle and dirty guests, and the filled one when saved). Next to them, a
 *      Node.js program that only copies the file: the floor of any Node.js program there.
 *      With --cold, each restore also runs with the file it reads evicted from the page cache,
 *      as when a save is restored long after it was written; --disk-mbps N also caps the
 *      reader's disk reads at N MB/s (root, cgroup v1 blkio), for a disk slower than this one.
 * The machine may be shared: every figure is the best of --repeat runs (default 3).
 *
 *   npm run bench:compress [-- --repeat N] [--filled] [--stream NAME]… [--no-in-process]
 *                             [--json FILE] [--svg FILE]
 *                             [--restore | --restore-only] [--cold] [--disk-mbps N]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chartPoints, rate, runBench, totals, type BenchConfig, type BenchRow } from '../src/cli/bench-run.js';
import { svgChart } from '../src/cli/bench-chart.js';
import { table } from '../src/cli/format.js';
import { launchQemu } from '../src/qemu/launcher.js';
import { restoreFromExec, shellQuote } from '../src/qemu/migration.js';
import { REPO_ROOT } from '../test/fixtures/meta.js';
import { loadFixture } from '../test/helpers/qemu.js';
import { compactMemory, evictFromPageCache, readIntoPageCache, removeThrottles, throttledReader } from './page-cache.js';
import { FIGURE_HEADER, MIGSTREAM, ensureTools, figureCells, figuresOf, fmtMB, mark, migstream, startupLine, timeRounds, tmpfsScratch, tool, type Figures, type RoundsResult } from './process-timing.js';
import { benchStreams, countRecords, ensureFilledStream, fixtureScenario, type BenchStream, type RestoreScenario } from './streams.js';

const { values } = parseArgs({
  options: {
    repeat: { type: 'string' },
    filled: { type: 'boolean' },
    stream: { type: 'string', multiple: true },
    'no-in-process': { type: 'boolean' },
    json: { type: 'string' },
    svg: { type: 'string' },
    restore: { type: 'boolean' },
    'restore-only': { type: 'boolean' },
    cold: { type: 'boolean' },
    'disk-mbps': { type: 'string' },
  },
  allowPositionals: false,
});
const repeat = Number(values.repeat ?? 3);
if (!(Number.isInteger(repeat) && repeat > 0)) throw new Error(`--repeat wants a positive integer, not ${values.repeat}`);
const diskMbps = values['disk-mbps'] === undefined ? undefined : Number(values['disk-mbps']);
if (diskMbps !== undefined && !(diskMbps > 0)) throw new Error(`--disk-mbps wants a positive number, not ${values['disk-mbps']}`);
const fromDisk = values.cold === true || diskMbps !== undefined;
const cores = availableParallelism();

ensureTools(['time', 'zstd', 'lz4']);
if (values.filled) await ensureFilledStream();
const streams = benchStreams().filter((stream) => values.stream === undefined || values.stream.includes(stream.name));
if (streams.length === 0) {
  console.error('no streams: run the tests once to build .cache/fixtures (or check --stream)');
  process.exit(2);
}
const json: Record<string, unknown> = {
  date: new Date().toISOString(),
  cpu: cpus()[0]?.model,
  cores,
  repeat,
  timing: 'best of repeat; wall time from fork to wait of GNU time (bench/process-timing.ts); migstream less its start-up (migstream --version); faults from GNU time (wait4 rusage)',
};

// 1. Whole processes, per stream.
if (!values['restore-only']) {
  const scratch = tmpfsScratch('migstream-bench-compress');
  try {
    json.streams = await compareCompression(streams, scratch.dir);
  } finally {
    scratch.done();
  }
}

/** One row of a stream's table: a command's figures and what the table adds to them. */
interface Row {
  readonly figures: Figures;
  /** Output size (compress rows). */
  readonly outputBytes: number | null;
  /** MB/s of the same operation in-process (migstream's rows). */
  readonly inProcess: number | null;
  readonly verdict: string;
}

async function compareCompression(list: readonly BenchStream[], dir: string): Promise<unknown[]> {
  console.log(
    `compression as whole processes on ${list.length} QEMU streams, ${cores} cores (${cpus()[0]?.model ?? 'unknown CPU'}), best of ${repeat}; ` +
      `migstream's rows less its start-up; MB = 1e6 bytes of stream; faults (minor + major) per MiB of stream`,
  );
  if (!list.some((stream) => stream.name === 'filled')) console.log('(no filled-guest stream: add --filled to save it once, QEMU, about a minute)');
  const all: unknown[] = [];
  const summary: BenchRow[] = [];
  for (const stream of list) {
    readIntoPageCache(stream.path);
    const records = countRecords(stream.path);
    const out = (name: string): string => join(dir, name);
    const input = { stdin: stream.path };
    const commands = [
      migstream('migstream compress -c zstd', ['compress', '-c', 'zstd'], { ...input, stdout: out('zstd.msz') }),
      tool(`zstd -3 -T${cores}`, ['zstd', '-3', `-T${cores}`, '-c'], { ...input, stdout: out('stream.zst') }),
      migstream('migstream compress -c lz4', ['compress', '-c', 'lz4'], { ...input, stdout: out('lz4.msz') }),
      tool('lz4 -1', ['lz4', '-1', '-c'], { ...input, stdout: out('stream.lz4') }),
      migstream('migstream compress -c none', ['compress', '-c', 'none'], { ...input, stdout: out('none.msz') }),
      migstream('migstream copy', ['copy'], { ...input, stdout: out('copy.mig') }),
      tool('cat', ['cat'], { ...input, stdout: out('cat.mig') }),
      // Each reads what the compress row above wrote in the same round.
      migstream('migstream decompress (zstd)', ['decompress'], { stdin: out('zstd.msz') }),
      tool('zstd -d', ['zstd', '-d', '-c'], { stdin: out('stream.zst') }),
      migstream('migstream decompress (lz4)', ['decompress'], { stdin: out('lz4.msz') }),
      tool('lz4 -d', ['lz4', '-d', '-c'], { stdin: out('stream.lz4') }),
      migstream('migstream decompress (none)', ['decompress'], { stdin: out('none.msz') }),
    ];
    process.stderr.write(`${stream.name}: ${commands.length} commands, ${repeat} rounds\n`);
    const result = figuresOf(timeRounds(commands, repeat, dir), stream.bytes, records);
    const sizes = new Map(commands.map((command) => [command.label, command.stdout === undefined ? null : statSync(command.stdout).size]));
    const inProcess = values['no-in-process'] ? new Map<string, number>() : await inProcessRates(stream.path);
    const rows = verdicts(result, sizes, inProcess);
    printTable(stream, records, result, rows);
    all.push({ ...stream, records, startup: result.startup, startupRuns: result.startupRuns, floor: result.floor, rows });
    for (const [codec, baseline, baselineD] of [
      ['zstd', `zstd -3 -T${cores}`, 'zstd -d'],
      ['lz4', 'lz4 -1', 'lz4 -d'],
    ] as const) {
      for (const [method, compress, decompress, kind] of [
        [`migstream -c ${codec}`, `migstream compress -c ${codec}`, `migstream decompress (${codec})`, 'migstream'],
        [baseline, baseline, baselineD, 'baseline'],
      ] as const) {
        const c = rows.find((row) => row.figures.label === compress)!;
        const d = rows.find((row) => row.figures.label === decompress)!;
        summary.push({ file: stream.name, method, kind, threads: null, inputBytes: stream.bytes, outputBytes: c.outputBytes!, compressSeconds: c.figures.netSeconds, decompressSeconds: d.figures.netSeconds });
      }
    }
  }
  if (values.svg) writeFileSync(values.svg, svgChart(`migstream (whole processes, less start-up) vs lz4/zstd on ${list.length} QEMU streams`, chartPoints(totals(summary))));
  return all;
}

/** In-process MB/s per row label: one warm worker pool, the stream in memory (1 MiB chunks). */
async function inProcessRates(path: string): Promise<Map<string, number>> {
  const configs: BenchConfig[] = (['zstd', 'lz4', 'none'] as const).map((codec) => ({ codec, level: codec === 'zstd' ? 3 : codec === 'lz4' ? 1 : 0, threads: cores, dedup: true }));
  const { rows } = await runBench([path], { configs, baselines: [], repeat, raw: false });
  const rates = new Map<string, number>();
  for (const [i, config] of configs.entries()) {
    const row = rows[i]!;
    rates.set(`migstream compress -c ${config.codec}`, rate(row.inputBytes, row.compressSeconds));
    rates.set(`migstream decompress (${config.codec})`, rate(row.inputBytes, row.decompressSeconds));
  }
  return rates;
}

/** Issue 15's targets, row by row. */
function verdicts(result: RoundsResult, sizes: Map<string, number | null>, inProcess: Map<string, number>): Row[] {
  const by = new Map(result.figures.map((figures) => [figures.label, figures]));
  const get = (label: string): Figures => by.get(label)!;
  const size = (label: string): number => sizes.get(label)!;
  const smallerAndFaster = (ours: string, theirs: string): string => {
    const bytes = size(ours) / size(theirs);
    const speed = get(ours).mbPerSecond / get(theirs).mbPerSecond;
    return `${mark(bytes < 1, `size ×${bytes.toFixed(3)}`)}, ${mark(speed >= 1, `speed ×${speed.toFixed(2)}`)}`;
  };
  const asFast = (ours: string, theirs: string): string => {
    const speed = get(ours).mbPerSecond / get(theirs).mbPerSecond;
    return mark(speed >= 1, `speed ×${speed.toFixed(2)} of ${theirs}`);
  };
  const targets: Record<string, () => string> = {
    'migstream compress -c zstd': () => smallerAndFaster('migstream compress -c zstd', `zstd -3 -T${cores}`),
    'migstream compress -c lz4': () => smallerAndFaster('migstream compress -c lz4', 'lz4 -1'),
    'migstream compress -c none': () => {
      const times = get('migstream compress -c none').netSeconds / get('migstream copy').netSeconds;
      return mark(times <= 1.5, `time ×${times.toFixed(2)} of copy (≤ 1.5)`);
    },
    'migstream decompress (zstd)': () => asFast('migstream decompress (zstd)', 'zstd -d'),
    'migstream decompress (lz4)': () => asFast('migstream decompress (lz4)', 'lz4 -d'),
  };
  return result.figures.map((figures) => ({
    figures,
    outputBytes: sizes.get(figures.label) ?? null,
    inProcess: inProcess.get(figures.label) ?? null,
    verdict: targets[figures.label]?.() ?? '',
  }));
}

function printTable(stream: BenchStream, records: number, result: RoundsResult, rows: readonly Row[]): void {
  console.log(`\n${stream.title}: ${(stream.bytes / 1e6).toFixed(1)} MB, ${records.toLocaleString('en')} records`);
  console.log(
    table(
      [...FIGURE_HEADER, 'size', 'ratio', 'in-process MB/s', 'verdict'],
      rows.map((row) => [
        ...figureCells(row.figures),
        row.outputBytes === null ? '' : `${(row.outputBytes / 1e6).toFixed(1)} MB`,
        row.outputBytes === null ? '' : (stream.bytes / row.outputBytes).toFixed(3),
        row.inProcess === null ? '' : fmtMB(row.inProcess),
        row.verdict,
      ]),
    ),
  );
  console.log(startupLine(result));
}

// 2. Compaction of the dirtying guest's save.
const scratch = mkdtempSync(join(tmpdir(), 'migstream-bench-compress-'));
try {
  if (streams.some((stream) => stream.name === 'dirty') && !values['restore-only']) {
    const dirty = loadFixture('dirty');
    const compacted = join(scratch, 'dirty-compact.mig');
    const packed = join(scratch, 'dirty-compact.msz');
    run(['compact', '--quiet', dirty.stream, compacted]);
    run(['compress', '--quiet', '--compact', '-c', 'zstd', dirty.stream, '-o', packed]);
    const ram = dirty.meta.memoryBytes;
    json.compaction = { streamBytes: statSync(dirty.stream).size, compactedBytes: statSync(compacted).size, compactedZstdBytes: statSync(packed).size };
    console.log(
      `\ncompaction (dirty guest, ${(ram / 1048576).toFixed(0)} MiB pc.ram): stream ${statSync(dirty.stream).size} B -> compacted ` +
        `${statSync(compacted).size} B (×${(statSync(compacted).size / statSync(dirty.stream).size).toFixed(3)}); compacted + zstd ${statSync(packed).size} B`,
    );
  }

  // 3. Restore time into QEMU.
  if (values.restore || values['restore-only']) {
    console.log('\nrestore into QEMU (seconds from migrate-incoming to "completed", best of runs):');
    const scenarios: RestoreScenario[] = ['idle', 'dirty'].filter((n) => streams.some((stream) => stream.name === n)).map(fixtureScenario);
    if (streams.some((stream) => stream.name === 'filled')) scenarios.push(await ensureFilledStream());
    const restores: Record<string, unknown>[] = [];
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
        const command = `${shellQuote(process.execPath)} ${shellQuote(MIGSTREAM)} decompress --quiet ${shellQuote(container)}`;
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
        restores.push({ stream: name, method: label, cachedSeconds: cached[m], diskSeconds: fromDisk ? onDisk[m] : null });
      }
    }
    json.restore = restores;
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
  removeThrottles();
}
if (values.json) writeFileSync(values.json, `${JSON.stringify(json, null, 2)}\n`);

function run(args: string[]): void {
  const result = spawnSync(process.execPath, [MIGSTREAM, ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (result.status !== 0) throw new Error(`migstream ${args.join(' ')} failed`);
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
