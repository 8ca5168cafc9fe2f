/**
 * `--mig-block-size` on the commands that decode a stream (copy, inspect, extract-ram, compress,
 * compact, send), on a 64 KiB-chunk block stream from the byte builder
 * (test/helpers/block-bytes.ts): found and said, given, refused when wrong.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { chunk, qemuBodies } from '../helpers/block-bytes.js';
import { Bytes, configuration, footer, header, sectionStart } from '../helpers/stream-bytes.js';
import { run as runAsync, startRecv } from '../helpers/transport.js';

const BIN = join(import.meta.dirname, '../../bin/migstream');
const KIB = 1024;

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** A block stream of a 2.5 MiB disk in 64 KiB chunks (every other chunk zero). */
function stream64k(): Buffer {
  const size = 64 * KIB;
  const content = Buffer.alloc(40 * size);
  for (let i = 0; i < 40; i += 2) chunk(i + 1, size).copy(content, i * size);
  const bodies = qemuBodies([{ device: 'drive-virtio-disk0', size: content.length, content }], size, { zeroBlocks: true });
  const b = configuration(header(new Bytes()), 'pc-i440fx-7.2');
  bodies.forEach((body, i) => {
    if (i === 0) sectionStart(b, 1, 3, 'block', 0, 1);
    else b.u8(i === bodies.length - 1 ? 0x03 : 0x02).be32(3);
    footer(b.raw(body), 3);
  });
  return b.u8(0x00).build();
}

describe('--mig-block-size', () => {
  const dir = mkdtempSync(join(tmpdir(), 'migstream-mbs-'));
  const file = join(dir, 's64k.mig');
  const bytes = stream64k();
  writeFileSync(file, bytes);
  const dataOffset = bytes.indexOf(Buffer.from('\x12drive-virtio-disk0', 'latin1')) - 8;

  test('inspect finds 64 KiB chunks from the stream and says so', () => {
    const result = run(['inspect', file, '--json']);
    expect(result.status).toBe(0);
    const report = JSON.parse(result.stdout) as { block: { chunkSize: number; chunkSizeSource: string; devices: { extentBytes: number; dataChunks: number; zeroChunks: number }[] } };
    expect(report.block).toMatchObject({ chunkSize: 64 * KIB, chunkSizeSource: 'stream' });
    expect(report.block.devices[0]).toMatchObject({ dataChunks: 20, zeroChunks: 20, extentBytes: 40 * 64 * KIB });
    const text = run(['inspect', file]);
    expect(text.stdout).toMatch(/chunks of 64 KiB \(found from the stream\)/);
  });

  test('inspect with the size given says so', () => {
    const result = run(['inspect', file, '--json', '--mig-block-size', '64K']);
    expect(result.status).toBe(0);
    expect(JSON.parse(result.stdout).block).toMatchObject({ chunkSize: 64 * KIB, chunkSizeSource: 'option' });
  });

  test('copy gives the same bytes, found or given', () => {
    for (const extra of [[], ['--mig-block-size', '65536']]) {
      const out = join(dir, `out${extra.length}.mig`);
      const result = run(['copy', file, out, '--json', ...extra]);
      expect(result.status).toBe(0);
      expect(readFileSync(out).equals(bytes)).toBe(true);
      expect(JSON.parse(result.stdout)).toMatchObject({ blockSize: 64 * KIB, blockSizeSource: extra.length === 0 ? 'stream' : 'option' });
    }
  });

  test('compress (plain and --compact) and compact take the size; the stream comes back byte for byte', () => {
    for (const extra of [[], ['--mig-block-size', '64K']]) {
      const container = join(dir, `c${extra.length}.msz`);
      expect(run(['compress', file, '-o', container, '-c', 'lz4', ...extra]).status).toBe(0);
      const restored = join(dir, `r${extra.length}.mig`);
      expect(run(['decompress', container, '-o', restored]).status).toBe(0);
      expect(readFileSync(restored).equals(bytes)).toBe(true);
      // No RAM to compact: the block records go through as they were.
      const compacted = join(dir, `k${extra.length}.mig`);
      const compact = run(['compact', file, compacted, ...extra]);
      expect(compact.status, compact.stderr).toBe(0);
      expect(readFileSync(compacted).equals(bytes)).toBe(true);
      expect(run(['compress', file, '-o', join(dir, `kc${extra.length}.msz`), '--compact', ...extra]).status).toBe(0);
    }
  });

  test('send takes the size: given right, recv writes the stream; given wrong, send fails naming the offset', async () => {
    const out = join(dir, 'sent.mig');
    const recv = await startRecv(['--insecure', '-o', out, '--quiet']);
    const sent = await runAsync(['send', `127.0.0.1:${recv.port}`, file, '--insecure', '--quiet', '--mig-block-size', '64K']).exited;
    expect(sent.code, sent.stderr).toBe(0);
    expect((await recv.exited).code).toBe(0);
    expect(readFileSync(out).equals(bytes)).toBe(true);

    const recv2 = await startRecv(['--insecure', '-o', join(dir, 'sent2.mig'), '--quiet']);
    const wrong = await runAsync(['send', `127.0.0.1:${recv2.port}`, file, '--insecure', '--quiet', '--mig-block-size', '1M']).exited;
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`at offset ${dataOffset}`);
    expect(wrong.stderr).toContain('mig-block-size 1048576');
    expect((await recv2.exited).code).toBe(1);
  });

  test.each([
    ['copy', [file, join(dir, 'wrong.mig')]],
    ['inspect', [file]],
    ['extract-ram', [file, '-o', join(dir, 'ram')]],
    ['compress', [file, '-o', join(dir, 'wrong.msz')]],
    ['compact', [file, join(dir, 'wrong-compact.mig')]],
  ])('%s refuses a wrong size with one line naming the offset and the section (exit 1)', (command, args) => {
    const result = run([command, ...args, '--mig-block-size', '1M']);
    expect(result.status).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`migstream ${command}: error:`);
    expect(lines[0]).toContain(`at offset ${dataOffset}`);
    expect(lines[0]).toContain('section 3 "block"');
    expect(lines[0]).toContain('mig-block-size 1048576');
  });

  test.each([['3K'], ['32M'], ['0'], ['lots'], ['4097']])('a size of %s is bad usage (exit 2, one line)', (value) => {
    for (const command of ['copy', 'inspect', 'extract-ram', 'compress', 'compact', 'send']) {
      const target = command === 'send' ? ['127.0.0.1:9'] : [];
      const output = command === 'extract-ram' || command === 'compress' ? ['-o', join(dir, 'ram')] : [];
      const result = run([command, ...target, file, ...output, '--mig-block-size', value, ...(command === 'send' ? ['--insecure'] : [])]);
      expect(result.status).toBe(2);
      expect(result.stderr).toBe(`migstream ${command}: --mig-block-size must be a power of two from 4K to 16M (4096..16777216), got "${value}" (see "migstream ${command} --help")\n`);
    }
  });
});
