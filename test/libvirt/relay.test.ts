/**
 * The libvirt test environment of issue 18, proven with the plainest relay: `virsh migrate
 * --p2p --live` between two libvirt hosts (test/helpers/libvirt-hosts.ts), every connection
 * forwarded by a socat pair. A relay under test (`migstream tunnel`) takes socat's place.
 *
 * Not `--parallel` here: socat connects each forwarded connection on its own, so the
 * destination QEMU may see a multifd connection before the main one, and QEMU 7.2 (which does
 * not peek at the magic before 8.0) takes the first connection as its main stream and fails
 * ("received packet magic 5145564d expected 11223344"). test/libvirt/tunnel.test.ts runs
 * --parallel through migstream tunnel, which connects streams in the order they arrived.
 */
import { randomBytes } from 'node:crypto';
import { realpathSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import { GUEST_DIR } from '../fixtures/meta.js';
import {
  createLibvirtPair,
  domainXml,
  lastCounter,
  libvirtAvailable,
  migrateArgs,
  startDomain,
  receivedBytes,
  startSocatRelay,
  waitForHeartbeat,
  type LibvirtHost,
  type LibvirtPair,
  type MigrateOptions,
  type Relay,
} from '../helpers/libvirt-hosts.js';
import { firstDifference } from '../helpers/qemu.js';

const MiB = 1024 * 1024;
const DISK_MIB = 32;
/** What guest/memfill fills with its page mix at boot (fill=). */
const FILL_MIB = 32;
const DISK_COUNTER = /migstream-disk (\d+)/;

// CI runs as root with scripts/setup-libvirt.sh's packages: a machine without libvirt fails
// here instead of silently skipping.
describe('virsh migrate --p2p --live between two libvirt hosts, through a socat relay', () => {
  let pair: LibvirtPair;
  const kernel = realpathSync(join(GUEST_DIR, 'vmlinuz'));
  const initrd = realpathSync(join(GUEST_DIR, 'initramfs.cpio.gz'));

  beforeAllOrFail(async () => {
    const available = libvirtAvailable();
    if (available !== true) throw new Error(available);
    pair = await createLibvirtPair();
  }, 180_000);
  afterAll(async () => {
    await pair?.destroy();
  });

  /** Boots a 256 MiB TCG guest on `host` and waits for its first heartbeat. */
  async function boot(host: LibvirtHost, name: string, extra: { cmdline?: string; disk?: string } = {}): Promise<string> {
    const serialLog = join(host.dir, `${name}.serial.log`);
    const xml = domainXml({ name, memoryMiB: 256, kernel, initrd, cmdline: `console=ttyS0 panic=-1 mode=idle fill=${FILL_MIB} ${extra.cmdline ?? ''}`.trim(), serialLog, disk: extra.disk });
    await startDomain(host, xml);
    await waitForHeartbeat(host.outside(serialLog), 0, 120_000);
    return serialLog;
  }

  /** Migrates `name` from one host to the other through a fresh socat relay, and checks where it runs. */
  async function migrate(from: LibvirtHost, to: LibvirtHost, name: string, options: MigrateOptions = {}): Promise<Relay['connections']> {
    const relay = await startSocatRelay(from, to, pair.paths);
    const bytesBefore = receivedBytes(to);
    const started = Date.now();
    try {
      const migrated = await from.virsh(migrateArgs(name, pair.paths, options), { timeoutMs: 150_000 });
      expect(migrated.code, `${migrated.stderr}\n${from.logTail()}\n${to.logTail()}`).toBe(0);
    } finally {
      await relay.stop();
    }
    const wireBytes = receivedBytes(to) - bytesBefore;
    console.log(`${name} ${from.name}->${to.name} ${JSON.stringify(options)}: ${Date.now() - started} ms, ${wireBytes} bytes on the veth, relay connections ${JSON.stringify(relay.connections)}`);
    // Everything went through the relay: libvirt's p2p control connection, QEMU's main
    // connection plus one per multifd channel, NBD only with copy-storage; and across the
    // link, at least the 32 MiB the guest filled.
    expect(relay.connections.driver).toBeGreaterThanOrEqual(1);
    expect(relay.connections.qemu).toBe(1 + (options.parallel ?? 0));
    if (options.copyStorage) expect(relay.connections.nbd).toBeGreaterThanOrEqual(1);
    else expect(relay.connections.nbd).toBe(0);
    expect(wireBytes).toBeGreaterThan(FILL_MIB * MiB + (options.copyStorage ? DISK_MIB * MiB : 0));
    // A transient domain leaves its source entirely.
    const gone = await from.virsh(['domstate', name]);
    expect(gone.code, gone.stdout).not.toBe(0);
    expect(gone.stderr).toMatch(/failed to get domain/);
    const state = await to.virsh(['domstate', name]);
    expect(state.code, state.stderr).toBe(0);
    expect(state.stdout.trim()).toBe(options.suspend ? 'paused' : 'running');
    return relay.connections;
  }

  /** Whatever happened, the guest does not keep a core busy for the next test. */
  async function destroyDomain(name: string): Promise<void> {
    for (const host of [pair.source, pair.destination]) await host.virsh(['destroy', name]);
  }

  test('a running guest moves to the destination and back, its heartbeat counting on', async () => {
    const { source: a, destination: b } = pair;
    const name = 'plain';
    const serialLog = await boot(a, name);
    try {
      const beforeThere = lastCounter(a.outside(serialLog));
      await migrate(a, b, name);
      const there = await waitForHeartbeat(b.outside(serialLog), beforeThere);
      // And back: the relay now listens on b and connects on a.
      await migrate(b, a, name);
      const back = await waitForHeartbeat(a.outside(serialLog), Math.max(there, lastCounter(b.outside(serialLog))));
      expect(back).toBeGreaterThan(there);
    } finally {
      await destroyDomain(name);
    }
  }, 300_000);

  test('--copy-storage-all moves the disk the guest is writing: both images equal, byte for byte', async () => {
    const { source: a, destination: b } = pair;
    const name = 'storage';
    // Random contents, so a copy that skipped anything shows; the destination gets an empty
    // image of the same size at the same path (in its own view), as libvirt requires.
    const disk = join(a.dir, `${name}.raw`);
    const image = a.outside(disk);
    writeFileSync(image, randomBytes(DISK_MIB * MiB));
    writeFileSync(b.outside(disk), '');
    truncateSync(b.outside(disk), DISK_MIB * MiB);
    // The guest writes random 4 KiB blocks at 1 MiB/s throughout, so the mirror must also
    // carry writes made during the copy.
    const serialLog = await boot(a, name, { cmdline: 'disk=4096:1', disk });
    try {
      await waitForHeartbeat(a.outside(serialLog), 1);
      const writtenBefore = lastCounter(a.outside(serialLog), DISK_COUNTER);
      const heartbeat = lastCounter(a.outside(serialLog));
      // --suspend: the destination stays paused after the switchover, so neither guest writes
      // while the images are compared.
      await migrate(a, b, name, { copyStorage: true, suspend: true });
      expect(lastCounter(a.outside(serialLog), DISK_COUNTER)).toBeGreaterThan(writtenBefore);
      expect(await firstDifference(image, b.outside(disk))).toBe(-1);
      const resumed = await b.virsh(['resume', name]);
      expect(resumed.code, resumed.stderr).toBe(0);
      await waitForHeartbeat(b.outside(serialLog), heartbeat);
    } finally {
      await destroyDomain(name);
    }
  }, 300_000);
});
