/**
 * NbdClient against QEMU's own NBD servers, 7.2 (Debian's) and 10.0 (.cache/qemu-10.0):
 * `qemu-nbd` serving a raw and a qcow2 image of known content, over a Unix socket (and TCP
 * once per version): read back byte-exact, write then read, write zeroes, and base:allocation
 * against the image's layout and against `qemu-img map`; and a qcow2 dirty bitmap made with
 * `qemu-img bitmap --add`, written by `qemu-io` and then through the client, whose
 * `qemu:dirty-bitmap:b0` block status is exactly the written ranges at its granularity.
 * A missing QEMU tool fails these tests; nothing is skipped.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { NbdClient, type Extent } from '../../src/nbd/client.js';
import { NbdRefusedError } from '../../src/nbd/errors.js';
import { QEMU_VERSIONS, qemu10Dir, qemuTool, type QemuVersion } from '../../src/qemu/versions.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 8 * MiB;
const GRANULARITY = 64 * KiB;

const dir = mkdtempSync(join(tmpdir(), 'migstream-nbd-qemu-'));
const servers: number[] = [];
afterAll(() => {
  for (const pid of servers) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

const qemuIo = (version: QemuVersion): string => (version === '10.0' ? join(qemu10Dir(), 'bin', 'qemu-io') : 'qemu-io');
const run = (command: string, args: string[]): string => execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** Bytes the image holds: data at [1 MiB, 1 MiB + 192 KiB) and [5 MiB + 4 KiB, 5 MiB + 8 KiB), zero elsewhere. */
const DATA: [number, number][] = [
  [1 * MiB, 192 * KiB],
  [5 * MiB + 4 * KiB, 4 * KiB],
];
function content(): Buffer {
  const out = Buffer.alloc(SIZE);
  for (const [offset, length] of DATA) for (let i = 0; i < length; i++) out[offset + i] = ((offset + i) * 131 + 7) % 251 || 1;
  return out;
}
const CONTENT = content();

/** A sparse raw file with CONTENT, and a qcow2 converted from it. */
function makeImages(name: string, version: QemuVersion): { raw: string; qcow2: string } {
  const raw = join(dir, `${name}.raw`);
  const fd = openSync(raw, 'w');
  truncateSync(raw, SIZE);
  for (const [offset, length] of DATA) writeSync(fd, CONTENT, offset, length, offset);
  closeSync(fd);
  const qcow2 = join(dir, `${name}.qcow2`);
  run(qemuTool(version, 'qemu-img'), ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  return { raw, qcow2 };
}

let serial = 0;
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Starts qemu-nbd on `image` (it forks once its socket listens); where to connect. */
async function serve(version: QemuVersion, image: string, format: 'raw' | 'qcow2', extra: string[] = [], tcp = false): Promise<{ path: string } | { host: string; port: number }> {
  const n = serial++;
  const pidFile = join(dir, `nbd${n}.pid`);
  const path = join(dir, `nbd${n}.sock`);
  const port = tcp ? await freePort() : 0;
  const where = tcp ? ['-b', '127.0.0.1', '-p', String(port)] : ['-k', path];
  run(qemuTool(version, 'qemu-nbd'), ['--fork', '--persistent', '--pid-file', pidFile, '-f', format, '-x', 'disk', '--cache=writeback', ...where, ...extra, image]);
  servers.push(Number(readFileSync(pidFile, 'utf8').trim()));
  return tcp ? { host: '127.0.0.1', port } : { path };
}

/** base:allocation as `qemu-img map` sees the same image: HOLE where no data, ZERO where zero. */
function qemuImgMap(version: QemuVersion, image: string, format: string): Extent[] {
  const entries = JSON.parse(run(qemuTool(version, 'qemu-img'), ['map', '--output=json', '-f', format, image])) as { start: number; length: number; data: boolean; zero: boolean }[];
  return join_(entries.map((e) => ({ offset: e.start, length: e.length, flags: (e.data ? 0 : 1) | (e.zero ? 2 : 0) })));
}

/** Adjacent extents of equal flags as one. */
function join_(extents: Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    const last = out[out.length - 1];
    if (last && last.flags === e.flags && last.offset + last.length === e.offset) out[out.length - 1] = { ...last, length: last.length + e.length };
    else out.push(e);
  }
  return out;
}

/** The dirty extents a bitmap of GRANULARITY shows for writes at `ranges`, over SIZE. */
function dirtyExtents(ranges: [number, number][]): Extent[] {
  const dirty = new Uint8Array(SIZE / GRANULARITY);
  for (const [offset, length] of ranges) for (let g = Math.floor(offset / GRANULARITY); g * GRANULARITY < offset + length; g++) dirty[g] = 1;
  return join_(Array.from(dirty, (flag, g) => ({ offset: g * GRANULARITY, length: GRANULARITY, flags: flag })));
}

describe.each(QEMU_VERSIONS)('QEMU %s qemu-nbd', (version) => {
  describe.each(['raw', 'qcow2'] as const)('a %s image', (format) => {
    test('reads back byte-exact, whole and in pipelined pieces', async () => {
      const images = makeImages(`read-${version}-${format}`, version);
      const nbd = await NbdClient.connect({ ...(await serve(version, images[format], format, ['-r'])), exportName: 'disk' });
      expect(nbd.size).toBe(SIZE);
      expect(nbd.readOnly).toBe(true);
      expect(nbd.structuredReplies).toBe(true);
      expect((await nbd.read(0, SIZE)).equals(CONTENT)).toBe(true);
      const pieces = await Promise.all(Array.from({ length: 64 }, (_, i) => nbd.read(i * 128 * KiB, 128 * KiB)));
      expect(Buffer.concat(pieces).equals(CONTENT)).toBe(true);
      await nbd.close();
    });

    test('base:allocation: holes and data where the image has them, as qemu-img map says', async () => {
      const images = makeImages(`alloc-${version}-${format}`, version);
      const nbd = await NbdClient.connect({ ...(await serve(version, images[format], format, ['-r'])), exportName: 'disk', metaContexts: ['base:allocation'] });
      const extents = await nbd.blockStatus(0, SIZE, 'base:allocation');
      await nbd.close();
      expect(extents).toEqual(qemuImgMap(version, images[format], format));
      // Every byte of data lies in an extent not marked zero; every zero-marked byte reads zero.
      for (const e of extents) {
        if (e.flags & 2)
          expect(
            CONTENT.subarray(e.offset, e.offset + e.length).every((b) => b === 0),
            `zero extent at ${e.offset}`,
          ).toBe(true);
      }
      if (format === 'raw') {
        expect(extents).toEqual([
          { offset: 0, length: 1 * MiB, flags: 3 },
          { offset: 1 * MiB, length: 192 * KiB, flags: 0 },
          { offset: 1 * MiB + 192 * KiB, length: 4 * MiB + 4 * KiB - 192 * KiB, flags: 3 },
          { offset: 5 * MiB + 4 * KiB, length: 4 * KiB, flags: 0 },
          { offset: 5 * MiB + 8 * KiB, length: 3 * MiB - 8 * KiB, flags: 3 },
        ]);
      }
    });

    test('write, write zeroes and flush, then read back through a second connection', async () => {
      const images = makeImages(`write-${version}-${format}`, version);
      const where = await serve(version, images[format], format);
      const nbd = await NbdClient.connect({ ...where, exportName: 'disk' });
      const written = Buffer.from(Array.from({ length: 96 * KiB }, (_, i) => (i * 17 + 3) & 0xff));
      await Promise.all([nbd.write(3 * MiB + 4 * KiB, written), nbd.writeZeroes(1 * MiB + 64 * KiB, 64 * KiB)]);
      await nbd.flush();
      await nbd.close();
      const expected = Buffer.from(CONTENT);
      written.copy(expected, 3 * MiB + 4 * KiB);
      expected.fill(0, 1 * MiB + 64 * KiB, 1 * MiB + 128 * KiB);
      const again = await NbdClient.connect({ ...where, exportName: 'disk' });
      expect((await again.read(0, SIZE)).equals(expected)).toBe(true);
      await again.close();
    });
  });

  test('over TCP', async () => {
    const images = makeImages(`tcp-${version}`, version);
    const nbd = await NbdClient.connect({ ...(await serve(version, images.raw, 'raw', ['-r'], true)), exportName: 'disk', metaContexts: ['base:allocation'] });
    expect(nbd.peer).toMatch(/^tcp:127\.0\.0\.1:\d+ export "disk"$/);
    expect((await nbd.read(1 * MiB, 192 * KiB)).equals(CONTENT.subarray(1 * MiB, 1 * MiB + 192 * KiB))).toBe(true);
    await nbd.close();
  });

  test('an export or a meta context the server does not have is refused', async () => {
    const images = makeImages(`refuse-${version}`, version);
    const where = await serve(version, images.raw, 'raw', ['-r']);
    await expect(NbdClient.connect({ ...where, exportName: 'nope' })).rejects.toThrow(NbdRefusedError);
    await expect(NbdClient.connect({ ...where, exportName: 'disk', metaContexts: ['qemu:dirty-bitmap:none'] })).rejects.toThrow(/no meta context "qemu:dirty-bitmap:none"/);
  });

  test("qemu:dirty-bitmap: exactly the ranges written by qemu-io, then through the client, at the bitmap's granularity", async () => {
    const image = join(dir, `bitmap-${version}.qcow2`);
    run(qemuTool(version, 'qemu-img'), ['create', '-q', '-f', 'qcow2', image, String(SIZE)]);
    run(qemuTool(version, 'qemu-img'), ['bitmap', '--add', '-g', String(GRANULARITY), image, 'b0']);
    // 4 KiB inside one granule, 8 KiB across a granule boundary, 64 KiB aligned.
    const byQemuIo: [number, number][] = [
      [1 * MiB + 8 * KiB, 4 * KiB],
      [3 * MiB + 60 * KiB, 8 * KiB],
      [5 * MiB, 64 * KiB],
    ];
    run(qemuIo(version), ['-f', 'qcow2', ...byQemuIo.flatMap(([o, l]) => ['-c', `write -P 0x5a ${o} ${l}`]), image]);

    const where = await serve(version, image, 'qcow2', ['-B', 'b0']);
    const nbd = await NbdClient.connect({ ...where, exportName: 'disk', metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b0'], listMetaContexts: [] });
    expect(nbd.listed).toEqual(expect.arrayContaining(['base:allocation', 'qemu:dirty-bitmap:b0']));
    expect(await nbd.blockStatus(0, SIZE, 'qemu:dirty-bitmap:b0')).toEqual(dirtyExtents(byQemuIo));

    // Writes through the client land in the same (enabled) bitmap.
    const byClient: [number, number][] = [
      [6 * MiB + 100 * KiB, 4 * KiB],
      [7 * MiB, 128 * KiB],
    ];
    await Promise.all([nbd.write(byClient[0]![0], Buffer.alloc(4 * KiB, 1)), nbd.writeZeroes(byClient[1]![0], byClient[1]![1], { noHole: true })]);
    expect(await nbd.blockStatus(0, SIZE, 'qemu:dirty-bitmap:b0')).toEqual(dirtyExtents([...byQemuIo, ...byClient]));
    // A window in the middle of the map: extents start at the request's offset.
    expect(await nbd.blockStatus(3 * MiB + 32 * KiB, 64 * KiB, 'qemu:dirty-bitmap:b0')).toEqual([{ offset: 3 * MiB + 32 * KiB, length: 64 * KiB, flags: 1 }]);
    await nbd.close();
  });
});
