/**
 * Every command follows the conventions of CONTRIBUTING.md ("Command-line conventions"). The
 * commands are read from `migstream --help`, so a new command is walked through the same rules
 * without being listed here; it only needs an invocation in RUNS.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { CODECS } from '../../src/codecs/registry.js';
import { StatusLine } from '../../src/cli/progress.js';
import { sampleStream } from '../helpers/sample-stream.js';

const BIN = join(import.meta.dirname, '../../bin/migstream');

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], input?: Buffer): Result {
  const result = spawnSync(process.execPath, [BIN, ...args], { input: input ?? Buffer.alloc(0), encoding: 'buffer', maxBuffer: 64 << 20 });
  return { status: result.status, stdout: result.stdout.toString('latin1'), stderr: result.stderr.toString() };
}

const dir = mkdtempSync(join(tmpdir(), 'migstream-convention-'));
const stream = join(dir, 'sample.mig');
writeFileSync(stream, sampleStream().bytes);
const container = join(dir, 'sample.msz');
const empty = join(dir, 'empty.mig');
writeFileSync(empty, '');
const missing = join(dir, 'no-such-dir', 'missing.mig');
let counter = 0;
const fresh = (name: string): string => join(dir, `${counter++}-${name}`);

interface Run {
  /** A successful invocation; `input` stands for the input file. */
  args: (input: string) => string[];
  /** The input it reads ('stream', 'container'), or null when it reads none. */
  input: 'stream' | 'container' | null;
  /** Does this invocation write the stream to stdout (so --json goes to stderr)? */
  stdoutIsStream: boolean;
  /** Whether it has a progress line (short commands do not). */
  progress: boolean;
}

/** How to run each command successfully, without a peer (send and recv are tested as a pair). */
const RUNS: Record<string, Run> = {
  copy: { args: (input) => [input, fresh('copy.mig')], input: 'stream', stdoutIsStream: false, progress: true },
  inspect: { args: (input) => [input], input: 'stream', stdoutIsStream: false, progress: true },
  'extract-ram': { args: (input) => [input, '-o', fresh('ram')], input: 'stream', stdoutIsStream: false, progress: true },
  compress: { args: (input) => [input, '-o', fresh('c.msz')], input: 'stream', stdoutIsStream: false, progress: true },
  decompress: { args: (input) => [input, '-o', fresh('d.mig')], input: 'container', stdoutIsStream: false, progress: true },
  compact: { args: (input) => [input, fresh('compact.mig')], input: 'stream', stdoutIsStream: false, progress: true },
  bench: { args: (input) => [input, '-c', 'lz4', '-j', '1', '--repeat', '1', '--no-baselines'], input: 'stream', stdoutIsStream: false, progress: false },
  certs: { args: () => ['-o', fresh('certs'), '--days', '2'], input: null, stdoutIsStream: false, progress: false },
  send: { args: (input) => ['127.0.0.1:9', input, '--insecure'], input: 'stream', stdoutIsStream: false, progress: true },
  recv: { args: () => ['--listen', '127.0.0.1:0', '--insecure'], input: null, stdoutIsStream: true, progress: true },
  // Driven through QMP: run against real QEMU in test/migrate/migrate-cli.test.ts.
  migrate: { args: () => ['--qmp', missing, '--to', '127.0.0.1:9', '--insecure'], input: null, stdoutIsStream: false, progress: false },
  // An ephemeral transport port needs its control port named (the migrate side must know it).
  incoming: { args: () => ['--qmp', missing, '--listen', '127.0.0.1:0', '--control-port', '47999', '--insecure'], input: null, stdoutIsStream: false, progress: false },
  // A pair of tunnels forwarding real connections: test/tunnel/.
  tunnel: { args: () => ['--to', '127.0.0.1:9', '--unix', fresh('tunnel.sock'), '--insecure'], input: null, stdoutIsStream: false, progress: false },
};

const PAIRED = new Set(['send', 'recv', 'migrate', 'incoming', 'tunnel']);

function commandNames(): string[] {
  const help = run(['--help']);
  const section = help.stdout.split('Commands:\n')[1]!.split('\n\n')[0]!;
  return section
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0]!)
    .filter(Boolean);
}

const COMMANDS = commandNames();
run(['compress', stream, '-o', container, '--quiet']);

function expectOneLine(result: Result, status: number, pattern: RegExp): void {
  expect(result.status, result.stderr).toBe(status);
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/\n\s+at |TypeError|node:internal/);
}

function inputFor(run: Run): string {
  return run.input === 'container' ? container : stream;
}

describe('the tool', () => {
  test('every command has an invocation here, and the overview lists --help and --version', () => {
    expect(COMMANDS.length).toBeGreaterThanOrEqual(10);
    expect(COMMANDS.filter((name) => RUNS[name] === undefined)).toEqual([]);
    const help = run(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/-V, --version/);
    expect(help.stdout).toMatch(/-h, --help/);
    expect(run(['--version']).stdout).toMatch(/^migstream \d+\.\d+\.\d+\n$/);
  });

  test('an unknown command is one line, exit 2', () => {
    expectOneLine(run(['frobnicate']), 2, /^migstream: unknown command "frobnicate" \(see "migstream --help"\)$/);
  });
});

describe.each(COMMANDS)('migstream %s', (name) => {
  const spec = RUNS[name]!;
  // Cells that do not apply to a command are not registered, so the run has no skipped tests.

  test('--help: usage on stdout, exit 0, names --json and -h, --help', () => {
    const help = run([name, '--help']);
    expect(help.status).toBe(0);
    expect(help.stdout.startsWith(`Usage: migstream ${name}`)).toBe(true);
    expect(help.stdout).toMatch(/--json/);
    expect(help.stdout).toMatch(/-h, --help/);
    expect(help.stderr).toBe('');
  });

  test('usage errors: one line naming the option and pointing at --help, exit 2, nothing on stdout', () => {
    const hint = `\\(see "migstream ${name} --help"\\)$`;
    const unknown = run([name, '--bogus']);
    expectOneLine(unknown, 2, new RegExp(`^migstream ${name}: unknown option --bogus ${hint}`));
    expect(unknown.stdout).toBe('');
    expectOneLine(run([name, '--json=yes']), 2, new RegExp(`^migstream ${name}: --json takes no value ${hint}`));
  });

  if (spec.input !== null && name !== 'bench')
    test('a missing input: one line naming the path, exit 1', () => {
      const result = run([name, ...spec.args(missing)]);
      expectOneLine(result, 1, new RegExp(`^migstream ${name}: error: .*${missing.replace(/[.]/g, '\\.')}.*ENOENT`));
    });

  if (spec.input === 'stream' && name !== 'bench' && name !== 'send')
    test('an empty input: one line saying so, exit 1', () => {
      const result = run([name, ...spec.args(empty)]);
      expectOneLine(result, 1, new RegExp(`^migstream ${name}: error: .*the input is empty`));
    });

  if (!PAIRED.has(name))
    test('--json: one JSON object, on stdout unless stdout is the stream', () => {
      const result = run([name, ...spec.args(inputFor(spec)), '--json']);
      expect(result.status, result.stderr).toBe(0);
      const text = spec.stdoutIsStream ? result.stderr : result.stdout;
      const parsed = JSON.parse(text) as unknown;
      expect(typeof parsed).toBe('object');
      expect(parsed).not.toBeNull();
    }, 60_000);

  if (spec.progress && !PAIRED.has(name))
    test('--progress shows a percent of a file input; --no-progress and a non-terminal show none', () => {
      const shown = run([name, ...spec.args(inputFor(spec)), '--progress']);
      expect(shown.status, shown.stderr).toBe(0);
      expect(shown.stderr).toMatch(/\r.*\d+(\.\d)?%|\r[a-z -]+\(out\): /);
      const hidden = run([name, ...spec.args(inputFor(spec)), '--no-progress']);
      expect(hidden.status, hidden.stderr).toBe(0);
      expect(hidden.stderr).not.toMatch(/\r/);
      const plain = run([name, ...spec.args(inputFor(spec))]);
      expect(plain.stderr).not.toMatch(/\r/);
    }, 60_000);

  if (spec.input !== null && name !== 'bench')
    test('a terminal on stdin is refused, not waited on', () => {
      // script(1) gives the command a pseudo-terminal; without a file it must not wait for typing.
      const args = spec
        .args('-')
        .map((arg) => `'${arg}'`)
        .join(' ');
      const result = spawnSync('script', ['-qec', `${process.execPath} ${BIN} ${name} ${args} </dev/tty`, '/dev/null'], { encoding: 'utf8', timeout: 20_000 });
      expect(result.error).toBeUndefined();
      expect(result.stdout).toMatch(/no input: give a FILE, or pipe a stream into stdin/);
    }, 30_000);
});

describe('conventions that concern some commands', () => {
  test.each(['migrate', 'incoming'])('%s with a QMP socket that is not there: one line naming it, exit 1', (name) => {
    const result = run([name, ...RUNS[name]!.args('')]);
    expectOneLine(result, 1, new RegExp(`^migstream ${name}: error: .*${missing.replace(/[.]/g, '\\.')}`));
  });

  test.each(['migrate', 'incoming'])('%s with a socket that is not QEMU: one line naming it, exit 1', async (name) => {
    const { createServer } = await import('node:net');
    const path = join(dir, `not-qemu-${name}.sock`);
    const server = createServer((peer) => peer.end('{"hello": "I am not QEMU"}\n'));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      const args = RUNS[name]!.args('').map((a) => (a === missing ? path : a));
      const result = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [BIN, name, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('close', (status) => resolve({ status, stdout, stderr }));
      });
      expect(result.status).toBe(1);
      expect(result.stdout).toBe('');
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toMatch(new RegExp(`^migstream ${name}: error: .*not-qemu-${name}\\.sock is not a QEMU QMP socket`));
    } finally {
      server.close();
    }
  });

  test('send and recv: --json summaries (recv on stderr when its stdout is the stream)', async () => {
    const out = fresh('recv.mig');
    const recv = spawn(process.execPath, [BIN, 'recv', '--listen', '127.0.0.1:0', '--insecure', '-o', out, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let recvOut = '';
    let recvErr = '';
    recv.stdout.on('data', (data: Buffer) => (recvOut += data.toString()));
    const port = await new Promise<number>((resolve) => {
      recv.stderr.on('data', (data: Buffer) => {
        recvErr += data.toString();
        const match = /listening on [^ ]+:(\d+)/.exec(recvErr);
        if (match) resolve(Number(match[1]));
      });
    });
    const sent = run(['send', `127.0.0.1:${port}`, stream, '--insecure', '--json']);
    await new Promise((resolve) => recv.on('close', resolve));
    expect(sent.status, sent.stderr).toBe(0);
    expect(JSON.parse(sent.stdout)).toMatchObject({ command: 'send', bytes: sampleStream().bytes.length });
    expect(JSON.parse(recvOut)).toMatchObject({ command: 'recv', bytes: sampleStream().bytes.length });
  }, 60_000);

  test('negative numbers are values: compress -l -3, --level -3 and --level=-3', () => {
    for (const level of [['-l', '-3'], ['--level', '-3'], ['--level=-3']]) {
      const result = run(['compress', stream, '-c', 'zstd', ...level, '-o', fresh('neg.msz'), '--json']);
      expect(result.status, result.stderr).toBe(0);
      expect(JSON.parse(result.stdout)).toMatchObject({ level: -3 });
    }
  });

  test("compress --help states each codec's real default level", () => {
    const help = run(['compress', '--help']).stdout;
    for (const codec of CODECS.filter((c) => c.maxLevel > c.minLevel)) {
      expect(help).toContain(`${codec.name} ${codec.minLevel}..${codec.maxLevel} (default ${codec.defaultLevel})`);
    }
  });

  test('inspect of a damaged stream: the error in the report and on stderr, exit 1', () => {
    const cut = fresh('cut.mig');
    const bytes = sampleStream().bytes;
    writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const text = run(['inspect', cut]);
    expect(text.status).toBe(1);
    expect(text.stdout).toMatch(/ERROR +.*stream ends/);
    expectOneLine(text, 1, /^migstream inspect: error: .*cut\.mig: .*offset \d+.*stream ends/);
    const json = run(['inspect', cut, '--json']);
    expect(json.status).toBe(1);
    expect(JSON.parse(json.stdout).error.message).toMatch(/stream ends/);
  });

  test('progress gives the time left once the rate is known', () => {
    class Clocked extends StatusLine {
      constructor(private readonly seconds: number) {
        super(false);
      }
      override elapsed(): number {
        return this.seconds;
      }
    }
    expect(new Clocked(2).share(25, 100)).toBe(' (25.0%, 6 s left)');
    expect(new Clocked(0.1).share(25, 100)).toBe(' (25.0%)');
    expect(new Clocked(60).share(25, 100)).toBe(' (25.0%, 3 min 0 s left)');
    expect(new Clocked(2).share(25, null)).toBe('');
  });
});
