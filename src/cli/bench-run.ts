/**
 * The measurements of `migstream bench` (bench.ts) and bench/compress.ts: compression ratio and
 * compress/decompress throughput of each codec/level/thread count on QEMU streams, containers
 * (measured on the stream inside) or raw memory dumps, next to command-line tools run on the
 * same input in the same run.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { xxh32 } from '../container/checksum.js';
import { codecByName, type CodecName } from '../codecs/registry.js';
import { Compressor, DEFAULT_DEDUP_WINDOW_PAGES } from '../compress/compressor.js';
import { Decompressor } from '../decompress/piped.js';
import { CONTAINER_MAGIC } from '../container/format.js';
import { WorkerPool } from '../workers/pool.js';
import { UsageError } from './args.js';
import type { ChartPoint } from './bench-chart.js';
import { runBaseline, toolAvailable, type Baseline } from './bench-tools.js';
import { formatBytes, table } from './format.js';

export interface BenchConfig {
  readonly codec: CodecName;
  readonly level: number;
  readonly threads: number;
  readonly dedup: boolean;
}

export interface BenchRow {
  readonly file: string;
  /** "zstd:3 j2" for ours, the command line for a baseline. */
  readonly method: string;
  readonly kind: 'migstream' | 'baseline';
  readonly threads: number | null;
  readonly inputBytes: number;
  readonly outputBytes: number;
  readonly compressSeconds: number;
  readonly decompressSeconds: number;
}

export interface BenchOptions {
  configs: readonly BenchConfig[];
  baselines: readonly Baseline[];
  /** Runs per measurement; the fastest counts (the machine may be shared). */
  repeat: number;
  /** Measure inputs as opaque bytes (memory dumps). */
  raw: boolean;
  log?: (line: string) => void;
}

export interface BenchResult {
  rows: BenchRow[];
  notes: string[];
}

const QEVM = Buffer.from('QEVM', 'latin1');
const CHUNK = 1 << 20;

function* chunks(data: Buffer): Generator<Buffer> {
  for (let at = 0; at < data.length; at += CHUNK) yield data.subarray(at, at + CHUNK);
}

function head(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(8);
    return buffer.subarray(0, readSync(fd, buffer, 0, 8, 0));
  } finally {
    closeSync(fd);
  }
}

function seconds(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e9;
}

export function methodName(config: BenchConfig): string {
  const level = codecByName(config.codec).minLevel === codecByName(config.codec).maxLevel ? '' : `:${config.level}`;
  return `${config.codec}${level}${config.dedup ? '+dedup' : ''} j${config.threads}`;
}

/**
 * Best-of-`repeat` compress and decompress of `data`; throws if the round trip differs. The
 * worker pool is started once per thread count for the whole bench (`pools`), as a process
 * that compresses more than one stream would: what is measured is the compression, not the
 * start-up of threads (nor of Node: a command-line run adds both, about 40 ms each).
 */
async function measure(data: Buffer, config: BenchConfig, raw: boolean, repeat: number, pool: WorkerPool): Promise<Omit<BenchRow, 'file' | 'method' | 'kind'>> {
  let compressSeconds = Infinity;
  let container = Buffer.alloc(0);
  for (let i = 0; i < repeat; i++) {
    const started = process.hrtime.bigint();
    const compressor = new Compressor({
      codec: config.codec,
      level: config.level,
      pool,
      mode: raw ? 'raw' : 'qemu',
      dedupWindowPages: config.dedup ? DEFAULT_DEDUP_WINDOW_PAGES : 0,
    });
    const parts: Buffer[] = [];
    for await (const part of compressor.compress(chunks(data))) parts.push(part);
    compressSeconds = Math.min(compressSeconds, seconds(started));
    container = Buffer.concat(parts);
  }
  let decompressSeconds = Infinity;
  const expected = xxh32(data);
  for (let i = 0; i < repeat; i++) {
    const started = process.hrtime.bigint();
    const parts: Buffer[] = [];
    for await (const part of new Decompressor({ pool }).decompress(chunks(container))) parts.push(part);
    decompressSeconds = Math.min(decompressSeconds, seconds(started));
    const out = Buffer.concat(parts);
    if (out.length !== data.length || xxh32(out) !== expected) throw new Error(`${methodName(config)}: the round trip does not give the input back`);
  }
  return { threads: config.threads, inputBytes: data.length, outputBytes: container.length, compressSeconds, decompressSeconds };
}

export async function runBench(files: readonly string[], options: BenchOptions): Promise<BenchResult> {
  const rows: BenchRow[] = [];
  const notes: string[] = [];
  const log = options.log ?? (() => {});
  const baselines = options.baselines.filter((baseline) => {
    if (toolAvailable(baseline.tool)) return true;
    notes.push(`baseline "${baseline.label}" skipped: ${baseline.tool} is not installed (apt-get install ${baseline.tool})`);
    return false;
  });
  const scratch = mkdtempSync(join(tmpdir(), 'migstream-bench-'));
  const pools = new Map<number, WorkerPool>();
  const poolOf = (threads: number): WorkerPool => {
    let pool = pools.get(threads);
    if (pool === undefined) pools.set(threads, (pool = new WorkerPool(threads)));
    return pool;
  };
  try {
    for (const file of files) {
      const magic = head(file);
      let data: Buffer;
      let inputPath = file;
      let raw = options.raw;
      if (magic.equals(CONTAINER_MAGIC)) {
        // A container: measure the stream it holds.
        const decompressor = new Decompressor();
        const parts: Buffer[] = [];
        for await (const part of decompressor.decompress(chunks(readFileSync(file)))) parts.push(part);
        data = Buffer.concat(parts);
        raw ||= decompressor.stats.info?.mode === 'raw';
        inputPath = join(scratch, 'input');
        writeFileSync(inputPath, data);
      } else {
        data = readFileSync(file);
        if (!raw && !magic.subarray(0, 4).equals(QEVM)) {
          throw new UsageError(`${file} is neither a QEMU stream nor a migstream container (use --raw for memory dumps)`);
        }
      }
      const name = basename(file) === 'stream.mig' ? basename(join(file, '..')) : basename(file);
      for (const config of options.configs) {
        log(`${name}: ${methodName(config)}`);
        rows.push({ file: name, method: methodName(config), kind: 'migstream', ...(await measure(data, config, raw, options.repeat, poolOf(config.threads))) });
      }
      for (const baseline of baselines) {
        log(`${name}: ${baseline.label}`);
        const result = runBaseline(baseline, inputPath, scratch, options.repeat);
        rows.push({
          file: name,
          method: baseline.label,
          kind: 'baseline',
          threads: null,
          inputBytes: data.length,
          outputBytes: result.bytes,
          compressSeconds: result.compressSeconds,
          decompressSeconds: result.decompressSeconds,
        });
      }
      rmSync(join(scratch, 'input'), { force: true });
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
    await Promise.all([...pools.values()].map((pool) => pool.close()));
  }
  return { rows, notes };
}

/** Rows summed over files, per method (MB/s over the total bytes and time). */
export function totals(rows: readonly BenchRow[]): BenchRow[] {
  const byMethod = new Map<string, BenchRow>();
  for (const row of rows) {
    const sum = byMethod.get(row.method);
    byMethod.set(
      row.method,
      sum === undefined
        ? { ...row, file: 'all files' }
        : {
            ...sum,
            inputBytes: sum.inputBytes + row.inputBytes,
            outputBytes: sum.outputBytes + row.outputBytes,
            compressSeconds: sum.compressSeconds + row.compressSeconds,
            decompressSeconds: sum.decompressSeconds + row.decompressSeconds,
          },
    );
  }
  return [...byMethod.values()];
}

export function rate(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / 1e6 / seconds : 0;
}

export function formatRows(rows: readonly BenchRow[]): string {
  return table(
    ['method', 'size', 'ratio', 'compress MB/s', 'decompress MB/s'],
    rows.map((row) => [
      row.method,
      `${row.outputBytes} (${formatBytes(row.outputBytes)})`,
      (row.inputBytes / Math.max(1, row.outputBytes)).toFixed(3),
      rate(row.inputBytes, row.compressSeconds).toFixed(0),
      rate(row.inputBytes, row.decompressSeconds).toFixed(0),
    ]),
  );
}

export function chartPoints(rows: readonly BenchRow[]): ChartPoint[] {
  return totals(rows).map((row) => ({
    label: row.method,
    ratio: row.inputBytes / Math.max(1, row.outputBytes),
    speed: rate(row.inputBytes, row.compressSeconds),
    baseline: row.kind === 'baseline',
  }));
}
