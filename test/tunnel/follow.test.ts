/**
 * MigrationFollower on tunnel events played by the test: which streams belong to which
 * migration, whatever order their first bytes arrive in, and the report it gives.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import type { StreamRecord, Tunnel, TunnelEvents } from '../../src/tunnel/host.js';
import { MigrationFollower, type FollowedMigration } from '../../src/tunnel/follow.js';
import { multifdInit, multifdPacket } from '../helpers/multifd-bytes.js';
import { loadFixture } from '../helpers/qemu.js';

class FakeTunnel extends EventEmitter<TunnelEvents> {
  wire = { sent: 0, received: 0 };
  deltaPages = 0;
  wireBytes(): { sent: number; received: number } {
    return { ...this.wire };
  }
  pageDelta(): { deltaPages: number; storedPages: number } {
    return { deltaPages: this.deltaPages, storedPages: 0 };
  }
  stream(id: number, kind: StreamRecord['kind']): StreamRecord {
    const record: StreamRecord = { id, target: '/q', channel: 0, kind, clientBytes: 0, serverBytes: 0, openedAt: 0, closedAt: null, reset: null };
    this.emit('classified', record);
    return record;
  }
}

describe('MigrationFollower', () => {
  test('multifd channels that speak before the main stream still count; the report waits for every stream to close', () => {
    const tunnel = new FakeTunnel();
    const reports: FollowedMigration[] = [];
    tunnel.deltaPages = 5;
    new MigrationFollower(tunnel as unknown as Tunnel, (report) => reports.push(report));
    const page = Buffer.alloc(4096, 7);
    const channel = Buffer.concat([multifdInit(0), multifdPacket({ normal: [{ offset: 0, data: page }], zeroOffsets: [4096, 8192] })]);
    const m1 = tunnel.stream(2, 'multifd');
    tunnel.emit('bytes', m1, true, channel);
    const main = tunnel.stream(1, 'qemu-main');
    const stream = readFileSync(loadFixture('idle').stream);
    tunnel.emit('bytes', main, true, stream);
    tunnel.emit('bytes', main, false, Buffer.alloc(10));
    tunnel.wire.sent += 1234;
    tunnel.deltaPages += 40;
    tunnel.emit('closed', main);
    expect(reports).toHaveLength(0);
    tunnel.emit('closed', m1);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({
      streamBytes: stream.length,
      returnBytes: 10,
      multifdBytes: channel.length,
      multifd: { channels: 1, packets: 1, normalPages: 1, zeroPages: 2, pageBytes: 4096 },
      wireBytes: 1234,
      deltaPages: 40,
      problems: [],
    });
    expect(reports[0]!.passes.length).toBeGreaterThan(0);
    // A new main stream after that is the next migration.
    const next = tunnel.stream(3, 'qemu-main');
    tunnel.emit('bytes', next, true, Buffer.from('not a stream'));
    tunnel.emit('end', null);
    expect(reports).toHaveLength(2);
    expect(reports[1]!.problems[0]).toMatch(/the main stream did not decode/);
  });
});
