/**
 * Whole-process timing for the compress and decode benchmarks: every command — migstream's and
 * the baselines' (cat, zstd, lz4) — runs as its own process, the way a user runs it: stdin from
 * the input file, stdout to /dev/null or to a file on tmpfs (/dev/shm).
 *
 * Each process is started through GNU time (`/usr/bin/time -f … -o FILE`, Debian package
 * `time`), which waits for it with wait4(2) and writes the child's rusage: minor and major page
 * faults, peak RSS, user and system CPU. GNU time's own wall time (%e) has 10 ms steps, and
 * Node's spawn forks the whole bench process (3–7 ms here, 40–70 ms once the bench holds a
 * 600 MB stream in memory), so the wall time is taken by a few lines of Perl (perl-base is
 * always there on Debian) that read the monotonic clock, fork and exec GNU time, and read the
 * clock again when it has been waited for. What that adds (GNU time's fork and exec) is the
 * spawn floor, `true` timed the same way, reported beside each table. migstream's figures are
 * taken less its start-up: `migstream --version`, timed in the same rounds; its faults likewise.
 *
 * Commands are run in rounds (each command once per round, in turn), so that a busy moment of
 * a shared machine hits them alike, and the fastest run of each counts (best of `repeat`); the
 * start-up is timed before each of migstream's commands, and its fastest run counts too.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../test/fixtures/meta.js';

export const MIGSTREAM = join(REPO_ROOT, 'bin', 'migstream');
const GNU_TIME = '/usr/bin/time';
const MIB = 1024 * 1024;

/** A tool the benches run, and the Debian package that has it. */
const TOOLS: Record<string, { path: string; pkg: string }> = {
  time: { path: GNU_TIME, pkg: 'time' },
  zstd: { path: 'zstd', pkg: 'zstd' },
  lz4: { path: 'lz4', pkg: 'lz4' },
};

function present(path: string): boolean {
  return spawnSync(path, ['--version'], { stdio: 'ignore' }).error === undefined;
}

/**
 * Makes sure the tools exist: missing ones are installed with apt-get when running as root on
 * Debian (said on stderr), otherwise the bench stops and names the command to run.
 */
export function ensureTools(names: readonly string[]): void {
  const missing = names.filter((name) => !present(TOOLS[name]!.path));
  if (missing.length === 0) return;
  const packages = missing.map((name) => TOOLS[name]!.pkg);
  const command = `apt-get install -y ${packages.join(' ')}`;
  if (process.getuid?.() === 0 && present('apt-get')) {
    process.stderr.write(`installing what the bench needs: ${command}\n`);
    const apt = (...args: string[]): boolean => spawnSync('apt-get', args, { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }).status === 0;
    // Package lists may be missing on a fresh machine: updated once, only then.
    if ((apt('install', '-y', ...packages) || (apt('update') && apt('install', '-y', ...packages))) && missing.every((name) => present(TOOLS[name]!.path))) return;
  }
  console.error(`the bench needs ${missing.join(', ')}: install with "${command}" (or run "bash scripts/setup.sh")`);
  process.exit(2);
}

/** One command of a bench: how to run it and where its input and output go. */
export interface Command {
  /** As shown in the table, e.g. "migstream compress -c zstd" or "zstd -3 -T2". */
  readonly label: string;
  readonly argv: readonly string[];
  /** File for stdin (default: none). */
  readonly stdin?: string;
  /** File for stdout (truncated before each run); default /dev/null. */
  readonly stdout?: string;
  /** Runs untimed before each run (e.g. removes the previous run's output directory). */
  readonly before?: () => void;
  /** migstream's own process: its figures are taken less the start-up. */
  readonly migstream: boolean;
}

/** One run of a command: wall time and the child's rusage. */
export interface ProcessRun {
  readonly seconds: number;
  readonly minorFaults: number;
  readonly majorFaults: number;
  readonly maxRssKiB: number;
  readonly userSeconds: number;
  readonly systemSeconds: number;
}

export function faults(run: ProcessRun): number {
  return run.minorFaults + run.majorFaults;
}

/** `migstream ARGS…` as a user runs it (bin/migstream; its shebang finds node). */
export function migstream(label: string, args: readonly string[], io: Omit<Command, 'label' | 'argv' | 'migstream'> = {}): Command {
  return { label, argv: [MIGSTREAM, ...args], migstream: true, ...io };
}

export function tool(label: string, argv: readonly string[], io: Omit<Command, 'label' | 'argv' | 'migstream'> = {}): Command {
  return { label, argv, migstream: false, ...io };
}

/** The start-up reference and the spawn floor; every bench's rounds include both. */
export const STARTUP = migstream('migstream --version', ['--version']);
export const FLOOR = tool('true (spawn floor)', ['true']);

/**
 * perl STOPWATCH_FILE COMMAND…: runs COMMAND (stdin and stdout its own) and writes the seconds
 * from before its fork to after its wait; exits with its status.
 */
const STOPWATCH = [
  'use Time::HiRes qw(clock_gettime CLOCK_MONOTONIC);',
  'my $file = shift @ARGV;',
  'my $started = clock_gettime(CLOCK_MONOTONIC);',
  'my $pid = fork() // die "fork: $!\\n";',
  'if ($pid == 0) { exec { $ARGV[0] } @ARGV; die "exec $ARGV[0]: $!\\n"; }',
  'waitpid($pid, 0) == $pid or die "waitpid: $!\\n";',
  'my $seconds = clock_gettime(CLOCK_MONOTONIC) - $started;',
  'open(my $out, ">", $file) or die "$file: $!\\n"; print $out "$seconds\\n"; close($out);',
  'exit($? & 127 ? 128 + ($? & 127) : $? >> 8);',
].join(' ');

/** Runs `command` once through the stopwatch and GNU time; throws with its stderr when it fails. */
export function runOnce(command: Command, scratch: string): ProcessRun {
  command.before?.();
  const rusageFile = join(scratch, 'rusage');
  const secondsFile = join(scratch, 'seconds');
  const stdin = command.stdin === undefined ? 'ignore' : openSync(command.stdin, 'r');
  const stdout = openSync(command.stdout ?? '/dev/null', 'w');
  try {
    const argv = ['-e', STOPWATCH, secondsFile, GNU_TIME, '-f', '%R %F %M %U %S', '-o', rusageFile, ...command.argv];
    const result = spawnSync('perl', argv, { stdio: [stdin, stdout, 'pipe'], maxBuffer: 64 * MIB });
    if (result.error) throw result.error;
    if (result.status !== 0) throw new Error(`${command.argv.join(' ')} exited with ${result.status}: ${result.stderr.toString().trim()}`);
  } finally {
    if (typeof stdin === 'number') closeSync(stdin);
    closeSync(stdout);
  }
  // GNU time writes one line; a child's own "Command exited…" line would come before it.
  const [minor, major, rss, user, system] = readFileSync(rusageFile, 'utf8').trim().split('\n').at(-1)!.split(' ').map(Number);
  const seconds = Number(readFileSync(secondsFile, 'utf8'));
  return { seconds, minorFaults: minor!, majorFaults: major!, maxRssKiB: rss!, userSeconds: user!, systemSeconds: system! };
}

/** Every run of each command, and the fastest. */
export interface Timed {
  readonly command: Command;
  readonly runs: ProcessRun[];
  readonly best: ProcessRun;
}

/**
 * `repeat` rounds over the commands, each once per round, with the spawn floor first in each
 * round and the start-up right before each of migstream's commands (so a busy moment cannot
 * leave the start-up with only slow runs, which would flatter migstream's net times); returns
 * [start-up, spawn floor, ...commands] with their fastest runs.
 */
export function timeRounds(commands: readonly Command[], repeat: number, scratch: string, log: (line: string) => void = () => {}): Timed[] {
  const all = [STARTUP, FLOOR, ...commands];
  const runs = all.map((): ProcessRun[] => []);
  for (let round = 0; round < repeat; round++) {
    runs[1]!.push(runOnce(FLOOR, scratch));
    for (const [i, command] of commands.entries()) {
      log(`round ${round + 1}/${repeat}: ${command.label}`);
      if (command.migstream) runs[0]!.push(runOnce(STARTUP, scratch));
      runs[i + 2]!.push(runOnce(command, scratch));
    }
  }
  return all.map((command, i) => ({ command, runs: runs[i]!, best: runs[i]!.reduce((a, b) => (b.seconds < a.seconds ? b : a)) }));
}

/** A command's figures on a stream of `streamBytes` holding `records` records. */
export interface Figures {
  readonly label: string;
  /** Wall time of the fastest run. */
  readonly seconds: number;
  /** Less migstream's start-up for migstream's commands; the wall time for the others. */
  readonly netSeconds: number;
  /** Stream MB (1e6 bytes) per net second. */
  readonly mbPerSecond: number;
  /** Records per net second (migstream's commands only). */
  readonly recordsPerSecond: number | null;
  /** Page faults (minor + major) per MiB of stream, less the start-up's for migstream's. */
  readonly faultsPerMiB: number;
  readonly run: ProcessRun;
  readonly runs: readonly ProcessRun[];
}

export interface RoundsResult {
  readonly startup: ProcessRun;
  /** How many times the start-up was timed. */
  readonly startupRuns: number;
  readonly floor: ProcessRun;
  readonly figures: Figures[];
}

/** Figures of each timed command, with start-up taken off migstream's. */
export function figuresOf(timed: readonly Timed[], streamBytes: number, records: number): RoundsResult {
  const [startup, floor, ...rest] = timed;
  const figures = rest.map(({ command, best, runs }): Figures => {
    const netSeconds = command.migstream ? Math.max(1e-6, best.seconds - startup!.best.seconds) : best.seconds;
    const netFaults = command.migstream ? Math.max(0, faults(best) - faults(startup!.best)) : faults(best);
    return {
      label: command.label,
      seconds: best.seconds,
      netSeconds,
      mbPerSecond: streamBytes / 1e6 / netSeconds,
      recordsPerSecond: command.migstream ? records / netSeconds : null,
      faultsPerMiB: netFaults / (streamBytes / MIB),
      run: best,
      runs,
    };
  });
  return { startup: startup!.best, startupRuns: startup!.runs.length, floor: floor!.best, figures };
}

/** One line for the start-up and the spawn floor of a table. */
export function startupLine(result: RoundsResult): string {
  const { startup, floor } = result;
  return (
    `start-up (taken off migstream's rows): migstream --version ${(startup.seconds * 1000).toFixed(0)} ms (best of ${result.startupRuns}), ` +
    `${faults(startup)} faults, ${(startup.maxRssKiB / 1024).toFixed(0)} MiB RSS; spawn floor (true) ${(floor.seconds * 1000).toFixed(1)} ms`
  );
}

/** A fresh scratch directory on tmpfs (where outputs go), removed by `done()`. */
export function tmpfsScratch(prefix: string): { dir: string; done: () => void } {
  const base = '/dev/shm';
  const dir = mkdtempSync(join(base, `${prefix}-`));
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

export function fmtMB(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

export function fmtRecords(value: number | null): string {
  if (value === null) return '';
  return value >= 1e6 ? `${(value / 1e6).toFixed(2)} M` : `${(value / 1e3).toFixed(0)} k`;
}

/** A verdict cell: "ok TEXT" when the target is met, "MISS TEXT" when not. */
export function mark(ok: boolean, text: string): string {
  return `${ok ? 'ok' : 'MISS'} ${text}`;
}

/** The columns both benches show for a timed command. */
export const FIGURE_HEADER = ['command', 'wall ms', 'net ms', 'MB/s', 'records/s', 'faults/MiB'];

export function figureCells(figures: Figures): string[] {
  return [figures.label, (figures.seconds * 1000).toFixed(0), (figures.netSeconds * 1000).toFixed(0), fmtMB(figures.mbPerSecond), fmtRecords(figures.recordsPerSecond), figures.faultsPerMiB.toFixed(0)];
}
