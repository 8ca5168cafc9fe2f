/**
 * send → migrate stats (send-stats-wire.ts, send-stats.ts): lines hand-built from the module
 * comment decode to their fields, hostile ones are refused by name, and over a real Unix
 * socket the listener keeps the newest report and the final one while a stray is shut out;
 * the real send command's final line counts every byte of a recorded stream.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { SendStatsListener, SendStatsReporter } from '../../src/migrate/send-stats.js';
import { decodeSendStats, MAX_SEND_STATS_LINE, SendStatsLineSplitter, SendStatsProtocolError } from '../../src/migrate/send-stats-wire.js';
import { ProgressMeter } from '../../src/migrate/progress.js';
import type { MigrationInfo } from '../../src/qemu/migration.js';
import { loadFixture } from '../helpers/qemu.js';
import { run, startRecv } from '../helpers/transport.js';

const dir = mkdtempSync(join(tmpdir(), 'migstream-send-stats-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const pass = { index: 0, pages: 65536, zeroPages: 60000, resentPages: 0, payloadBytes: 5536 * 4096 };
const hold = { limitBytes: 2 << 20, droppedPages: 3, droppedBytes: 3 * 4104, pinnedPages: 1, keptPages: 2 };
const none = { limitBytes: 0, droppedPages: 0, droppedBytes: 0, pinnedPages: 0, keptPages: 0 };
const good = { type: 'send-stats', streamBytes: 30000, leftBytes: 2000, wireBytes: 2100, passes: [pass], hold };

describe('send-stats lines', () => {
  test('a hand-written line decodes to its fields, with and without the heat map', () => {
    expect(decodeSendStats(JSON.stringify(good))).toEqual(good);
    const heat = [{ block: 'pc.ram', offset: 0x200000, length: 0x400000, resends: 7 }];
    expect(decodeSendStats(JSON.stringify({ ...good, heat }))).toEqual({ ...good, heat });
  });

  test.each([
    ['not JSON', '{"type"', /not JSON/],
    ['another type', JSON.stringify({ ...good, type: 'source-verdict' }), /not a send-stats object/],
    ['a fractional count', JSON.stringify({ ...good, wireBytes: 1.5 }), /byte counts/],
    ['more left than read', JSON.stringify({ ...good, leftBytes: 40000 }), /more bytes left/],
    ['more left and dropped than read', JSON.stringify({ ...good, leftBytes: 30000 - 3 * 4104 + 1 }), /more bytes left or were dropped/],
    ['a pass without zero pages', JSON.stringify({ ...good, passes: [{ ...pass, zeroPages: undefined }] }), /passes/],
    ['no hold counts', JSON.stringify({ ...good, hold: undefined }), /hold/],
    ['a negative dropped count', JSON.stringify({ ...good, hold: { ...hold, droppedPages: -1 } }), /hold/],
    ['a hold without its size', JSON.stringify({ ...good, hold: { ...hold, limitBytes: undefined } }), /hold/],
    ['a heat map of 17 segments', JSON.stringify({ ...good, heat: Array(17).fill({ block: 'pc.ram', offset: 0, length: 1, resends: 1 }) }), /heat map/],
  ])('%s is a SendStatsProtocolError', (_name, line, pattern) => {
    expect(() => decodeSendStats(line)).toThrow(SendStatsProtocolError);
    expect(() => decodeSendStats(line)).toThrow(pattern);
  });

  test('an endless line is refused at the bound', () => {
    const splitter = new SendStatsLineSplitter();
    expect(splitter.push(Buffer.from('{"a":'))).toEqual([]);
    expect(splitter.push(Buffer.from('1}\n{'))).toEqual(['{"a":1}']);
    expect(() => splitter.push(Buffer.alloc(MAX_SEND_STATS_LINE + 1, 0x20))).toThrow(SendStatsProtocolError);
  });
});

describe('send-stats over a Unix socket', () => {
  test('the listener keeps the newest and the final report; a stray that sends garbage is closed and named', async () => {
    const path = join(dir, 'stats.sock');
    const listener = await SendStatsListener.listen(path);
    try {
      const stray = createConnection(path);
      const strayClosed = new Promise((resolve) => stray.on('close', resolve));
      stray.on('error', () => undefined);
      stray.write('hello\n');
      await strayClosed;
      expect(listener.refused).toEqual(['a send-stats line is not JSON']);

      const reporter = new SendStatsReporter(path);
      reporter.report({ type: 'send-stats', streamBytes: 10, leftBytes: 5, wireBytes: 6, passes: [], hold: none });
      const final = listener.waitForFinal(5000);
      const last = { type: 'send-stats' as const, streamBytes: 20 + hold.droppedBytes, leftBytes: 20, wireBytes: 22, passes: [pass], hold, heat: [] };
      await reporter.finish(last);
      expect(await final).toEqual(last);
      expect(listener.latest?.streamBytes).toBe(20 + hold.droppedBytes);
    } finally {
      listener.close();
    }
  });

  test('a reporter whose socket is not there carries on silently', async () => {
    const reporter = new SendStatsReporter(join(dir, 'nobody.sock'));
    reporter.report({ type: 'send-stats', streamBytes: 1, leftBytes: 0, wireBytes: 0, passes: [], hold: none });
    await expect(reporter.finish({ type: 'send-stats', streamBytes: 1, leftBytes: 1, wireBytes: 1, passes: [], hold: none, heat: [] }, 500)).resolves.toBeUndefined();
  });

  test('waitForFinal gives up after its timeout with what it has', async () => {
    const listener = await SendStatsListener.listen(join(dir, 'quiet.sock'));
    try {
      await expect(listener.waitForFinal(50)).resolves.toBeUndefined();
    } finally {
      listener.close();
    }
  });
});

describe('progress from send-stats', () => {
  const info = (transferred: number): MigrationInfo => ({ status: 'active', ram: { transferred, remaining: 100e6, total: 400e6, duplicate: 0, normal: 0, 'normal-bytes': 0, 'dirty-sync-count': 1 } });
  test('wire and drain rates are taken over a 2 s window, so reports twice a second do not make polls at 4/s jump', () => {
    const meter = new ProgressMeter(0);
    // send reports every 500 ms: the counters step then stand still between reports.
    const events = [0, 250, 500, 750, 1000, 1250, 1500, 1750, 2000, 2250, 2500].map((atMs) => {
      const reported = Math.floor(atMs / 500) * 500;
      return meter.push({ atMs, info: info(atMs * 10e3), wireBytes: reported * 12e3, leftBytes: reported * 10e3 });
    });
    const last = events.at(-1)!;
    // From the newest sample at least 2 s old (500 ms) to 2500 ms: 2 s of 10 MB/s left, 12 on the wire.
    expect(last.drainRate).toBeCloseTo(10e6, -3);
    expect(last.wireRate).toBeCloseTo(12e6, -3);
    expect(events.slice(4).every((e) => e.drainRate! > 7e6 && e.drainRate! < 13e6)).toBe(true);
  });

  test('without send-stats both rates are null and the ETA uses the pipe rate', () => {
    const meter = new ProgressMeter(0);
    meter.push({ atMs: 0, info: info(0) });
    const event = meter.push({ atMs: 1000, info: info(200e6) });
    expect(event.wireRate).toBeNull();
    expect(event.drainRate).toBeNull();
    expect(event.etaMs).toBe(500);
  });
});

describe('the send command reports over --stats-socket', () => {
  test.each([[[]], [['--hold', '8M']]])(
    'send %j: the final line counts every byte read, left and sent, and the passes',
    async (extra) => {
      const { stream, meta } = loadFixture('dirty');
      const path = join(dir, `real-${extra.length}.sock`);
      const listener = await SendStatsListener.listen(path);
      try {
        const recv = await startRecv(['--insecure', '-o', '/dev/null', '--quiet']);
        const sent = await run(['send', `127.0.0.1:${recv.port}`, stream, '--insecure', '--quiet', '--stats-socket', path, ...extra]).exited;
        expect(sent.code, sent.stderr).toBe(0);
        expect((await recv.exited).code).toBe(0);
        const final = await listener.waitForFinal(5000);
        expect(listener.refused).toEqual([]);
        expect(final!.streamBytes).toBe(meta.streamBytes);
        // Every byte read left for a socket or was dropped from the hold.
        expect(final!.leftBytes + final!.hold.droppedBytes).toBe(meta.streamBytes);
        expect(final!.wireBytes).toBeGreaterThanOrEqual(final!.leftBytes);
        expect(final!.passes.length).toBeGreaterThan(1);
        expect(final!.hold.limitBytes).toBe(extra.length === 0 ? 0 : 8 * 1048576);
      } finally {
        listener.close();
      }
    },
    120_000,
  );
});
