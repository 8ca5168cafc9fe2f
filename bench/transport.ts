/**
 * Throughput of the multi-channel transport against its baselines, on loopback and across a
 * veth link between two network namespaces, then a whole live migration of the same guest
 * through QEMU's own TLS (tls-creds-x509, migrate tcp:) and through exec:migstream send/recv.
 *
 *   npm run bench:transport [-- --only throughput|migrations]
 *                                    (root for the namespaced link; needs a test run's fixtures)
 *
 * Throughput runs move BYTES of a real stream repeated (--no-verify: the repetition is not one
 * valid stream) from a file to /dev/null; every figure is the best of ROUNDS wall times, from
 * spawning the sender to both ends exiting, so process and worker start-up are included.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { table } from '../src/cli/format.js';
import { launchQemu, type QemuVm } from '../src/qemu/launcher.js';
import { migrateToExec, queryMigrate, setParameters, shellQuote, type MigrationInfo } from '../src/qemu/migration.js';
import { copyForQemu, makeQuickStart } from '../src/tls/certs.js';
import { REPO_ROOT, guestArgs, HEARTBEAT } from '../test/fixtures/meta.js';
import { findScenario } from '../test/fixtures/scenarios.js';
import { createLink, netnsAvailable, type Link } from '../test/helpers/netns.js';
import { loadFixture } from '../test/helpers/qemu.js';
import { BIN, startRecv, run } from '../test/helpers/transport.js';
import { compactMemory } from './page-cache.js';

const { values } = parseArgs({ options: { only: { type: 'string' } } });
const ROUNDS = Number(process.env.ROUNDS ?? 2);
/** About 1.4 GB: long enough that process and worker start-up (~0.15 s) is not the figure. */
const COPIES = 8;
const RUN_LIMIT_MS = 120_000;
const scratch = mkdtempSync(join(tmpdir(), 'migstream-bench-transport-'));
const certs = join(scratch, 'certs');
makeQuickStart({ dir: certs, names: ['localhost', '127.0.0.1'], days: 2 });

const source = loadFixture('dirty');
const input = join(scratch, 'input.bin');
{
  const bytes = readFileSync(source.stream);
  const fd = openSync(input, 'w');
  for (let i = 0; i < COPIES; i++) writeSync(fd, bytes);
  closeSync(fd);
}
const BYTES = source.meta.streamBytes * COPIES;

function waitExit(argv: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_LIMIT_MS);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(0);
      else reject(new Error(`${argv.join(' ')} exited ${code}: ${err}`));
    });
  });
}

interface Where {
  name: string;
  host: string;
  sendPrefix: string[];
  recvPrefix: string[];
}

async function migstreamSeconds(where: Where, channels: number, security: string[]): Promise<number> {
  const recvSecurity = security.includes('--tls-name') ? security.slice(0, 2) : security;
  const recv = await startRecv([...recvSecurity, '-o', '/dev/null', '--quiet'], { host: where.host, prefix: where.recvPrefix });
  const started = performance.now();
  const send = run(['send', `${where.host}:${recv.port}`, input, '--channels', String(channels), '--no-verify', '--quiet', ...security], { prefix: where.sendPrefix });
  const [s, r] = await Promise.all([send.exited, recv.exited]);
  if (s.code !== 0 || r.code !== 0) throw new Error(`send ${s.code}: ${s.stderr} / recv ${r.code}: ${r.stderr}`);
  return (performance.now() - started) / 1000;
}

async function socatSeconds(where: Where): Promise<number> {
  const port = 30000 + Math.floor(Math.random() * 20000);
  // 128 KiB copies (socat's default of 8 KiB ran at a quarter of the speed over veth).
  const listener = waitExit([...where.recvPrefix, 'socat', '-u', '-b', '131072', `TCP-LISTEN:${port},bind=${where.host},reuseaddr`, 'OPEN:/dev/null']);
  await new Promise((resolve) => setTimeout(resolve, 300));
  const started = performance.now();
  await Promise.all([waitExit([...where.sendPrefix, 'socat', '-u', '-b', '131072', `OPEN:${input}`, `TCP:${where.host}:${port}`]), listener]);
  return (performance.now() - started) / 1000;
}

/**
 * The floor of any Node.js transport: a bare TCP pipe in Node, the file read in 1 MiB pieces
 * into socket.write, and the receiver's 'data' written to /dev/null; nothing framed or checked.
 */
async function nodePipeSeconds(where: Where): Promise<number> {
  const receiver = [
    "const s = require('net').createServer((c) => { c.pipe(require('fs').createWriteStream('/dev/null')); c.on('end', () => s.close()); });",
    `s.listen(0, ${JSON.stringify(where.host)}, () => process.stderr.write('port ' + s.address().port + '\\n'));`,
  ].join(' ');
  const argv = [...where.recvPrefix, process.execPath, '-e', receiver];
  const listener = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  const closed = new Promise<void>((resolve, reject) => listener.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`node receiver exited ${code}`)))));
  const port = await new Promise<number>((resolve, reject) => {
    let err = '';
    listener.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      const match = /port (\d+)/.exec(err);
      if (match) resolve(Number(match[1]));
    });
    listener.on('close', () => reject(new Error(`node receiver: ${err}`)));
  });
  const sender = `require('fs').createReadStream(${JSON.stringify(input)}, { highWaterMark: 1 << 20 }).pipe(require('net').connect(${port}, ${JSON.stringify(where.host)}));`;
  const started = performance.now();
  await Promise.all([waitExit([...where.sendPrefix, process.execPath, '-e', sender]), closed]);
  return (performance.now() - started) / 1000;
}

async function best(run: () => Promise<number>): Promise<{ best: number; all: number[] }> {
  const all: number[] = [];
  for (let i = 0; i < ROUNDS; i++) all.push(await run());
  return { best: Math.min(...all), all };
}

const mbps = (seconds: number): string => (BYTES / 1e6 / seconds).toFixed(0);

async function throughput(where: Where): Promise<string> {
  const tls = ['--tls', certs, '--tls-name', '127.0.0.1'];
  const rows: [string, () => Promise<number>][] = [
    ['socat (raw TCP)', () => socatSeconds(where)],
    ['node, bare TCP pipe', () => nodePipeSeconds(where)],
    ['plaintext, 1 channel', () => migstreamSeconds(where, 1, ['--insecure'])],
    ['plaintext, 4 channels', () => migstreamSeconds(where, 4, ['--insecure'])],
    ['TLS, 1 channel', () => migstreamSeconds(where, 1, tls)],
    ['TLS, 2 channels', () => migstreamSeconds(where, 2, tls)],
    ['TLS, 4 channels', () => migstreamSeconds(where, 4, tls)],
  ];
  const results: (string | number)[][] = [];
  let oneTls = 0;
  for (const [name, fn] of rows) {
    const r = await best(fn);
    if (name === 'TLS, 1 channel') oneTls = r.best;
    results.push([name, mbps(r.best), r.all.map((s) => s.toFixed(2)).join(' / '), name.startsWith('TLS') && oneTls > 0 ? `${(oneTls / r.best).toFixed(2)}x` : '']);
    process.stderr.write(`${where.name}: ${name}: ${r.all.map((s) => s.toFixed(2)).join(', ')} s\n`);
  }
  return `${where.name}: ${(BYTES / 1e6).toFixed(0)} MB, best of ${ROUNDS}\n${table(['transport', 'MB/s', 'seconds (runs)', 'vs 1 TLS'], results)}`;
}

// ---- whole migrations: QEMU native TLS against exec:migstream send/recv ----

/**
 * The idle test guest (a quarter of its RAM, 64 MiB, filled) and a guest whose RAM is mostly
 * filled, as a running VM's is: on the first, start-up dominates; on the second, throughput.
 */
interface BenchGuest {
  readonly label: string;
  readonly machineArgs: readonly string[];
}
const idleScenario = findScenario('idle');
const guests: readonly BenchGuest[] = [
  { label: 'the idle 256 MiB guest', machineArgs: [...idleScenario.machine, ...guestArgs(idleScenario.guestMode)] },
  {
    label: 'a 512 MiB guest with 384 MiB filled',
    machineArgs: ['-machine', 'pc-i440fx-7.2', '-m', '512M', '-smp', '1', ...guestArgs('idle', ['fill=384'])],
  },
];
const accel = loadFixture('idle').meta.accel;
const qemuCreds = join(scratch, 'qemu-creds');
copyForQemu(certs, qemuCreds);
const FAST = { 'max-bandwidth': 100 * 1024 * 1024 * 1024, 'downtime-limit': 300 };

async function waitDone(vm: QemuVm): Promise<MigrationInfo> {
  const deadline = Date.now() + RUN_LIMIT_MS;
  for (;;) {
    const info = await queryMigrate(vm);
    if (info.status === 'completed' || info.status === 'failed') return info;
    if (Date.now() > deadline) throw new Error(`${vm.name}: timeout`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

type MigrationPath = 'qemu-tls' | 'qemu-tcp' | 'exec-socat' | 'migstream' | 'migstream-plain';

/** Where the destination listens, and what the source runs or dials, for each path. */
function endpoints(kind: MigrationPath, port: number, channels: number): { incoming: string; outgoing: { exec: string } | { uri: string } } {
  const address = `127.0.0.1:${port}`;
  const cli = (args: string[]): string => [process.execPath, BIN, ...args].map(shellQuote).join(' ');
  switch (kind) {
    case 'qemu-tls':
    case 'qemu-tcp':
      return { incoming: `tcp:${address}`, outgoing: { uri: `tcp:${address}` } };
    case 'exec-socat':
      // The cheapest exec: transport there is: two socat processes copying 128 KiB at a time.
      return {
        incoming: `exec:socat -u -b 131072 TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr STDOUT`,
        outgoing: { exec: `socat -u -b 131072 STDIN TCP:${address}` },
      };
    case 'migstream':
    case 'migstream-plain': {
      const security = kind === 'migstream' ? ['--tls', certs] : ['--insecure'];
      return {
        incoming: `exec:${cli(['recv', '--listen', address, ...security, '--quiet'])}`,
        outgoing: { exec: cli(['send', address, '--channels', String(channels), ...security, '--quiet']) },
      };
    }
  }
}

async function migrationSeconds(guest: BenchGuest, kind: MigrationPath, channels: number): Promise<{ seconds: number; bytes: number }> {
  const { machineArgs } = guest;
  const port = 30000 + Math.floor(Math.random() * 20000);
  const creds = (endpoint: string): string[] => ['-object', `tls-creds-x509,id=tls0,dir=${qemuCreds},endpoint=${endpoint},verify-peer=on`];
  // Huge-page faults of guest RAM on fragmented memory would otherwise vary the runs (disk.ts).
  compactMemory();
  const src = await launchQemu({ args: [...machineArgs, ...(kind === 'qemu-tls' ? creds('client') : [])], accel, name: `bench-src-${kind}`, cwd: REPO_ROOT });
  const dst = await launchQemu({ args: [...machineArgs, ...(kind === 'qemu-tls' ? creds('server') : []), '-S', '-incoming', 'defer'], accel, name: `bench-dst-${kind}`, cwd: REPO_ROOT });
  try {
    await src.waitForSerial(HEARTBEAT, 120_000);
    const tlsParams = kind === 'qemu-tls' ? { 'tls-creds': 'tls0', 'tls-hostname': '127.0.0.1' } : {};
    await setParameters(src, { ...FAST, ...tlsParams });
    await setParameters(dst, kind === 'qemu-tls' ? { 'tls-creds': 'tls0' } : {});
    const { incoming, outgoing } = endpoints(kind, port, channels);
    await dst.execute('migrate-incoming', { uri: incoming });
    // socat's listener must be up before the source dials (send retries; socat does not).
    if (kind === 'exec-socat') await new Promise((resolve) => setTimeout(resolve, 300));
    const started = performance.now();
    let info: MigrationInfo;
    if ('exec' in outgoing) {
      info = await migrateToExec(src, outgoing.exec, { pollMs: 20, timeoutMs: RUN_LIMIT_MS });
    } else {
      await src.execute('migrate', { uri: outgoing.uri });
      info = await waitDone(src);
    }
    const dest = await waitDone(dst);
    const seconds = (performance.now() - started) / 1000;
    if (info.status !== 'completed' || dest.status !== 'completed') throw new Error(`${kind}: ${info.status}/${dest.status}`);
    return { seconds, bytes: info.ram?.transferred ?? 0 };
  } finally {
    await Promise.all([src.quit(), dst.quit()]);
  }
}

async function migrations(guest: BenchGuest): Promise<string> {
  const rows: (string | number)[][] = [];
  const paths = [
    ['QEMU tcp: (plaintext)', 'qemu-tcp', 0],
    ['QEMU tcp: + tls-creds-x509', 'qemu-tls', 0],
    ['exec:socat | socat (plaintext)', 'exec-socat', 0],
    ['exec:migstream send/recv, plaintext', 'migstream-plain', 1],
    ['exec:migstream send/recv, 1 TLS channel', 'migstream', 1],
    ['exec:migstream send/recv, 2 TLS channels', 'migstream', 2],
    ['exec:migstream send/recv, 4 TLS channels', 'migstream', 4],
  ] as const;
  for (const [label, kind, channels] of paths) {
    const runs: { seconds: number; bytes: number }[] = [];
    for (let i = 0; i < ROUNDS; i++) runs.push(await migrationSeconds(guest, kind, channels));
    const bestRun = runs.reduce((a, b) => (a.seconds <= b.seconds ? a : b));
    rows.push([label, bestRun.seconds.toFixed(2), runs.map((r) => r.seconds.toFixed(2)).join(' / '), (bestRun.bytes / 1e6).toFixed(0)]);
    process.stderr.write(`migration (${guest.label}): ${label}: ${runs.map((r) => r.seconds.toFixed(2)).join(', ')} s\n`);
  }
  return `live migration of ${guest.label} (${accel}), migrate to destination "completed", best of ${ROUNDS}\n${table(['path', 'seconds', 'runs', 'RAM MB'], rows)}`;
}

const out: string[] = [`cores: ${cpus().length}, node ${process.version}`];
let link: Link | undefined;
try {
  if (values.only !== 'migrations') await throughputs();
  if (values.only !== 'throughput') for (const guest of guests) out.push(await migrations(guest));
} finally {
  link?.destroy();
  rmSync(scratch, { recursive: true, force: true });
}
process.stdout.write(`${out.join('\n\n')}\n`);

async function throughputs(): Promise<void> {
  out.push(await throughput({ name: 'loopback', host: '127.0.0.1', sendPrefix: [], recvPrefix: [] }));
  if (netnsAvailable()) {
    link = createLink();
    out.push(await throughput({ name: 'veth between two namespaces (uncapped)', host: link.addressB, sendPrefix: link.inNs(link.a, []), recvPrefix: link.inNs(link.b, []) }));
    if (cpus().length >= 2) {
      // Each end on a core of its own, as two hosts would be (here: one core per host).
      const pinned = (core: number, prefix: string[]): string[] => ['taskset', '-c', String(core), ...prefix];
      out.push(
        await throughput({
          name: 'veth, sender pinned to core 0 and receiver to core 1',
          host: link.addressB,
          sendPrefix: pinned(0, link.inNs(link.a, [])),
          recvPrefix: pinned(1, link.inNs(link.b, [])),
        }),
      );
    }
  } else {
    out.push('namespaced link skipped: needs root and iproute2');
  }
}
