/**
 * The transport cannot be stopped from outside: strangers before the real sender are logged
 * and dropped while recv keeps listening, start-up failures (port in use, an address not on
 * this host, bad credentials) end recv at once with one line, and a reader that stops reading
 * does not hold recv forever. Each case here hung recv or ended the session before.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, describe, expect, test } from 'vitest';
import { issue } from '../../src/tls/certs.js';
import { loadFixture } from '../helpers/qemu.js';
import { run, startRecv, testCerts, type Finished } from '../helpers/transport.js';

const fixture = loadFixture('compress');
const scratch = mkdtempSync(join(tmpdir(), 'migstream-admission-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function oneLine(finished: Finished, code: number, message: RegExp): void {
  expect(finished.code, finished.stderr).toBe(code);
  const lines = finished.stderr.trim().split('\n');
  expect(lines[0]).toMatch(message);
  expect(finished.stderr).not.toMatch(/listening on/);
  expect(finished.stderr).not.toMatch(/--tls-dir|\n {4}at /);
}

function listening(): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => resolve(server));
  });
}

/** Opens a plain TCP connection, writes `bytes` (if any) and closes it after `holdMs`. */
function stranger(port: number, bytes: Buffer | null, holdMs: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      if (bytes) socket.write(bytes);
      setTimeout(() => socket.destroy(), holdMs);
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve());
  });
}

/** A TLS client with no certificate of its own (a TLS health check). */
function tlsStranger(port: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    socket.on('error', () => {});
    socket.on('close', () => resolve());
    setTimeout(() => socket.destroy(), 1_000);
  });
}

describe('start-up failures end recv at once with one line', () => {
  test('the port is in use: exit 1, no hang', async () => {
    const taken = await listening();
    try {
      const { port } = taken.address() as AddressInfo;
      const finished = await run(['recv', '--listen', `127.0.0.1:${port}`, '--insecure']).exited;
      oneLine(finished, 1, /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
      expect(finished.ms).toBeLessThan(5_000);
    } finally {
      taken.close();
    }
  });

  test('an address that is not on this host: exit 1, no hang', async () => {
    const finished = await run(['recv', '--listen', '192.0.2.1:4444', '--insecure']).exited;
    oneLine(finished, 1, /cannot listen on 192\.0\.2\.1:4444: .*EADDRNOTAVAIL/);
    expect(finished.ms).toBeLessThan(5_000);
  });

  test('credentials are checked before listening: missing, mismatched, expired (exit 2, the file named)', async () => {
    const good = testCerts();
    const partial = join(scratch, 'no-server-cert');
    const mismatched = join(scratch, 'mismatched');
    const expired = join(scratch, 'expired-server');
    for (const [dir, files] of [
      [partial, ['ca.pem', 'server-key.pem']],
      [mismatched, ['ca.pem', 'server.pem']],
    ] as const) {
      mkdirSync(dir, { recursive: true });
      for (const file of files) copyFileSync(join(good, file), join(dir, file));
    }
    // server.pem with the client's key: a key that is not the certificate's.
    copyFileSync(join(good, 'client-key.pem'), join(mismatched, 'server-key.pem'));
    issue({ caDir: good, outDir: expired, name: 'server', role: 'server', altNames: ['127.0.0.1'], validity: { start: '20200101000000Z', end: '20200102000000Z' } });
    copyFileSync(join(good, 'ca.pem'), join(expired, 'ca.pem'));

    const missing = await run(['recv', '--listen', '127.0.0.1:0', '--tls', partial]).exited;
    oneLine(missing, 2, new RegExp(`${join(partial, 'server.pem').replace(/[.]/g, '\\.')} is missing`));
    const wrongKey = await run(['recv', '--listen', '127.0.0.1:0', '--tls', mismatched]).exited;
    oneLine(wrongKey, 2, /server-key\.pem is not the key of the certificate .*server\.pem/);
    const old = await run(['recv', '--listen', '127.0.0.1:0', '--tls', expired]).exited;
    oneLine(old, 2, /certificate .*server\.pem expired on/);

    // The sender checks its own the same way, before dialling.
    const expiredClient = join(scratch, 'expired-client');
    issue({ caDir: good, outDir: expiredClient, name: 'client', role: 'client', validity: { start: '20200101000000Z', end: '20200102000000Z' } });
    const sent = await run(['send', '127.0.0.1:9', fixture.stream, '--tls-ca', join(good, 'ca.pem'), '--tls-cert', join(expiredClient, 'client.pem'), '--tls-key', join(expiredClient, 'client-key.pem')]).exited;
    oneLine(sent, 2, /client\.pem expired on/);
  });
});

describe('strangers never stop a session', () => {
  test('a port scan, plaintext, garbage and a TLS client without certificate before the sender: all dropped, the sender completes', async () => {
    const certs = testCerts();
    const recv = await startRecv(['--tls', certs, '--timeout', '20'], { stdout: 'pipe' });
    const chunks: Buffer[] = [];
    recv.child.stdout!.on('data', (chunk: Buffer) => chunks.push(chunk));
    await stranger(recv.port, null, 0); // a port scan: connect, close
    await stranger(recv.port, Buffer.from('GET /health HTTP/1.0\r\n\r\n'), 300); // plaintext
    await stranger(recv.port, Buffer.alloc(4096, 0x5a), 300); // garbage
    await tlsStranger(recv.port); // TLS, but no client certificate
    const sent = await run(['send', `127.0.0.1:${recv.port}`, fixture.stream, '--channels', '2', '--tls', certs, '--quiet']).exited;
    const received = await recv.exited;
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(received.stderr.match(/refused 127\.0\.0\.1:\d+:/g)?.length ?? 0).toBeGreaterThanOrEqual(3);
    expect(Buffer.concat(chunks).equals(readFileSync(fixture.stream))).toBe(true);
  }, 60_000);

  test('strangers and no sender: recv gives up --timeout after the first connection, naming the last refusal', async () => {
    const recv = await startRecv(['--tls', testCerts(), '--timeout', '2']);
    await stranger(recv.port, Buffer.from('hello'), 200);
    const finished = await recv.exited;
    expect(finished.code, finished.stderr).toBe(1);
    expect(finished.ms).toBeLessThan(10_000);
    expect(finished.stderr).toMatch(/no sender was admitted within 2 s of the first connection; 1 connection\(s\) refused, the last 127\.0\.0\.1:\d+: .*TLS/);
  });
});

describe('a reader that stops reading', () => {
  test('recv into a pipe nobody reads: recv and send fail within the timeout', async () => {
    const recv = await startRecv(['--insecure', '--timeout', '3'], { stdout: 'pipe' });
    // Nobody reads recv's stdout: the pipe fills and stays full.
    recv.child.stdout!.pause();
    const send = run(['send', `127.0.0.1:${recv.port}`, fixture.stream, '--insecure', '--timeout', '3', '--quiet']);
    const [sent, received] = await Promise.all([send.exited, recv.exited]);
    expect(received.code, received.stderr).toBe(1);
    expect(received.stderr).toMatch(/the output's reader took no byte for 3 s/);
    expect(sent.code, sent.stderr).toBe(1);
    expect(Math.max(sent.ms, received.ms)).toBeLessThan(20_000);
  }, 30_000);
});
