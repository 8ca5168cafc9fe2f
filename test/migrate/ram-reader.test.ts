import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from '../helpers/before-all.js';
import { GuestMemoryReadError, readGuestMemory } from '../../src/migrate/ram-reader.js';
import { launchQemu, type QemuVm } from '../../src/qemu/launcher.js';
import type { MemoryRange } from '../../src/qemu/memory.js';
import { restoreFromExec, shellQuote } from '../../src/qemu/migration.js';
import { REPO_ROOT } from '../fixtures/meta.js';
import { loadFixture } from '../helpers/qemu.js';

function pmemFifos(): string[] {
  return readdirSync(tmpdir()).filter((name) => name.startsWith('migstream-pmem-'));
}

describe('reading a paused VM through pmemsave into a FIFO (real QEMU)', () => {
  const fixture = loadFixture('q35-dimm');
  const ranges: MemoryRange[] = fixture.meta.memoryLayout.map(({ dumpOffset: _, ...range }) => range);
  let vm: QemuVm;

  beforeAllOrFail(async () => {
    vm = await launchQemu({ args: [...fixture.meta.machineArgs, '-S', '-incoming', 'defer'], accel: fixture.meta.accel, name: 'pmem-fifo', cwd: REPO_ROOT });
    await restoreFromExec(vm, `cat ${shellQuote(fixture.stream)}`, { capabilities: fixture.meta.destinationCapabilities });
  }, 180_000);
  afterAll(async () => {
    await vm?.quit();
  });

  test('every range arrives in order, byte for byte the source RAM, and nothing stays behind', async () => {
    const before = pmemFifos();
    const chunks: Buffer[] = [];
    const total = await readGuestMemory(vm, ranges, (chunk) => chunks.push(Buffer.from(chunk)));
    const source = readFileSync(fixture.sourceDump);
    expect(total).toBe(source.length);
    expect(Buffer.concat(chunks).equals(source)).toBe(true);
    expect(pmemFifos()).toEqual(before);
    // pmemsave through a FIFO left QEMU answering.
    expect((await vm.execute<{ status: string }>('query-status')).status).toBe('paused');
  });

  test('a consumer that throws stops the read with its own error, and QEMU answers after', async () => {
    const boom = new Error('consumer gave up');
    await expect(
      readGuestMemory(vm, ranges.slice(0, 2), () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect((await vm.execute<{ status: string }>('query-status')).status).toBe('paused');
  });

  test('a pmemsave QEMU refuses is a GuestMemoryReadError naming the range', async () => {
    const before = pmemFifos();
    const bad: MemoryRange = { idstr: 'pc.ram', guestPhysAddr: 0, offsetInBlock: 0, length: -4096 };
    const error = await readGuestMemory(vm, [bad], () => {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GuestMemoryReadError);
    expect((error as Error).message).toMatch(/pmemsave of -4096 bytes of pc.ram at guest-physical 0x0 failed/);
    expect(pmemFifos()).toEqual(before);
  });
});
