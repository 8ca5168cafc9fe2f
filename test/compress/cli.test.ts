/**
 * compress, decompress and compact as QEMU's exec: programs run them: bin/migstream (the
 * compiled dist/, built by `npm test`'s pretest), files and pipes, stderr only for progress and
 * summaries, exit status 1 with frame and offset on a damaged container, 2 on bad usage.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { busyStream } from '../helpers/busy-stream.js';

const BIN = join(import.meta.dirname, '../../bin/migstream');

function run(args: string[], input?: Buffer): { status: number | null; stdout: Buffer; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { input, maxBuffer: 256 << 20 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr.toString() };
}

const stream = busyStream().bytes;
const dir = mkdtempSync(join(tmpdir(), 'migstream-compress-cli-'));
const streamPath = join(dir, 'busy.mig');
writeFileSync(streamPath, stream);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('migstream compress / decompress / compact', () => {
  test('--help', () => {
    for (const command of ['compress', 'decompress', 'compact', 'bench']) {
      const help = run([command, '--help']);
      expect(help.status, command).toBe(0);
      expect(help.stdout.toString()).toContain(`Usage: migstream ${command}`);
    }
    expect(run(['--help']).stdout.toString()).toMatch(/compress.*\n.*decompress.*\n.*compact/);
  });

  test('file to file, then back', () => {
    const packed = join(dir, 'busy.msz');
    const restored = join(dir, 'busy.out');
    const c = run(['compress', streamPath, '-o', packed, '-c', 'lz4', '-j', '2']);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stderr).toMatch(/^migstream compress: 3\.8 MiB in, .* out, ratio \d+\.\d\d, \d+ MB\/s in .*lz4 level 1, 2 threads/);
    expect(readFileSync(packed).length).toBeLessThan(stream.length / 2);
    const d = run(['decompress', packed, '-o', restored]);
    expect(d.status, d.stderr).toBe(0);
    expect(d.stderr).toMatch(/frames \(lz4\) checked/);
    expect(readFileSync(restored).equals(stream)).toBe(true);
  });

  test('stdin to stdout, as exec: runs it, with progress on stderr only', () => {
    const c = run(['compress', '--progress', '-c', 'zstd', '-l', '5'], stream);
    expect(c.status, c.stderr).toBe(0);
    expect(c.stderr).toMatch(/in, .* out, ratio/);
    const d = run(['decompress', '--progress', '-j', '1'], c.stdout);
    expect(d.status, d.stderr).toBe(0);
    expect(d.stdout.equals(stream)).toBe(true);
    const quiet = run(['decompress', '--quiet', '-'], c.stdout);
    expect(quiet.stderr).toBe('');
    expect(quiet.stdout.equals(stream)).toBe(true);
  });

  test('a damaged container: exit 1, the frame and offset named, and not the whole stream out', () => {
    const packed = run(['compress', '--quiet', '--frame-size', '64K'], stream).stdout;
    const damaged = Buffer.from(packed);
    damaged[Math.floor(damaged.length * 0.6)]! ^= 0xff;
    const d = run(['decompress'], damaged);
    expect(d.status).toBe(1);
    expect(d.stderr).toMatch(/^migstream decompress: error: container frame \d+ \((META|PAYLOAD)\) at offset \d+ \(0x[0-9a-f]+\): /);
    expect(d.stdout.length).toBeLessThan(stream.length);
    // From a file, direct mode (direct.ts) reads and writes on its own: same checks, same message.
    const damagedPath = join(dir, 'damaged.msz');
    writeFileSync(damagedPath, damaged);
    const fromFile = run(['decompress', damagedPath]);
    expect(fromFile.status).toBe(1);
    expect(fromFile.stderr).toMatch(/^migstream decompress: error: container frame \d+ \((META|PAYLOAD)\) at offset \d+ \(0x[0-9a-f]+\): /);
    expect(fromFile.stdout.length).toBeLessThan(stream.length);
    const truncated = run(['decompress'], packed.subarray(0, packed.length - 20));
    expect(truncated.status).toBe(1);
    expect(truncated.stderr).toMatch(/container frame \d+ at offset \d+ .*the input ends inside a frame header/);
    expect(truncated.stdout.length).toBeLessThan(stream.length);
  });

  test('a container file as stdin ("decompress < vm.msz") is read directly, from its first byte', () => {
    const packed = join(dir, 'stdin.msz');
    expect(run(['compress', '--quiet', streamPath, '-o', packed]).status).toBe(0);
    const fd = openSync(packed, 'r');
    try {
      // The descriptor's offset is left at the end: only positional reads (direct.ts) see the
      // container; a stream read of stdin would find it empty.
      readSync(fd, Buffer.alloc(statSync(packed).size));
      const d = spawnSync(process.execPath, [BIN, 'decompress', '--quiet'], { stdio: [fd, 'pipe', 'pipe'], maxBuffer: 256 << 20 });
      expect(d.status, d.stderr.toString()).toBe(0);
      expect(d.stdout.equals(stream)).toBe(true);
    } finally {
      closeSync(fd);
    }
    const damaged = readFileSync(packed);
    damaged[Math.floor(damaged.length * 0.6)]! ^= 0xff;
    writeFileSync(packed, damaged);
    const bad = openSync(packed, 'r');
    try {
      const d = spawnSync(process.execPath, [BIN, 'decompress', '-'], { stdio: [bad, 'pipe', 'pipe'], maxBuffer: 256 << 20 });
      expect(d.status).toBe(1);
      expect(d.stderr.toString()).toMatch(/^migstream decompress: error: container frame \d+ \((META|PAYLOAD)\) at offset \d+ \(0x[0-9a-f]+\): /);
      expect(d.stdout.length).toBeLessThan(stream.length);
    } finally {
      closeSync(bad);
    }
  });

  test('a reader that goes away early (QEMU failing its load): exit 1 naming EPIPE, from a file and from a pipe', async () => {
    const packed = join(dir, 'epipe.msz');
    expect(run(['compress', '--quiet', streamPath, '-o', packed]).status).toBe(0);
    for (const args of [
      ['decompress', packed],
      ['decompress', '-'],
    ]) {
      const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
      if (args[1] === '-') child.stdin.end(readFileSync(packed));
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      // Read the first bytes, then close the pipe as a dying reader would.
      child.stdout.once('data', () => child.stdout.destroy());
      const status = await new Promise<number | null>((resolve) => child.on('exit', resolve));
      expect(status, `${args.join(' ')}: ${stderr}`).toBe(1);
      expect(stderr).toMatch(/^migstream decompress: error: the reader closed the output early \(EPIPE\)/);
    }
  });

  test('inspect and extract-ram read a container as the stream it holds, from a file and from stdin', () => {
    const packed = join(dir, 'inspect.msz');
    expect(run(['compress', '--quiet', '-c', 'lz4', streamPath, '-o', packed]).status).toBe(0);
    const report = (args: string[], input?: Buffer): Record<string, unknown> => {
      const r = run(['inspect', '--json', ...args], input);
      expect(r.status, r.stderr).toBe(0);
      const { input: name, decodeSeconds, decodeMBps, ...rest } = JSON.parse(r.stdout.toString()) as Record<string, unknown>;
      expect([typeof name, typeof decodeSeconds, typeof decodeMBps]).toEqual(['string', 'number', 'number']);
      return { name, ...rest };
    };
    const { name: streamName, ...fromStream } = report([streamPath]);
    const { name: fileName, ...fromContainer } = report([packed]);
    const { name: stdinName, ...fromStdin } = report(['-'], readFileSync(packed));
    expect(fromStream.totalBytes).toBe(stream.length);
    expect(fromContainer).toEqual(fromStream);
    expect(fromStdin).toEqual(fromStream);
    expect([streamName, fileName, stdinName]).toEqual([streamPath, `${packed} (migstream container, decompressed)`, 'stdin (migstream container, decompressed)']);

    const extract = (input: string, out: string): Record<string, Buffer> => {
      const r = run(['extract-ram', input, '-o', out, '--json']);
      expect(r.status, r.stderr).toBe(0);
      const result = JSON.parse(r.stdout.toString()) as { blocks: { idstr: string; path: string }[] };
      return Object.fromEntries(result.blocks.map((block) => [block.idstr, readFileSync(block.path)]));
    };
    const ram = extract(streamPath, join(dir, 'ram-stream'));
    const fromPacked = extract(packed, join(dir, 'ram-container'));
    expect(Object.keys(ram).length).toBeGreaterThan(0);
    expect(Object.keys(fromPacked)).toEqual(Object.keys(ram));
    // Buffer#equals: toEqual would compare megabytes element by element.
    for (const [idstr, bytes] of Object.entries(ram)) expect(fromPacked[idstr]!.equals(bytes), idstr).toBe(true);

    // A damaged container is reported as such, naming frame and offset.
    const damaged = readFileSync(packed);
    damaged[Math.floor(damaged.length * 0.6)]! ^= 0xff;
    const bad = run(['inspect'], damaged);
    expect(bad.status).toBe(1);
    expect(bad.stdout.toString()).toMatch(/ERROR +container frame \d+ \((META|PAYLOAD)\) at offset \d+/);
  });

  test('dedup by default, --no-dedup and --dedup-window; the same stream back from every one', () => {
    const summaries: string[] = [];
    for (const flags of [[], ['--no-dedup'], ['--dedup-window', '16'], ['--dedup']]) {
      const c = run(['compress', '-c', 'zstd', ...flags], stream);
      expect(c.status, c.stderr).toBe(0);
      summaries.push(c.stderr);
      const path = join(dir, 'dedup.msz');
      writeFileSync(path, c.stdout);
      const d = run(['decompress', '--quiet', path]);
      expect(d.status, d.stderr).toBe(0);
      expect(d.stdout.equals(stream), flags.join(' ')).toBe(true);
    }
    expect(summaries[0]).toMatch(/zstd level 3, \d+ threads, \d+ page references/);
    expect(summaries[1]).not.toMatch(/page references/);
    expect(run(['compress', '--no-dedup', '--dedup-window', '8'], stream).status).toBe(2);
  });

  test('usage errors exit 2', () => {
    expect(run(['compress', '-c', 'brotli'], stream).status).toBe(2);
    expect(run(['compress', '-l', 'high'], stream).status).toBe(2);
    expect(run(['compress', '-j', '0'], stream).status).toBe(2);
    expect(run(['compress', '--frame-size', 'big'], stream).status).toBe(2);
    expect(run(['decompress', '--bogus']).status).toBe(2);
  });

  test('a non-stream input is refused unless --raw', () => {
    const text = Buffer.from('hello, this is not a migration stream\n'.repeat(1000));
    const refused = run(['compress'], text);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/magic/);
    const raw = run(['compress', '--raw', '--quiet'], text);
    expect(raw.status, raw.stderr).toBe(0);
    expect(run(['decompress', '--quiet'], raw.stdout).stdout.equals(text)).toBe(true);
  });

  test('compact and compress --compact, from a file and from stdin', () => {
    const compactPath = join(dir, 'compact.mig');
    const fromFile = run(['compact', streamPath, compactPath]);
    expect(fromFile.status, fromFile.stderr).toBe(0);
    expect(fromFile.stderr).toMatch(/page records -> \d+/);
    const compacted = readFileSync(compactPath);
    expect(compacted.length).toBeLessThan(stream.length);
    const fromStdin = run(['compact', '--quiet'], stream);
    expect(fromStdin.stdout.equals(compacted)).toBe(true);
    const packed = run(['compress', '--compact', '--quiet', '-c', 'lz4'], stream);
    expect(packed.status, packed.stderr).toBe(0);
    expect(run(['decompress', '--quiet'], packed.stdout).stdout.equals(compacted)).toBe(true);
  });
});
