/**
 * Live migration of a dirtying guest across a capped link, QEMU's own ways against
 * `migstream migrate`, in one run: two network namespaces joined by a veth pair capped with
 * tc (tbf), the source QEMU in one, the destination in the other, the guest (guest/memfill
 * "busy") writing its working set at each of a few dirty rates.
 *
 *   npm run bench:migrate [-- --rate-mbit 100 --rates 8,48 --ram 256 --limit 90 --only NAME]
 *                         (root, for the namespaces; the guest from scripts/build-guest.sh)
 *
 * Rows: QEMU migrate tcp: with its defaults; the same with auto-converge; migrate exec:socat
 * (a pass-through program, as exec:cat would be, into the destination's tcp: listener);
 * migstream migrate/incoming with --converge auto, without and with -c lz4, and each with
 * hot-page dropping (--hold 100: send holds 100 ms of the link). Columns:
 * converged, total time (QEMU's total-time, or migrate's), downtime as the guest saw it (the
 * source's STOP event to the destination's RESUME event, one host clock), bytes on the wire,
 * guest slowed time (the guest prints pages written per 100 ms: tenths below half its median
 * rate before the migration), the probe's total-time error and the stream bytes the hold
 * dropped for the migstream rows.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { table } from '../src/cli/format.js';
import type { QemuVm } from '../src/qemu/launcher.js';
import { queryMigrate, shellQuote, type MigrationInfo } from '../src/qemu/migration.js';
import type { QmpEvent } from '../src/qemu/qmp.js';
import { guestArgs } from '../test/fixtures/meta.js';
import { bootGuest, jsonLines, migstream } from '../test/helpers/migrate-cli.js';
import { createLink, netnsAvailable } from '../test/helpers/netns.js';

const { values } = parseArgs({
  options: {
    'rate-mbit': { type: 'string', default: '100' },
    rates: { type: 'string', default: '8,48' },
    wss: { type: 'string', default: '96' },
    ram: { type: 'string', default: '256' },
    limit: { type: 'string', default: '90' },
    only: { type: 'string' },
    json: { type: 'string' },
  },
});
const RATE_MBIT = Number(values['rate-mbit']);
const DIRTY_RATES = values.rates!.split(',').map(Number);
const LIMIT_S = Number(values.limit);
const RAM = `${Number(values.ram) * 1024}K`;
const MACHINE = 'pc-q35-10.0';
const QEMU = '10.0' as const;

if (!netnsAvailable()) throw new Error('bench:migrate needs network namespaces (root, iproute2, tc)');
const link = createLink({ rateMbit: RATE_MBIT });
const scratch = mkdtempSync(join(tmpdir(), 'migstream-bench-migrate-'));
const vms: QemuVm[] = [];
process.on('exit', () => link.destroy());

interface Outcome {
  converged: boolean;
  totalMs: number | null;
  downtimeMs: number | null;
  wireBytes: number | null;
  slowedS: number;
  probeError: number | null;
  /** Stream bytes send's hold cut out (migstream rows with --hold). */
  droppedBytes: number | null;
  note: string;
}

type Row = { name: string; run: (ctx: RunContext) => Promise<Omit<Outcome, 'slowedS' | 'downtimeMs'>> };

interface RunContext {
  source: QemuVm;
  sourceQmp: string;
  dest: QemuVm;
  destQmp: string;
  port: number;
}

const eventMs = (e: QmpEvent): number => e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000;

/** QEMU drives the migration itself: migrate URI, poll until completed or the limit. */
async function qemuMigrate(ctx: RunContext, uri: string, capabilities: Record<string, boolean>): Promise<Omit<Outcome, 'slowedS' | 'downtimeMs'>> {
  const caps = Object.entries(capabilities).map(([capability, state]) => ({ capability, state }));
  if (caps.length) await ctx.source.execute('migrate-set-capabilities', { capabilities: caps });
  await ctx.source.execute('migrate', { uri });
  const deadline = Date.now() + LIMIT_S * 1000;
  let info: MigrationInfo;
  for (;;) {
    info = await queryMigrate(ctx.source);
    if (info.status === 'completed' || info.status === 'failed') break;
    if (Date.now() > deadline) {
      await ctx.source.execute('migrate_cancel');
      return {
        converged: false,
        totalMs: null,
        wireBytes: info.ram?.transferred ?? null,
        probeError: null,
        droppedBytes: null,
        note: `cancelled at ${LIMIT_S} s, ${((info.ram?.remaining ?? 0) / 1e6).toFixed(0)} MB dirty`,
      };
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  if (info.status !== 'completed') return { converged: false, totalMs: null, wireBytes: null, probeError: null, droppedBytes: null, note: `failed: ${info['error-desc'] ?? '?'}` };
  return {
    converged: true,
    totalMs: info['total-time'] ?? null,
    wireBytes: info.ram?.transferred ?? null,
    probeError: null,
    droppedBytes: null,
    note: `QEMU downtime ${info.downtime ?? '?'} ms; throttle ${info['cpu-throttle-percentage'] ?? 0} % at the end`,
  };
}

async function migstreamMigrate(ctx: RunContext, extra: string[]): Promise<Omit<Outcome, 'slowedS' | 'downtimeMs'>> {
  const to = `${link.addressB}:${ctx.port}`;
  const incoming = migstream(['incoming', '--qmp', ctx.destQmp, '--listen', to, '--insecure', '--json', '--timeout', String(LIMIT_S + 60)], link.inNs(link.b, []));
  const migrate = migstream(['migrate', '--qmp', ctx.sourceQmp, '--to', to, '--insecure', '--json', '--converge', 'auto', '--timeout', String(LIMIT_S), ...extra], link.inNs(link.a, []));
  const [src, dst] = await Promise.all([migrate, incoming]);
  const summary = jsonLines(src.stdout).find((e) => e.type === 'summary') as Record<string, any> | undefined;
  if (src.code !== 0 || !summary) {
    return { converged: false, totalMs: null, wireBytes: null, probeError: null, droppedBytes: null, note: src.stderr.trim().split('\n').at(-1)?.slice(0, 120) ?? `exit ${src.code}` };
  }
  if (dst.code !== 0) throw new Error(`incoming failed after a completed migrate: ${dst.stderr}`);
  const incomingAt = (type: string): number | undefined => (jsonLines(dst.stdout).find((e) => e.type === type) as { elapsedMs?: number } | undefined)?.elapsedMs;
  const loaded = incomingAt('loaded');
  const resumed = incomingAt('resumed');
  if (loaded !== undefined && resumed !== undefined) process.stderr.write(`  incoming: saw the load completed, resumed ${resumed - loaded} ms later\n`);
  else
    process.stderr.write(
      `  incoming events: ${jsonLines(dst.stdout)
        .map((e) => String(e.type))
        .join(' ')}\n`,
    );
  const steps = (summary.throttle.steps as { percent: number }[]).map((s) => s.percent).join('→') || 'none';
  const probe = jsonLines(src.stdout).find((e) => e.type === 'probe') as Record<string, any> | undefined;
  const passes = (summary.stream?.passes as { pages: number; zeroPages: number }[] | undefined) ?? [];
  process.stderr.write(`  stream passes (pages/zero): ${passes.map((p) => `${p.pages}/${p.zeroPages}`).join(' ')}\n`);
  if (probe) {
    process.stderr.write(
      `  probe windows: ${(probe.dirty.windows as { windowMs: number; dirtyBytes: number }[]).map((w) => `${w.windowMs / 1000} s ${(w.dirtyBytes / 1e6).toFixed(1)} MB`).join(', ')}; passes predicted ${(probe.prediction.passBytes as number[]).map((b) => (b / 1e6).toFixed(1)).join(' ')} MB\n`,
    );
    process.stderr.write(
      `  probe: dirty ${(probe.dirty.dirtyRate / 1e6).toFixed(1)} MB/s, working set ${(probe.dirty.workingSetBytes / 1e6).toFixed(1)} MB, zero ${(probe.zero.share * 100).toFixed(0)} %, rate ${(probe.rate / 1e6).toFixed(1)} MB/s, predicted ${probe.prediction.summary}\n`,
    );
  }
  const hold = summary.stream?.hold as { limitBytes: number; droppedPages: number; droppedBytes: number; pinnedPages: number; keptPages: number } | undefined;
  if (hold && hold.limitBytes > 0) {
    process.stderr.write(
      `  hold ${(hold.limitBytes / 1e6).toFixed(2)} MB: dropped ${hold.droppedPages} pages (${(hold.droppedBytes / 1e6).toFixed(2)} MB), kept ${hold.pinnedPages} pinned, ${hold.keptPages} named/split\n`,
    );
  }
  return {
    converged: true,
    totalMs: summary.totalMs,
    wireBytes: summary.bytesOnWire,
    probeError: summary.prediction?.totalTimeError ?? null,
    droppedBytes: hold && hold.limitBytes > 0 ? hold.droppedBytes : null,
    note: `QEMU downtime ${summary.qemuDowntimeMs ?? '?'} ms; throttle ${steps}; predicted ${summary.prediction?.converges ? `${(summary.prediction.totalMs / 1000).toFixed(1)} s` : 'no convergence'}`,
  };
}

const ROWS: Row[] = [
  { name: 'QEMU tcp: defaults', run: (c) => qemuMigrate(c, `tcp:${link.addressB}:${c.port}`, {}) },
  { name: 'QEMU tcp: auto-converge', run: (c) => qemuMigrate(c, `tcp:${link.addressB}:${c.port}`, { 'auto-converge': true }) },
  { name: 'QEMU exec:socat (pass-through)', run: (c) => qemuMigrate(c, `exec:${['socat', '-', `TCP:${link.addressB}:${c.port}`].map(shellQuote).join(' ')}`, {}) },
  { name: 'migstream --converge auto', run: (c) => migstreamMigrate(c, []) },
  { name: 'migstream --converge auto -c lz4', run: (c) => migstreamMigrate(c, ['-c', 'lz4']) },
  { name: 'migstream --converge auto --hold 100', run: (c) => migstreamMigrate(c, ['--hold', '100']) },
  { name: 'migstream --converge auto -c lz4 --hold 100', run: (c) => migstreamMigrate(c, ['-c', 'lz4', '--hold', '100']) },
];

/** Pages written per 100 ms, in the order the guest printed them. */
function workReports(vm: QemuVm): number[] {
  return [...vm.serialText().matchAll(/migstream-work (\d+)/g)].map((m) => Number(m[1]));
}

async function runOne(row: Row, dirtyRate: number, index: number): Promise<Outcome> {
  const tag = `r${index}`;
  const busy = guestArgs('busy', [`wss=${values.wss}`, `rate=${dirtyRate}`]);
  const port = 40000 + Math.floor(Math.random() * 20000);
  const qemuRow = row.name.startsWith('QEMU');
  const destIncoming = qemuRow ? ['-incoming', `tcp:${link.addressB}:${port}`] : ['-S', '-incoming', 'defer'];
  const [src, dst] = await Promise.all([
    bootGuest({ scratch, name: `${tag}-src`, machine: MACHINE, qemu: QEMU, ram: RAM, guest: busy, netns: link.a }),
    bootGuest({ scratch, name: `${tag}-dst`, machine: MACHINE, qemu: QEMU, ram: RAM, guest: busy, extra: destIncoming, netns: link.b }),
  ]);
  vms.push(src.vm, dst.vm);
  try {
    await src.vm.waitForSerial(/migstream-busy/, 120_000);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    // MIGRATION events on the source too, for the downtime split below.
    await src.vm.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
    const before = workReports(src.vm);
    const normal = median(before.slice(-20));
    let stoppedAt: number | undefined;
    let resumedAt: number | undefined;
    let sourceDoneAt: number | undefined;
    let destDoneAt: number | undefined;
    const completed = (e: QmpEvent): boolean => e.event === 'MIGRATION' && (e.data as { status?: string } | undefined)?.status === 'completed';
    src.vm.qmp.onEvent((e) => {
      if (e.event === 'STOP') stoppedAt = eventMs(e);
      if (completed(e)) sourceDoneAt = eventMs(e);
    });
    dst.vm.qmp.onEvent((e) => {
      if (e.event === 'RESUME') resumedAt = eventMs(e);
      if (completed(e)) destDoneAt = eventMs(e);
    });
    const outcome = await row.run({ source: src.vm, sourceQmp: src.qmp, dest: dst.vm, destQmp: dst.qmp, port });
    if (outcome.converged && resumedAt === undefined) await new Promise((resolve) => setTimeout(resolve, 2000));
    const during = workReports(src.vm).slice(before.length);
    const slowedS = during.filter((n) => n < normal / 2).length / 10;
    const downtimeMs = outcome.converged && stoppedAt !== undefined && resumedAt !== undefined ? resumedAt - stoppedAt : null;
    // Where the guest's downtime went: the source's STOP to its completion (QEMU's part), on to
    // the destination's completion (the stream's tail in transit and loading), on to RESUME.
    if (downtimeMs !== null && sourceDoneAt !== undefined && destDoneAt !== undefined) {
      process.stderr.write(
        `  downtime split: source ${(sourceDoneAt - stoppedAt!).toFixed(0)} ms, tail in transit and loaded ${(destDoneAt - sourceDoneAt).toFixed(0)} ms, resume ${(resumedAt! - destDoneAt).toFixed(0)} ms\n`,
      );
    }
    return { ...outcome, slowedS, downtimeMs };
  } finally {
    await Promise.all([src.vm.quit(), dst.vm.quit()]);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

const results: { dirtyRate: number; row: string; outcome: Outcome }[] = [];
let index = 0;
try {
  for (const dirtyRate of DIRTY_RATES) {
    for (const row of ROWS) {
      if (values.only !== undefined && !row.name.includes(values.only)) continue;
      process.stderr.write(`bench:migrate: ${row.name}, guest dirtying ${dirtyRate} MiB/s of ${values.wss} MiB …\n`);
      const outcome = await runOne(row, dirtyRate, index++);
      results.push({ dirtyRate, row: row.name, outcome });
      process.stderr.write(`  ${JSON.stringify(outcome)}\n`);
    }
  }
} finally {
  await Promise.all(vms.map((vm) => vm.quit()));
  rmSync(scratch, { recursive: true, force: true });
}

const fmt = (v: number | null, digits: number, scale = 1): string => (v === null ? '—' : (v / scale).toFixed(digits));
console.log(
  `\nLive migration, QEMU ${QEMU} ${MACHINE} under ${process.env.MIGSTREAM_ACCEL ?? 'the detected accelerator'}, ${values.ram} MiB guest writing a ${values.wss} MiB working set, across a ${RATE_MBIT} Mbit/s veth (tbf), limit ${LIMIT_S} s`,
);
console.log(
  table(
    ['dirty MiB/s', 'row', 'converged', 'total s', 'downtime ms', 'wire MB', 'slowed s', 'probe err', 'dropped MB', 'note'],
    results.map(({ dirtyRate, row, outcome: o }) => [
      dirtyRate,
      row,
      o.converged ? 'yes' : 'no',
      fmt(o.totalMs, 1, 1000),
      fmt(o.downtimeMs, 0),
      fmt(o.wireBytes, 0, 1e6),
      o.slowedS.toFixed(1),
      o.probeError === null ? '—' : `${(o.probeError * 100).toFixed(0)} %`,
      fmt(o.droppedBytes, 2, 1e6),
      o.note,
    ]),
  ),
);
if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(results, null, 2));
