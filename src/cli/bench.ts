/**
 * `migstream bench FILE…`: the command line of bench-run.ts (ratio, compress and decompress
 * MB/s per codec/level/threads, next to lz4, zstd -T and gzip), as a table, JSON or SVG chart.
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { CODECS, resolveLevel, type CodecName } from '../codecs/registry.js';
import { MAX_THREADS } from '../workers/pool.js';
import { parse, UsageError, type Command } from './args.js';
import { reportOptionSpec } from './conventions.js';
import { svgChart } from './bench-chart.js';
import { chartPoints, formatRows, runBench, totals, type BenchConfig } from './bench-run.js';
import { defaultBaselines, parseBaseline } from './bench-tools.js';
import { formatBytes } from './format.js';

/** "lz4,zstd:1,zstd:3" → codec/level pairs. */
function parseCodecs(text: string): { codec: CodecName; level: number }[] {
  return text.split(',').map((spec) => {
    const [name, level] = spec.trim().split(':');
    const codec = CODECS.find((c) => c.name === name);
    if (codec === undefined) throw new UsageError(`unknown codec "${name}" in --codecs`);
    try {
      return { codec: codec.name, level: resolveLevel(codec, level === undefined ? undefined : Number(level)) };
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
  });
}

function parseThreads(text: string): number[] {
  return text.split(',').map((part) => {
    const value = Number(part);
    if (!(Number.isInteger(value) && value >= 1 && value <= MAX_THREADS)) throw new UsageError(`bad thread count "${part}" in --threads`);
    return value;
  });
}

const cores = availableParallelism();

const usage = `Usage: migstream bench FILE… [options]

Compression ratio, compress MB/s and decompress MB/s of each codec, level and thread count on
QEMU streams, containers (measured on the stream inside) or raw memory dumps (--raw, e.g. the
files of extract-ram), with the lz4, zstd and gzip command-line tools run on the same input in
the same run (a tool that is not installed is skipped with a note). MB/s are of the stream
(10^6 bytes per second), best of --repeat runs; every round trip is checked.

Options:
  -c, --codecs LIST     codec[:level] list (default lz4,zstd:1,zstd:3,zlib:1)
  -j, --threads LIST    thread counts (default 1,${cores})
      --no-dedup        also measure each configuration without page dedup (on by default, as in
                        "migstream compress")
      --baselines LIST  command lines, comma-separated (default "lz4 -1,zstd -3 -T${cores},gzip -1")
      --no-baselines    only migstream
      --repeat N        runs per measurement, the fastest counts (default 2)
      --raw             the files are raw bytes, not QEMU streams
      --json            results as JSON on stdout
      --progress        a line on stderr per measurement (the default)
      --no-progress, --quiet
                        no lines on stderr
      --svg FILE        chart of ratio against compress throughput
  -h, --help            this help`;

export const benchCommand: Command = {
  name: 'bench',
  usage,
  async run(argv) {
    const { values, positionals } = parse(
      argv,
      {
        codecs: { type: 'string', short: 'c' },
        threads: { type: 'string', short: 'j' },
        'no-dedup': { type: 'boolean' },
        baselines: { type: 'string' },
        'no-baselines': { type: 'boolean' },
        repeat: { type: 'string' },
        raw: { type: 'boolean' },
        svg: { type: 'string' },
        ...reportOptionSpec,
      },
      Infinity,
    );
    if (positionals.length === 0) throw new UsageError('give at least one file');
    const codecs = parseCodecs(values.codecs ?? 'lz4,zstd:1,zstd:3,zlib:1');
    const threads = parseThreads(values.threads ?? `1,${cores}`);
    const repeat = Number(values.repeat ?? 2);
    if (!(Number.isInteger(repeat) && repeat >= 1 && repeat <= 100)) throw new UsageError(`bad --repeat "${values.repeat}"`);
    const configs: BenchConfig[] = [];
    for (const dedup of values['no-dedup'] ? [true, false] : [true]) {
      for (const { codec, level } of codecs) for (const n of [...new Set(threads)]) configs.push({ codec, level, threads: n, dedup });
    }
    const baselines = values['no-baselines'] ? [] : values.baselines !== undefined ? values.baselines.split(',').map(parseBaseline) : defaultBaselines(cores);
    // A bench runs for minutes: its lines are the progress, on unless asked off.
    const quiet = values['no-progress'] === true || (values.quiet === true && values.progress !== true);
    const log = (line: string): void => {
      if (!quiet) process.stderr.write(`bench: ${line}\n`);
    };
    const result = await runBench(positionals, { configs, baselines, repeat, raw: values.raw === true, log });
    if (values.svg !== undefined) writeFileSync(values.svg, svgChart('migstream bench: ratio against compress throughput (all files)', chartPoints(result.rows)));
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ cores, repeat, rows: result.rows, totals: totals(result.rows), notes: result.notes }, null, 2)}\n`);
      return 0;
    }
    const files = [...new Set(result.rows.map((row) => row.file))];
    for (const file of files) {
      const rows = result.rows.filter((row) => row.file === file);
      process.stdout.write(`\n${file} (${formatBytes(rows[0]!.inputBytes)})\n${formatRows(rows)}\n`);
    }
    if (files.length > 1) process.stdout.write(`\nall files\n${formatRows(totals(result.rows))}\n`);
    for (const note of result.notes) process.stdout.write(`note: ${note}\n`);
    return 0;
  },
};
