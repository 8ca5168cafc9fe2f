/**
 * Issue 18: what a libvirt migration through `migstream tunnel` does when something fails. In
 * every case `virsh migrate` fails and the domain keeps running on its source, its heartbeat
 * counting on; the destination has no domain left. One guest serves every case (it stays where
 * it was), on a link capped at 200 Mbit/s so that a migration lasts long enough to be cut.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, copyFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import {
  MIGSTREAM_BIN,
  bootTestGuest,
  createLibvirtPair,
  lastCounter,
  libvirtAvailable,
  migrateArgs,
  receivedBytes,
  relayRoutes,
  spawnTunnel,
  startTunnelRelay,
  waitForHeartbeat,
  type LibvirtHost,
  type LibvirtPair,
  type TunnelEnd,
} from '../helpers/libvirt-hosts.js';

const MiB = 1024 * 1024;
/** Filled at boot: ~100 MiB of pages to move, ~5 s at 200 Mbit/s. */
const FILL_MIB = 96;
const RATE_MBIT = 200;
const NAME = 'faults';

/** How connecting to a unix socket (in the test's view) ends: 'connected' or the errno. */
function tryConnect(path: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
}

describe('virsh migrate through migstream tunnel: failures leave the domain running on its source', () => {
  let pair: LibvirtPair;
  let scratch: string;
  let certs: string;
  const serialLog = (host: LibvirtHost): string => host.outside(join(host.dir, `${NAME}.serial.log`));

  beforeAllOrFail(async () => {
    const available = libvirtAvailable();
    if (available !== true) throw new Error(available);
    pair = await createLibvirtPair({ rateMbit: RATE_MBIT });
    scratch = mkdtempSync(join(tmpdir(), 'ms-libvirt-certs-'));
    certs = join(scratch, 'good');
    execFileSync(process.execPath, [MIGSTREAM_BIN, 'certs', '-o', certs, '--name', pair.source.address, '--name', pair.destination.address, '--days', '2', '--quiet']);
    const { source: a } = pair;
    await bootTestGuest(a, NAME, { fillMiB: FILL_MIB });
  }, 240_000);
  afterAll(async () => {
    await pair?.destroy();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  /** The domain runs on `host`, its heartbeat going on there, and is not defined on `other`. */
  async function stillOn(host: LibvirtHost, other: LibvirtHost | null): Promise<void> {
    const state = await host.virsh(['domstate', NAME]);
    expect(state.code, state.stderr).toBe(0);
    expect(state.stdout.trim()).toBe('running');
    const before = lastCounter(serialLog(host));
    await waitForHeartbeat(serialLog(host), before, 30_000);
    if (other === null) return;
    // The destination tears its incoming domain down once the migration failed: give it time.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const there = await other.virsh(['domstate', NAME]);
      if (there.code !== 0) {
        expect(there.stderr).toMatch(/failed to get domain/);
        return;
      }
      if (Date.now() > deadline) throw new Error(`domain still on host ${other.name}: ${there.stdout}`);
      await sleep(250);
    }
  }

  test('a source tunnel with certificates from another CA: no session, nothing listens, virsh migrate fails cleanly', async () => {
    const { source: a, destination: b, paths } = pair;
    // Certificates from another CA altogether, and the right CA with a client certificate from
    // the other one: the source refuses the destination, and the destination the source.
    const other = join(scratch, 'other');
    execFileSync(process.execPath, [MIGSTREAM_BIN, 'certs', '-o', other, '--name', a.address, '--name', b.address, '--days', '2', '--quiet']);
    const mixed = join(scratch, 'mixed');
    mkdirSync(mixed);
    copyFileSync(join(certs, 'ca.pem'), join(mixed, 'ca.pem'));
    for (const file of ['client.pem', 'client-key.pem']) copyFileSync(join(other, file), join(mixed, file));

    const routes = relayRoutes(paths, b);
    const port = 44600;
    const destination = spawnTunnel(b, ['--listen', `${b.address}:${port}`, ...routes.flatMap((r) => ['--unix', r.connect]), '--tls', certs]);
    try {
      await destination.waitFor('listening');
      for (const [dir, message] of [
        [other, /the receiver's certificate was rejected: self-signed certificate in certificate chain/],
        // TLS 1.3: the client's handshake is done before the server checks its certificate, so
        // the source only sees the connection closed (the destination reports why: below).
        [mixed, /the listener closed the connection during the handshake/],
      ] as const) {
        const source = spawnTunnel(a, ['--to', `${b.address}:${port}`, ...routes.flatMap((r) => ['--unix', `${r.listen}=${r.connect}`]), '--tls', dir, '--timeout', '10']);
        const { code } = await source.exited;
        console.log(`source tunnel with ${dir === other ? 'another CA' : 'a client certificate from another CA'}: exit ${code}: ${source.stderr().trim()}`);
        expect(code).toBe(1);
        expect(source.stderr()).toMatch(message);
        expect(source.events.filter((e) => e.event === 'ready')).toEqual([]);
        for (const route of routes) expect(await tryConnect(a.outside(route.listen))).toMatch(/ENOENT|ECONNREFUSED/);
      }
      // The destination refused both, and went on listening.
      const refused = destination.events.filter((e) => e.event === 'refused');
      console.log(`destination tunnel refused: ${JSON.stringify(refused)}`);
      expect(refused.length).toBeGreaterThanOrEqual(1);
      expect(destination.events.filter((e) => e.event === 'session')).toEqual([]);
      expect(destination.child.exitCode).toBeNull();

      const migrated = await a.virsh(migrateArgs(NAME, paths), { timeoutMs: 60_000 });
      console.log(`virsh migrate without a tunnel: exit ${migrated.code}: ${migrated.stderr.trim()}`);
      expect(migrated.code).toBe(1);
      expect(migrated.stderr).toMatch(/error: /);
      await stillOn(a, b);
    } finally {
      destination.child.kill('SIGTERM');
      await destination.exited;
    }
  }, 180_000);

  test('the source tunnel SIGKILLed during the RAM transfer: virsh migrate fails; the same destination tunnel then carries a retry', async () => {
    const { source: a, destination: b, paths } = pair;
    const tunnel = await startTunnelRelay(a, b, paths, { channels: 2, tls: { source: certs, destination: certs }, port: 44700 });
    let retry: TunnelEnd | undefined;
    try {
      const bytesBefore = receivedBytes(b);
      const migrating = a.virsh(migrateArgs(NAME, paths), { timeoutMs: 120_000 });
      // Mid-RAM: the main stream is open and 16 MiB crossed the link (of ~100 MiB).
      await tunnel.source.waitFor('stream', 30_000);
      const deadline = Date.now() + 60_000;
      while (receivedBytes(b) - bytesBefore < 16 * MiB) {
        if (Date.now() > deadline) throw new Error(`the migration did not start: ${tunnel.source.stderr()}`);
        await sleep(50);
      }
      expect(tunnel.source.events.some((e) => e.event === 'stream' && e.kind === 'qemu-main')).toBe(true);
      tunnel.source.child.kill('SIGKILL');
      const migrated = await migrating;
      const moved = receivedBytes(b) - bytesBefore;
      console.log(`virsh migrate with the tunnel killed after ${moved} bytes: exit ${migrated.code}: ${migrated.stderr.trim()}`);
      expect(migrated.code).toBe(1);
      expect(migrated.stderr).toMatch(/error: /);
      // It was cut mid-way: far from the whole guest crossed.
      expect(moved).toBeLessThan(FILL_MIB * MiB);
      // The destination side saw its session fail, and closed every stream it had opened.
      const failed = await tunnel.destination.waitFor('session-failed', 30_000);
      console.log(`destination tunnel: ${String(failed.message)}`);
      expect(tunnel.destination.child.exitCode).toBeNull();
      await stillOn(a, b);

      // The destination tunnel serves the next session: a retry succeeds through it.
      const routes = relayRoutes(paths, b);
      retry = spawnTunnel(a, ['--to', `${b.address}:44700`, ...routes.flatMap((r) => ['--unix', `${r.listen}=${r.connect}`]), '--tls', certs]);
      await retry.waitFor('ready');
      const heartbeat = lastCounter(serialLog(a));
      const again = await a.virsh(migrateArgs(NAME, paths), { timeoutMs: 120_000 });
      expect(again.code, `${again.stderr}\n${retry.stderr()}\n${tunnel.destination.stderr()}`).toBe(0);
      await waitForHeartbeat(serialLog(b), heartbeat);
      expect((await a.virsh(['domstate', NAME])).code).not.toBe(0);
    } finally {
      if (retry) {
        retry.child.kill('SIGTERM');
        await retry.exited;
      }
      await tunnel.stop();
    }
  }, 240_000);

  test("the destination's libvirtd gone: virsh migrate fails, the domain stays on its source", async () => {
    // The domain is on b now (the retry above): b is the source, a the destination. Killing a's
    // libvirtd ends host a for good (its namespaces are joined through that pid), so this runs last.
    const { source: a, destination: b, paths } = pair;
    const tunnel = await startTunnelRelay(b, a, paths, { tls: { source: certs, destination: certs }, port: 44800 });
    try {
      process.kill(a.pid, 'SIGKILL');
      await sleep(500);
      const migrated = await b.virsh(migrateArgs(NAME, paths), { timeoutMs: 120_000 });
      console.log(`virsh migrate to a dead libvirtd: exit ${migrated.code}: ${migrated.stderr.trim()}`);
      expect(migrated.code).toBe(1);
      expect(migrated.stderr).toMatch(/error: /);
      // The tunnel reset the driver stream (nothing to connect to) and its session goes on.
      const closed = await tunnel.source.waitFor('closed', 10_000);
      expect(closed.reset).not.toBeNull();
      expect(tunnel.source.child.exitCode).toBeNull();
      await stillOn(b, null);
    } finally {
      await tunnel.stop();
    }
  }, 180_000);
});
