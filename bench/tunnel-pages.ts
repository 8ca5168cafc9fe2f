/**
 * What the tunnel's page-aware compression saves and costs: a recorded QEMU migration stream
 * written into the source tunnel's UNIX socket, as QEMU writes it, and carried to a reader on
 * the destination host, between two network namespaces joined by a veth pair (capped with tc,
 * or not), against a socat relay and the tunnel without compression or with chunk-by-chunk
 * compression alone (--page-cache 0).
 *
 *   npm run bench:tunnel-pages [-- --rates 200,0] [--rounds 2] [--only SUBSTRING[|SUBSTRING…]]
 *                                    (root; needs a test run's fixtures)
 *
 * Inputs: the "dirty" fixture (QEMU 7.2, a guest rewriting 8 MiB, 16 bytes a page, while the
 * migration made many passes: most of its pages are sent again) and the "idle" fixture (one
 * pass: nothing is sent again). Per row: wall time from the writer's start until the reader has
 * everything (both are socat; the tunnel pair is already up, as a service would be), the bytes
 * the destination's veth received, and the pages the tunnel sent as deltas (its migration
 * report). The reader hashes what it got: a row whose bytes differ from the input fails the
 * bench. A recorded stream is not a live migration: a slower carrier here only takes longer,
 * where QEMU would also re-send more; the live view is bench:libvirt and bench:tunnel.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { table } from '../src/cli/format.js';
import { makeQuickStart } from '../src/tls/certs.js';
import { createLink, netnsAvailable, type Link } from '../test/helpers/netns.js';
import { loadFixture } from '../test/helpers/qemu.js';
import { startTunnelPair } from '../test/helpers/tunnel.js';

const { values } = parseArgs({ options: { rates: { type: 'string' }, rounds: { type: 'string' }, only: { type: 'string' } } });
const RATES = (values.rates ?? '200,0').split(',').map(Number);
const ROUNDS = Number(values.rounds ?? 2);
const RUN_LIMIT_MS = 180_000;
const INPUTS = ['dirty', 'idle'] as const;

if (!netnsAvailable()) {
  console.error('bench:tunnel-pages: needs root, ip netns and tc');
  process.exit(1);
}
const scratch = mkdtempSync(join(tmpdir(), 'migstream-bench-tunnel-pages-'));

interface Row {
  name: string;
  /** null: the socat relay; else the source tunnel's extra arguments. */
  tunnel: string[] | null;
}
const ALL_ROWS: Row[] = [
  { name: 'socat relay (plaintext)', tunnel: null },
  { name: 'tunnel TLS', tunnel: [] },
  { name: 'tunnel TLS, -c lz4 --page-cache 0', tunnel: ['-c', 'lz4', '--page-cache', '0'] },
  { name: 'tunnel TLS, -c lz4 (page-aware)', tunnel: ['-c', 'lz4'] },
  { name: 'tunnel TLS, -c zstd --page-cache 0', tunnel: ['-c', 'zstd', '--page-cache', '0'] },
  { name: 'tunnel TLS, -c zstd (page-aware)', tunnel: ['-c', 'zstd'] },
];
const ROWS = ALL_ROWS.filter((row) => values.only === undefined || values.only.split('|').some((part) => row.name.includes(part)));

interface Run {
  seconds: number;
  wireBytes: number;
  deltaPages: number | null;
}

function rxBytes(link: Link): number {
  const dev = execFileSync('ip', ['-n', link.b, '-o', 'link', 'show', 'type', 'veth'], { encoding: 'utf8' }).split(':')[1]!.trim().split('@')[0]!;
  return Number(execFileSync('ip', ['netns', 'exec', link.b, 'cat', `/sys/class/net/${dev}/statistics/rx_bytes`], { encoding: 'utf8' }));
}

/** A child that must exit 0 within the run limit; resolves with its stdout. */
function child(argv: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => proc.kill('SIGKILL'), RUN_LIMIT_MS);
    proc.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${argv.join(' ')} exited ${code}: ${err}`));
    });
  });
}

/** The reader on the destination host: listens on `path`, hashes one connection's bytes. */
function reader(link: Link, path: string): Promise<string> {
  rmSync(path, { force: true });
  return child(link.inNs(link.b, ['sh', '-c', `socat -u -b 131072 UNIX-LISTEN:${path} - | sha256sum`]));
}

async function waitForSocket(path: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      execFileSync('test', ['-S', path]);
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`nothing listens on ${path}`);
}

async function once(link: Link, certs: string, row: Row, input: string, digest: string): Promise<Run> {
  const dir = mkdtempSync(join(scratch, 'run-'));
  const target = join(dir, 'dst.sock');
  const listen = join(dir, 'src.sock');
  const stops: (() => Promise<void>)[] = [];
  try {
    const read = reader(link, target);
    await waitForSocket(target);
    let report: (() => Promise<number | null>) | undefined;
    if (row.tunnel === null) {
      const port = 30000 + Math.floor(Math.random() * 20000);
      const far = spawn('ip', ['netns', 'exec', link.b, 'socat', '-b', '131072', `TCP-LISTEN:${port},bind=${link.addressB},reuseaddr`, `UNIX-CONNECT:${target}`], { stdio: 'ignore' });
      const near = spawn('ip', ['netns', 'exec', link.a, 'socat', '-b', '131072', `UNIX-LISTEN:${listen}`, `TCP:${link.addressB}:${port},retry=20,interval=0.1`], { stdio: 'ignore' });
      stops.push(async () => {
        far.kill();
        near.kill();
      });
      await waitForSocket(listen);
    } else {
      const pair = await startTunnelPair({
        routes: [`${listen}=${target}`],
        targets: [target],
        channels: 2,
        tls: certs,
        host: link.addressB,
        prefix: { source: link.inNs(link.a, []), destination: link.inNs(link.b, []) },
        extra: { source: row.tunnel },
      });
      stops.push(() => pair.stop());
      report = async () => (await pair.source.waitFor('migration', undefined, RUN_LIMIT_MS)).deltaPages as number;
    }
    const before = rxBytes(link);
    const started = performance.now();
    await child(link.inNs(link.a, ['socat', '-u', '-b', '131072', `OPEN:${input}`, `UNIX-CONNECT:${listen}`]));
    const got = (await read).split(' ')[0];
    const seconds = (performance.now() - started) / 1000;
    const wireBytes = rxBytes(link) - before;
    if (got !== digest) throw new Error(`${row.name}: the destination read bytes that differ from the input (sha256 ${got}, expected ${digest})`);
    return { seconds, wireBytes, deltaPages: report === undefined ? null : await report() };
  } finally {
    for (const stop of stops) await stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`cores: ${cpus().length}, node ${process.version}; 2 TLS channels; best of ${ROUNDS} by wall time`);
const reports: string[] = [];
for (const rate of RATES) {
  const link = createLink(rate > 0 ? { rateMbit: rate } : {});
  try {
    const certs = join(scratch, `certs-${rate}`);
    makeQuickStart({ dir: certs, names: [link.addressB, link.addressA], days: 2 });
    for (const name of INPUTS) {
      const input = loadFixture(name).stream;
      const bytes = readFileSync(input);
      const digest = createHash('sha256').update(bytes).digest('hex');
      const rows: (string | number)[][] = [];
      for (const row of ROWS) {
        const runs: Run[] = [];
        for (let round = 0; round < ROUNDS; round++) runs.push(await once(link, certs, row, input, digest));
        const best = runs.reduce((x, y) => (y.seconds < x.seconds ? y : x));
        console.error(`${rate || 'uncapped'} ${name} ${row.name}: ${runs.map((r) => `${r.seconds.toFixed(2)} s ${(r.wireBytes / 1e6).toFixed(1)} MB`).join(' / ')}`);
        rows.push([
          row.name,
          best.seconds.toFixed(2),
          runs.map((r) => r.seconds.toFixed(2)).join(' / '),
          (bytes.length / 1e6 / best.seconds).toFixed(0),
          (best.wireBytes / 1e6).toFixed(1),
          best.deltaPages ?? '—',
        ]);
      }
      const linkText = rate > 0 ? `veth capped at ${rate} Mbit/s` : 'uncapped veth';
      reports.push(`${name} fixture (${(bytes.length / 1e6).toFixed(0)} MB of QEMU stream), ${linkText}\n${table(['path', 'wall s', 'runs', 'stream MB/s', 'wire MB', 'delta pages'], rows)}`);
    }
  } finally {
    link.destroy();
  }
}
console.log(`\n${reports.join('\n\n')}`);
rmSync(scratch, { recursive: true, force: true });
