/**
 * QEMU migrations over UNIX sockets (what libvirt's UNIX-socket migration hands a forwarder)
 * through `migstream tunnel`, against the same migration with no forwarder at all and through a
 * plain socat relay (UNIX → TCP → UNIX, what the libvirt issue measured with). A busy guest,
 * return-path on (libvirt always sets it); QEMU 7.2 with the main stream only, QEMU 10.0 with 2
 * multifd channels.
 *
 *   npm run bench:tunnel [-- --rounds N] [--only SUBSTRING[|SUBSTRING…]]
 *
 * Every row: a fresh source and destination QEMU, the forwarder started, `migrate unix:…`,
 * wall time until both QEMUs report completed; QEMU's total-time and downtime; the bytes QEMU
 * wrote (ram.transferred, multifd included) and, for the tunnel, its frame bytes (both ways,
 * before TLS) and the pages it sent as deltas (page-aware compression, on with -c unless
 * --page-cache 0) from its migration report. Best round by wall time. Everything shares this
 * machine's cores: two TCG QEMUs, the guest's writer and the forwarder's two ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { table } from '../src/cli/format.js';
import { launchQemu, type QemuVm } from '../src/qemu/launcher.js';
import { queryMigrate, setCapabilities, setParameters, type MigrationInfo } from '../src/qemu/migration.js';
import type { QemuVersion } from '../src/qemu/versions.js';
import { copyForQemu, makeQuickStart } from '../src/tls/certs.js';
import { REPO_ROOT, guestArgs } from '../test/fixtures/meta.js';
import { freePort } from '../test/helpers/transport.js';
import { startTunnelPair, type TunnelPair } from '../test/helpers/tunnel.js';

const { values } = parseArgs({ options: { rounds: { type: 'string' }, only: { type: 'string' } } });
const ROUNDS = Number(values.rounds ?? 2);
const MiB = 1024 * 1024;
const scratch = mkdtempSync(join(tmpdir(), 'migstream-bench-tunnel-'));
const certs = join(scratch, 'certs');
makeQuickStart({ dir: certs, names: ['localhost', '127.0.0.1'], days: 2 });
// The same certificates under the names QEMU's tls-creds-x509 looks for (what libvirt's --tls sets up).
const qemuCreds = join(scratch, 'qemu-creds');
copyForQemu(certs, qemuCreds);

interface Scenario {
  name: string;
  qemu: QemuVersion;
  machine: string;
  multifd: number;
}
const SCENARIOS: Scenario[] = [
  { name: 'QEMU 7.2, main stream', qemu: '7.2', machine: 'pc-i440fx-7.2', multifd: 0 },
  { name: 'QEMU 10.0, 2 multifd channels', qemu: '10.0', machine: 'pc-i440fx-10.0', multifd: 2 },
];

type Forwarder = { kind: 'direct' } | { kind: 'qemu-tls' } | { kind: 'socat' } | { kind: 'tunnel'; tls: boolean; channels: number; codec: string; extra?: string[] };
const ROWS: [string, Forwarder][] = [
  ['QEMU to QEMU, unix:, no forwarder', { kind: 'direct' }],
  ["QEMU's own TLS, tcp: (libvirt --tls)", { kind: 'qemu-tls' }],
  ['socat relay (plaintext)', { kind: 'socat' }],
  ['tunnel, plaintext, 1 channel', { kind: 'tunnel', tls: false, channels: 1, codec: 'none' }],
  ['tunnel, TLS, 1 channel', { kind: 'tunnel', tls: true, channels: 1, codec: 'none' }],
  ['tunnel, TLS, 2 channels', { kind: 'tunnel', tls: true, channels: 2, codec: 'none' }],
  ['tunnel, TLS, 2 channels, lz4', { kind: 'tunnel', tls: true, channels: 2, codec: 'lz4' }],
  ['tunnel, TLS, 2 channels, zstd', { kind: 'tunnel', tls: true, channels: 2, codec: 'zstd' }],
  // Chunk-by-chunk compression alone, without the page-aware deltas.
  ['tunnel, TLS, 2 channels, lz4, --page-cache 0', { kind: 'tunnel', tls: true, channels: 2, codec: 'lz4', extra: ['--page-cache', '0'] }],
  ['tunnel, TLS, 2 channels, zstd, --page-cache 0', { kind: 'tunnel', tls: true, channels: 2, codec: 'zstd', extra: ['--page-cache', '0'] }],
];
/** --only A|B: the rows whose name contains A or B. */
const SELECTED = ROWS.filter(([name]) => values.only === undefined || values.only.split('|').some((part) => name.includes(part)));

interface Run {
  wallS: number;
  totalMs: number;
  downtimeMs: number;
  qemuMB: number;
  wireMB: number | null;
  deltaPages: number | null;
}

async function until(vm: QemuVm, timeoutMs: number): Promise<MigrationInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await queryMigrate(vm);
    if (info.status === 'completed' || info.status === 'failed') return info;
    if (Date.now() > deadline) throw new Error(`migration still ${info.status} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function once(scenario: Scenario, forwarder: Forwarder, round: number): Promise<Run> {
  const dir = mkdtempSync(join(scratch, 'run-'));
  const args = ['-machine', scenario.machine, '-m', `${256 * 1024 + 8}K`, '-smp', '1', ...guestArgs('busy', ['fill=96', 'wss=32', 'rate=16'])];
  const vms: QemuVm[] = [];
  const helpers: ChildProcess[] = [];
  let pair: TunnelPair | undefined;
  try {
    const creds = (endpoint: string): string[] => (forwarder.kind === 'qemu-tls' ? ['-object', `tls-creds-x509,id=tls0,dir=${qemuCreds},endpoint=${endpoint},verify-peer=on`] : []);
    const source = await launchQemu({ args: [...args, ...creds('client')], qemu: scenario.qemu, accel: 'tcg', name: `bt-src-${round}`, cwd: REPO_ROOT, serialLogPath: join(dir, 'src.log') });
    vms.push(source);
    const destination = await launchQemu({
      args: [...args, ...creds('server'), '-S', '-incoming', 'defer'],
      qemu: scenario.qemu,
      accel: 'tcg',
      name: `bt-dst-${round}`,
      cwd: REPO_ROOT,
      serialLogPath: join(dir, 'dst.log'),
    });
    vms.push(destination);
    await source.waitForSerial(/migstream-busy/, 120_000);
    for (const vm of [source, destination]) {
      await setCapabilities(vm, { 'return-path': true, ...(scenario.multifd > 0 ? { multifd: true } : {}) });
      if (scenario.multifd > 0) await setParameters(vm, { 'multifd-channels': scenario.multifd });
    }
    await setParameters(source, { 'downtime-limit': 300, 'max-bandwidth': 4096 * MiB });
    const target = join(dir, 'dst.sock');
    let uri = `unix:${target}`;
    if (forwarder.kind === 'qemu-tls') {
      await setParameters(source, { 'tls-creds': 'tls0', 'tls-hostname': '127.0.0.1' });
      await setParameters(destination, { 'tls-creds': 'tls0' });
      uri = `tcp:127.0.0.1:${await freePort()}`;
    }
    await destination.execute('migrate-incoming', { uri });
    if (forwarder.kind === 'socat') {
      const listen = join(dir, 'src.sock');
      uri = `unix:${listen}`;
      const port = await freePort();
      helpers.push(spawn('socat', [`TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork`, `UNIX-CONNECT:${target}`], { stdio: 'ignore' }));
      helpers.push(spawn('socat', [`UNIX-LISTEN:${listen},fork`, `TCP:127.0.0.1:${port}`], { stdio: 'ignore' }));
      await new Promise((resolve) => setTimeout(resolve, 300));
    } else if (forwarder.kind === 'tunnel') {
      const listen = join(dir, 'src.sock');
      uri = `unix:${listen}`;
      pair = await startTunnelPair({
        routes: [`${listen}=${target}`],
        targets: [target],
        channels: forwarder.channels,
        ...(forwarder.tls ? { tls: certs } : {}),
        extra: { source: ['-c', forwarder.codec, ...(forwarder.extra ?? [])] },
      });
    }
    const started = Date.now();
    await source.execute('migrate', { uri });
    const info = await until(source, 300_000);
    if (info.status !== 'completed') throw new Error(`migration ${info.status}: ${info['error-desc'] ?? ''}`);
    const incoming = await until(destination, 60_000);
    if (incoming.status !== 'completed') throw new Error(`destination ${incoming.status}`);
    const wallS = (Date.now() - started) / 1000;
    const report = pair === undefined ? undefined : await pair.source.waitFor('migration');
    return {
      wallS,
      totalMs: info['total-time'] ?? 0,
      downtimeMs: info.downtime ?? 0,
      qemuMB: (info.ram?.transferred ?? 0) / 1e6,
      wireMB: report === undefined ? null : (report.wireBytes as number) / 1e6,
      deltaPages: report === undefined ? null : (report.deltaPages as number),
    };
  } finally {
    await pair?.stop();
    for (const helper of helpers) helper.kill();
    await Promise.all(vms.map((vm) => vm.quit()));
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(`cores: ${cpus().length}, node ${process.version}; busy guest: 256 MiB, 96 MiB filled, 32 MiB rewritten at 16 MiB/s; downtime limit 300 ms; best of ${ROUNDS}`);
for (const scenario of SCENARIOS) {
  const rows: (string | number)[][] = [];
  for (const [name, forwarder] of SELECTED) {
    const runs: Run[] = [];
    for (let round = 0; round < ROUNDS; round++) runs.push(await once(scenario, forwarder, round));
    const best = runs.reduce((a, b) => (b.wallS < a.wallS ? b : a));
    rows.push([
      name,
      best.wallS.toFixed(2),
      runs.map((r) => r.wallS.toFixed(2)).join(' / '),
      (best.totalMs / 1000).toFixed(2),
      best.downtimeMs,
      best.qemuMB.toFixed(0),
      best.wireMB === null ? '—' : best.wireMB.toFixed(0),
      best.deltaPages ?? '—',
    ]);
  }
  console.log(`\n${scenario.name}`);
  console.log(table(['path', 'wall s', 'runs', 'QEMU total s', 'downtime ms', 'QEMU MB', 'tunnel wire MB', 'delta pages'], rows));
}
rmSync(scratch, { recursive: true, force: true });
