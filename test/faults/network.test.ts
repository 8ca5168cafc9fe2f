/**
 * Fault matrix, network family (docs/faults.md): a live migration (source QEMU → exec:migstream
 * send in namespace A → the emulated link → migstream recv in namespace B → destination QEMU's
 * -incoming exec:) across a link that loses 1 % or 5 % of the sender's packets, delays them
 * 50 ms, reorders a quarter of them, or goes down mid-transfer. TCP survives the first four:
 * the migration completes and the destination's RAM equals the source's. The link going down
 * is fatal: both ends exit 1 with one message within their timeout, the source guest runs on
 * and the destination never runs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import type { QemuVm } from '../../src/qemu/launcher.js';
import { dumpGuestMemory, guestMemoryLayout } from '../../src/qemu/memory.js';
import { setParameters } from '../../src/qemu/migration.js';
import { HEARTBEAT } from '../fixtures/meta.js';
import { createEmulatedLink, type EmulatedLink, type Impairment } from '../helpers/emulated-link.js';
import {
  bootDestination,
  bootGuest,
  expectDestinationNotResumed,
  expectOneMessage,
  expectSourceRuns,
  faultSeed,
  message,
  mulberry32,
  recordCell,
  tracked,
  waitIncoming,
  waitOutgoing,
} from '../helpers/faults.js';
import { netnsAvailable } from '../helpers/netns.js';
import { firstDifference } from '../helpers/qemu.js';

/** Transport timeout of the cells (s): TCP's retransmissions under 5 % loss stay well below it. */
const TIMEOUT_S = 10;
const EXIT_BOUND_MS = (TIMEOUT_S + 5) * 1000;

const seed = faultSeed('network');
const random = mulberry32(seed);
const scratch = mkdtempSync(join(tmpdir(), 'migstream-faults-net-'));
const vms: QemuVm[] = [];
let source: QemuVm;

beforeAllOrFail(async () => {
  // CI runs as root: a machine that cannot make namespaces fails here rather than skipping.
  if (!netnsAvailable()) throw new Error('cannot create network namespaces (needs root, iproute2 and tc)');
  source = await bootGuest('net-source', scratch);
  vms.push(source);
  await source.waitForSerial(HEARTBEAT, 180_000);
  await setParameters(source, { 'max-bandwidth': 256 * 1024 * 1024 });
}, 240_000);

afterAll(async () => {
  await Promise.all(vms.map((vm) => vm.quit()));
  rmSync(scratch, { recursive: true, force: true });
});

interface Cell {
  name: string;
  impairment: Omit<Impairment, 'seed'>;
  /** What the link's counters must show, so the impairment demonstrably happened. */
  evidence: (link: EmulatedLink) => void;
}

function migration(link: EmulatedLink, cell: string) {
  const port = 40000 + Math.floor(random() * 20000);
  const common = ['--insecure', '--quiet', '--timeout', String(TIMEOUT_S)];
  const recv = tracked(scratch, `recv-${cell}`, ['recv', '--listen', `${link.addressB}:${port}`, ...common], { prefix: link.inNs(link.b, []) });
  const send = tracked(scratch, `send-${cell}`, ['send', `${link.addressB}:${port}`, '--channels', '2', ...common], { prefix: link.inNs(link.a, []) });
  return { recv, send };
}

const survivable: Cell[] = [
  { name: 'loss 1 %', impairment: { loss: 0.01 }, evidence: (link) => expect(link.stats.dropped).toBeGreaterThan(10) },
  { name: 'loss 5 %', impairment: { loss: 0.05 }, evidence: (link) => expect(link.stats.dropped).toBeGreaterThan(50) },
  { name: 'delay 50 ms', impairment: { delayMs: 50 }, evidence: (link) => expect(link.stats.forwarded).toBeGreaterThan(1000) },
  {
    name: 'reordering 25 % (held 10 ms)',
    impairment: { reorder: { probability: 0.25, holdMs: 10 } },
    evidence: (link) => expect(link.stats.overtaken).toBeGreaterThan(100),
  },
];

describe(`live migration across an impaired link (seed ${seed})`, () => {
  test.each(survivable)(
    '$name: the migration completes and the destination RAM equals the source',
    async ({ name, impairment, evidence }) => {
      const link = await createEmulatedLink({ ...impairment, seed: Math.floor(random() * 2 ** 32) });
      try {
        const cell = name.replace(/\W+/g, '-');
        const dest = await bootDestination(`net-dest-${cell}`, scratch);
        vms.push(dest);
        const { recv, send } = migration(link, cell);
        await dest.execute('migrate-incoming', { uri: `exec:${recv.command}` });
        const started = Date.now();
        await source.execute('migrate', { uri: `exec:${send.command}` });
        const sourceStatus = await waitOutgoing(source, 180_000);
        const destStatus = await waitIncoming(dest, 60_000);
        const [sent, received] = await Promise.all([send.waitExit(30_000), recv.waitExit(30_000)]);
        recordCell({
          family: 'network',
          cell: name,
          seed,
          faultAt: `${link.stats.dropped} dropped, ${link.stats.overtaken} overtaken of ${link.stats.forwarded} forwarded`,
          exitMs: { send: sent ? sent.exitedAt - started : undefined, recv: received ? received.exitedAt - started : undefined },
          codes: { send: sent?.code, recv: received?.code },
          messages: { send: message(sent?.stderr), recv: message(received?.stderr) },
          outcome: `source ${sourceStatus}, destination ${destStatus}`,
        });
        evidence(link);
        expect(sourceStatus).toBe('completed');
        expect(destStatus).toBe('completed');
        expect(sent?.code, sent?.stderr).toBe(0);
        expect(received?.code, received?.stderr).toBe(0);
        const layout = await guestMemoryLayout(source);
        await dumpGuestMemory(source, layout, join(scratch, 'source.bin'));
        await dumpGuestMemory(dest, layout, join(scratch, 'dest.bin'));
        expect(await firstDifference(join(scratch, 'source.bin'), join(scratch, 'dest.bin'))).toBe(-1);
        await dest.quit();
        // The source is paused after a completed migration; the next cell migrates it again.
        await source.execute('cont');
        await expectSourceRuns(source);
      } finally {
        rmSync(join(scratch, 'source.bin'), { force: true });
        rmSync(join(scratch, 'dest.bin'), { force: true });
        await link.destroy();
      }
    },
    300_000,
  );

  test('the link goes down mid-transfer: both ends exit 1 within the timeout, the source runs on', async () => {
    const link = await createEmulatedLink({ seed: Math.floor(random() * 2 ** 32) });
    try {
      const dest = await bootDestination('net-dest-down', scratch);
      vms.push(dest);
      const { recv, send } = migration(link, 'down');
      await dest.execute('migrate-incoming', { uri: `exec:${recv.command}` });
      await source.execute('migrate', { uri: `exec:${send.command}` });
      const point = Math.round(4_000_000 + 20_000_000 * random());
      await link.whenBytes(point);
      link.down();
      const faultAt = Date.now();
      const [sent, received] = await Promise.all([send.waitExit(EXIT_BOUND_MS + 10_000), recv.waitExit(EXIT_BOUND_MS + 10_000)]);
      const sourceStatus = await waitOutgoing(source, 60_000);
      const destStatus = await expectDestinationNotResumed(dest, 60_000);
      recordCell({
        family: 'network',
        cell: 'link down (ip link set … down)',
        seed,
        faultAt: `${link.stats.bytesAtoB} B crossed`,
        exitMs: { send: sent ? sent.exitedAt - faultAt : undefined, recv: received ? received.exitedAt - faultAt : undefined },
        codes: { send: sent?.code, recv: received?.code },
        messages: { send: message(sent?.stderr), recv: message(received?.stderr) },
        outcome: `source ${sourceStatus}, destination ${destStatus}`,
      });
      for (const [side, outcome] of [
        ['send', sent],
        ['recv', received],
      ] as const) {
        expect(outcome, `${side} did not exit within ${EXIT_BOUND_MS + 10_000} ms of the fault`).toBeDefined();
        expect(outcome!.code, outcome!.stderr).toBe(1);
        expect(outcome!.exitedAt - faultAt).toBeLessThan(EXIT_BOUND_MS);
        expectOneMessage(outcome!.stderr, side, /no progress|nothing received|did not arrive|timed? ?out/);
      }
      expect(sourceStatus).toBe('failed');
      await expectSourceRuns(source);
    } finally {
      await link.destroy();
    }
  }, 300_000);
});
