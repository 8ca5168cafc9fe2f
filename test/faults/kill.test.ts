/**
 * Fault matrix, kill family (docs/faults.md): `kill -9` of each process of a live migration
 * (source QEMU → exec:migstream send → TLS channels → migstream recv → destination QEMU's
 * -incoming exec:) at a seeded random point of the transfer, and of `compress` during a save
 * and `decompress` during a restore. The survivors exit 1 with one message within the
 * transport timeout, the source guest runs on, the destination never runs, and no output file
 * is left under its final name.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import type { QemuVm } from '../../src/qemu/launcher.js';
import { REPO_ROOT } from '../fixtures/meta.js';
import {
  bootCappedSource,
  bootDestination,
  expectDestinationNotResumed,
  expectNoOutput,
  expectOneMessage,
  expectSourceRuns,
  faultSeed,
  message,
  mulberry32,
  recordCell,
  sleep,
  tracked,
  waitOutgoing,
  whenTransferred,
  type Outcome,
  type Tracked,
} from '../helpers/faults.js';
import { launchQemu } from '../../src/qemu/launcher.js';
import { loadFixture } from '../helpers/qemu.js';
import { BIN, freePort, testCerts } from '../helpers/transport.js';

const TIMEOUT_S = 10;
/** Fault to exit: the transport's own detection is immediate for a kill; the timeout is the bound. */
const EXIT_BOUND_MS = (TIMEOUT_S + 5) * 1000;
/** The source's bandwidth cap: the idle 128 MiB guest's ~50 MB take a second or two. */
const MAX_BANDWIDTH = 48 * 1024 * 1024;
/** Bytes of the guest's stream the fault points are drawn from (below its total, ~50 MB). */
const FAULT_SPAN = 36_000_000;

const seed = faultSeed('kill');
const random = mulberry32(seed);
const faultPoint = (): number => Math.round(FAULT_SPAN * (0.15 + 0.6 * random()));
const scratch = mkdtempSync(join(tmpdir(), 'migstream-faults-kill-'));
const vms: QemuVm[] = [];
let source: QemuVm;

beforeAllOrFail(async () => {
  source = await bootCappedSource('kill-source', scratch, MAX_BANDWIDTH);
  vms.push(source);
}, 240_000);

afterAll(async () => {
  await Promise.all(vms.map((vm) => vm.quit()));
  rmSync(scratch, { recursive: true, force: true });
});

const sinceFault = (outcome: Outcome | undefined, faultAt: number): number | undefined => (outcome ? outcome.exitedAt - faultAt : undefined);

type Victim = 'send' | 'recv' | 'source QEMU' | 'destination QEMU';

async function liveMigrationKill(victim: Victim): Promise<void> {
  const cell = victim.replace(/ /g, '-');
  const certs = testCerts();
  const port = await freePort();
  const dest = await bootDestination(`kill-dest-${cell}`, scratch);
  vms.push(dest);
  const recv = tracked(scratch, `recv-${cell}`, ['recv', '--listen', `127.0.0.1:${port}`, '--tls', certs, '--quiet', '--timeout', String(TIMEOUT_S)]);
  const send = tracked(scratch, `send-${cell}`, ['send', `127.0.0.1:${port}`, '--channels', '2', '--tls', certs, '--tls-name', '127.0.0.1', '--quiet', '--timeout', String(TIMEOUT_S)]);
  await dest.execute('migrate-incoming', { uri: `exec:${recv.command}` });
  await source.execute('migrate', { uri: `exec:${send.command}` });
  const point = faultPoint();
  const transferred = await whenTransferred(source, point);
  const faultAt = Date.now();
  if (victim === 'send') process.kill(send.pid()!, 'SIGKILL');
  else if (victim === 'recv') process.kill(recv.pid()!, 'SIGKILL');
  else if (victim === 'source QEMU') source.kill();
  else dest.kill();

  const [sent, received] = await Promise.all([send.waitExit(EXIT_BOUND_MS + 5_000), recv.waitExit(EXIT_BOUND_MS + 5_000)]);
  const sourceStatus = victim === 'source QEMU' ? 'killed' : await waitOutgoing(source, 60_000);
  const destStatus = victim === 'destination QEMU' ? 'killed' : await expectDestinationNotResumed(dest, 60_000);
  recordCell({
    family: 'kill',
    cell: `kill -9 ${victim}`,
    seed,
    faultAt: `${transferred} B`,
    exitMs: { send: sinceFault(sent, faultAt), recv: sinceFault(received, faultAt) },
    codes: { send: sent?.code, recv: received?.code },
    messages: { send: message(sent?.stderr), recv: message(received?.stderr) },
    outcome: `source ${sourceStatus}, destination ${destStatus}`,
  });

  for (const [side, outcome, killed] of [
    ['send', sent, victim === 'send'],
    ['recv', received, victim === 'recv'],
  ] as const) {
    expect(outcome, `${side} did not exit within ${EXIT_BOUND_MS + 5_000} ms of the fault`).toBeDefined();
    if (killed) {
      expect(outcome!.code).toBe(137);
      continue;
    }
    expect(outcome!.code, outcome!.stderr).toBe(1);
    expect(outcome!.exitedAt - faultAt).toBeLessThan(EXIT_BOUND_MS);
    expectOneMessage(outcome!.stderr, side, /./);
  }
  if (victim !== 'source QEMU') {
    expect(sourceStatus).toBe('failed');
    await expectSourceRuns(source);
  }
}

describe(`kill -9 during a live migration through send/recv (seed ${seed})`, () => {
  test('kill -9 send: recv fails at once, the source fails the migration and runs on', () => liveMigrationKill('send'), 180_000);
  test('kill -9 recv: send fails at once, the source runs on, the destination fails its load', () => liveMigrationKill('recv'), 180_000);
  test('kill -9 destination QEMU: recv and send fail, the source runs on', () => liveMigrationKill('destination QEMU'), 180_000);
});

describe(`kill -9 during a save and a restore (seed ${seed})`, () => {
  test('kill -9 compress during migrate "exec:migstream compress -o F": no F, the source runs on', async () => {
    const out = join(scratch, 'save.msz');
    const compress = tracked(scratch, 'compress', ['compress', '-c', 'lz4', '-o', out, '--quiet']);
    await source.execute('migrate', { uri: `exec:${compress.command}` });
    const transferred = await whenTransferred(source, faultPoint());
    const faultAt = Date.now();
    process.kill(compress.pid()!, 'SIGKILL');
    const outcome = await compress.waitExit(10_000);
    const status = await waitOutgoing(source, 60_000);
    const leftovers = readdirNames(scratch).filter((name) => name.startsWith('save'));
    recordCell({
      family: 'kill',
      cell: 'kill -9 compress (save)',
      seed,
      faultAt: `${transferred} B`,
      exitMs: { compress: sinceFault(outcome, faultAt) },
      codes: { compress: outcome?.code },
      messages: { compress: message(outcome?.stderr) },
      outcome: `source ${status}; files left: ${leftovers.join(', ') || 'none'}`,
    });
    expect(outcome?.code).toBe(137);
    expect(status).toBe('failed');
    await expectSourceRuns(source);
    expectNoOutput(out);
  }, 180_000);

  test('kill -9 decompress during a restore: the destination fails its load and never runs', async () => {
    const fixture = loadFixture('idle');
    const container = join(scratch, 'idle.msz');
    execFileSync(process.execPath, [BIN, 'compress', fixture.stream, '-c', 'lz4', '-o', container, '--quiet']);
    const dest = await launchQemu({
      args: [...fixture.meta.machineArgs, '-S', '-incoming', 'defer'],
      accel: fixture.meta.accel,
      name: 'kill-decompress-dest',
      cwd: REPO_ROOT,
      serialLogPath: join(scratch, 'decompress-dest.log'),
    });
    vms.push(dest);
    const decompress = tracked(scratch, 'decompress', ['decompress', container, '--quiet']);
    await dest.execute('migrate-incoming', { uri: `exec:${decompress.command}` });
    // The point is in bytes written to QEMU (/proc/PID/io wchar), polled as fast as we can.
    const point = Math.round(fixture.meta.streamBytes * (0.1 + 0.6 * random()));
    const { written, faultAt } = await killAfterWritten(decompress, point);
    const outcome = await decompress.waitExit(10_000);
    const destStatus = await expectDestinationNotResumed(dest, 60_000);
    recordCell({
      family: 'kill',
      cell: 'kill -9 decompress (restore)',
      seed,
      faultAt: `${written} B written`,
      exitMs: { decompress: sinceFault(outcome, faultAt) },
      codes: { decompress: outcome?.code },
      messages: {
        decompress: message(outcome?.stderr),
        'destination QEMU': message(
          dest
            .stderrText()
            .split('\n')
            .find((l) => /load|migration/i.test(l)),
        ),
      },
      outcome: `destination ${destStatus}`,
    });
    expect(outcome?.code).toBe(137);
    expect(written).toBeLessThan(fixture.meta.streamBytes);
    expect(destStatus).toBe('exited');
  }, 180_000);
});

describe(`kill -9 of the source QEMU (seed ${seed})`, () => {
  // Last: it ends the source this file shares.
  test('kill -9 source QEMU: send fails on its cut input, recv fails, the destination never runs', () => liveMigrationKill('source QEMU'), 180_000);
});

function readdirNames(dir: string): string[] {
  return execFileSync('ls', ['-a', dir], { encoding: 'utf8' })
    .split('\n')
    .filter((n) => n !== '' && n !== '.' && n !== '..');
}

/** SIGKILLs the tracked process once it has written `bytes` (its /proc/PID/io wchar). */
async function killAfterWritten(process_: Tracked, bytes: number): Promise<{ written: number; faultAt: number }> {
  const deadline = Date.now() + 60_000;
  let pid: number | undefined;
  while (Date.now() < deadline) {
    pid ??= process_.pid();
    if (pid !== undefined) {
      let written = 0;
      try {
        written = Number(/wchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))![1]);
      } catch {
        throw new Error(`${process_.name} exited before it wrote ${bytes} bytes`);
      }
      if (written >= bytes) {
        process.kill(pid, 'SIGKILL');
        return { written, faultAt: Date.now() };
      }
    }
    await sleep(pid === undefined ? 10 : 1);
  }
  throw new Error(`${process_.name} did not write ${bytes} bytes within 60 s`);
}
