/**
 * Across a real link: two network namespaces joined by a veth pair capped with tc, the
 * receiver in one and the sender in the other (and a real QEMU destination whose exec: recv
 * runs inside the receiver's namespace).
 */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import { createLink, netnsAvailable, type Link } from '../helpers/netns.js';
import { firstDifference, loadFixture, restoreFixture, shellQuote } from '../helpers/qemu.js';
import { BIN, run, startRecv, testCerts } from '../helpers/transport.js';

const RATE_MBIT = 800;

// CI runs as root with iproute2 installed by scripts/setup-qemu.sh: a machine that cannot make
// namespaces fails here instead of silently skipping the only test that crosses a real link.
describe(`send/recv across two network namespaces (${RATE_MBIT} Mbit/s veth)`, () => {
  let link: Link;
  const scratch = mkdtempSync(join(tmpdir(), 'migstream-netns-'));
  beforeAllOrFail(() => {
    if (!netnsAvailable()) throw new Error('cannot create network namespaces (needs root, iproute2 and tc)');
    link = createLink({ rateMbit: RATE_MBIT });
  });
  afterAll(() => {
    link?.destroy();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('4 TLS channels carry a QEMU stream byte for byte, no faster than the link', async () => {
    const fixture = loadFixture('compress');
    const out = join(scratch, 'out.mig');
    const certs = testCerts();
    const recv = await startRecv(['--tls', certs, '-o', out], { host: link.addressB, prefix: link.inNs(link.b, []) });
    const send = run(['send', `${link.addressB}:${recv.port}`, fixture.stream, '--channels', '4', '--tls', certs, '--tls-name', '127.0.0.1'], { prefix: link.inNs(link.a, []) });
    const [sent, received] = await Promise.all([send.exited, recv.exited]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(readFileSync(out).equals(readFileSync(fixture.stream))).toBe(true);
    // The bytes crossed the capped link: the transfer took at least its wire time.
    const wireSeconds = (fixture.meta.streamBytes * 8) / (RATE_MBIT * 1e6);
    expect(sent.ms / 1000).toBeGreaterThan(wireSeconds * 0.9);
  }, 120_000);

  test('a real QEMU destination in the other namespace loads the stream', async () => {
    const fixture = loadFixture('idle');
    const certs = testCerts();
    const port = 40000 + Math.floor(Math.random() * 20000);
    const recvCommand = [...link.inNs(link.b, []), process.execPath, BIN, 'recv', '--listen', `${link.addressB}:${port}`, '--tls', certs, '--quiet'].map(shellQuote).join(' ');
    const send = run(['send', `${link.addressB}:${port}`, fixture.stream, '--channels', '2', '-c', 'lz4', '--tls', certs, '--tls-name', '127.0.0.1', '--timeout', '120'], { prefix: link.inNs(link.a, []) });
    const restored = await restoreFixture('idle', recvCommand);
    try {
      const sent = await send.exited;
      expect(sent.code, sent.stderr).toBe(0);
      expect(await firstDifference(fixture.sourceDump, restored.dumpPath)).toBe(-1);
    } finally {
      await restored.cleanup();
    }
  }, 300_000);

  test('hot-page dropping over the capped link: the hold cuts earlier copies, the destination QEMU loads the same RAM', async () => {
    const fixture = loadFixture('dirty');
    const port = 40000 + Math.floor(Math.random() * 20000);
    const recvCommand = [...link.inNs(link.b, []), process.execPath, BIN, 'recv', '--listen', `${link.addressB}:${port}`, '--insecure', '--quiet'].map(shellQuote).join(' ');
    // The file reads faster than the link drains: the hold fills, and the passes of the
    // fixture's converging end are shorter than it.
    const send = run(['send', `${link.addressB}:${port}`, fixture.stream, '--channels', '1', '--hold', '64M', '--insecure', '--timeout', '120', '--json'], { prefix: link.inNs(link.a, []), stdout: 'pipe' });
    let json = '';
    send.child.stdout!.setEncoding('utf8').on('data', (text: string) => (json += text));
    const restored = await restoreFixture('dirty', recvCommand);
    try {
      const sent = await send.exited;
      expect(sent.code, sent.stderr).toBe(0);
      const summary = JSON.parse(json) as { bytes: number; hold: { limitBytes: number; streamBytes: number; droppedPages: number; droppedBytes: number } };
      expect(summary.hold.limitBytes).toBe(64 * 1048576);
      expect(summary.hold.streamBytes).toBe(fixture.meta.streamBytes);
      expect(summary.hold.droppedPages).toBeGreaterThan(0);
      expect(summary.bytes).toBe(fixture.meta.streamBytes - summary.hold.droppedBytes);
      expect(await firstDifference(fixture.sourceDump, restored.dumpPath)).toBe(-1);
    } finally {
      await restored.cleanup();
    }
  }, 300_000);
});
