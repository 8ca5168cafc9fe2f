/**
 * Every failure ends both sides within seconds, with a non-zero exit and a message naming the
 * cause, and the receiver never writes the stream's tail (so QEMU never sees a complete stream).
 */
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, describe, expect, test } from 'vitest';
import { issue, makeQuickStart } from '../../src/tls/certs.js';
import { loadFixture } from '../helpers/qemu.js';
import { run, startProxy, startRecv, testCerts, type Finished } from '../helpers/transport.js';

const fixture = loadFixture('compress');
const scratch = mkdtempSync(join(tmpdir(), 'migstream-failures-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const FAST_MS = 15_000;

function expectFailed(side: Finished, message: RegExp): void {
  expect(side.code, side.stderr).toBe(1);
  expect(side.ms).toBeLessThan(FAST_MS);
  expect(side.stderr).toMatch(message);
}

/** Output never equals the whole stream: the held tail is written only after verification. */
function expectIncomplete(out: string): void {
  let size = 0;
  try {
    size = statSync(out).size;
  } catch {}
  expect(size).toBeLessThan(fixture.meta.streamBytes);
}

async function attempt(recvArgs: string[], sendArgs: string[], name: string, via?: (port: number) => Promise<number>) {
  const out = join(scratch, `${name}.mig`);
  const recv = await startRecv([...recvArgs, '-o', out, '--timeout', '5']);
  const port = via ? await via(recv.port) : recv.port;
  const send = run(['send', `127.0.0.1:${port}`, ...sendArgs, '--timeout', '5']);
  const [sent, received] = await Promise.all([send.exited, recv.exited]);
  return { sent, received, out, recv };
}

describe('nobody listening', () => {
  test('the sender redials until its timeout, then says the connection is refused', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const sent = await run(['send', `127.0.0.1:${port}`, fixture.stream, '--insecure', '--timeout', '2']).exited;
    expectFailed(sent, /connection refused \(is "migstream recv" listening there\?\)/);
    expect(sent.stderr).not.toMatch(/handshake/);
    expect(sent.ms).toBeGreaterThanOrEqual(2000);
  });
});

describe('authentication failures', () => {
  test('wrong CA: the sender rejects the receiver, the receiver sees the handshake fail', async () => {
    const other = join(scratch, 'other-ca');
    makeQuickStart({ dir: other, names: ['127.0.0.1'], days: 2 });
    const { sent, received, out } = await attempt(['--tls', testCerts()], [fixture.stream, '--channels', '2', '--tls', other], 'wrong-ca');
    expectFailed(sent, /certificate was rejected|authentication failed/i);
    expectFailed(received, /TLS|certificate|authentication/i);
    expectIncomplete(out);
  });

  test('a sender whose stdin is an idle pipe still exits at once when refused', async () => {
    const other = join(scratch, 'other-ca-idle');
    makeQuickStart({ dir: other, names: ['127.0.0.1'], days: 2 });
    const recv = await startRecv(['--tls', testCerts(), '-o', join(scratch, 'idle.mig'), '--timeout', '5']);
    // stdin stays open and silent, as a QEMU source's pipe may be: it must not hold the exit.
    const send = run(['send', `127.0.0.1:${recv.port}`, '--tls', other, '--timeout', '5'], { stdin: 'pipe' });
    try {
      expectFailed(await send.exited, /certificate was rejected|authentication failed/i);
    } finally {
      send.child.stdin?.destroy();
      recv.child.kill('SIGTERM');
      await recv.exited;
    }
  });

  test('no client certificate: refused by the receiver', async () => {
    const dir = testCerts();
    const { sent, received, out } = await attempt(['--tls', dir], [fixture.stream, '--tls-ca', join(dir, 'ca.pem')], 'no-client-cert');
    expectFailed(received, /client certificate required|did not return a certificate/i);
    expectFailed(sent, /certificate|authentication|closed/i);
    expectIncomplete(out);
  });

  test('expired client certificate: the receiver refuses it at the handshake (the sender refuses it at start-up)', async () => {
    const dir = testCerts();
    const expired = join(scratch, 'expired');
    issue({ caDir: dir, outDir: expired, name: 'client', role: 'client', validity: { start: '20200101000000Z', end: '20200102000000Z' } });
    // migstream send checks its own certificate before dialling (test/tls/admission.test.ts),
    // so the expired certificate comes from a plain TLS client here.
    const recv = await startRecv(['--tls', dir, '--timeout', '3']);
    await new Promise<void>((resolve) => {
      const socket = tlsConnect({
        port: recv.port,
        host: '127.0.0.1',
        ca: readFileSync(join(dir, 'ca.pem')),
        cert: readFileSync(join(expired, 'client.pem')),
        key: readFileSync(join(expired, 'client-key.pem')),
        servername: 'localhost',
        minVersion: 'TLSv1.3',
      });
      socket.on('error', () => {});
      socket.on('close', () => resolve());
      setTimeout(() => socket.destroy(), 2_000);
    });
    const received = await recv.exited;
    expectFailed(received, /refused 127\.0\.0\.1:\d+: .*expired/i);
  });

  test('plaintext sender against a TLS listener', async () => {
    const { sent, received, out } = await attempt(['--tls', testCerts()], [fixture.stream, '--insecure'], 'plaintext-vs-tls');
    expectFailed(received, /does not speak TLS/);
    expectFailed(sent, /closed|reset|not a migstream/);
    expectIncomplete(out);
  });
});

describe('failures mid-transfer', () => {
  test('one channel reset mid-transfer fails both ends', async () => {
    let proxyClose = (): void => {};
    const { sent, received, out } = await attempt(['--tls', testCerts()], [fixture.stream, '--channels', '3', '--tls', testCerts()], 'channel-reset', async (port) => {
      const proxy = await startProxy(port, (index, bytes, pair) => {
        if (index === 1 && bytes > 4_000_000 && !pair.client.destroyed) pair.client.resetAndDestroy();
      });
      proxyClose = proxy.close;
      return proxy.port;
    });
    proxyClose();
    expectFailed(sent, /channel \d+: .*(reset|closed)/);
    expectFailed(received, /channel \d+: .*(reset|closed|truncated|failed)/);
    expectIncomplete(out);
  });

  test('a session cut cleanly (FIN, no end frame) is truncated, not short', async () => {
    let proxyClose = (): void => {};
    const { sent, received, out } = await attempt(['--insecure'], [fixture.stream, '--channels', '2', '--insecure'], 'truncated', async (port) => {
      const proxy = await startProxy(port, (_index, bytes, pair) => {
        if (bytes > 3_000_000 && pair.upstream.writable) {
          pair.upstream.end();
          pair.client.end();
        }
      });
      proxyClose = proxy.close;
      return proxy.port;
    });
    proxyClose();
    expectFailed(received, /truncated session|closed/);
    expectFailed(sent, /closed|reset/);
    expectIncomplete(out);
  });

  test('a receiver whose reader exits before any sender came fails within seconds', async () => {
    const recv = await startRecv(['--insecure'], { stdout: 'pipe' });
    // The destination QEMU dying: the only reader of recv's stdout goes away.
    recv.child.stdout!.destroy();
    const received = await recv.exited;
    expectFailed(received, /nobody reads the output any more/);
  });

  test('the receiver killed mid-transfer fails the sender', async () => {
    const out = join(scratch, 'killed.mig');
    const recv = await startRecv(['--insecure', '-o', out]);
    const proxy = await startProxy(recv.port, (_index, bytes) => {
      if (bytes > 4_000_000) recv.child.kill('SIGKILL');
    });
    const send = run(['send', `127.0.0.1:${proxy.port}`, fixture.stream, '--channels', '2', '--insecure', '--timeout', '5']);
    const [sent, received] = await Promise.all([send.exited, recv.exited]);
    proxy.close();
    expect(received.signal).toBe('SIGKILL');
    expectFailed(sent, /channel \d+: .*(reset|closed)/);
    expectIncomplete(out);
  });

  test('a source stream that ends early is never completed on the destination', async () => {
    const truncated = join(scratch, 'short-source.mig');
    writeFileSync(truncated, readFileSync(fixture.stream).subarray(0, 10_000_000));
    const { sent, received, out } = await attempt(['--insecure'], [truncated, '--channels', '2', '--insecure'], 'short-source');
    expectFailed(sent, /stream ends inside a record|truncated/i);
    expectFailed(received, /the sender failed: .*(stream ends|truncated)/i);
    expectIncomplete(out);
  });
});
