/**
 * Issue 16's disk benchmark, three parts, each on its own with `--only`:
 *
 *   npm run bench:disk [-- --only scan|copy|amplification] [--copy-mib 1024] [--rounds 3]
 *                      [--blocks 4096,8192,65536] [--rate 2] [--passes 5] [--pause-ms 2000]
 *                      [--json FILE]
 *
 * - scan: the dirty-pass scan of a 1 TiB-equivalent bitmap (2^24 chunks of 64 KiB) with 0.1 % of
 *   the chunks dirty (seeded, each chunk on its own: the most runs for that share): walked as a
 *   pass walks it (pass-plan.ts chunkRunBatches over HBitmap's native next-dirty-area search), and
 *   built from the extents a dirty bitmap's NBD BLOCK_STATUS answers (planChunks), against the
 *   `bitset` package doing the same. tinybench, median and p99. Target: the walk under 1 ms.
 * - copy: a whole-disk copy of a raw image (half random data, half holes) from a source QEMU
 *   7.2's NBD export to a destination QEMU 7.2's writable NBD export, both on tmpfs:
 *   `qemu-img convert -n` (with and without `--target-is-zero`) between the two exports against
 *   migstream's DiskSource.firstCopy → DiskSink, in this process (the copy alone, and with the
 *   opening and closing of both ends) and as a whole process (node over dist/, its own QMP
 *   connections: open, copy through the disk stream's bytes, FLUSH, close). The destination
 *   image is emptied (hole punched) before every run. Rounds run every row in turn; best of
 *   `--rounds`. Target: migstream at ≥ 90 % of qemu-img's speed. `--copy-window-mib N` sets
 *   DiskSource/DiskSink's windowBytes; BENCH_DISK_PROFILE=DIR has the whole-process row write a
 *   V8 CPU profile (--cpu-prof) into DIR.
 * - amplification: a guest (128 MiB RAM, 256 MiB raw virtio disk) writing random blocks of each
 *   size at `--rate` MiB/s (guest/diskwrite) while its disk moves. Rows per block size:
 *   migstream on QEMU 7.2 (first copy, `--passes` dirty passes `--pause-ms` apart, stop, the last
 *   pass), whole chunks at 1 MiB and 64 KiB, and sub-block deltas at 64 KiB (applied to the
 *   destination through the disk stream's bytes, then the consistency check) and at 1 MiB, side
 *   by side on the same drive (own bitmaps and exports; only the 64 KiB delta row writes the
 *   destination); QEMU 7.2 `migrate -b` (exec: tee into the destination's unix: listener; the
 *   block records counted in the stream, every chunk's first record being the bulk copy); QEMU
 *   10.0 `blockdev-mirror` sync=full to the destination's NBD export (blockdev-add driver nbd),
 *   ready, the same writing window, stop, job-complete (bytes: the job's offset past its first
 *   pass). Amplification: disk bytes sent after the first copy ÷ bytes the guest wrote from the
 *   first copy's start to the stop (its own counter, printed every 100 ms).
 *
 * Everything runs on whatever machine this is: the figures say what it was (TCG, shared cores).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, createReadStream, existsSync, mkdtempSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import BitSet from 'bitset';
import { Bench, type Task } from 'tinybench';
import { encodedLength, decode } from '../src/codec.js';
import {
  DiskSink,
  DiskSource,
  DiskStreamDecoder,
  DiskStreamEncoder,
  BASE_ALLOCATION,
  checkDiskConsistency,
  chunkRunBatches,
  compareChunkHashes,
  hashDrive,
  chunkRuns,
  dirtyBitmapContext,
  planChunks,
  type ChunkRecord,
  type EmitRecord,
  type PassStats,
} from '../src/disk/index.js';
import { addExport, findDriveNode, startNbdServer } from '../src/disk/qmp-block.js';
import { NbdClient } from '../src/nbd/client.js';
import { NBD_STATE_DIRTY } from '../src/nbd/constants.js';
import type { Extent } from '../src/nbd/transmission.js';
import { detectAccel, launchQemu, type Accel, type QemuVm } from '../src/qemu/launcher.js';
import { queryMigrate, shellQuote, type MigrationInfo } from '../src/qemu/migration.js';
import { qemuTool, type QemuVersion } from '../src/qemu/versions.js';
import { REPO_ROOT, guestArgs } from '../test/fixtures/meta.js';
import { loadFixture } from '../test/helpers/qemu.js';
import { ensureTools, runOnce, tool, type Command, type ProcessRun } from './process-timing.js';
import { prng, writeRandomImage } from './random-data.js';

const KIB = 1024;
const MIB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    'copy-mib': { type: 'string', default: '1024' },
    rounds: { type: 'string', default: '3' },
    blocks: { type: 'string', default: '4096,8192,65536' },
    rate: { type: 'string', default: '2' },
    passes: { type: 'string', default: '5' },
    'pause-ms': { type: 'string', default: '2000' },
    'disk-mib': { type: 'string', default: '256' },
    'blk-limit-s': { type: 'string', default: '60' },
    'copy-window-mib': { type: 'string' },
    json: { type: 'string' },
  },
});
const PARTS = ['scan', 'copy', 'amplification'] as const;
type Part = (typeof PARTS)[number];
if (values.only !== undefined && !PARTS.includes(values.only as Part)) {
  console.error(`bench:disk: --only takes ${PARTS.join(', ')}; got ${JSON.stringify(values.only)}`);
  process.exit(2);
}
const wanted = (part: Part): boolean => values.only === undefined || values.only === part;

const log = (line: string): void => void process.stderr.write(`bench:disk: ${line}\n`);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const mib = (bytes: number, digits = 2): string => (bytes / MIB).toFixed(digits);

/** A Markdown table (the docs take it as printed). */
function markdown(header: string[], rows: (string | number)[][]): string {
  const align = header.map((_, i) => (i === 0 ? '---' : '---:'));
  return [header, align, ...rows.map((row) => row.map(String))].map((cells) => `| ${cells.join(' | ')} |`).join('\n');
}

const report: Record<string, unknown> = {
  date: new Date().toISOString(),
  machine: `${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')} at the start`,
  command: `npm run bench:disk -- ${process.argv.slice(2).join(' ')}`.trim(),
};
const verdicts: string[] = [];
const verdict = (ok: boolean | null, text: string): void => {
  verdicts.push(`${ok === null ? 'n/a' : ok ? 'met' : 'MISSED'}: ${text}`);
};

// ---------------------------------------------------------------------------------------------
// scan

const SCAN_CHUNKS = 2 ** 24;
const SCAN_CHUNK = 64 * KIB;
const SCAN_SIZE = SCAN_CHUNKS * SCAN_CHUNK; // 1 TiB

interface Walk {
  runs: number;
  chunks: number;
  check: number;
}

function latency(task: Task): { median: number; p99: number; samples: number } {
  const result = task.result;
  if (result.state !== 'completed') throw new Error(`task ${task.name} did not complete: ${result.state}`);
  return { median: result.latency.p50, p99: result.latency.p99, samples: result.latency.samplesCount };
}

async function scanPart(): Promise<void> {
  log(`scan: ${SCAN_CHUNKS} chunks of ${SCAN_CHUNK / KIB} KiB (1 TiB), 0.1 % dirty`);
  const random = prng(0x16d15c);
  const dirty: number[] = [];
  for (let i = 0; i < SCAN_CHUNKS; i++) if (random() < 0.001) dirty.push(i);
  // What qemu:dirty-bitmap:NAME's BLOCK_STATUS answers at the bitmap's 64 KiB granularity:
  // alternating clean and dirty extents from 0 to the drive's end.
  const extents: Extent[] = [];
  let at = 0;
  for (let i = 0; i < dirty.length;) {
    let j = i + 1;
    while (j < dirty.length && dirty[j] === dirty[j - 1]! + 1) j++;
    const start = dirty[i]!;
    if (start > at) extents.push({ offset: at * SCAN_CHUNK, length: (start - at) * SCAN_CHUNK, flags: 0 });
    extents.push({ offset: start * SCAN_CHUNK, length: (j - i) * SCAN_CHUNK, flags: NBD_STATE_DIRTY });
    at = start + (j - i);
    i = j;
  }
  if (at < SCAN_CHUNKS) extents.push({ offset: at * SCAN_CHUNK, length: (SCAN_CHUNKS - at) * SCAN_CHUNK, flags: 0 });
  const metaContext = dirtyBitmapContext('bench');
  const planOptions = { size: SCAN_SIZE, chunkSize: SCAN_CHUNK, metaContext, context: { drive: 'bench' } };

  const map = planChunks(extents, planOptions);
  const bitsetFrom = (list: readonly Extent[]): InstanceType<typeof BitSet> => {
    const set = new BitSet();
    // Bit by bit: BitSet.setRange (5.3.0) drops a range's last word when it ends at bit 31.
    for (const extent of list) {
      if ((extent.flags & NBD_STATE_DIRTY) === 0) continue;
      const end = (extent.offset + extent.length) / SCAN_CHUNK;
      for (let c = extent.offset / SCAN_CHUNK; c < end; c++) set.set(c, 1);
    }
    return set;
  };
  const set = bitsetFrom(extents);

  const walkRuns = (): Walk => {
    const walk = { runs: 0, chunks: 0, check: 0 };
    for (const run of chunkRuns(map, SCAN_SIZE)) {
      walk.runs++;
      walk.chunks += run.chunks;
      walk.check += run.firstChunk;
    }
    return walk;
  };
  // What DiskSource's dirty pass walks (source.ts readChunks): the native batches.
  const walkBatches = (): Walk => {
    const walk = { runs: 0, chunks: 0, check: 0 };
    for (const batch of chunkRunBatches(map)) {
      for (let i = 0; i < batch.length; i += 2) {
        walk.runs++;
        walk.chunks += batch[i + 1]!;
        walk.check += batch[i]!;
      }
    }
    return walk;
  };
  const walkBitset = (): Walk => {
    const walk = { runs: 0, chunks: 0, check: 0 };
    let start = -1;
    for (let i = 0; i <= SCAN_CHUNKS; i++) {
      if (i < SCAN_CHUNKS && set.get(i) === 1) {
        if (start < 0) start = i;
      } else if (start >= 0) {
        walk.runs++;
        walk.chunks += i - start;
        walk.check += start;
        start = -1;
      }
    }
    return walk;
  };
  const expected = walkRuns();
  for (const [name, got] of [
    ['chunkRunBatches', walkBatches()],
    ['bitset', walkBitset()],
  ] as const) {
    if (got.runs !== expected.runs || got.chunks !== expected.chunks || got.check !== expected.check) {
      throw new Error(`scan: ${name} found ${JSON.stringify(got)}, chunkRuns ${JSON.stringify(expected)}`);
    }
  }
  if (expected.chunks !== dirty.length) throw new Error(`scan: the plan holds ${expected.chunks} chunks, ${dirty.length} were made dirty`);

  let sink = 0;
  const bench = new Bench({ time: 1500, iterations: 20, warmupTime: 200, warmupIterations: 3 });
  bench
    .add('walk: chunkRunBatches (the dirty pass, HBitmap next-dirty-area, 1024 runs a batch)', () => {
      sink += walkBatches().runs;
    })
    .add('walk: chunkRuns (the same, one object a run)', () => {
      sink += walkRuns().runs;
    })
    .add('walk: bitset, every bit (baseline)', () => {
      sink += walkBitset().runs;
    })
    .add('build: planChunks (extents → HBitmap)', () => {
      sink += planChunks(extents, planOptions).count();
    })
    .add('build: bitset from the same extents (baseline)', () => {
      sink += bitsetFrom(extents).cardinality();
    });
  await bench.run();
  if (sink < 0) console.log(sink);

  const rows = bench.tasks.map((task) => ({ name: task.name, ...latency(task) }));
  const walkBase = rows.find((r) => r.name.startsWith('walk: bitset'))!.median;
  const buildBase = rows.find((r) => r.name.startsWith('build: bitset'))!.median;
  console.log(
    `\n### Dirty-pass scan: ${SCAN_CHUNKS} chunks of ${SCAN_CHUNK / KIB} KiB (1 TiB), ${dirty.length} dirty (${((100 * dirty.length) / SCAN_CHUNKS).toFixed(3)} %, seeded, scattered), ${expected.runs} runs, ${extents.length} extents\n`,
  );
  console.log(
    markdown(
      ['task', 'median ms', 'p99 ms', 'samples', 'vs bitset'],
      rows.map((r) => {
        const base = r.name.startsWith('walk') ? walkBase : buildBase;
        return [r.name, r.median.toFixed(3), r.p99.toFixed(3), r.samples, r.name.includes('bitset') ? 'baseline' : `${(base / r.median).toFixed(0)}× faster`];
      }),
    ),
  );
  const walk = rows[0]!;
  verdict(walk.median < 1, `scan: the dirty pass's walk (chunkRunBatches) of 2^24 chunks at 0.1 % dirty, median ${walk.median.toFixed(3)} ms, p99 ${walk.p99.toFixed(3)} ms (target < 1 ms)`);
  report.scan = { chunks: SCAN_CHUNKS, chunkSize: SCAN_CHUNK, dirty: dirty.length, runs: expected.runs, extents: extents.length, rows };
}

// ---------------------------------------------------------------------------------------------
// copy

const CLIENT_DIR = pathToFileURL(join(REPO_ROOT, 'dist')).href;

/**
 * node -e: the whole migstream pipeline as its own process (argv: source QMP, destination QMP,
 * source NBD socket, destination NBD socket), records through the disk stream's bytes.
 */
const COPY_PROCESS = `
const [srcQmp, dstQmp, srcSock, dstSock, window] = process.argv.slice(1);
const windowBytes = window ? Number(window) : undefined;
const { QmpClient } = await import(${JSON.stringify(`${CLIENT_DIR}/qemu/qmp.js`)});
const { DiskSource, DiskSink, DiskStreamEncoder, DiskStreamDecoder } = await import(${JSON.stringify(`${CLIENT_DIR}/disk/index.js`)});
if (srcQmp === 'import-only') process.exit(0);
const [sq, dq] = await Promise.all([QmpClient.connect(srcQmp), QmpClient.connect(dstQmp)]);
const tag = 'proc-' + process.pid;
const source = await DiskSource.open({ qmp: sq, drive: 'disk0', socketPath: srcSock, serverStarted: true, prefix: tag, windowBytes });
const sink = await DiskSink.open({ qmp: dq, drive: 'disk0', socketPath: dstSock, serverStarted: true, header: source.header, exportId: tag + '-sink', windowBytes });
const encoder = new DiskStreamEncoder(source.header);
// As incoming's DiskReceiver: records point into the bytes they came in (no copy), and the
// source's chunk buffer is lent until the sink's writes of it settled.
const decoder = new DiskStreamDecoder({ copy: false, reuseBuffers: true });
const through = async (pieces, done = () => {}) => {
  let pending = 1;
  const release = () => { if (--pending === 0) done(); };
  for (const piece of pieces) for (const record of decoder.push(piece)) { pending++; await sink.apply(record, () => { decoder.release(record); release(); }); }
  release();
};
await through([encoder.start()]);
await source.firstCopy((record, done) => through(encoder.encode(record), done));
await through(encoder.end());
if (!decoder.complete) { console.error('the disk stream did not end'); process.exit(3); }
await sink.finish();
await sink.close();
await source.close();
sq.close();
dq.close();
process.exit(0);
`;

/** QEMU 7.2 holding one raw drive (no guest), with a second QMP socket for another process. */
async function driveHolder(name: string, image: string, qmpPath: string): Promise<QemuVm> {
  return launchQemu({
    qemu: '7.2',
    accel: 'tcg',
    name,
    cwd: REPO_ROOT,
    args: ['-machine', 'none', '-drive', `file=${image},format=raw,if=none,id=disk0,cache=writeback`, '-qmp', `unix:${qmpPath},server=on,wait=off`],
  });
}

interface CopyRow {
  row: string;
  bestSeconds: number;
  /** Less Node's start-up and the import, for the whole-process migstream row. */
  netSeconds: number;
  mibPerSecond: number;
  runs: number[];
  /** User + system CPU seconds of the best run (the copying process only; the QEMUs not counted). */
  cpuSeconds: number;
  note: string;
}

async function copyPart(): Promise<void> {
  ensureTools(['time']);
  const sizeMiB = Number(values['copy-mib']);
  const rounds = Number(values.rounds);
  const size = sizeMiB * MIB;
  // Bytes in flight on each side (DiskSource and DiskSink windowBytes); default theirs, 16 MiB.
  const windowBytes = values['copy-window-mib'] === undefined ? undefined : Number(values['copy-window-mib']) * MIB;
  const dir = mkdtempSync('/dev/shm/migstream-bench-disk-');
  const vms: QemuVm[] = [];
  try {
    const srcImage = join(dir, 'src.raw');
    const dstImage = join(dir, 'dst.raw');
    log(`copy: writing a ${sizeMiB} MiB raw image on tmpfs (2 MiB data, 2 MiB hole, …)`);
    const dataBytes = writeRandomImage(srcImage, size, (mib) => mib % 4 < 2);
    closeSync(openSync(dstImage, 'w'));
    execFileSync('truncate', ['-s', String(size), dstImage]);
    const emptyDestination = (): void => {
      // The destination is blank before every run, as a migration's is (tmpfs punches holes).
      const result = spawnSync('fallocate', ['-p', '-o', '0', '-l', String(size), dstImage]);
      if (result.status !== 0) throw new Error(`fallocate -p ${dstImage}: ${result.stderr.toString()}`);
    };
    const sameAsSource = (what: string): void => {
      const result = spawnSync('cmp', ['-s', srcImage, dstImage]);
      if (result.status !== 0) throw new Error(`copy: after ${what}, the destination image differs from the source`);
    };
    const srcQmp2 = join(dir, 'src-qmp2.sock');
    const dstQmp2 = join(dir, 'dst-qmp2.sock');
    const [src, dst] = await Promise.all([driveHolder('copy-src', srcImage, srcQmp2), driveHolder('copy-dst', dstImage, dstQmp2)]);
    vms.push(src, dst);
    const srcSock = join(dir, 'src-nbd.sock');
    const dstSock = join(dir, 'dst-nbd.sock');
    await startNbdServer(src.qmp, srcSock);
    await startNbdServer(dst.qmp, dstSock);
    const srcNode = await findDriveNode(src.qmp, 'disk0');
    const dstNode = await findDriveNode(dst.qmp, 'disk0');
    await addExport(src.qmp, { id: 'img-src', nodeName: srcNode.nodeName, writable: false });
    await addExport(dst.qmp, { id: 'img-dst', nodeName: dstNode.nodeName, writable: true });
    const srcUri = `nbd+unix:///img-src?socket=${srcSock}`;
    const dstUri = `nbd+unix:///img-dst?socket=${dstSock}`;
    const qemuImg = qemuTool('7.2', 'qemu-img');
    // BENCH_DISK_PROFILE=DIR: the whole-process row writes a V8 CPU profile there (--cpu-prof).
    const profile = process.env.BENCH_DISK_PROFILE === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_DISK_PROFILE}`];
    const node = (argv: string[]): string[] => [process.execPath, ...profile, '--input-type=module', '-e', COPY_PROCESS, ...argv];

    const processRows: Command[] = [
      tool('qemu-img convert -n (7.2)', [qemuImg, 'convert', '-n', '-f', 'raw', '-O', 'raw', srcUri, dstUri], { before: emptyDestination }),
      tool('qemu-img convert -n --target-is-zero (7.2)', [qemuImg, 'convert', '-n', '--target-is-zero', '-f', 'raw', '-O', 'raw', srcUri, dstUri], { before: emptyDestination }),
      {
        ...tool(
          'migstream, whole process (node: QMP, open, firstCopy → disk stream → DiskSink, FLUSH, close)',
          node([srcQmp2, dstQmp2, srcSock, dstSock, windowBytes === undefined ? '' : String(windowBytes)]),
          { before: emptyDestination },
        ),
        migstream: true,
      },
    ];
    const startup = tool('node start-up + import of dist/disk, dist/qemu/qmp', node(['import-only', '', '', '']));
    const processRuns = processRows.map((): ProcessRun[] => []);
    const startupRuns: ProcessRun[] = [];
    const coreRuns: number[] = [];
    const wholeRuns: number[] = [];
    const coreCpu: number[] = [];

    /** In this process: the copy alone (firstCopy → apply → finish) and with open and close. */
    const inProcess = async (round: number): Promise<void> => {
      emptyDestination();
      const t0 = performance.now();
      const source = await DiskSource.open({ qmp: src.qmp, drive: 'disk0', socketPath: srcSock, serverStarted: true, prefix: `inproc-${round}`, windowBytes });
      const sink = await DiskSink.open({ qmp: dst.qmp, drive: 'disk0', socketPath: dstSock, serverStarted: true, header: source.header, exportId: `inproc-${round}-sink`, windowBytes });
      const t1 = performance.now();
      const cpu = process.cpuUsage();
      await source.firstCopy((record, done) => sink.apply(record, done));
      await sink.finish();
      const t2 = performance.now();
      const used = process.cpuUsage(cpu);
      coreCpu.push((used.user + used.system) / 1e6);
      await sink.close();
      await source.close();
      const t3 = performance.now();
      coreRuns.push((t2 - t1) / 1000);
      wholeRuns.push((t3 - t0) / 1000);
    };

    log('copy: warming up (one qemu-img run)');
    runOnce(processRows[0]!, dir);
    for (let round = 0; round < rounds; round++) {
      for (const [i, command] of processRows.entries()) {
        log(`copy: round ${round + 1}/${rounds}: ${command.label}`);
        if (command.migstream) startupRuns.push(runOnce(startup, dir));
        processRuns[i]!.push(runOnce(command, dir));
        if (round === 0) sameAsSource(command.label);
      }
      log(`copy: round ${round + 1}/${rounds}: migstream in this process`);
      await inProcess(round);
      if (round === 0) sameAsSource('migstream in this process');
    }

    const best = (list: number[]): number => Math.min(...list);
    const startupSeconds = best(startupRuns.map((r) => r.seconds));
    const startupCpu = Math.min(...startupRuns.map((r) => r.userSeconds + r.systemSeconds));
    const rows: CopyRow[] = processRows.map((command, i) => {
      const runs = processRuns[i]!.map((r) => r.seconds);
      const bestRun = processRuns[i]!.reduce((a, b) => (b.seconds < a.seconds ? b : a));
      const bestSeconds = bestRun.seconds;
      const netSeconds = command.migstream ? bestSeconds - startupSeconds : bestSeconds;
      const cpuSeconds = bestRun.userSeconds + bestRun.systemSeconds - (command.migstream ? startupCpu : 0);
      return {
        row: command.label,
        bestSeconds,
        netSeconds,
        mibPerSecond: sizeMiB / netSeconds,
        runs,
        cpuSeconds,
        note: command.migstream ? `net: less ${(startupSeconds * 1000).toFixed(0)} ms of start-up` : '',
      };
    });
    rows.push({
      row: 'migstream in this process: firstCopy → DiskSink.apply, FLUSH',
      bestSeconds: best(coreRuns),
      netSeconds: best(coreRuns),
      mibPerSecond: sizeMiB / best(coreRuns),
      runs: coreRuns,
      cpuSeconds: coreCpu[coreRuns.indexOf(best(coreRuns))]!,
      note: 'QMP and NBD set up beforehand; CPU of this whole process during the copy',
    });
    rows.push({
      row: 'migstream in this process, with DiskSource/DiskSink open and close',
      bestSeconds: best(wholeRuns),
      netSeconds: best(wholeRuns),
      mibPerSecond: sizeMiB / best(wholeRuns),
      runs: wholeRuns,
      cpuSeconds: Number.NaN,
      note: 'bitmap, exports, connections',
    });

    const baseline = Math.max(rows[0]!.mibPerSecond, rows[1]!.mibPerSecond);
    console.log(
      `\n### Whole-disk copy: ${sizeMiB} MiB raw (${mib(dataBytes, 0)} MiB random data in 2 MiB stretches, the rest holes), QEMU 7.2 NBD export → QEMU 7.2 writable NBD export, tmpfs, migstream's window ${windowBytes === undefined ? '16 MiB (default)' : `${windowBytes / MIB} MiB`} each side, best of ${rounds}\n`,
    );
    console.log(
      markdown(
        ['row', 'best s', 'net s', 'disk MiB/s', 'of qemu-img', 'CPU s', 'runs s', 'note'],
        rows.map((r) => [
          r.row,
          r.bestSeconds.toFixed(3),
          r.netSeconds.toFixed(3),
          r.mibPerSecond.toFixed(0),
          `${((100 * r.mibPerSecond) / baseline).toFixed(0)} %`,
          Number.isNaN(r.cpuSeconds) ? '—' : r.cpuSeconds.toFixed(2),
          r.runs.map((s) => s.toFixed(2)).join(' '),
          r.note,
        ]),
      ),
    );
    // The switch-over's disk check (migrate --disk): both drives hashed per MiB through their
    // own exports at once, as disk-mover.ts and disk-receiver.ts do, against qemu-img compare of
    // the same two exports. It runs with the guest paused, so its time is downtime.
    const checkRuns: number[] = [];
    const compareRuns: ProcessRun[] = [];
    const compare = tool('qemu-img compare (7.2), the two exports', [qemuImg, 'compare', '-f', 'raw', '-F', 'raw', srcUri, dstUri]);
    for (let round = 0; round < rounds; round++) {
      log(`copy: round ${round + 1}/${rounds}: the switch-over's check, and qemu-img compare`);
      // base:allocation, as the switch-over's connections select it: what reads as zeros is not read.
      const contexts = [BASE_ALLOCATION];
      const [a, b] = await Promise.all([
        NbdClient.connect({ path: srcSock, exportName: 'img-src', metaContexts: contexts }),
        NbdClient.connect({ path: dstSock, exportName: 'img-dst', metaContexts: contexts }),
      ]);
      const t0 = performance.now();
      const [ha, hb] = await Promise.all([hashDrive(a, { size, chunkSize: MIB }), hashDrive(b, { size, chunkSize: MIB })]);
      checkRuns.push((performance.now() - t0) / 1000);
      await Promise.all([a.close(), b.close()]);
      if (compareChunkHashes(ha, hb, MIB).count !== 0) throw new Error('copy: the check found the copied drive different');
      compareRuns.push(runOnce(compare, dir));
    }
    const checkBest = best(checkRuns);
    const compareBest = best(compareRuns.map((r) => r.seconds));
    console.log(`\n### The switch-over's disk check: both ${sizeMiB} MiB drives hashed per MiB at once (migrate --disk), best of ${rounds}\n`);
    console.log(
      markdown(
        ['row', 'best s', 'ms per GiB of drive', 'runs s'],
        [
          ['migstream: hashDrive of both exports, in parallel', checkBest.toFixed(3), ((checkBest * 1000 * 1024) / sizeMiB).toFixed(0), checkRuns.map((x) => x.toFixed(2)).join(' ')],
          ['qemu-img compare of the two exports (baseline)', compareBest.toFixed(3), ((compareBest * 1000 * 1024) / sizeMiB).toFixed(0), compareRuns.map((r) => r.seconds.toFixed(2)).join(' ')],
        ],
      ),
    );
    const processRow = rows[2]!;
    const coreRow = rows[3]!;
    verdict(
      processRow.mibPerSecond >= 0.9 * baseline,
      `copy: migstream as a whole process (net of start-up) at ${((100 * processRow.mibPerSecond) / baseline).toFixed(0)} % of qemu-img convert's best (target ≥ 90 %)`,
    );
    verdict(coreRow.mibPerSecond >= 0.9 * baseline, `copy: migstream's firstCopy → DiskSink in process at ${((100 * coreRow.mibPerSecond) / baseline).toFixed(0)} % of qemu-img convert's best (target ≥ 90 %)`);
    report.copy = { sizeMiB, dataMiB: dataBytes / MIB, rounds, startupSeconds, rows, check: { seconds: checkRuns, qemuImgCompareSeconds: compareRuns.map((r) => r.seconds) } };
  } finally {
    await Promise.all(vms.map((vm) => vm.quit()));
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// amplification

const GUEST_MEMORY = 128 * MIB + 8 * KIB;

interface AmpRow {
  block: number;
  row: string;
  amplification: number | null;
  totalSeconds: number | null;
  /** Time the row itself worked (its passes), where rows share one writing window. */
  busySeconds: number | null;
  sentBytes: number | null;
  guestBytes: number | null;
  note: string;
}

/** The last "migstream-disk N" the guest printed: bytes it has written so far. */
function guestWritten(vm: QemuVm): number {
  const all = [...vm.serialText().matchAll(/migstream-disk (\d+)/g)];
  return all.length === 0 ? 0 : Number(all[all.length - 1]![1]);
}

function accel(): Accel {
  if (process.env.MIGSTREAM_ACCEL) return detectAccel();
  try {
    // The accelerator the fixtures found working (a KVM that opens may still not boot a guest).
    return loadFixture('idle').meta.accel;
  } catch {
    return detectAccel();
  }
}

interface Pair {
  dir: string;
  src: QemuVm;
  dst: QemuVm;
  size: number;
  quit: () => Promise<void>;
}

/** A source whose guest writes `block`-byte blocks, and a destination with a blank disk. */
async function bootPair(qemu: QemuVersion, block: number, tag: string, destination: string[]): Promise<Pair> {
  const sizeMiB = Number(values['disk-mib']);
  const dir = mkdtempSync('/dev/shm/migstream-bench-amp-');
  const img = qemuTool(qemu, 'qemu-img');
  const images = ['src.raw', 'dst.raw'].map((name) => join(dir, name));
  for (const image of images) execFileSync(img, ['create', '-q', '-f', 'raw', image, `${sizeMiB}M`]);
  const machine = ['-machine', qemu === '7.2' ? 'pc-i440fx-7.2' : 'pc-i440fx-10.0', '-m', `${GUEST_MEMORY / KIB}K`, '-smp', '1'];
  const drive = (image: string): string[] => ['-drive', `file=${image},format=raw,if=none,id=disk0,cache=writeback`, '-device', 'virtio-blk-pci,drive=disk0,id=disk0-dev'];
  const guest = guestArgs('idle', [`disk=${block}:${values.rate}:7`]);
  const vms: QemuVm[] = [];
  const quit = async (): Promise<void> => {
    await Promise.all(vms.map((vm) => vm.quit()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const a = accel();
    const [src, dst] = await Promise.all([
      launchQemu({ qemu, accel: a, cwd: REPO_ROOT, name: `${tag}-src`, args: [...machine, ...guest, ...drive(images[0]!)] }),
      launchQemu({ qemu, accel: a, cwd: REPO_ROOT, name: `${tag}-dst`, args: [...machine, ...guest, ...drive(images[1]!), ...destination] }),
    ]);
    vms.push(src, dst);
    await src.waitForSerial(/migstream-disk \d+/, 120_000);
    // A moment of writing before the disk moves: the first copy has something to copy.
    await sleep(1000);
    return { dir, src, dst, size: sizeMiB * MIB, quit };
  } catch (error) {
    await quit();
    throw error;
  }
}

const writingWindowMs = (): number => Number(values.passes) * Number(values['pause-ms']);

/** migstream's rows: four sources side by side on one drive; the 64 KiB delta row is applied. */
async function migstreamRows(block: number): Promise<AmpRow[]> {
  const pair = await bootPair('7.2', block, `ms-${block}`, ['-S', '-incoming', 'defer']);
  const { src, dst, dir } = pair;
  const sources: DiskSource[] = [];
  let sink: DiskSink | undefined;
  try {
    const srcSock = join(dir, 'src.sock');
    const kinds = [
      { name: 'migstream, 64 KiB chunks + sub-block delta', chunkSize: 64 * KIB, deltas: true },
      { name: 'migstream, whole 1 MiB chunks', chunkSize: MIB, deltas: false },
      { name: 'migstream, whole 64 KiB chunks', chunkSize: 64 * KIB, deltas: false },
      { name: 'migstream, 1 MiB chunks + sub-block delta', chunkSize: MIB, deltas: true },
    ];
    for (const [i, kind] of kinds.entries()) {
      sources.push(await DiskSource.open({ qmp: src.qmp, drive: 'disk0', socketPath: srcSock, serverStarted: i > 0, chunkSize: kind.chunkSize, deltas: kind.deltas, prefix: `amp${i}` }));
    }
    const main = sources[0]!;
    sink = await DiskSink.open({ qmp: dst.qmp, drive: 'disk0', socketPath: join(dir, 'dst.sock'), header: main.header });
    const encoder = new DiskStreamEncoder(main.header);
    const decoder = new DiskStreamDecoder();
    const through = async (pieces: Buffer[]): Promise<void> => {
      for (const piece of pieces) for (const record of decoder.push(piece)) await sink!.apply(record);
    };
    await through([encoder.start()]);
    const apply = async (record: ChunkRecord, done: () => void): Promise<void> => {
      await through(encoder.encode(record));
      done();
    };
    const discard = (): void => undefined;
    const emitOf = (i: number): EmitRecord => (i === 0 ? apply : discard);

    const stats = sources.map((): PassStats[] => []);
    const writtenAtStart: number[] = [];
    const startedAt: number[] = [];
    const endedAt: number[] = [];
    for (const [i, source] of sources.entries()) {
      writtenAtStart.push(guestWritten(src));
      startedAt.push(performance.now());
      stats[i]!.push(await source.firstCopy(emitOf(i)));
    }
    const pause = Number(values['pause-ms']);
    for (let p = 0; p < Number(values.passes); p++) {
      await sleep(pause);
      for (const [i, source] of sources.entries()) stats[i]!.push(await source.pass(emitOf(i)));
    }
    await src.execute('stop');
    const writtenAtStop = guestWritten(src);
    for (const [i, source] of sources.entries()) {
      stats[i]!.push(await source.pass(emitOf(i)));
      if (i === 0) {
        await through(encoder.end());
        if (!decoder.complete) throw new Error('the disk stream did not end');
        await sink.finish();
      }
      endedAt.push(performance.now());
    }
    // The applied row's destination holds the source's drive (throws DiskMismatchError if not).
    const destination = sink.nbd;
    await main.withReader((nbd) => checkDiskConsistency(nbd, destination, { drive: 'disk0', size: main.header.size }));
    return kinds.map((kind, i) => {
      const passes = stats[i]!;
      const sent = passes.slice(1).reduce((sum, p) => sum + p.bytes, 0);
      const guestBytes = writtenAtStop - writtenAtStart[i]!;
      const busy = passes.reduce((sum, p) => sum + p.ms, 0) / 1000;
      const perPass = passes
        .slice(1)
        .map((p) => mib(p.bytes, 1))
        .join('+');
      return {
        block,
        row: kind.name,
        amplification: sent / guestBytes,
        totalSeconds: (endedAt[i]! - startedAt[i]!) / 1000,
        busySeconds: busy,
        sentBytes: sent,
        guestBytes,
        note: `${i === 0 ? 'applied, consistency checked; ' : 'counted only; '}first copy ${mib(passes[0]!.bytes, 1)} MiB; passes ${perPass} MiB`,
      };
    });
  } finally {
    await sink?.close().catch(() => undefined);
    for (const source of sources) await source.close().catch(() => undefined);
    await pair.quit();
  }
}

/** Bytes of the block section's chunk records in a stream file; a chunk's first record is the bulk copy. */
async function blockBytes(path: string): Promise<{ total: number; resent: number; records: number; resentRecords: number; cut: string | null }> {
  const seen = new Set<string>();
  const counts = { total: 0, resent: 0, records: 0, resentRecords: 0, cut: null as string | null };
  try {
    for await (const record of decode(createReadStream(path))) {
      if (record.type !== 'block-data' && record.type !== 'block-zero') continue;
      const bytes = encodedLength(record);
      const key = `${record.device}:${record.sector}`;
      counts.total += bytes;
      counts.records++;
      if (seen.has(key)) {
        counts.resent += bytes;
        counts.resentRecords++;
      } else {
        seen.add(key);
      }
    }
  } catch (error) {
    // A cancelled migration's stream ends mid-record: what came before it counts.
    counts.cut = error instanceof Error ? error.message.split('\n')[0]! : String(error);
  }
  return counts;
}

/** Waits until the exec: command's output is complete (renamed) or no longer grows (cancelled). */
async function streamFile(path: string): Promise<string> {
  let size = -1;
  for (const deadline = Date.now() + 60_000; Date.now() < deadline;) {
    if (existsSync(path)) return path;
    const now = existsSync(`${path}.partial`) ? statSync(`${path}.partial`).size : -1;
    if (now >= 0 && now === size) return `${path}.partial`;
    size = now;
    await sleep(500);
  }
  throw new Error('the exec: command did not finish writing the stream');
}

/** QEMU 7.2's own block migration, `migrate -b`, through exec: tee into the destination's listener. */
async function blockMigrationRow(block: number): Promise<AmpRow> {
  const row = 'QEMU 7.2 migrate -b (1 MiB chunks)';
  const pair = await bootPair('7.2', block, `blk-${block}`, ['-incoming', 'defer']);
  const { src, dst, dir } = pair;
  try {
    const listen = join(dir, 'mig.sock');
    const stream = join(dir, 'stream.mig');
    await dst.execute('migrate-incoming', { uri: `unix:${listen}` });
    await src.execute('migrate-set-capabilities', { capabilities: [{ capability: 'zero-blocks', state: true }] });
    // 7.2's default max-bandwidth is 128 MiB/s; migstream's passes are not limited, so neither is this.
    await src.execute('migrate-set-parameters', { 'max-bandwidth': 4 * 1024 * MIB });
    const command = `tee ${shellQuote(`${stream}.partial`)} | socat -u - UNIX-CONNECT:${shellQuote(listen)} && mv ${shellQuote(`${stream}.partial`)} ${shellQuote(stream)}`;
    const written = guestWritten(src);
    await src.execute('migrate', { uri: `exec:${command}`, blk: true });
    const limitS = Number(values['blk-limit-s']);
    const deadline = Date.now() + limitS * 1000;
    let info: MigrationInfo = {};
    let converged = true;
    for (;;) {
      info = await queryMigrate(src);
      if (info.status === 'completed' || info.status === 'failed') break;
      if (Date.now() > deadline) {
        await src.execute('migrate_cancel');
        converged = false;
        break;
      }
      await sleep(100);
    }
    const guestBytes = guestWritten(src) - written;
    if (converged && info.status !== 'completed') throw new Error(`migrate -b failed: ${info['error-desc'] ?? '?'}`);
    const counts = await blockBytes(await streamFile(stream));
    const end = converged
      ? `QEMU downtime ${info.downtime ?? '?'} ms`
      : `did not converge in ${limitS} s: cancelled (${mib(info.disk?.remaining ?? 0, 0)} MiB of disk dirty at the last poll); the stream up to the cancel counted`;
    return {
      block,
      row,
      amplification: counts.resent / guestBytes,
      totalSeconds: converged ? (info['total-time'] ?? Number.NaN) / 1000 : null,
      busySeconds: null,
      sentBytes: counts.resent,
      guestBytes,
      note: `block section ${mib(counts.total, 1)} MiB in ${counts.records} chunk records, ${counts.resentRecords} of them sent again; ${end}; max-bandwidth 4 GiB/s`,
    };
  } finally {
    await pair.quit();
  }
}

interface BlockJob {
  device: string;
  offset: number;
  len: number;
  ready: boolean;
  status?: string;
}

/** QEMU 10.0 blockdev-mirror sync=full into the destination's NBD export (libvirt's way). */
async function mirrorRow(block: number): Promise<AmpRow> {
  const row = 'QEMU 10.0 blockdev-mirror → NBD';
  const pair = await bootPair('10.0', block, `mirror-${block}`, ['-S', '-incoming', 'defer']);
  const { src, dst, dir, size } = pair;
  try {
    const sock = join(dir, 'dst.sock');
    await startNbdServer(dst.qmp, sock);
    const node = await findDriveNode(dst.qmp, 'disk0');
    await addExport(dst.qmp, { id: 'mirror-dst', nodeName: node.nodeName, writable: true });
    await src.execute('blockdev-add', { driver: 'nbd', 'node-name': 'mirror-target', server: { type: 'unix', path: sock }, export: 'mirror-dst' });
    const job = async (): Promise<BlockJob | undefined> => (await src.execute<BlockJob[]>('query-block-jobs')).find((j) => j.device === 'mirror0');
    const written = guestWritten(src);
    const started = performance.now();
    await src.execute('blockdev-mirror', { 'job-id': 'mirror0', device: 'disk0', target: 'mirror-target', sync: 'full' });
    let firstLen = 0;
    for (const deadline = Date.now() + 120_000; ;) {
      const j = await job();
      if (j === undefined) throw new Error('the mirror job went away before it was ready');
      if (firstLen === 0 && j.len > 0) firstLen = j.len;
      if (j.ready) break;
      if (Date.now() > deadline) throw new Error(`the mirror job was not ready in 120 s (${JSON.stringify(j)})`);
      await sleep(20);
    }
    const readyAt = performance.now();
    await sleep(writingWindowMs());
    await src.execute('stop');
    const guestBytes = guestWritten(src) - written;
    // Caught up: offset = len on two polls 100 ms apart (the job updates len once per iteration).
    let last: BlockJob | undefined;
    let steady = 0;
    for (const deadline = Date.now() + 60_000; steady < 2;) {
      await sleep(100);
      last = await job();
      if (last === undefined) throw new Error('the mirror job went away');
      steady = last.offset === last.len ? steady + 1 : 0;
      if (Date.now() > deadline) throw new Error(`the mirror did not catch up in 60 s (${JSON.stringify(last)})`);
    }
    if (last === undefined) throw new Error('the mirror job went away');
    await src.execute('block-job-complete', { device: 'mirror0' });
    for (const deadline = Date.now() + 60_000; (await job()) !== undefined;) {
      if (Date.now() > deadline) throw new Error('the mirror job did not complete in 60 s');
      await sleep(20);
    }
    const total = (performance.now() - started) / 1000;
    // The job's first pass is the whole drive when the target cannot be zeroed first (NBD).
    const bulk = firstLen >= size ? size : firstLen;
    const sent = last.offset - bulk;
    return {
      block,
      row,
      amplification: sent / guestBytes,
      totalSeconds: total,
      busySeconds: null,
      sentBytes: sent,
      guestBytes,
      note: `job offset ${mib(last.offset, 1)} MiB, first pass ${mib(bulk, 1)} MiB (len first seen ${mib(firstLen, 1)} MiB); ready after ${((readyAt - started) / 1000).toFixed(1)} s, then ${(writingWindowMs() / 1000).toFixed(0)} s; default granularity, background copy mode`,
    };
  } finally {
    await pair.quit();
  }
}

async function amplificationPart(): Promise<void> {
  const blocks = values.blocks!.split(',').map(Number);
  const rows: AmpRow[] = [];
  const attempt = async (block: number, name: string, run: () => Promise<AmpRow | AmpRow[]>): Promise<void> => {
    log(`amplification: ${block / KIB} KiB writes, ${name}`);
    const started = Date.now();
    try {
      const got = await run();
      rows.push(...(Array.isArray(got) ? got : [got]));
    } catch (error) {
      const message = error instanceof Error ? error.message.split('\n')[0]! : String(error);
      rows.push({ block, row: name, amplification: null, totalSeconds: null, busySeconds: null, sentBytes: null, guestBytes: null, note: `failed: ${message.slice(0, 200)}` });
    }
    log(`  ${((Date.now() - started) / 1000).toFixed(0)} s`);
  };
  for (const block of blocks) {
    await attempt(block, 'migstream (four rows side by side)', () => migstreamRows(block));
    await attempt(block, 'QEMU 7.2 migrate -b (1 MiB chunks)', () => blockMigrationRow(block));
    await attempt(block, 'QEMU 10.0 blockdev-mirror → NBD', () => mirrorRow(block));
  }
  const fmt = (v: number | null, digits: number): string => (v === null || Number.isNaN(v) ? '—' : v.toFixed(digits));
  console.log(
    `\n### Amplification: guest (${Math.floor(GUEST_MEMORY / MIB)} MiB RAM, ${values['disk-mib']} MiB raw virtio disk, ${accel().toUpperCase()}) writing random blocks at ${values.rate} MiB/s; migstream: first copy, ${values.passes} passes ${values['pause-ms']} ms apart, stop, last pass; mirror: ready, then the same ${writingWindowMs() / 1000} s, stop, complete\n`,
  );
  console.log(
    markdown(
      ['guest writes', 'row', 'amplification', 'total s', 'own passes s', 'sent MiB', 'guest wrote MiB', 'note'],
      rows.map((r) => [
        `${r.block / KIB} KiB`,
        r.row,
        r.amplification === null ? '—' : `${r.amplification.toFixed(2)}×`,
        fmt(r.totalSeconds, 1),
        fmt(r.busySeconds, 2),
        r.sentBytes === null ? '—' : mib(r.sentBytes),
        r.guestBytes === null ? '—' : mib(r.guestBytes),
        r.note,
      ]),
    ),
  );
  const delta4k = rows.find((r) => r.block === 4096 && r.row.startsWith('migstream, 64 KiB chunks + sub-block delta'));
  if (delta4k?.amplification == null) verdict(null, 'amplification: no 64 KiB delta row for 4 KiB writes was measured');
  else verdict(delta4k.amplification <= 1.5, `amplification: sub-block delta (64 KiB chunks) for 4 KiB writes ${delta4k.amplification.toFixed(2)}× (target ≤ 1.5×)`);
  report.amplification = { rate: Number(values.rate), passes: Number(values.passes), pauseMs: Number(values['pause-ms']), diskMiB: Number(values['disk-mib']), rows };
}

// ---------------------------------------------------------------------------------------------

console.log(`## npm run bench:disk, ${String(report.date).slice(0, 16).replace('T', ' ')} UTC, ${String(report.machine)}`);
if (wanted('scan')) await scanPart();
if (wanted('copy')) await copyPart();
if (wanted('amplification')) await amplificationPart();
console.log(`\n### Targets\n\n${verdicts.map((v) => `- ${v}`).join('\n')}`);
report.verdicts = verdicts;
if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(report, null, 2));
