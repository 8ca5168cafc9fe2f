/**
 * Two libvirt "hosts" on one machine, for `virsh migrate --p2p --live` through a relay (issue
 * 18). A host is a network namespace (test/helpers/netns.ts: two of them joined by a veth) plus
 * a mount and UTS namespace of its own, in which a privileged libvirtd runs with private
 * /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt, its
 * own host UUID (libvirt refuses to migrate to a host with the same one) and its own hostname.
 *
 * The migration uses libvirt's "Migration using only UNIX sockets": every connection between
 * the hosts (libvirt's p2p control connection, QEMU's main stream and multifd channels, NBD)
 * goes to a unix socket path that the management application forwards. Both hosts use the
 * same path strings (`pair.paths`, inside `host.dir`, a directory that has the same name on
 * both hosts but different contents): the relay listens at a path in the source's view and
 * connects to the same path in the destination's, except for the driver path, which leads to
 * the destination libvirtd's own socket (`host.driverSocket`). `relayRoutes` spells that out
 * for any relay; `startSocatRelay` is the plain one. docs/libvirt-testing.md explains the
 * configuration. Needs root, scripts/setup-libvirt.sh's packages, iproute2, socat, util-linux.
 */
import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import assert from 'node:assert/strict';
import { GUEST_DIR } from '../fixtures/meta.js';
import { createLink, netnsAvailable, type Link } from './netns.js';

/** The directories a privileged libvirtd (and the QEMUs it starts) keep state in. */
const PRIVATE_DIRS = { etc: '/etc/libvirt', run: '/run/libvirt', lib: '/var/lib/libvirt', cache: '/var/cache/libvirt', log: '/var/log/libvirt' } as const;

/** libvirtd's read-write socket (qemu:///system), at the same path in every host's view. */
const DRIVER_SOCKET = '/run/libvirt/libvirt-sock';

/** A daemon start includes probing QEMU's capabilities (~8 s alone here; 2 cores shared). */
const START_TIMEOUT_MS = 90_000;

export interface RunResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when killed (e.g. by the timeout). */
  code: number | null;
}

export interface LibvirtHost {
  /** 'a' (starts as the source) or 'b'. */
  name: string;
  netns: string;
  /** Its address on the veth link. */
  address: string;
  /** The libvirtd; its namespaces are the host's. */
  pid: number;
  /** Private directory: the same path string on both hosts, different contents. */
  dir: string;
  /** libvirtd's socket in this host's view: what a relay reaches for `paths.driver`. */
  driverSocket: string;
  /** Where `path` (under `dir` or /var/log/libvirt in this host's view) is in the test's view. */
  outside(path: string): string;
  /** `cmd` run inside this host's network, mount and UTS namespaces. */
  argv(cmd: readonly string[]): string[];
  run(cmd: readonly string[], options?: { timeoutMs?: number }): Promise<RunResult>;
  /** `virsh -c qemu:///system ARGS` against this host's libvirtd. */
  virsh(args: readonly string[], options?: { timeoutMs?: number }): Promise<RunResult>;
  /** A long-running process inside the host (e.g. one end of a relay). */
  spawn(cmd: readonly string[], options?: SpawnOptions): ChildProcess;
  /** The last lines of libvirtd's log and of each domain's QEMU log, for error messages. */
  logTail(lines?: number): string;
}

/** The unix socket paths of one migration, the same strings on both hosts. */
export interface MigrationPaths {
  /** The destination libvirtd, as the source libvirtd reaches it (`qemu+unix:///system?socket=`). */
  driver: string;
  /** QEMU's main migration stream and its multifd channels (`--migrateuri unix://`). */
  qemu: string;
  /** The destination QEMU's NBD server for --copy-storage-* (`--disks-uri unix://`). */
  nbd: string;
}

export interface LibvirtPair {
  source: LibvirtHost;
  destination: LibvirtHost;
  paths: MigrationPaths;
  link: Link;
  /** Kills every process of both hosts (libvirtd, QEMUs, relays), removes namespaces and dirs. */
  destroy(): Promise<void>;
}

/** One path a relay forwards: accept at `listen` in the source's view, connect to `connect` in the destination's. */
export interface RelayRoute {
  name: keyof MigrationPaths;
  listen: string;
  connect: string;
}

export function relayRoutes(paths: MigrationPaths, destination: LibvirtHost): RelayRoute[] {
  return [
    { name: 'driver', listen: paths.driver, connect: destination.driverSocket },
    { name: 'qemu', listen: paths.qemu, connect: paths.qemu },
    { name: 'nbd', listen: paths.nbd, connect: paths.nbd },
  ];
}

/** Why this machine cannot run the libvirt hosts, or true. */
export function libvirtAvailable(): true | string {
  if (process.getuid?.() !== 0) return 'the libvirt hosts need root (privileged libvirtd, namespaces)';
  for (const tool of ['libvirtd', 'virsh', 'unshare', 'nsenter', 'socat', 'ip', 'qemu-system-x86_64']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `${tool} is missing: run bash scripts/setup-libvirt.sh (and scripts/setup-qemu.sh)`;
    }
  }
  try {
    execFileSync('getent', ['passwd', 'libvirt-qemu'], { stdio: 'ignore' });
  } catch {
    return "user libvirt-qemu is missing (libvirt's QEMU driver will not load): run bash scripts/setup-libvirt.sh";
  }
  if (!netnsAvailable()) return 'cannot create network namespaces (needs root, iproute2 and tc)';
  return true;
}

function runArgv(argv: readonly string[], timeoutMs = 120_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs, maxBuffer: 64 << 20, killSignal: 'SIGKILL' }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
      resolve({ stdout, stderr, code });
    });
  });
}

function libvirtdConf(name: string, tcp: boolean): string {
  return [
    // Distinct per host: the destination refuses a migration whose source has its own UUID.
    `host_uuid = "${randomUUID()}"`,
    // Root clients over the unix socket only; no polkit (needs D-Bus, absent here).
    'auth_unix_rw = "none"',
    'auth_unix_ro = "none"',
    'unix_sock_group = "root"',
    'log_outputs = "2:file:/var/log/libvirt/libvirtd.log"',
    // Only with `tcp`: qemu+tcp://ADDRESS/system, unauthenticated and unencrypted, for libvirt's
    // native migration (bench/libvirt.ts). Nothing but the other host can reach the address.
    ...(tcp ? ['listen_tcp = 1', 'listen_tls = 0', 'auth_tcp = "none"'] : []),
    `# host ${name}`,
    '',
  ].join('\n');
}

const QEMU_CONF = [
  // No system QEMU user/group setup, no labels to apply: run QEMU as root, unconfined.
  'user = "root"',
  'group = "root"',
  'security_driver = "none"',
  // No systemd/machined here, and cgroup v1 controllers the test must not touch.
  'cgroup_controllers = [ ]',
  // Otherwise QEMU gets a private /dev via a mount namespace of its own, for nothing here.
  'namespaces = [ ]',
  // QEMU's stdout/stderr straight to /var/log/libvirt/qemu/DOM.log, without virtlogd.
  'stdio_handler = "file"',
  '',
].join('\n');

/** A namespace's inode link ("mnt:[4026532240]") of a process, or undefined once it is gone. */
function nsOf(pid: number, kind: 'mnt' | 'net'): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return undefined;
  }
}

/**
 * `sh -c SWEEP sh ROOT NETNS...`: SIGKILLs every process whose mount or network namespace is
 * listed in ROOT/namespaces (libvirtd, the QEMUs it daemonized, which are no longer its
 * children, relay ends, anything started with argv()), until none is left; then deletes the
 * network namespaces and ROOT. destroy() runs it, and so does the watchdog when the test
 * process dies without calling destroy() (vitest ends an interrupted worker without an 'exit'
 * event). Zombies are skipped: they hold nothing, and their parent reaps them.
 */
const SWEEP = `
root=$1; shift
list=" $(cat "$root/namespaces" 2>/dev/null | tr '\\n' ' ') "
for round in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
  found=0
  for p in /proc/[0-9]*; do
    for kind in mnt net; do
      ns=$(readlink "$p/ns/$kind" 2>/dev/null) || continue
      case "$list" in
        *" $ns "*)
          case "$(sed 's/.*) //' "$p/stat" 2>/dev/null)" in Z*|'') ;; *) kill -9 "\${p#/proc/}" 2>/dev/null && found=1 ;; esac
          break ;;
      esac
    done
  done
  [ "$found" = 0 ] && break
  sleep 0.2
done
for ns in "$@"; do ip netns del "$ns" 2>/dev/null; done
[ -n "$MS_LIBVIRT_KEEP" ] || rm -rf "$root"
`;

/** Runs SWEEP once `pid` (the test process) is gone. */
const WATCHDOG = `
pid=$1; shift
while kill -0 "$pid" 2>/dev/null; do sleep 1; done
${SWEEP}`;

interface HostInternals extends LibvirtHost {
  /** The host's mount and network namespaces, for the sweep. */
  namespaces: string[];
  daemon: ChildProcess;
}

/** Per-pair choices beyond the defaults (see createLibvirtPair). */
interface HostSettings {
  tcp: boolean;
  qemuConf: readonly string[];
}

async function startHost(name: string, netns: string, address: string, root: string, dir: string, settings: HostSettings): Promise<HostInternals> {
  const state = join(root, name);
  for (const sub of [...Object.keys(PRIVATE_DIRS), 'dir']) mkdirSync(join(state, sub), { recursive: true });
  writeFileSync(join(state, 'etc', 'libvirtd.conf'), libvirtdConf(name, settings.tcp));
  writeFileSync(join(state, 'etc', 'qemu.conf'), QEMU_CONF + settings.qemuConf.map((line) => `${line}\n`).join(''));
  // The mount points must exist in the machine's view (empty there); without
  // libvirt-daemon-system nothing else creates /var/lib/libvirt and the like.
  for (const target of Object.values(PRIVATE_DIRS)) mkdirSync(target, { recursive: true });

  // The mount namespace lives as long as libvirtd (exec'd by sh: same pid), whose namespaces
  // nsenter then joins. --propagation private: none of these mounts leaks to the machine.
  const mounts = Object.entries(PRIVATE_DIRS).map(([sub, target]) => `mount --bind "$1/${sub}" ${target}`);
  const script = [
    'set -e',
    ...mounts,
    'mount --bind "$1/dir" "$2"',
    `hostname ms-libvirt-${name}`,
    `exec libvirtd --config /etc/libvirt/libvirtd.conf --pid-file /run/libvirt/libvirtd.pid${settings.tcp ? ' --listen' : ''}`,
  ].join('\n');
  const daemon = spawn('ip', ['netns', 'exec', netns, 'unshare', '--mount', '--uts', '--propagation', 'private', 'sh', '-c', script, 'sh', state, dir], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  daemon.stdout!.setEncoding('utf8').on('data', (text: string) => (output += text));
  daemon.stderr!.setEncoding('utf8').on('data', (text: string) => (output += text));
  let exited = false;
  daemon.on('exit', () => (exited = true));
  const pid = daemon.pid!;

  const outside = (path: string): string => {
    if (path === dir || path.startsWith(`${dir}/`)) return join(state, 'dir', path.slice(dir.length));
    if (path.startsWith(`${PRIVATE_DIRS.log}/`)) return join(state, 'log', path.slice(PRIVATE_DIRS.log.length));
    throw new Error(`${path} is not under ${dir} or ${PRIVATE_DIRS.log}`);
  };
  const argv = (cmd: readonly string[]): string[] => ['nsenter', `--target=${pid}`, '--mount', '--net', '--uts', '--', ...cmd];
  const logTail = (lines = 15): string => {
    const files = [join(state, 'log', 'libvirtd.log')];
    const qemuLogs = join(state, 'log', 'qemu');
    if (existsSync(qemuLogs)) files.push(...readdirSync(qemuLogs).map((file) => join(qemuLogs, file)));
    return files
      .filter((file) => existsSync(file))
      .map((file) => `--- host ${name}: ${file}\n${readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n')}`)
      .join('\n');
  };
  const host: HostInternals = {
    name,
    netns,
    address,
    pid,
    dir,
    driverSocket: DRIVER_SOCKET,
    outside,
    argv,
    run: (cmd, options) => runArgv(argv(cmd), options?.timeoutMs),
    virsh: (args, options) => runArgv(argv(['virsh', '-c', 'qemu:///system', ...args]), options?.timeoutMs),
    spawn: (cmd, options = {}) => {
      const full = argv(cmd);
      return spawn(full[0]!, full.slice(1), options);
    },
    logTail,
    namespaces: [],
    daemon,
  };

  // Ready once the socket exists (the namespaces are then final) and the QEMU driver answers
  // (`virsh version` waits for the capabilities probe).
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!existsSync(join(state, 'run', 'libvirt-sock'))) {
    if (exited || Date.now() > deadline) throw new Error(`libvirtd of host ${name} did not start: ${output}\n${logTail()}`);
    await sleep(100);
  }
  for (const kind of ['mnt', 'net'] as const) {
    const ns = nsOf(pid, kind);
    if (ns) host.namespaces.push(ns);
  }
  const version = await host.virsh(['version'], { timeoutMs: Math.max(1000, deadline - Date.now()) });
  if (version.code !== 0 || !/Running hypervisor: QEMU/.test(version.stdout)) {
    throw new Error(`libvirtd of host ${name} has no working QEMU driver: ${version.stderr}${version.stdout}\n${logTail()}`);
  }
  return host;
}

export interface LibvirtPairOptions {
  /** Caps the veth between the hosts (both directions). */
  rateMbit?: number;
  /**
   * libvirtd also listens on TCP port 16509 (`--listen`, `listen_tcp = 1`, `auth_tcp = "none"`):
   * `qemu+tcp://ADDRESS/system` reaches it, for libvirt's native migration over TCP.
   */
  tcp?: boolean;
  /** Lines appended to both hosts' qemu.conf (e.g. `default_tls_x509_cert_dir` for `--tls`). */
  qemuConf?: readonly string[];
}

/**
 * Starts hosts a (the source) and b (the destination), each a libvirtd in its own namespaces;
 * `rateMbit` caps the veth between them. Throws when libvirtAvailable() is not true.
 */
export async function createLibvirtPair(options: LibvirtPairOptions = {}): Promise<LibvirtPair> {
  const available = libvirtAvailable();
  if (available !== true) throw new Error(available);
  const root = mkdtempSync(join(tmpdir(), 'ms-libvirt-'));
  const dir = join(root, 'dir');
  mkdirSync(dir);
  let link: Link;
  try {
    link = createLink(options);
  } catch (error) {
    rmSync(root, { recursive: true, force: true });
    throw error;
  }
  // Every process of a host is in its network namespace or (nsenter --net omitted) its mount
  // namespace: the sweep's list starts with the former, the latter join once libvirtd runs.
  const namespacesFile = join(root, 'namespaces');
  const netnsIds = [link.a, link.b].map((ns) => `net:[${statSync(`/run/netns/${ns}`).ino}]`);
  writeFileSync(namespacesFile, netnsIds.join('\n') + '\n');
  const watchdog = spawn('sh', ['-c', WATCHDOG, 'sh', String(process.pid), root, link.a, link.b], { detached: true, stdio: 'ignore' });
  watchdog.unref();
  const hosts: HostInternals[] = [];
  let destroyed = false;
  const destroySync = (): void => {
    if (destroyed) return;
    destroyed = true;
    watchdog.kill('SIGKILL');
    for (const host of hosts) host.daemon.kill('SIGKILL');
    execFileSync('sh', ['-c', SWEEP, 'sh', root, link.a, link.b], { stdio: 'ignore' });
  };
  try {
    const settings: HostSettings = { tcp: options.tcp ?? false, qemuConf: options.qemuConf ?? [] };
    const started = await Promise.allSettled([startHost('a', link.a, link.addressA, root, dir, settings), startHost('b', link.b, link.addressB, root, dir, settings)]);
    for (const result of started) if (result.status === 'fulfilled') hosts.push(result.value);
    for (const host of hosts) appendFileSync(namespacesFile, host.namespaces.join('\n') + '\n');
    const failure = started.find((result) => result.status === 'rejected');
    if (failure) throw (failure as PromiseRejectedResult).reason;
  } catch (error) {
    destroySync();
    throw error;
  }
  return {
    source: hosts[0]!,
    destination: hosts[1]!,
    paths: { driver: join(dir, 'libvirt.sock'), qemu: join(dir, 'qemu.sock'), nbd: join(dir, 'nbd.sock') },
    link,
    destroy: async () => destroySync(),
  };
}

export interface DomainOptions {
  name: string;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  cmdline: string;
  /** The guest's serial console (ttyS0), appended to, in the host's view. */
  serialLog: string;
  /** A raw image in the host's view: the guest's /dev/vda (virtio-blk). */
  disk?: string;
}

function xmlEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}

/** TCG guest with direct kernel boot, serial console to a file, no network, no balloon. */
export function domainXml(options: DomainOptions): string {
  const e = xmlEscape;
  const disk = options.disk
    ? `
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='${e(options.disk)}'/>
      <target dev='vda' bus='virtio'/>
    </disk>`
    : '';
  return `<domain type='qemu'>
  <name>${e(options.name)}</name>
  <memory unit='MiB'>${options.memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${e(options.kernel)}</kernel>
    <initrd>${e(options.initrd)}</initrd>
    <cmdline>${e(options.cmdline)}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>${disk}
    <serial type='file'>
      <source path='${e(options.serialLog)}' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

/**
 * Starts a transient domain (`virsh create`): once migrated away it is gone from its source,
 * and a migration back needs no definition there.
 */
export async function startDomain(host: LibvirtHost, xml: string): Promise<void> {
  const name = /<name>([^<]*)<\/name>/.exec(xml)?.[1] ?? 'domain';
  const file = join(host.dir, `${name}.xml`);
  writeFileSync(host.outside(file), xml);
  const created = await host.virsh(['create', file]);
  if (created.code !== 0) throw new Error(`virsh create on host ${host.name}: ${created.stderr}\n${host.logTail()}`);
}

export interface MigrateOptions {
  /** --copy-storage-all over `paths.nbd` (the destination needs an image of the same size at the same path). */
  copyStorage?: boolean;
  /** --parallel --parallel-connections N: multifd, N connections to `paths.qemu`. */
  parallel?: number;
  /** --suspend: leave the domain paused on the destination (e.g. to compare disks). */
  suspend?: boolean;
}

/** The `virsh migrate` arguments of a p2p live migration over the unix-socket paths; run on the source. */
export function migrateArgs(domain: string, paths: MigrationPaths, options: MigrateOptions = {}): string[] {
  const args = ['migrate', domain, `qemu+unix:///system?socket=${paths.driver}`, '--p2p', '--live', '--migrateuri', `unix://${paths.qemu}`];
  if (options.copyStorage) args.push('--copy-storage-all', '--disks-uri', `unix://${paths.nbd}`);
  if (options.parallel !== undefined) args.push('--parallel', '--parallel-connections', String(options.parallel));
  if (options.suspend) args.push('--suspend');
  return args;
}

const HEARTBEAT = /migstream-heartbeat (\d+)/g;

/** The last value of `pattern`'s first group in a file (e.g. a serial log), or -1. */
export function lastCounter(file: string, pattern: RegExp = HEARTBEAT): number {
  if (!existsSync(file)) return -1;
  let last = -1;
  for (const match of readFileSync(file, 'utf8').matchAll(new RegExp(pattern.source, 'g'))) last = Number(match[1]);
  return last;
}

/**
 * Waits until the serial log `logPath` (in the test's view: host.outside()) shows a heartbeat
 * counter above `after`, and returns it. A guest that migrated continues its count; a fresh
 * boot would start again from 1.
 */
/** The line the guest's disk writer prints per block written (guest/diskwrite.c). */
export const DISK_COUNTER = /migstream-disk (\d+)/;

/** The test guest's kernel and initramfs (real paths: both hosts see the repository there). */
export function guestBootFiles(): { kernel: string; initrd: string } {
  return { kernel: realpathSync(join(GUEST_DIR, 'vmlinuz')), initrd: realpathSync(join(GUEST_DIR, 'initramfs.cpio.gz')) };
}

export interface TestGuestOptions {
  /** guest/memfill's page mix filled at boot (fill=). */
  fillMiB: number;
  mode?: 'idle' | 'dirty';
  /** More kernel arguments (e.g. disk=4096:1). */
  cmdline?: string;
  disk?: string | undefined;
}

/**
 * Starts the test guest as a transient 256 MiB domain `name` on `host` and waits for its first
 * heartbeat; returns its serial log's path as the host sees it (`host.outside()` for ours).
 */
export async function bootTestGuest(host: LibvirtHost, name: string, options: TestGuestOptions): Promise<string> {
  const serialLog = join(host.dir, `${name}.serial.log`);
  const cmdline = `console=ttyS0 panic=-1 mode=${options.mode ?? 'idle'} fill=${options.fillMiB} ${options.cmdline ?? ''}`.trim();
  await startDomain(host, domainXml({ name, memoryMiB: 256, ...guestBootFiles(), cmdline, serialLog, disk: options.disk }));
  await waitForHeartbeat(host.outside(serialLog), 0, 120_000);
  return serialLog;
}

/**
 * A disk for --copy-storage-all at the same path on both hosts (each in its own view): random
 * on `source`, so a copy that skipped anything shows; empty of the same size on `destination`,
 * as libvirt requires.
 */
export function copyStorageDisk(source: LibvirtHost, destination: LibvirtHost, name: string, sizeMiB: number): { disk: string; image: string; copy: string } {
  const disk = join(source.dir, `${name}.raw`);
  const image = source.outside(disk);
  const copy = destination.outside(disk);
  writeFileSync(image, randomBytes(sizeMiB * 1024 * 1024));
  writeFileSync(copy, '');
  truncateSync(copy, sizeMiB * 1024 * 1024);
  return { disk, image, copy };
}

/** Destroys domain `name` on both hosts of `pair`, wherever it is: a guest left running would keep a core busy for the next test. */
export async function destroyEverywhere(pair: LibvirtPair, name: string): Promise<void> {
  for (const host of [pair.source, pair.destination]) await host.virsh(['destroy', name]);
}

/** After a migration: the transient domain left `from` entirely and is `state` on `to`. */
export async function expectMoved(from: LibvirtHost, to: LibvirtHost, name: string, state: 'running' | 'paused'): Promise<void> {
  // node:assert rather than vitest's expect: bench/libvirt.ts loads this file outside vitest.
  const gone = await from.virsh(['domstate', name]);
  assert.notEqual(gone.code, 0, `${name} is still on ${from.name}: ${gone.stdout}`);
  assert.match(gone.stderr, /failed to get domain/);
  const there = await to.virsh(['domstate', name]);
  assert.equal(there.code, 0, there.stderr);
  assert.equal(there.stdout.trim(), state);
}

export async function waitForHeartbeat(logPath: string, after = -1, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = lastCounter(logPath);
    if (last > after) return last;
    if (Date.now() > deadline) throw new Error(`no heartbeat above ${after} in ${logPath} within ${timeoutMs} ms (last: ${last})`);
    await sleep(200);
  }
}

/** Bytes received so far on the host's side of the veth (every migration byte crosses it). */
export function receivedBytes(host: LibvirtHost): number {
  const links = JSON.parse(execFileSync('ip', ['-n', host.netns, '-j', '-s', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string; stats64: { rx: { bytes: number } } }[];
  return links.filter((link) => link.ifname !== 'lo').reduce((sum, link) => sum + link.stats64.rx.bytes, 0);
}

export interface Relay {
  /** Connections accepted so far per path, on the source side. */
  connections: Record<keyof MigrationPaths, number>;
  /** Stops both ends (and the connections they forked). */
  stop(): Promise<void>;
}

/**
 * Waits for socat -d -d's "listening on" line (throws if socat exits first), then calls
 * `onAccept` for each "accepting connection" line.
 */
function socatListening(child: ChildProcess, what: string, onAccept: () => void = () => {}): Promise<void> {
  return new Promise((resolve, reject) => {
    let head = '';
    let partial = '';
    const timer = setTimeout(() => reject(new Error(`socat (${what}) is not listening after 10 s: ${head}`)), 10_000);
    // Drained for as long as socat runs: -d -d logs every connection, and a full pipe blocks it.
    child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      if (head.length < 8192) head += text;
      const lines = (partial + text).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (/listening on/.test(line)) {
          clearTimeout(timer);
          resolve();
        } else if (/accepting connection/.test(line)) onAccept();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`socat (${what}) exited with ${code}: ${head}`));
    });
  });
}

function stopGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    try {
      // The group: socat and the children it forked per connection.
      process.kill(-child.pid!, 'SIGTERM');
    } catch {
      resolve();
    }
    setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {}
    }, 2_000).unref();
  });
}

/**
 * The plain relay: per route, `socat UNIX-LISTEN` inside `from` and `socat TCP-LISTEN` inside
 * `to`, joined by one TCP connection across the veth per unix connection (port basePort + i).
 */
export async function startSocatRelay(from: LibvirtHost, to: LibvirtHost, paths: MigrationPaths, basePort = 41000): Promise<Relay> {
  const children: ChildProcess[] = [];
  const connections = { driver: 0, qemu: 0, nbd: 0 };
  const stop = async (): Promise<void> => {
    await Promise.all(children.map(stopGroup));
  };
  try {
    for (const [index, route] of relayRoutes(paths, to).entries()) {
      const port = basePort + index;
      const far = to.spawn(['socat', '-d', '-d', `TCP-LISTEN:${port},bind=${to.address},fork,reuseaddr`, `UNIX-CONNECT:${route.connect}`], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(far);
      await socatListening(far, `${to.name} ${route.name}`);
      // unlink-early: a socket left by an earlier migration in this direction or the other.
      const near = from.spawn(['socat', '-d', '-d', `UNIX-LISTEN:${route.listen},fork,unlink-early`, `TCP:${to.address}:${port}`], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(near);
      await socatListening(near, `${from.name} ${route.name}`, () => connections[route.name]++);
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { connections, stop };
}

/** One JSON line of `migstream tunnel --json` (stdout). */
export interface TunnelEvent {
  event: string;
  kind?: string | null;
  target?: string;
  stream?: number;
  channel?: number;
  clientBytes?: number;
  serverBytes?: number;
  reset?: string | null;
  [field: string]: unknown;
}

/** One `migstream tunnel --json` process inside a host. */
export interface TunnelEnd {
  child: ChildProcess;
  /** Its JSON lines so far. */
  events: TunnelEvent[];
  /** Its stderr so far. */
  stderr(): string;
  /** Its exit: code (null when killed by a signal) and signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The first event named `event` (already seen or to come); rejects if the process exits first. */
  waitFor(event: string, timeoutMs?: number): Promise<TunnelEvent>;
}

/** `bin/migstream` of the checkout these helpers belong to. */
export const MIGSTREAM_BIN = join(import.meta.dirname, '../../bin/migstream');

/** Runs `migstream tunnel ARGS --json` inside `host` (`node bin/migstream`, this test's node). */
export function spawnTunnel(host: LibvirtHost, args: readonly string[]): TunnelEnd {
  const child = host.spawn([process.execPath, MIGSTREAM_BIN, 'tunnel', ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: TunnelEvent[] = [];
  let stderr = '';
  let partial = '';
  const waiters: (() => void)[] = [];
  const wake = (): void => {
    for (const waiter of waiters.splice(0)) waiter();
  };
  child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line.trim() === '') continue;
      try {
        events.push(JSON.parse(line) as TunnelEvent);
      } catch {
        stderr += `(stdout, not JSON) ${line}\n`;
      }
    }
    wake();
  });
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    if (stderr.length < 65536) stderr += text;
  });
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => {
      done = true;
      wake();
      resolve({ code, signal });
    });
  });
  const waitFor = (event: string, timeoutMs = 30_000): Promise<TunnelEvent> =>
    new Promise((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      const check = (): void => {
        const found = events.find((e) => e.event === event);
        if (found) return resolve(found);
        if (done) return reject(new Error(`migstream tunnel in host ${host.name} exited (${child.exitCode ?? child.signalCode}) before "${event}": ${stderr}`));
        if (Date.now() > deadline) return reject(new Error(`migstream tunnel in host ${host.name}: no "${event}" within ${timeoutMs} ms: ${stderr}`));
        waiters.push(check);
        setTimeout(check, Math.max(0, deadline - Date.now()) + 10).unref();
      };
      check();
    });
  return { child, events, stderr: () => stderr, exited, waitFor };
}

export interface TunnelRelayOptions {
  /** The destination tunnel's TCP port on `to.address`. */
  port?: number;
  /** --channels N of the source side. */
  channels?: number;
  /**
   * `migstream certs` directories (outside both hosts' private dirs, so visible to both):
   * the destination uses `destination` (server.pem), the source `source` (client.pem). Without
   * it, --insecure.
   */
  tls?: { source: string; destination: string };
  /** --timeout S of both sides. */
  timeoutSeconds?: number;
  /** More options for the source side (e.g. -c lz4). */
  sourceArgs?: string[];
}

export interface TunnelRelay {
  /** The source side (--to), inside `from`; its "ready" event has been seen. */
  source: TunnelEnd;
  /** The destination side (--listen), inside `to`. */
  destination: TunnelEnd;
  /** SIGTERM to both (SIGKILL after 5 s); resolves with their exits. */
  stop(): Promise<{ source: number | null; destination: number | null }>;
}

async function stopTunnel(end: TunnelEnd): Promise<number | null> {
  if (end.child.exitCode === null && end.child.signalCode === null) {
    end.child.kill('SIGTERM');
    const timer = setTimeout(() => end.child.kill('SIGKILL'), 5_000);
    const { code } = await end.exited;
    clearTimeout(timer);
    return code;
  }
  return (await end.exited).code;
}

/**
 * `migstream tunnel` as the relay: `--listen to.address:PORT --unix CONNECT…` inside `to`, then
 * `--to to.address:PORT --unix LISTEN=CONNECT…` inside `from` (relayRoutes); resolves once the
 * source side reports "ready", i.e. listens on the paths virsh migrate will use.
 */
export async function startTunnelRelay(from: LibvirtHost, to: LibvirtHost, paths: MigrationPaths, options: TunnelRelayOptions = {}): Promise<TunnelRelay> {
  const port = options.port ?? 44500;
  const routes = relayRoutes(paths, to);
  const security = (side: 'source' | 'destination'): string[] => (options.tls ? ['--tls', options.tls[side]] : ['--insecure']);
  const timeout = options.timeoutSeconds !== undefined ? ['--timeout', String(options.timeoutSeconds)] : [];
  const destination = spawnTunnel(to, ['--listen', `${to.address}:${port}`, ...routes.flatMap((route) => ['--unix', route.connect]), ...security('destination'), ...timeout]);
  let source: TunnelEnd | undefined;
  try {
    await destination.waitFor('listening');
    source = spawnTunnel(from, [
      '--to',
      `${to.address}:${port}`,
      ...routes.flatMap((route) => ['--unix', `${route.listen}=${route.connect}`]),
      '--channels',
      String(options.channels ?? 1),
      ...security('source'),
      ...timeout,
      ...(options.sourceArgs ?? []),
    ]);
    await source.waitFor('ready');
  } catch (error) {
    if (source) await stopTunnel(source);
    await stopTunnel(destination);
    throw error;
  }
  const started = source;
  return {
    source: started,
    destination,
    stop: async () => {
      // The source first: the destination then sees its session end, not a lost peer mid-stream.
      const sourceCode = await stopTunnel(started);
      return { source: sourceCode, destination: await stopTunnel(destination) };
    },
  };
}
