/**
 * send -> recv over loopback with a real QEMU stream: every byte arrives, in order, for each
 * channel count, plaintext and TLS, with and without compression.
 */
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { fingerprintOf } from '../../src/tls/credentials.js';
import { loadFixture } from '../helpers/qemu.js';
import { run, startRecv, testCerts } from '../helpers/transport.js';

const fixture = loadFixture('compress');
const scratch = mkdtempSync(join(tmpdir(), 'migstream-loopback-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const cases = [
  { channels: 1, tls: false, codec: 'none' },
  { channels: 2, tls: true, codec: 'none' },
  { channels: 4, tls: true, codec: 'lz4' },
  { channels: 4, tls: false, codec: 'lz4' },
  { channels: 2, tls: true, codec: 'zstd' },
] as const;

describe('send/recv over loopback', () => {
  test.each(cases)('$channels channel(s), tls $tls, codec $codec: identical stream', async ({ channels, tls, codec }) => {
    const out = join(scratch, `${channels}-${tls}-${codec}.mig`);
    const security = tls ? ['--tls', testCerts()] : ['--insecure'];
    const recv = await startRecv([...security, '-o', out]);
    const send = run(['send', `127.0.0.1:${recv.port}`, fixture.stream, '--channels', String(channels), '-c', codec, ...security]);
    const [sent, received] = await Promise.all([send.exited, recv.exited]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(readFileSync(out).equals(readFileSync(fixture.stream))).toBe(true);
    for (const side of [sent.stderr, received.stderr]) {
      expect(side).toMatch(new RegExp(`${channels} channel\\(s\\), ${tls ? 'TLS 1.3' : 'plaintext'}, codec ${codec}.*stream complete`));
      expect(side).toMatch(new RegExp(`channel ${channels - 1} .* MB/s`));
    }
  });

  test('a pinned receiver fingerprint replaces the CA check', async () => {
    const dir = testCerts();
    const out = join(scratch, 'pinned.mig');
    const recv = await startRecv(['--tls', dir, '-o', out]);
    const pin = fingerprintOf(readFileSync(join(dir, 'server.pem'), 'utf8'));
    const send = run(['send', `127.0.0.1:${recv.port}`, fixture.stream, '--channels', '2', '--tls-pin', pin, '--tls-cert', join(dir, 'client.pem'), '--tls-key', join(dir, 'client-key.pem')]);
    const [sent, received] = await Promise.all([send.exited, recv.exited]);
    expect(sent.code, sent.stderr).toBe(0);
    expect(received.code, received.stderr).toBe(0);
    expect(readFileSync(out).length).toBe(fixture.meta.streamBytes);
  });

  test('plaintext needs --insecure', async () => {
    const recv = run(['recv', '--listen', '127.0.0.1:0']);
    const finished = await recv.exited;
    expect(finished.code).toBe(2);
    expect(finished.stderr).toMatch(/--insecure/);
  });
});
