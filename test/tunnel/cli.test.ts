/**
 * `migstream tunnel` as processes over real sockets, without QEMU: many connections at once,
 * both directions byte for byte, half-close, a refused target, strangers at the port, TLS with
 * and without the right certificate, and how each side ends.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { pageCacheOption } from '../../src/cli/tunnel.js';
import { makeQuickStart } from '../../src/tls/certs.js';
import { startTunnelPair, type TunnelPair } from '../helpers/tunnel.js';
import { run, testCerts } from '../helpers/transport.js';

const dir = mkdtempSync(join(tmpdir(), 'migstream-tunnel-'));
const servers: Server[] = [];
const pairs: TunnelPair[] = [];
afterAll(async () => {
  await Promise.all(pairs.map((pair) => pair.stop()));
  for (const server of servers) server.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * A UNIX server standing in for QEMU: answers each connection with the SHA-256 of everything
 * it read (after the client half-closed), then its own greeting, then closes.
 */
function hashServer(path: string): Promise<void> {
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    const hash = createHash('sha256');
    socket.write('hello from the destination\n');
    socket.on('data', (chunk: Buffer) => hash.update(chunk));
    socket.on('end', () => socket.end(hash.digest('hex')));
  });
  servers.push(server);
  return new Promise((resolve) => server.listen(path, resolve));
}

/** Connects, sends `data`, half-closes and returns everything the server answered. */
function exchange(path: string, data: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ path, allowHalfOpen: true });
    const answer: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => answer.push(chunk));
    socket.on('end', () => {
      socket.end();
      resolve(Buffer.concat(answer).toString());
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(answer).toString()));
    // Written in pieces, as a migration stream arrives.
    for (let at = 0; at < data.length; at += 100_000) socket.write(data.subarray(at, at + 100_000));
    socket.end();
  });
}

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

describe('migstream tunnel', () => {
  test('8 connections at once over 2 TLS channels with lz4: every byte both ways, half-closes carried, each stream closed cleanly', async () => {
    const target = join(dir, 'qemu.sock');
    await hashServer(target);
    const listen = join(dir, 'src-qemu.sock');
    const pair = await startTunnelPair({ routes: [`${listen}=${target}`], targets: [target], channels: 2, tls: testCerts(), extra: { source: ['-c', 'lz4', '--socket-mode', '660'] } });
    pairs.push(pair);
    expect(statSync(listen).mode & 0o777).toBe(0o660);
    // Random (sent raw: it does not shrink) and compressible inputs.
    const inputs = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? randomBytes(i === 0 ? 24 * 1024 * 1024 : 200_000 + i) : Buffer.from(`page ${i} `.repeat(300_000))));
    const answers = await Promise.all(inputs.map((data) => exchange(listen, data)));
    answers.forEach((answer, i) => expect(answer).toBe(`hello from the destination\n${sha(inputs[i]!)}`));
    // Both sides saw every stream close cleanly, spread over both channels.
    await pair.source.waitFor('closed', () => pair.source.events.filter((e) => e.event === 'closed').length === 8);
    const closed = pair.source.events.filter((e) => e.event === 'closed');
    expect(closed).toHaveLength(8);
    for (const event of closed) expect(event.reset).toBeNull();
    expect(new Set(closed.map((e) => e.channel))).toEqual(new Set([0, 1]));
    expect(closed.find((e) => e.stream === 1)).toMatchObject({ clientBytes: 24 * 1024 * 1024, serverBytes: 27 + 64 });
  }, 120_000);

  test('a target the destination does not list is refused; a stranger at the port changes nothing; SIGTERM ends the source with 0 and removes its socket', async () => {
    const allowed = join(dir, 'allowed.sock');
    await hashServer(allowed);
    const sneaky = join(dir, 'src-sneaky.sock');
    const good = join(dir, 'src-good.sock');
    const pair = await startTunnelPair({ routes: [`${sneaky}=/etc/hostname`, `${good}=${allowed}`], targets: [allowed] });
    pairs.push(pair);
    // Cut without an answer: closed, or reset when the tunnel closed it with our bytes unread.
    expect(await exchange(sneaky, Buffer.from('let me in')).catch((error: NodeJS.ErrnoException) => error.code)).toMatch(/^(|ECONNRESET)$/);
    const reset = await pair.source.waitFor('closed', (e) => e.stream === 1);
    expect(reset.reset).toBe('the peer reset it: /etc/hostname is not a target of this tunnel (--unix)');
    // A stranger: garbage, then a plain TCP connection that says nothing and leaves.
    await new Promise<void>((resolve) => {
      const stranger = connect(pair.port, '127.0.0.1', () => stranger.end('GET / HTTP/1.1\r\n\r\n'));
      stranger.on('close', () => resolve());
      stranger.on('error', () => resolve());
    });
    const data = randomBytes(1_000_000);
    expect(await exchange(good, data)).toBe(`hello from the destination\n${sha(data)}`);
    expect(pair.destination.events.some((e) => e.event === 'refused')).toBe(true);
    pair.source.child.kill('SIGTERM');
    expect((await pair.source.exited).code).toBe(0);
    expect(existsSync(good)).toBe(false);
    // The destination goes on serving: a new source side opens a new session.
    const again = run(['tunnel', '--to', `127.0.0.1:${pair.port}`, '--unix', `${good}=${allowed}`, '--insecure', '--json'], { stdout: 'pipe' });
    await new Promise<void>((resolve) => again.child.stdout!.once('data', () => resolve()));
    expect(await exchange(good, data)).toBe(`hello from the destination\n${sha(data)}`);
    again.child.kill('SIGTERM');
    expect((await again.exited).code).toBe(0);
  }, 120_000);

  test('the destination killed mid-stream: the source exits 1 naming the channel, its connections are cut', async () => {
    const target = join(dir, 'slow.sock');
    // A server that reads nothing: bytes pile up against the window.
    const server = createServer(() => {});
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(target, resolve));
    const listen = join(dir, 'src-slow.sock');
    const pair = await startTunnelPair({ routes: [`${listen}=${target}`], targets: [target] });
    pairs.push(pair);
    const client = connect(listen);
    const closed = new Promise<void>((resolve) => client.on('close', () => resolve()));
    client.on('error', () => {});
    client.write(randomBytes(8 * 1024 * 1024));
    await pair.source.waitFor('stream');
    pair.destination.child.kill('SIGKILL');
    const finished = await pair.source.exited;
    expect(finished.code).toBe(1);
    expect(finished.stderr).toMatch(/migstream tunnel: channel 0: (the peer closed the connection|the receiver reset the connection)/);
    await closed;
  }, 60_000);

  test('TLS: a source with a certificate from another CA is refused; the destination goes on listening', async () => {
    const other = join(dir, 'other-ca');
    makeQuickStart({ dir: other, names: ['localhost', '127.0.0.1'], days: 2 });
    const target = join(dir, 'tls.sock');
    await hashServer(target);
    const pair = await startTunnelPair({ routes: [`${join(dir, 'src-tls.sock')}=${target}`], targets: [target], tls: testCerts() });
    pairs.push(pair);
    // Another CA's client certificate, and it does not trust our server either.
    const wrong = run(['tunnel', '--to', `127.0.0.1:${pair.port}`, '--unix', join(dir, 'src-wrong.sock'), '--tls', other, '--timeout', '5']);
    const finished = await wrong.exited;
    expect(finished.code).toBe(1);
    expect(finished.stderr).toMatch(/certificate/);
    expect(existsSync(join(dir, 'src-wrong.sock'))).toBe(false);
    const data = randomBytes(100_000);
    expect(await exchange(join(dir, 'src-tls.sock'), data)).toBe(`hello from the destination\n${sha(data)}`);
  }, 60_000);
});

describe('tunnel options', () => {
  test('--page-cache takes a size (0 turns page-aware compression off), nothing else', () => {
    expect(pageCacheOption(undefined)).toBeUndefined();
    expect(pageCacheOption('64M')).toBe(64 * 1024 * 1024);
    expect(pageCacheOption('0')).toBe(0);
    for (const bad of ['lots', '-1', '1T', '100G']) expect(() => pageCacheOption(bad)).toThrow(/--page-cache must be a size like 64M/);
  });
});
