/**
 * Reading a whole disk image over NBD: migstream's TypeScript client (src/nbd) against QEMU's
 * own client (`qemu-img convert` to its null-co driver, the block layer's /dev/null) and libnbd's (`nbdcopy` to null:, Debian's
 * libnbd-bin, installed by this bench when missing and running as root), in the same run,
 * from the same `qemu-nbd` (QEMU 7.2, read-only, a Unix socket, the image in the page cache).
 *
 *   npm run bench:nbd -- [--size MIB] [--rounds N] [--json]
 *
 * Every row is a whole process, timed as bench/process-timing.ts times the other benches
 * (fork to wait, GNU time's rusage). migstream's client runs as `node -e` over the built
 * package (dist/): it reads the image front to back over C connections with N requests of SIZE
 * in flight on each, into new buffers or each lane's one reused buffer, and throws the bytes
 * away, as the baselines do. "net" takes the start-up off: Node's start-up and the package's import (`node -e` importing dist/nbd/client.js, timed in the same rounds)
 * for migstream's rows, nothing for the baselines (their start-up is a few ms and is left in).
 * Rounds run every command once each, in turn; the fastest run of each counts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { qemuTool } from '../src/qemu/versions.js';
import { REPO_ROOT } from '../test/fixtures/meta.js';
import { runOnce, tool, type Command, type ProcessRun } from './process-timing.js';
import { writeRandomImage } from './random-data.js';

const MiB = 1024 * 1024;
const args = process.argv.slice(2);
const option = (name: string, fallback: number): number => {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const SIZE_MIB = option('--size', 512);
const ROUNDS = option('--rounds', 3);
const JSON_OUT = args.includes('--json');
const log = (line: string): void => void process.stderr.write(`bench:nbd: ${line}\n`);

function ensureNbdcopy(): boolean {
  const present = (): boolean => spawnSync('nbdcopy', ['--version'], { stdio: 'ignore' }).status === 0;
  if (present()) return true;
  if (process.getuid?.() === 0) {
    log('installing libnbd-bin (nbdcopy) with apt-get');
    spawnSync('apt-get', ['install', '-y', 'libnbd-bin'], { stdio: ['ignore', 'inherit', 'inherit'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    if (present()) return true;
  }
  log('nbdcopy is missing (apt-get install libnbd-bin): its rows are left out');
  return false;
}

const CLIENT = pathToFileURL(join(REPO_ROOT, 'dist', 'nbd', 'client.js')).href;

/**
 * node -e: the image read front to back over `connections` connections, each with `inflight`
 * requests of `request` bytes at a time (one shared cursor: the next request takes the next range).
 */
const READER = `
const { NbdClient } = await import(${JSON.stringify(CLIENT)});
const [path, connections, inflight, request, reuse] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3]), Number(process.argv[4]), process.argv[5] === 'reuse'];
if (path === 'import-only') process.exit(0);
const clients = await Promise.all(Array.from({ length: connections }, () => NbdClient.connect({ path, exportName: 'disk' })));
const nbd = clients[0];
let next = 0;
let bytes = 0;
let check = 0;
async function lane(client) {
  const buffer = reuse ? Buffer.allocUnsafe(request) : undefined;
  while (next < nbd.size) {
    const offset = next;
    const length = Math.min(request, nbd.size - offset);
    next += length;
    const data = await client.read(offset, length, length === request ? buffer : undefined);
    bytes += data.length;
    check ^= data[length - 1];
  }
}
await Promise.all(clients.flatMap((client) => Array.from({ length: inflight }, () => lane(client))));
await Promise.all(clients.map((client) => client.close()));
if (bytes !== nbd.size) { console.error('read ' + bytes + ' of ' + nbd.size); process.exit(3); }
`;

const nodeCommand = (label: string, argv: string[]): Command => ({ ...tool(label, [process.execPath, '--input-type=module', '-e', READER, ...argv]), migstream: true });

interface Row {
  label: string;
  seconds: number;
  netSeconds: number;
  mibPerSecond: number;
  cpuSeconds: number;
  maxRssMiB: number;
}

async function main(): Promise<void> {
  const haveNbdcopy = ensureNbdcopy();
  const scratch = mkdtempSync(join(tmpdir(), 'migstream-bench-nbd-'));
  const image = join(scratch, 'disk.raw');
  const socket = join(scratch, 'nbd.sock');
  const pidFile = join(scratch, 'nbd.pid');
  let serverPid: number | undefined;
  try {
    log(`writing a ${SIZE_MIB} MiB raw image, all allocated`);
    writeRandomImage(image, SIZE_MIB * MiB);
    // -e 8: nbdcopy opens several connections; -r: read-only, so qemu-nbd offers multi-conn.
    execFileSync(qemuTool('7.2', 'qemu-nbd'), ['--fork', '--persistent', '--pid-file', pidFile, '-r', '-e', '8', '-f', 'raw', '-x', 'disk', '-k', socket, image]);
    serverPid = Number(readFileSync(pidFile, 'utf8').trim());
    const uri = `nbd+unix:///disk?socket=${socket}`;

    const startup = nodeCommand('node + import (start-up)', ['import-only']);
    const commands: Command[] = [
      // /dev/null has no size; QEMU's null-co driver is its block-layer /dev/null (writes dropped).
      tool("qemu-img convert nbd → null-co (QEMU's /dev/null)", [qemuTool('7.2', 'qemu-img'), 'convert', '-n', '-f', 'raw', uri, '--target-image-opts', `driver=null-co,size=${SIZE_MIB * MiB}`]),
      ...(haveNbdcopy
        ? [
            tool('nbdcopy → null: (defaults: 4 connections × 64 requests × 256 KiB)', ['nbdcopy', uri, 'null:']),
            tool('nbdcopy → null: (1 connection × 16 requests × 2 MiB)', ['nbdcopy', '--connections=1', '--requests=16', '--request-size=2097152', uri, 'null:']),
          ]
        : []),
      nodeCommand('migstream NbdClient, 1 connection × 1 request × 2 MiB, new buffers', [socket, '1', '1', String(2 * MiB)]),
      nodeCommand('migstream NbdClient, 1 connection × 1 request × 2 MiB, reused buffers', [socket, '1', '1', String(2 * MiB), 'reuse']),
      nodeCommand('migstream NbdClient, 1 connection × 4 requests × 2 MiB, reused', [socket, '1', '4', String(2 * MiB), 'reuse']),
      nodeCommand('migstream NbdClient, 1 connection × 16 requests × 2 MiB, reused', [socket, '1', '16', String(2 * MiB), 'reuse']),
      nodeCommand('migstream NbdClient, 1 connection × 16 requests × 256 KiB, reused', [socket, '1', '16', String(256 * 1024), 'reuse']),
      nodeCommand('migstream NbdClient, 4 connections × 64 requests × 256 KiB, reused', [socket, '4', '64', String(256 * 1024), 'reuse']),
    ];
    // Warm the page cache and qemu-nbd once.
    runOnce(commands[0]!, scratch);
    const runs = commands.map((): ProcessRun[] => []);
    const startups: ProcessRun[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const [i, command] of commands.entries()) {
        log(`round ${round + 1}/${ROUNDS}: ${command.label}`);
        if (command.migstream) startups.push(runOnce(startup, scratch));
        runs[i]!.push(runOnce(command, scratch));
      }
    }
    const fastest = (list: ProcessRun[]): ProcessRun => list.reduce((a, b) => (b.seconds < a.seconds ? b : a));
    const start = fastest(startups);
    const bytes = SIZE_MIB * MiB;
    const rows: Row[] = commands.map((command, i) => {
      const best = fastest(runs[i]!);
      const netSeconds = command.migstream ? Math.max(1e-6, best.seconds - start.seconds) : best.seconds;
      const cpu = best.userSeconds + best.systemSeconds - (command.migstream ? start.userSeconds + start.systemSeconds : 0);
      return { label: command.label, seconds: best.seconds, netSeconds, mibPerSecond: bytes / MiB / netSeconds, cpuSeconds: cpu, maxRssMiB: best.maxRssKiB / 1024 };
    });
    if (JSON_OUT) {
      console.log(JSON.stringify({ sizeMiB: SIZE_MIB, rounds: ROUNDS, startupSeconds: start.seconds, rows }, null, 2));
      return;
    }
    console.log(`\nReading a ${SIZE_MIB} MiB raw image from qemu-nbd 7.2 (Unix socket, page cache warm), best of ${ROUNDS}, whole processes`);
    console.log(`node start-up + import of dist/nbd/client.js: ${(start.seconds * 1000).toFixed(0)} ms (taken off migstream's rows as "net")\n`);
    console.log('| reader | wall s | net s | MiB/s (net) | CPU s (user+sys, net) | max RSS MiB |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      console.log(`| ${r.label} | ${r.seconds.toFixed(3)} | ${r.netSeconds.toFixed(3)} | ${r.mibPerSecond.toFixed(0)} | ${r.cpuSeconds.toFixed(2)} | ${r.maxRssMiB.toFixed(0)} |`);
    }
  } finally {
    if (serverPid !== undefined) {
      try {
        process.kill(serverPid, 'SIGTERM');
      } catch {
        // gone
      }
    }
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
