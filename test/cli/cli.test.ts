/**
 * The migstream command as a user runs it: bin/migstream (the compiled dist/, built by
 * `npm test`'s pretest) on a hand-built stream with every record kind.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { sampleStream } from '../helpers/sample-stream.js';

const BIN = join(import.meta.dirname, '../../bin/migstream');

function run(args: string[], input?: Buffer): { status: number | null; stdout: Buffer; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { input, maxBuffer: 64 << 20 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr.toString() };
}

const sample = sampleStream();
const dir = mkdtempSync(join(tmpdir(), 'migstream-cli-'));
const streamPath = join(dir, 'sample.mig');
writeFileSync(streamPath, sample.bytes);

describe('migstream CLI', () => {
  test('--help for the tool and every command', () => {
    const top = run(['--help']);
    expect(top.status).toBe(0);
    expect(top.stdout.toString()).toMatch(/copy.*\n.*inspect.*\n.*extract-ram/);
    for (const command of ['copy', 'inspect', 'extract-ram']) {
      const help = run([command, '--help']);
      expect(help.status, command).toBe(0);
      expect(help.stdout.toString()).toContain(`Usage: migstream ${command}`);
    }
  });

  test('unknown commands and options are usage errors (exit 2)', () => {
    expect(run(['frobnicate']).status).toBe(2);
    const bad = run(['inspect', '--bogus', streamPath]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--bogus/);
  });

  test('hot-page dropping options: a bad size, or a hold with no link rate to size it, is a usage error', () => {
    const send = run(['send', '127.0.0.1:9', streamPath, '--insecure', '--hold', 'lots']);
    expect(send.status).toBe(2);
    expect(send.stderr).toMatch(/bad --hold "lots"/);
    const migrate = run(['migrate', '--qmp', join(dir, 'none.sock'), '--to', '127.0.0.1:9', '--insecure', '--no-probe', '--hold', '100']);
    expect(migrate.status).toBe(2);
    expect(migrate.stderr).toMatch(/--hold needs a link rate/);
  });

  test('copy file to file and stdin to stdout are byte-identical', () => {
    const out = join(dir, 'copy.mig');
    const toFile = run(['copy', streamPath, out]);
    expect(toFile.status, toFile.stderr).toBe(0);
    expect(readFileSync(out).equals(sample.bytes)).toBe(true);
    const piped = run(['copy', '--quiet'], sample.bytes);
    expect(piped.status, piped.stderr).toBe(0);
    expect(piped.stdout.equals(sample.bytes)).toBe(true);
    expect(piped.stderr).toBe('');
  });

  test('copy fails loudly on a damaged stream, naming offset and section', () => {
    const damaged = Buffer.from(sample.bytes);
    // The first byte after the START section's header and MEM_SIZE word's high half: turn the
    // MEM_SIZE flag into an unknown one.
    const at = sample.bytes.indexOf(Buffer.from('ram', 'latin1')) + 3 + 8 + 7;
    damaged[at] = damaged[at]! | 0x01;
    const result = run(['copy', '-', '-'], damaged);
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/error: .*offset \d+ .*section 2 "ram"/);
  });

  test('copy of a truncated stream exits 1 with ERR_TRUNCATED-style message', () => {
    const result = run(['copy', '-', '-'], sample.bytes.subarray(0, sample.bytes.length - 100));
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/stream ends inside a record/);
  });

  test('inspect --json counts every record kind', () => {
    const result = run(['inspect', '--json', streamPath]);
    expect(result.status, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout.toString());
    expect(report).toMatchObject({
      totalBytes: sample.bytes.length,
      machineType: 'pc-i440fx-7.2',
      complete: true,
      error: null,
      ram: {
        totals: {
          normal: sample.counts.normal,
          zero: sample.counts.zero,
          xbzrle: sample.counts.xbzrle,
          compressed: sample.counts.compressed,
          iterations: sample.counts.iterations,
          bytes: expect.any(Number),
        },
      },
      vmdesc: { devices: 2 },
    });
    expect(report.devices).toHaveLength(sample.counts.devices);
    expect(report.ram.blocks.map((b: { idstr: string }) => b.idstr)).toEqual(Object.keys(sample.ram));
  });

  test('inspect text output and a damaged stream report', () => {
    const text = run(['inspect', streamPath]);
    expect(text.status).toBe(0);
    expect(text.stdout.toString()).toMatch(/pages +6 normal, 3 zero, 1 xbzrle/);
    const broken = run(['inspect', '-'], sample.bytes.subarray(0, 200));
    expect(broken.status).toBe(1);
    expect(broken.stdout.toString()).toMatch(/ERROR +.*stream ends inside a record/);
  });

  test('inspect --fields splits device state into the fields the vmdesc describes', () => {
    const result = run(['inspect', '--fields', '--json', streamPath]);
    expect(result.status, result.stderr).toBe(0);
    const { deviceFields } = JSON.parse(result.stdout.toString());
    expect(deviceFields.map((d: { idstr: string; exact: boolean }) => [d.idstr, d.exact])).toEqual([
      ['timer', true],
      ['cpu_common', true],
    ]);
    expect(deviceFields[0].fields.map((f: { path: string; value: unknown }) => [f.path, f.value])).toEqual([
      ['cpu_ticks_offset', 12345],
      ['enabled', true],
    ]);
    expect(run(['inspect', '--fields', streamPath]).stdout.toString()).toMatch(/2 of 2 device sections split exactly/);
  });

  test('extract-ram writes each block with its final contents', () => {
    const out = join(dir, 'ram');
    const result = run(['extract-ram', streamPath, '-o', out, '--json']);
    expect(result.status, result.stderr).toBe(0);
    const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8')) as { idstr: string; file: string }[];
    expect(index.map((entry) => entry.idstr)).toEqual(Object.keys(sample.ram));
    for (const entry of index) {
      expect(readFileSync(join(out, entry.file)).equals(sample.ram[entry.idstr]!), entry.idstr).toBe(true);
    }
  });

  test('extract-ram without -o is a usage error', () => {
    expect(run(['extract-ram', streamPath]).status).toBe(2);
  });
});
