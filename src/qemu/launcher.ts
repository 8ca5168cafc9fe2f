/**
 * Starts qemu-system-x86_64 with a QMP socket and a serial log, and makes sure it never
 * outlives us: quit()/kill(), a process 'exit' hook, and a watchdog child that kills QEMU
 * when our end of its stdin pipe closes (which also covers SIGKILL of this process).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, constants, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArgumentError } from '../stream/errors.js';
import { QemuExitedError, QemuLaunchError, QemuTimeoutError, tail } from './errors.js';
import { QmpClient } from './qmp.js';
import { qemuTool, type QemuVersion } from './versions.js';

export type Accel = 'kvm' | 'tcg';

/** True when /dev/kvm opens read-write (necessary, not sufficient, for `-accel kvm`). */
export function kvmUsable(): boolean {
  try {
    closeSync(openSync('/dev/kvm', constants.O_RDWR));
    return true;
  } catch {
    return false;
  }
}

/** `MIGSTREAM_ACCEL=kvm|tcg` wins; otherwise KVM when /dev/kvm is usable. */
export function detectAccel(env: NodeJS.ProcessEnv = process.env): Accel {
  const forced = env.MIGSTREAM_ACCEL;
  if (forced === 'kvm' || forced === 'tcg') return forced;
  if (forced) throw new ArgumentError(`MIGSTREAM_ACCEL must be "kvm" or "tcg", not ${JSON.stringify(forced)}`);
  return kvmUsable() ? 'kvm' : 'tcg';
}

export interface LaunchOptions {
  /** Machine arguments (-machine, -m, -kernel, devices, -S, -incoming …). */
  args: readonly string[];
  accel?: Accel;
  /** Shown in logs and passed as `-name`. */
  name?: string;
  /** Where the guest serial console goes; default a file in a private temp dir. */
  serialLogPath?: string;
  cwd?: string;
  /** Default: the system emulator of `qemu` (src/qemu/versions.ts). */
  binary?: string;
  /** Which QEMU release to run when `binary` is not given (default 7.2, the system's). */
  qemu?: QemuVersion;
  /** How long QEMU may take to open its QMP socket. */
  startTimeoutMs?: number;
  /**
   * Run QEMU inside this network namespace (`ip netns exec`, which execs QEMU in place, so the
   * pid is QEMU's): its exec: children then reach only that namespace's network, as on a host
   * of its own. QMP stays a Unix socket on the shared file system.
   */
  netns?: string;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
}

const live = new Set<QemuVm>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const vm of live) vm.killAndForget();
  });
}

const STDERR_LIMIT = 64 * 1024;

export class QemuVm {
  readonly name: string;
  readonly accel: Accel;
  readonly serialLogPath: string;
  readonly args: readonly string[];
  readonly exited: Promise<ExitInfo>;
  private exitInfo: ExitInfo | undefined;
  private stderr = '';
  private qmpClient: QmpClient | undefined;

  constructor(
    private readonly child: ChildProcess,
    watchdog: ChildProcess,
    private readonly runDir: string,
    options: { name: string; accel: Accel; serialLogPath: string; args: readonly string[] },
  ) {
    this.name = options.name;
    this.accel = options.accel;
    this.serialLogPath = options.serialLogPath;
    this.args = options.args;
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.stderr = (this.stderr + chunk).slice(-STDERR_LIMIT);
    });
    this.exited = new Promise<ExitInfo>((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
        if (this.exitInfo) return;
        this.exitInfo = { code, signal };
        live.delete(this);
        watchdog.kill('SIGKILL');
        this.qmpClient?.close();
        resolve(this.exitInfo);
      };
      // 'close' comes once stderr is read to the end, but an exec: child that inherited
      // QEMU's stderr can hold it open, so do not wait for it for long.
      child.once('close', finish);
      child.once('exit', (code, signal) => setTimeout(() => finish(code, signal), 1_000).unref());
    });
    live.add(this);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get hasExited(): boolean {
    return this.exitInfo !== undefined;
  }

  get qmp(): QmpClient {
    if (!this.qmpClient) throw new ArgumentError(`QEMU ${this.name}: QMP is not connected yet`);
    return this.qmpClient;
  }

  /** What QEMU wrote to stderr (last 64 KiB). */
  stderrText(): string {
    return this.stderr;
  }

  serialText(): string {
    try {
      return readFileSync(this.serialLogPath, 'utf8');
    } catch {
      return '';
    }
  }

  execute<T = unknown>(command: string, args?: Readonly<Record<string, unknown>>): Promise<T> {
    return this.qmp.execute<T>(command, args);
  }

  /** Polls the serial log until `pattern` matches; fails early if QEMU exits. */
  async waitForSerial(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = this.serialText().match(pattern);
      if (match) return match;
      if (this.exitInfo) {
        throw new QemuExitedError(`waiting for ${pattern} on the serial console of ${this.name}`, this.exitInfo, this.stderr, `--- serial tail ---\n${tail(this.serialText())}`);
      }
      if (Date.now() >= deadline) {
        throw new QemuTimeoutError(`waiting for ${pattern} on the serial console of ${this.name} (${this.accel})`, timeoutMs, `--- serial tail ---\n${tail(this.serialText())}`);
      }
      await sleep(200);
    }
  }

  /** Asks QEMU to quit; SIGKILL if it has not exited within `timeoutMs`. */
  async quit(timeoutMs = 5_000): Promise<ExitInfo> {
    if (!this.exitInfo) {
      this.qmpClient?.execute('quit').catch(() => undefined);
      const timer = setTimeout(() => this.kill(), timeoutMs);
      await this.exited;
      clearTimeout(timer);
    }
    rmSync(this.runDir, { recursive: true, force: true });
    return this.exited;
  }

  kill(): void {
    if (!this.exitInfo) this.child.kill('SIGKILL');
  }

  /** For the process 'exit' hook, where nothing asynchronous runs any more. */
  killAndForget(): void {
    this.kill();
    rmSync(this.runDir, { recursive: true, force: true });
  }

  /** @internal */
  async connect(socketPath: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.exitInfo) {
        throw new QemuLaunchError(`QEMU ${this.name} exited (code ${this.exitInfo.code}, signal ${this.exitInfo.signal}) during startup`, this.stderr);
      }
      if (existsSync(socketPath)) {
        try {
          this.qmpClient = await QmpClient.connect(socketPath, { timeoutMs: Math.max(1_000, deadline - Date.now()) });
          return;
        } catch (err) {
          if (Date.now() >= deadline) throw new QemuLaunchError(`QEMU ${this.name}: QMP did not come up`, this.stderr, { cause: err });
        }
      }
      if (Date.now() >= deadline) {
        throw new QemuLaunchError(`QEMU ${this.name}: no QMP socket after ${timeoutMs} ms`, this.stderr);
      }
      await sleep(50);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Spawns QEMU and resolves once QMP is ready (capabilities negotiated). */
export async function launchQemu(options: LaunchOptions): Promise<QemuVm> {
  installExitHook();
  const accel = options.accel ?? detectAccel();
  const name = options.name ?? 'qemu';
  // Unix socket paths are limited to ~107 bytes, so the socket lives in a short temp dir.
  const runDir = mkdtempSync(join(tmpdir(), 'migstream-qemu-'));
  const socketPath = join(runDir, 'qmp.sock');
  const serialLogPath = options.serialLogPath ?? join(runDir, 'serial.log');
  const binary = options.binary ?? qemuTool(options.qemu ?? '7.2', 'qemu-system-x86_64');
  const args = ['-name', name, '-accel', accel, '-display', 'none', '-monitor', 'none', '-serial', `file:${serialLogPath}`, '-qmp', `unix:${socketPath},server=on,wait=off`, ...options.args];

  const [command, commandArgs] = options.netns === undefined ? [binary, args] : ['ip', ['netns', 'exec', options.netns, binary, ...args]];
  const child = spawn(command, commandArgs, { cwd: options.cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  const spawned = await new Promise<Error | undefined>((resolve) => {
    child.once('spawn', () => resolve(undefined));
    child.once('error', (err) => resolve(err));
  });
  if (spawned) {
    rmSync(runDir, { recursive: true, force: true });
    throw new QemuLaunchError(`cannot run ${binary}: ${spawned.message} (run scripts/setup-qemu.sh${options.qemu === '10.0' ? ' and scripts/setup-qemu10.sh' : ''})`, '', { cause: spawned });
  }

  // Reads until EOF, i.e. until this process is gone, then kills QEMU and removes runDir.
  const watchdogScript = 'while read -r _; do :; done; kill -9 "$1" 2>/dev/null; rm -rf "$2"';
  const watchdog = spawn('/bin/sh', ['-c', watchdogScript, 'migstream-watchdog', String(child.pid), runDir], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  watchdog.unref();
  (watchdog.stdin as Socket | null)?.unref();

  const vm = new QemuVm(child, watchdog, runDir, { name, accel, serialLogPath, args });
  try {
    await vm.connect(socketPath, options.startTimeoutMs ?? 30_000);
  } catch (err) {
    await vm.quit(0);
    throw err;
  }
  return vm;
}
