/**
 * `virsh migrate --p2p --live` of one busy guest between the two libvirt hosts of
 * test/helpers/libvirt-hosts.ts, through every path libvirt offers and through `migstream tunnel`:
 *
 *   npm run bench:libvirt [-- --runs 3] [--rates 1000,0] [--only SUBSTRING[|SUBSTRING…]] [--guest dirty|busy]
 *                                    (root, scripts/setup-libvirt.sh; rate 0 = uncapped link)
 *
 * Rows: libvirt's native transport (qemu+tcp:// to the destination libvirtd, QEMU's stream on
 * tcp://), the same with QEMU's own TLS (--tls: certificates in default_tls_x509_cert_dir,
 * verified both ways), the UNIX-socket migration through a plain socat relay (no security), and
 * through `migstream tunnel` (mutual TLS; 1 and 2 channels; --insecure for the cost of TLS).
 * Each with and without --parallel --parallel-connections 2 where it applies.
 *
 * Per run: "total" is the wall time of `virsh migrate` (the relay or tunnel already up: it is a
 * long-running service, its start is the "setup" column); "downtime" is "Total downtime" of
 * `virsh domjobinfo --completed` on the destination (the domain is transient: once migrated it
 * no longer exists on the source); "wire" is what the destination's veth received during the
 * migration. The guest migrates back and forth, rows interleaved run by run. After every run the
 * guest must be running on the destination with its heartbeat going on; a guest lost in a run
 * ("lost") is counted and booted again. A failed `virsh migrate` is counted too ("migrated":
 * successes/runs; the guest stays on its source) and the medians are of the successful runs.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { table } from '../src/cli/format.js';
import { copyForQemu } from '../src/tls/certs.js';
import {
  MIGSTREAM_BIN,
  createLibvirtPair,
  domainXml,
  guestBootFiles,
  lastCounter,
  libvirtAvailable,
  migrateArgs,
  receivedBytes,
  startDomain,
  startSocatRelay,
  startTunnelRelay,
  waitForHeartbeat,
  type LibvirtHost,
  type LibvirtPair,
} from '../test/helpers/libvirt-hosts.js';

const { values } = parseArgs({ options: { runs: { type: 'string' }, rates: { type: 'string' }, only: { type: 'string' }, guest: { type: 'string' } } });
const RUNS = Number(values.runs ?? 3);
const RATES = (values.rates ?? '1000,0').split(',').map(Number);
const NAME = 'bench';
const MEMORY_MIB = 256;
/**
 * The guest (guest/memfill.c): "dirty" fills 128 MiB at boot, then rewrites 8 MiB continuously;
 * "busy" fills 64 MiB, then writes 16 bytes into each page of a 64 MiB working set in turn, 32
 * MiB/s of pages: more than a 200 Mbit/s link carries, so only a compressed migration converges.
 */
const GUESTS: Record<string, string> = { dirty: 'mode=dirty fill=128', busy: 'mode=busy fill=64 wss=64 rate=32' };
const GUEST = GUESTS[values.guest ?? 'dirty'];
if (GUEST === undefined) throw new Error(`--guest must be one of ${Object.keys(GUESTS).join(', ')}`);
const CMDLINE = `console=ttyS0 panic=-1 ${GUEST}`;
/** A healthy run takes ~5 s; a hung one (multifd channels reordered by a relay) is aborted. */
const MIGRATE_TIMEOUT_MS = 60_000;

interface Path {
  name: string;
  /** Starts what carries the migration (if anything); returns how to stop it. */
  setup(pair: LibvirtPair, from: LibvirtHost, to: LibvirtHost): Promise<() => Promise<void>>;
  args(pair: LibvirtPair, to: LibvirtHost): string[];
}

const parallel = ['--parallel', '--parallel-connections', '2'];
const none = async (): Promise<() => Promise<void>> => async () => {};

function nativeArgs(to: LibvirtHost, extra: string[]): string[] {
  // The address in --migrateuri: QEMU's stream goes to it (libvirt would otherwise use the
  // destination's hostname, which nothing resolves here); with --tls, QEMU checks the
  // destination's certificate against it.
  return ['migrate', NAME, `qemu+tcp://${to.address}/system`, '--p2p', '--live', '--migrateuri', `tcp://${to.address}`, ...extra];
}

let certs = '';

function tunnelPath(name: string, channels: number, tls: boolean, extra: string[], sourceArgs: string[] = []): Path {
  return {
    name,
    setup: async (pair, from, to) => {
      const tunnel = await startTunnelRelay(from, to, pair.paths, { channels, sourceArgs, ...(tls ? { tls: { source: certs, destination: certs } } : {}) });
      return async () => {
        await tunnel.stop();
      };
    },
    args: (pair) => [...migrateArgs(NAME, pair.paths), ...extra],
  };
}

const ALL_PATHS: Path[] = [
  { name: 'native tcp', setup: none, args: (_, to) => nativeArgs(to, []) },
  { name: 'native tcp --parallel 2', setup: none, args: (_, to) => nativeArgs(to, parallel) },
  { name: 'native --tls (QEMU TLS)', setup: none, args: (_, to) => nativeArgs(to, ['--tls']) },
  { name: 'native --tls --parallel 2', setup: none, args: (_, to) => nativeArgs(to, ['--tls', ...parallel]) },
  {
    name: 'unix sockets, socat relay',
    setup: async (pair, from, to) => {
      const relay = await startSocatRelay(from, to, pair.paths);
      return () => relay.stop();
    },
    args: (pair) => migrateArgs(NAME, pair.paths),
  },
  {
    name: 'unix sockets, socat relay, --parallel 2',
    setup: async (pair, from, to) => {
      const relay = await startSocatRelay(from, to, pair.paths);
      return () => relay.stop();
    },
    args: (pair) => migrateArgs(NAME, pair.paths, { parallel: 2 }),
  },
  tunnelPath('migstream tunnel TLS, 1 channel', 1, true, []),
  tunnelPath('migstream tunnel TLS, 2 channels', 2, true, []),
  tunnelPath('migstream tunnel TLS, 1 channel, --parallel 2', 1, true, parallel),
  tunnelPath('migstream tunnel TLS, 2 channels, --parallel 2', 2, true, parallel),
  tunnelPath('migstream tunnel TLS, 2 channels, -c lz4', 2, true, [], ['-c', 'lz4']),
  tunnelPath('migstream tunnel TLS, 2 channels, -c zstd', 2, true, [], ['-c', 'zstd']),
  // Page-aware compression (on with -c by default) against chunk-by-chunk compression alone.
  tunnelPath('migstream tunnel TLS, 2 channels, -c lz4 --page-cache 0', 2, true, [], ['-c', 'lz4', '--page-cache', '0']),
  tunnelPath('migstream tunnel TLS, 2 channels, -c zstd --page-cache 0', 2, true, [], ['-c', 'zstd', '--page-cache', '0']),
  tunnelPath('migstream tunnel TLS, 2 channels, --parallel 2, -c lz4', 2, true, parallel, ['-c', 'lz4']),
  tunnelPath('migstream tunnel TLS, 2 channels, --parallel 2, -c lz4 --page-cache 0', 2, true, parallel, ['-c', 'lz4', '--page-cache', '0']),
  tunnelPath('migstream tunnel --insecure, 1 channel', 1, false, []),
];
/** --only A|B: the rows whose name contains A or B. */
const PATHS = ALL_PATHS.filter((path) => values.only === undefined || values.only.split('|').some((part) => path.name.includes(part)));

interface Run {
  seconds: number;
  setupSeconds: number;
  downtimeMs: number;
  wireBytes: number;
  /** The guest was running on the destination afterwards, its heartbeat going on. */
  ok: boolean;
  /** virsh migrate failed (the guest stayed on its source): the first line of its error. */
  failed: string | null;
}

/** The last lines QEMU itself logged on `host` (its errors), for a failed run. */
function qemuErrors(host: LibvirtHost): string {
  try {
    const log = readFileSync(host.outside(`/var/log/libvirt/qemu/${NAME}.log`), 'utf8');
    return log
      .split('\n')
      .filter((line) => /qemu-system/.test(line))
      .slice(-2)
      .join(' | ');
  } catch {
    return '(no QEMU log)';
  }
}

/** Of the numbers known (a lost guest has no downtime: NaN); NaN when none is. */
function median(numbers: number[]): number {
  const sorted = numbers.filter((n) => !Number.isNaN(n)).sort((x, y) => x - y);
  if (sorted.length === 0) return NaN;
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

async function bench(rateMbit: number): Promise<string> {
  const scratch = mkdtempSync(join(tmpdir(), 'ms-bench-libvirt-'));
  // QEMU's TLS credentials (what libvirt's --tls uses), one directory both hosts read:
  // a CA, a server certificate naming both addresses, a client certificate.
  const pki = join(scratch, 'pki');
  mkdirSync(pki);
  const pair = await createLibvirtPair({ ...(rateMbit > 0 ? { rateMbit } : {}), tcp: true, qemuConf: [`default_tls_x509_cert_dir = "${pki}"`, 'default_tls_x509_verify = 1'] });
  try {
    const { source: a, destination: b } = pair;
    certs = join(scratch, 'migstream');
    execFileSync(process.execPath, [MIGSTREAM_BIN, 'certs', '-o', certs, '--name', a.address, '--name', b.address, '--days', '2', '--quiet']);
    copyForQemu(certs, pki);

    const serial = join(a.dir, `${NAME}.serial.log`);
    const boot = async (host: LibvirtHost): Promise<void> => {
      for (const h of [a, b]) await h.virsh(['destroy', NAME]);
      rmSync(host.outside(serial), { force: true });
      await startDomain(host, domainXml({ name: NAME, memoryMiB: MEMORY_MIB, ...guestBootFiles(), cmdline: CMDLINE, serialLog: serial }));
      await waitForHeartbeat(host.outside(serial), 2, 120_000);
    };
    let here = a;
    await boot(here);

    const runs = new Map<string, Run[]>(PATHS.map((path) => [path.name, []]));
    for (let round = 0; round < RUNS; round++) {
      for (const path of PATHS) {
        const from = here;
        const to = from === a ? b : a;
        const setupStarted = performance.now();
        const stop = await path.setup(pair, from, to);
        const setupSeconds = (performance.now() - setupStarted) / 1000;
        const bytesBefore = receivedBytes(to);
        const heartbeat = lastCounter(from.outside(serial));
        const started = performance.now();
        let migrated;
        try {
          migrated = await from.virsh(path.args(pair, to), { timeoutMs: MIGRATE_TIMEOUT_MS });
        } finally {
          await stop();
        }
        const seconds = (performance.now() - started) / 1000;
        const wireBytes = receivedBytes(to) - bytesBefore;
        if (migrated.code !== 0) {
          // Counted, not fatal: the guest stays where it was (booted again there if it is not).
          const error = migrated.stderr.trim().split('\n')[0] ?? `exit ${migrated.code}`;
          const qemuLog = qemuErrors(to);
          runs.get(path.name)!.push({ seconds, setupSeconds, downtimeMs: NaN, wireBytes, ok: false, failed: error });
          console.error(`${rateMbit || 'uncapped'} ${path.name} ${from.name}->${to.name}: FAILED after ${seconds.toFixed(2)} s: ${error}; destination QEMU: ${qemuLog}`);
          if (migrated.code === null) {
            // Timed out: the job runs on until aborted, and the next migration must not find it.
            await from.virsh(['domjobabort', NAME]);
            for (let i = 0; i < 150 && !/Job type:\s+None/.test((await from.virsh(['domjobinfo', NAME])).stdout); i++) await sleep(200);
          }
          for (let i = 0; i < 50 && (await from.virsh(['domstate', NAME])).stdout.trim() !== 'running'; i++) await sleep(200);
          if ((await from.virsh(['domstate', NAME])).stdout.trim() !== 'running') await boot(from);
          await sleep(500);
          continue;
        }
        const info = await to.virsh(['domjobinfo', NAME, '--completed']);
        const downtimeMs = Number(/Total downtime:\s+(\d+)/.exec(info.stdout)?.[1] ?? NaN);
        let ok = true;
        try {
          await waitForHeartbeat(to.outside(serial), heartbeat, 15_000);
          ok = (await to.virsh(['domstate', NAME])).stdout.trim() === 'running';
        } catch {
          ok = false;
        }
        const run: Run = { seconds, setupSeconds, downtimeMs, wireBytes, ok, failed: null };
        runs.get(path.name)!.push(run);
        console.error(
          `${rateMbit || 'uncapped'} ${path.name} ${from.name}->${to.name}: ${seconds.toFixed(2)} s, downtime ${downtimeMs} ms, ${(wireBytes / 1e6).toFixed(0)} MB${ok ? '' : ', GUEST LOST (booting again)'}`,
        );
        here = to;
        if (!ok) {
          const state = await to.virsh(['domstate', NAME]);
          console.error(`  domstate on ${to.name}: ${state.stdout.trim()}${state.stderr.trim()}; serial log tail: ${execFileSync('tail', ['-n', '3', to.outside(serial)], { encoding: 'utf8' }).trim()}`);
          await boot(here);
        }
        await sleep(500);
      }
    }
    const rows = PATHS.map((path) => {
      const all = runs.get(path.name)!;
      const list = all.filter((r) => r.failed === null);
      if (list.length === 0) return [path.name, '-', '', '-', '', '-', '-', `0/${all.length}`, 0];
      const fixed = (numbers: number[], digits: number): string => numbers.map((n) => (Number.isNaN(n) ? '-' : n.toFixed(digits))).join(' ');
      return [
        path.name,
        median(list.map((r) => r.seconds)).toFixed(2),
        fixed(
          list.map((r) => r.seconds),
          2,
        ),
        median(list.map((r) => r.downtimeMs)).toFixed(0),
        fixed(
          list.map((r) => r.downtimeMs),
          0,
        ),
        (median(list.map((r) => r.wireBytes)) / 1e6).toFixed(0),
        median(list.map((r) => r.setupSeconds)).toFixed(2),
        `${list.length}/${all.length}`,
        list.filter((r) => !r.ok).length,
      ];
    });
    const link = rateMbit > 0 ? `link capped at ${rateMbit} Mbit/s` : 'uncapped veth';
    return `virsh migrate --p2p --live, ${MEMORY_MIB} MiB TCG guest (${CMDLINE.replace('console=ttyS0 panic=-1 ', '')}), ${link}, median of ${RUNS}\n${table(
      ['path', 'total s', 'runs', 'downtime ms', 'runs', 'wire MB', 'setup s', 'migrated', 'lost'],
      rows,
    )}`;
  } finally {
    await pair.destroy();
    rmSync(scratch, { recursive: true, force: true });
  }
}

const available = libvirtAvailable();
if (available !== true) {
  console.error(`bench:libvirt: ${available}`);
  process.exit(1);
}
const reports: string[] = [];
for (const rate of RATES) reports.push(await bench(rate));
console.log(`\n${reports.join('\n\n')}`);
