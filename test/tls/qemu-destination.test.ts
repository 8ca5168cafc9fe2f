/**
 * A real QEMU destination (7.2, and 10.0 on its own machine types) loads a recorded source stream through
 * `-incoming "exec:migstream recv …"` fed by `migstream send`: its RAM equals the source's,
 * and the guest keeps running after `cont`. A transfer that fails leaves QEMU with a failed
 * migration, never a loaded VM.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { firstDifference, loadFixture, restoreFixture, shellQuote } from '../helpers/qemu.js';
import { BIN, freePort, run, testCerts } from '../helpers/transport.js';

const NAME = 'idle';
const fixture = loadFixture(NAME);
const scratch = mkdtempSync(join(tmpdir(), 'migstream-qemu-tls-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function recvCommand(port: number, security: string[]): string {
  return [process.execPath, BIN, 'recv', '--listen', `127.0.0.1:${port}`, ...security, '--quiet', '--timeout', '20'].map(shellQuote).join(' ');
}

const cases = [
  { fixture: NAME, channels: 1, tls: false, codec: 'none', resume: true },
  { fixture: NAME, channels: 2, tls: true, codec: 'lz4', resume: false },
  { fixture: NAME, channels: 4, tls: true, codec: 'none', resume: false },
  { fixture: 'i440fx-10.0', channels: 2, tls: true, codec: 'zstd', resume: true },
  { fixture: 'q35-10.0', channels: 1, tls: false, codec: 'lz4', resume: false },
] as const;

describe('real QEMU destination behind recv', () => {
  test.each(cases)(
    '$fixture: $channels channel(s), tls $tls, codec $codec: RAM equals the source',
    async ({ fixture: name, channels, tls, codec, resume }) => {
      const fixture = loadFixture(name);
      const port = await freePort();
      const security = tls ? ['--tls', testCerts()] : ['--insecure'];
      // send keeps dialling until QEMU has started recv.
      const send = run(['send', `127.0.0.1:${port}`, fixture.stream, '--channels', String(channels), '-c', codec, ...security, '--timeout', '120']);
      const restored = await restoreFixture(name, recvCommand(port, security), { resume });
      try {
        const sent = await send.exited;
        expect(sent.code, sent.stderr).toBe(0);
        expect(restored.queryMigrate.status).toBe('completed');
        expect(await firstDifference(fixture.sourceDump, restored.dumpPath)).toBe(-1);
      } finally {
        await restored.cleanup();
      }
    },
    300_000,
  );

  test('a source that stops early: QEMU reports a failed migration, the sender fails', async () => {
    const port = await freePort();
    const short = join(scratch, 'short.mig');
    writeFileSync(short, readFileSync(fixture.stream).subarray(0, 60_000_000));
    const send = run(['send', `127.0.0.1:${port}`, short, '--channels', '2', '--insecure', '--timeout', '120']);
    await expect(restoreFixture(NAME, recvCommand(port, ['--insecure']), { timeoutMs: 60_000 })).rejects.toThrow(/failed/);
    const sent = await send.exited;
    expect(sent.code).toBe(1);
    expect(sent.stderr).toMatch(/stream ends inside a record/);
  }, 300_000);
});
