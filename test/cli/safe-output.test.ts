/**
 * Outputs are safe: no command overwrites its own input, however the input is named, and a
 * failed or interrupted run leaves neither a file that looks complete nor a damaged old one.
 * Each case here destroyed or left a file before src/cli/output-file.ts.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { sampleStream } from '../helpers/sample-stream.js';

const BIN = join(import.meta.dirname, '../../bin/migstream');

interface Run {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

function run(args: string[], options: { input?: Buffer; stdio?: (number | 'pipe')[] } = {}): Run {
  const result = spawnSync(process.execPath, [BIN, ...args], { input: options.input, stdio: options.stdio, maxBuffer: 64 << 20 });
  return { status: result.status, stdout: result.stdout ?? Buffer.alloc(0), stderr: result.stderr?.toString() ?? '' };
}

const sample = sampleStream();
const dir = mkdtempSync(join(tmpdir(), 'migstream-safe-'));

/** A fresh copy of the sample stream at `name` in its own folder; returns its path. */
function fresh(name: string): string {
  const folder = mkdtempSync(join(dir, 'case-'));
  const path = join(folder, name);
  writeFileSync(path, sample.bytes);
  return path;
}

function folderOf(path: string): string[] {
  return readdirSync(join(path, '..')).sort();
}

function expectRefusedAsInput(result: Run, path: string): void {
  expect(result.status, result.stderr).toBe(2);
  expect(result.stderr).toMatch(/is the input .*same file.*refusing to overwrite/);
  expect(readFileSync(path).equals(sample.bytes), `${path} was changed`).toBe(true);
}

describe('a command refuses an output that is its input', () => {
  test('copy X X, compact X X, compress X -o X, decompress C -o C: refused, X intact', () => {
    const stream = fresh('vm.mig');
    expectRefusedAsInput(run(['copy', stream, stream]), stream);
    expectRefusedAsInput(run(['compact', stream, stream]), stream);
    expectRefusedAsInput(run(['compress', stream, '-o', stream]), stream);
    // decompress reads a container: make one and point the output at it.
    const container = join(stream, '..', 'vm.msz');
    expect(run(['compress', stream, '-o', container, '--quiet']).status).toBe(0);
    const packed = readFileSync(container);
    const result = run(['decompress', container, '-o', container]);
    expect(result.status, result.stderr).toBe(2);
    expect(readFileSync(container).equals(packed)).toBe(true);
  });

  test('the same file through a symlink, a hard link and /dev/fd/N', () => {
    const stream = fresh('vm.mig');
    const symlink = join(stream, '..', 'link.mig');
    const hardlink = join(stream, '..', 'hard.mig');
    symlinkSync(stream, symlink);
    linkSync(stream, hardlink);
    expectRefusedAsInput(run(['copy', stream, symlink]), stream);
    expectRefusedAsInput(run(['copy', symlink, stream]), stream);
    expectRefusedAsInput(run(['copy', stream, hardlink]), stream);
    const fd = openSync(stream, 'r+');
    try {
      // The child's fd 3 is the input file: /dev/fd/3 names it.
      expectRefusedAsInput(run(['copy', stream, '/dev/fd/3'], { stdio: ['pipe', 'pipe', 'pipe', fd] }), stream);
    } finally {
      closeSync(fd);
    }
  });

  test('stdin redirected from the output file is refused too', () => {
    const stream = fresh('vm.mig');
    const fd = openSync(stream, 'r');
    try {
      expectRefusedAsInput(run(['copy', '-', stream], { stdio: [fd, 'pipe', 'pipe'] }), stream);
    } finally {
      closeSync(fd);
    }
  });

  test('outputs that are not regular files are written in place: /dev/null', () => {
    const stream = fresh('vm.mig');
    const result = run(['copy', stream, '/dev/null', '--quiet']);
    expect(result.status, result.stderr).toBe(0);
  });
});

describe('a failed run leaves no file that looks complete', () => {
  const truncated = sample.bytes.subarray(0, Math.floor(sample.bytes.length * 0.6));

  test('compress of a truncated stream: no container, no partial file, an older container untouched', () => {
    const folder = mkdtempSync(join(dir, 'trunc-'));
    const input = join(folder, 'cut.mig');
    writeFileSync(input, truncated);
    const out = join(folder, 'cut.msz');
    const result = run(['compress', input, '-o', out]);
    expect(result.status, result.stderr).toBe(1);
    expect(existsSync(out)).toBe(false);
    expect(folderOf(input)).toEqual(['cut.mig']);
    // An earlier good save under the same name survives the failed run.
    writeFileSync(out, 'an earlier save');
    expect(run(['compress', input, '-o', out]).status).toBe(1);
    expect(readFileSync(out, 'utf8')).toBe('an earlier save');
  });

  test('compress of input that is no stream: no 0-byte container', () => {
    const folder = mkdtempSync(join(dir, 'bad-'));
    const out = join(folder, 'bad.msz');
    const result = run(['compress', '-', '-o', out], { input: Buffer.from('not a migration stream at all') });
    expect(result.status, result.stderr).toBe(1);
    expect(readdirSync(folder)).toEqual([]);
  });

  test('copy and compact of a truncated stream from a pipe: no output', () => {
    const folder = mkdtempSync(join(dir, 'pipe-'));
    for (const args of [
      ['copy', '-', join(folder, 'copy.mig')],
      ['compact', '-', join(folder, 'compact.mig')],
    ]) {
      const result = run(args, { input: truncated });
      expect(result.status, `${args[0]}: ${result.stderr}`).toBe(1);
    }
    expect(readdirSync(folder)).toEqual([]);
  });

  test('decompress of a damaged container, from a file and from a pipe: no stream file', () => {
    const folder = mkdtempSync(join(dir, 'damaged-'));
    const stream = join(folder, 'vm.mig');
    writeFileSync(stream, sample.bytes);
    const container = join(folder, 'vm.msz');
    expect(run(['compress', stream, '-o', container, '-c', 'none', '--no-dedup', '--frame-size', '64K', '--quiet']).status).toBe(0);
    const damaged = readFileSync(container);
    // A byte of page data in the last quarter: its frame's checksum no longer matches.
    damaged[Math.floor(damaged.length * 0.75)]! ^= 0xff;
    writeFileSync(container, damaged);
    const fromFile = run(['decompress', container, '-o', join(folder, 'out-file.mig')]);
    expect(fromFile.status, fromFile.stderr).toBe(1);
    const fromPipe = run(['decompress', '-', '-o', join(folder, 'out-pipe.mig')], { input: damaged });
    expect(fromPipe.status, fromPipe.stderr).toBe(1);
    expect(readdirSync(folder).sort()).toEqual(['vm.mig', 'vm.msz']);
  });

  test('SIGINT in the middle of a compress from a pipe: no container, no partial file', async () => {
    const folder = mkdtempSync(join(dir, 'sigint-'));
    const out = join(folder, 'vm.msz');
    const child = spawn(process.execPath, [BIN, 'compress', '-', '-o', out, '--quiet'], { stdio: ['pipe', 'ignore', 'pipe'] });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    child.stdin.write(sample.bytes.subarray(0, Math.floor(sample.bytes.length / 2)));
    // Wait until the partial file exists: the run has opened its output and is mid-stream.
    const deadline = Date.now() + 20_000;
    while (readdirSync(folder).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(readdirSync(folder)[0]).toMatch(/^vm\.msz\.\d+\.partial$/);
    child.kill('SIGINT');
    const { signal } = await exited;
    expect(signal).toBe('SIGINT');
    expect(readdirSync(folder)).toEqual([]);
  }, 30_000);

  test('a successful run renames onto the output and keeps the permissions of the file it replaces', () => {
    const folder = mkdtempSync(join(dir, 'ok-'));
    const stream = join(folder, 'vm.mig');
    writeFileSync(stream, sample.bytes);
    const out = join(folder, 'copy.mig');
    writeFileSync(out, 'old', { mode: 0o600 });
    expect(run(['copy', stream, out, '--quiet']).status).toBe(0);
    expect(readFileSync(out).equals(sample.bytes)).toBe(true);
    expect(spawnSync('stat', ['-c', '%a', out]).stdout.toString().trim()).toBe('600');
    expect(folderOf(stream)).toEqual(['copy.mig', 'vm.mig']);
  });
});

describe('certs never replaces credentials silently', () => {
  test('a second run is refused; --reuse-ca keeps the CA; --force replaces it', () => {
    const certs = join(mkdtempSync(join(dir, 'certs-')), 'creds');
    expect(run(['certs', '-o', certs, '--name', 'localhost', '--days', '2']).status).toBe(0);
    const ca = readFileSync(join(certs, 'ca.pem'), 'utf8');
    const server = readFileSync(join(certs, 'server.pem'), 'utf8');
    const again = run(['certs', '-o', certs, '--name', 'localhost']);
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/already holds credentials.*refusing to replace/);
    expect(readFileSync(join(certs, 'ca.pem'), 'utf8')).toBe(ca);

    const reused = run(['certs', '-o', certs, '--name', 'vm-host', '--reuse-ca', '--days', '2']);
    expect(reused.status, reused.stderr).toBe(0);
    expect(readFileSync(join(certs, 'ca.pem'), 'utf8')).toBe(ca);
    expect(readFileSync(join(certs, 'server.pem'), 'utf8')).not.toBe(server);

    const forced = run(['certs', '-o', certs, '--force', '--days', '2']);
    expect(forced.status, forced.stderr).toBe(0);
    expect(readFileSync(join(certs, 'ca.pem'), 'utf8')).not.toBe(ca);

    const noCa = run(['certs', '-o', join(certs, '..', 'empty'), '--reuse-ca']);
    expect(noCa.status).toBe(2);
    expect(noCa.stderr).toMatch(/--reuse-ca: no CA/);
  }, 60_000);
});
