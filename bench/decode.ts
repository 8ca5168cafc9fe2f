/**
 * Decode throughput on real QEMU streams, each on its own (bench/streams.ts: every recorded
 * fixture, and the 1 GiB filled guest once saved with --filled; or the files named):
 *   1. in-process: the decoder (and decoder + encoder) on the stream in memory, against a plain
 *      in-process copy of the same bytes (tinybench). The input is cut into 1 MiB chunks, as a
 *      pipe read with a large buffer delivers it; every task walks all chunks;
 *   2. whole processes, as a user runs them (bench/process-timing.ts): `migstream copy`,
 *      `migstream inspect` and `migstream extract-ram -o DIR` (DIR on tmpfs) with stdin from the
 *      file, against `cat` of the same file, stdout to /dev/null; best of --repeat, migstream
 *      less its start-up (`migstream --version`, same rounds), records per second over the
 *      records the decoder finds, page faults per MiB from the child's rusage, and a verdict
 *      against issue 15's targets: at least 1 GB/s and within 2× of cat's time.
 *
 *   npm run bench:decode [-- --repeat N] [--filled] [--no-in-process] [--json FILE] [STREAM…]
 */
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { Bench } from 'tinybench';
import { createDecoder, createEncoder } from '../src/codec.js';
import { table } from '../src/cli/format.js';
import { readIntoPageCache } from './page-cache.js';
import { FIGURE_HEADER, ensureTools, figureCells, figuresOf, mark, migstream, startupLine, timeRounds, tmpfsScratch, tool, type Figures } from './process-timing.js';
import { printThroughput } from './report.js';
import { benchStreams, countRecords, ensureFilledStream, type BenchStream } from './streams.js';

const CHUNK = 1024 * 1024;

const { values, positionals } = parseArgs({
  options: {
    repeat: { type: 'string' },
    filled: { type: 'boolean' },
    'no-in-process': { type: 'boolean' },
    json: { type: 'string' },
  },
  allowPositionals: true,
});
const repeat = Number(values.repeat ?? 3);
if (!(Number.isInteger(repeat) && repeat > 0)) throw new Error(`--repeat wants a positive integer, not ${values.repeat}`);

ensureTools(['time']);
if (values.filled) await ensureFilledStream();
const streams: BenchStream[] = positionals.length > 0 ? positionals.map((path) => ({ name: path, title: path, path, bytes: statSync(path).size })) : benchStreams();
if (streams.length === 0) {
  console.error('no streams: pass paths, or run the tests once to build .cache/fixtures');
  process.exit(2);
}

function chunksOf(data: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < data.length; at += CHUNK) chunks.push(data.subarray(at, at + CHUNK));
  return chunks;
}

/** 1. The decoder in memory against a copy of the same bytes (MB/s per task). */
async function inProcess(stream: BenchStream): Promise<Record<string, number>> {
  const data = readFileSync(stream.path);
  const chunks = chunksOf(data);
  const sink = Buffer.allocUnsafe(CHUNK);
  const bench = new Bench({ time: 1500, warmupTime: 300 });
  bench
    // Two plain copies of the same bytes: into fresh memory, as reading the stream into new
    // buffers does (the baseline), and into one reused, cache-warm buffer (an upper bound).
    .add('copy', () => {
      for (const chunk of chunks) Buffer.from(chunk);
    })
    .add('copy (reused buffer)', () => {
      for (const chunk of chunks) chunk.copy(sink);
    })
    .add('decode', () => {
      const decoder = createDecoder();
      let records = 0;
      for (const chunk of chunks) records += decoder.push(chunk).length;
      records += decoder.end().length;
      if (records === 0) throw new Error('no records');
    })
    .add('decode+encode', () => {
      const decoder = createDecoder();
      const encoder = createEncoder();
      for (const chunk of chunks) {
        for (const record of decoder.push(chunk)) encoder.write(record);
        encoder.take();
      }
      for (const record of decoder.end()) encoder.write(record);
      encoder.take();
    });
  await bench.run();
  return printThroughput(`${stream.title}, in-process (${(data.length / 1e6).toFixed(1)} MB)`, bench, data.length, 'copy');
}

/** 2. The commands as whole processes against cat. */
function asProcesses(stream: BenchStream, dir: string): Record<string, unknown> {
  readIntoPageCache(stream.path);
  const records = countRecords(stream.path);
  const ramDir = `${dir}/ram`;
  const input = { stdin: stream.path };
  const commands = [
    tool('cat', ['cat'], input),
    migstream('migstream copy', ['copy'], input),
    migstream('migstream inspect', ['inspect'], input),
    migstream('migstream extract-ram', ['extract-ram', '-o', ramDir], { ...input, before: () => rmSync(ramDir, { recursive: true, force: true }) }),
  ];
  process.stderr.write(`${stream.name}: ${commands.length} commands, ${repeat} rounds\n`);
  const result = figuresOf(timeRounds(commands, repeat, dir), stream.bytes, records);
  rmSync(ramDir, { recursive: true, force: true });
  const cat = result.figures.find((figures) => figures.label === 'cat')!;
  const verdict = (figures: Figures): string => {
    if (figures === cat) return '';
    const times = figures.netSeconds / cat.seconds;
    return `${mark(figures.mbPerSecond >= 1000, `${(figures.mbPerSecond / 1000).toFixed(2)} GB/s`)}, ${mark(times <= 2, `×${times.toFixed(2)} cat's time`)}`;
  };
  console.log(`\n${stream.title}, whole processes: ${(stream.bytes / 1e6).toFixed(1)} MB, ${records.toLocaleString('en')} records, best of ${repeat}`);
  console.log(
    table(
      [...FIGURE_HEADER, 'verdict (≥ 1 GB/s, ≤ 2× cat)'],
      result.figures.map((figures) => [...figureCells(figures), verdict(figures)]),
    ),
  );
  console.log(startupLine(result));
  return { records, startup: result.startup, startupRuns: result.startupRuns, floor: result.floor, rows: result.figures.map((figures) => ({ ...figures, verdict: verdict(figures) })) };
}

console.log(
  `decode on ${streams.length} streams, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'}); ` +
    `whole processes: migstream's rows less its start-up, MB = 1e6 bytes of stream, faults (minor + major) per MiB of stream`,
);
const summary: Record<string, unknown> = {};
const scratch = tmpfsScratch('migstream-bench-decode');
try {
  for (const stream of streams) {
    const inMemory = values['no-in-process'] ? null : await inProcess(stream);
    summary[stream.name] = { path: stream.path, bytes: stream.bytes, inProcess: inMemory, processes: asProcesses(stream, scratch.dir) };
  }
} finally {
  scratch.done();
}
const report = { date: new Date().toISOString(), cpu: cpus()[0]?.model, repeat, streams: summary };
if (values.json) writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
if (process.env.BENCH_JSON) console.log(JSON.stringify(report));
