/** Assertions shared by the migrate/incoming tests (vitest only: the bench imports migrate-cli.ts). */
import { expect } from 'vitest';
import type { QemuVm } from '../../src/qemu/launcher.js';
import { dumpGuestMemory, guestMemoryLayout } from '../../src/qemu/memory.js';
import { runsOn, status } from './migrate-cli.js';
import { firstDifference } from './qemu.js';

/**
 * After a good migration left both sides paused: independent of the commands' own check,
 * pmemsave both and compare the files byte for byte; then resume the destination and see it run.
 */
export async function expectSameRamThenRunsOn(source: QemuVm, dest: QemuVm, dumpPrefix: string): Promise<void> {
  expect(await status(source)).toBe('postmigrate');
  expect(await status(dest)).toBe('paused');
  const layout = await guestMemoryLayout(source);
  await dumpGuestMemory(source, layout, `${dumpPrefix}-src.bin`);
  await dumpGuestMemory(dest, layout, `${dumpPrefix}-dst.bin`);
  expect(await firstDifference(`${dumpPrefix}-src.bin`, `${dumpPrefix}-dst.bin`)).toBe(-1);
  await dest.execute('cont');
  expect(await runsOn(dest)).toBe(true);
}
