/**
 * `migrate` and `incoming` across two "hosts": network namespaces joined by a veth pair capped
 * with tc. Each QEMU runs in its own namespace, so the send and recv it starts for exec: reach
 * each other only over the capped link, as do the two commands' verification channel.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import type { QemuVm } from '../../src/qemu/launcher.js';
import type { QemuVersion } from '../../src/qemu/versions.js';
import { guestArgs } from '../fixtures/meta.js';
import { bootGuest, jsonLines, migstream, runsOn, status } from '../helpers/migrate-cli.js';
import { expectSameRamThenRunsOn } from '../helpers/migrate-expect.js';
import { createLink, netnsAvailable, type Link } from '../helpers/netns.js';

const RATE_MBIT = 200;
const LINK_BYTES_PER_S = (RATE_MBIT * 1e6) / 8;
// 8 KiB over 256 MiB: QEMU 7.2 under TCG loses dirty pages of a RAMBlock whose size is a multiple
// of 256 KiB (docs/libvirt-testing.md); --verify would rightly fail such a run.
const RAM = `${256 * 1024 + 8}K`;

const scratch = mkdtempSync(join(tmpdir(), 'migstream-migrate-netns-'));
const vms: QemuVm[] = [];
let link: Link;
// CI runs as root with iproute2: a machine that cannot make namespaces fails here, it does not skip.
beforeAllOrFail(() => {
  if (!netnsAvailable()) throw new Error('cannot create network namespaces (needs root, iproute2 and tc)');
  link = createLink({ rateMbit: RATE_MBIT });
});
afterAll(async () => {
  await Promise.all(vms.map((vm) => vm.quit()));
  link?.destroy();
  rmSync(scratch, { recursive: true, force: true });
});

describe.each([
  { qemu: '7.2' as QemuVersion, machine: 'pc-i440fx-7.2', guest: 'an idle guest', args: guestArgs('idle'), ready: /migstream-heartbeat/, hold: [] },
  // With hot-page dropping: send holds 200 ms of the link and cuts superseded pages from it.
  { qemu: '10.0' as QemuVersion, machine: 'pc-q35-10.0', guest: 'a dirtying guest', args: guestArgs('busy', ['wss=16', 'rate=4']), ready: /migstream-busy/, hold: ['--hold', '200'] },
])(`migrate + incoming on QEMU $qemu across two namespaces (${RATE_MBIT} Mbit/s veth)`, ({ qemu, machine, guest, args, ready, hold }) => {
  test(`${guest} moves with --verify${hold.length ? ' and --hold' : ''} over the capped link; destination RAM equals the source; the guest runs on`, async () => {
    const tag = `netns-${qemu}`;
    const port = 40000 + Math.floor(Math.random() * 20000);
    const [source, dest] = await Promise.all([
      bootGuest({ scratch, name: `${tag}-src`, machine, qemu, ram: RAM, guest: args, netns: link.a }),
      bootGuest({ scratch, name: `${tag}-dst`, machine, qemu, ram: RAM, guest: args, extra: ['-S', '-incoming', 'defer'], netns: link.b }),
    ]);
    vms.push(source.vm, dest.vm);
    await source.vm.waitForSerial(ready, 120_000);
    const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `${link.addressB}:${port}`, '--insecure', '--verify', '--no-resume', '--json', '--timeout', '300'], link.inNs(link.b, []));
    const migrate = migstream(['migrate', '--qmp', source.qmp, '--to', `${link.addressB}:${port}`, '--insecure', '--verify', ...hold, '--json', '--timeout', '240'], link.inNs(link.a, []));
    const [src, dst] = await Promise.all([migrate, incoming]);
    expect(src.code, src.stderr).toBe(0);
    expect(dst.code, dst.stderr).toBe(0);
    const summary = jsonLines(src.stdout).find((e) => e.type === 'summary')!;
    const verify = summary.verify as { source: { mismatches: number; pagesCompared: number }; destination: { mismatches: number } };
    expect(verify.source.mismatches).toBe(0);
    expect(verify.destination.mismatches).toBe(0);
    expect(verify.source.pagesCompared).toBeGreaterThan(60_000);
    // The hold was sized from the probe's link rate (200 ms of it) and reported.
    const held = (summary.stream as { hold: { limitBytes: number; droppedPages: number } }).hold;
    if (hold.length) expect(held.limitBytes / LINK_BYTES_PER_S).toBeGreaterThan(0.1);
    else expect(held.limitBytes).toBe(0);

    // The stream crossed the capped link: no faster than its wire time.
    const wireBytes = summary.bytesOnWire as number;
    const totalMs = summary.totalMs as number;
    expect(totalMs / 1000).toBeGreaterThan((wireBytes / LINK_BYTES_PER_S) * 0.9);
    // On 10.0, QEMU was told the drain rate send measured, and it is the link's rate, not the
    // loopback's or the pipe's (a bounded in-flight: the pipe drains as fast as the link).
    if (qemu === '10.0') {
      const told = summary.switchoverBandwidth as { bytesPerSecond: number }[];
      expect(told.length).toBeGreaterThan(0);
      const last = told.at(-1)!.bytesPerSecond;
      expect(last).toBeGreaterThan(LINK_BYTES_PER_S * 0.5);
      expect(last).toBeLessThan(LINK_BYTES_PER_S * 1.3);
    }

    await expectSameRamThenRunsOn(source.vm, dest.vm, join(scratch, tag));
  }, 420_000);
});

describe('migrate / incoming faults across the link (QEMU 7.2)', () => {
  test('the link dies mid-run: both commands exit 1 with one clear error, the source runs on, the destination is not resumed', async () => {
    // A link of its own: this test takes it down.
    const dying = createLink({ rateMbit: 100 });
    try {
      const port = 40000 + Math.floor(Math.random() * 20000);
      const busy = guestArgs('busy', ['wss=16', 'rate=4']);
      const [source, dest] = await Promise.all([
        bootGuest({ scratch, name: 'cut-src', machine: 'pc-i440fx-7.2', qemu: '7.2', ram: RAM, guest: busy, netns: dying.a }),
        bootGuest({ scratch, name: 'cut-dst', machine: 'pc-i440fx-7.2', qemu: '7.2', ram: RAM, guest: busy, extra: ['-S', '-incoming', 'defer'], netns: dying.b }),
      ]);
      vms.push(source.vm, dest.vm);
      await source.vm.waitForSerial(/migstream-busy/, 120_000);
      const incoming = migstream(['incoming', '--qmp', dest.qmp, '--listen', `${dying.addressB}:${port}`, '--insecure', '--timeout', '200'], dying.inNs(dying.b, []));
      const migrate = migstream(['migrate', '--qmp', source.qmp, '--to', `${dying.addressB}:${port}`, '--insecure', '--no-probe', '--timeout', '200', '--json'], dying.inNs(dying.a, []));
      // Cut once the stream is flowing (about 12 MB/s: the first pass takes ~10 s).
      for (let i = 0; i < 100; i++) {
        const info = await source.vm.execute<{ status?: string; ram?: { transferred: number } }>('query-migrate');
        if ((info.ram?.transferred ?? 0) > 20e6) break;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      dying.cut();
      const [src, dst] = await Promise.all([migrate, incoming]);
      expect(src.code, src.stdout).toBe(1);
      expect(src.stderr).toMatch(/^migstream migrate: error: the migration failed: .*\(the source VM is running\)\n$/);
      expect(await status(source.vm)).toBe('running');
      expect(await runsOn(source.vm)).toBe(true);
      expect(dst.code).toBe(1);
      expect(dst.stderr).toMatch(/^migstream incoming: error: .*(not resumed|QEMU is gone|exited)/);
      if (!dest.vm.hasExited) expect(await status(dest.vm)).not.toBe('running');
    } finally {
      dying.destroy();
    }
  }, 300_000);
});
