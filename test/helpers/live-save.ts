/**
 * Boots a fixture scenario's source VM and saves it live through a given exec: command (e.g.
 * `migstream compress … -o FILE`), the way a user saves with `migrate "exec:…"`. Afterwards the
 * source is paused with the RAM the stream describes, and its dump is written for comparison
 * with a restore (restoreFixture of the same scenario: same machine, same accelerator).
 */
import { existsSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { launchQemu } from '../../src/qemu/launcher.js';
import { dumpGuestMemory, guestMemoryLayout, type DumpRange } from '../../src/qemu/memory.js';
import { migrateToExec, setParameters, shellQuote, type MigrationInfo } from '../../src/qemu/migration.js';
import { HEARTBEAT, REPO_ROOT, guestArgs } from '../fixtures/meta.js';
import { diskArgs, findScenario } from '../fixtures/scenarios.js';
import { loadFixture } from './qemu.js';

export interface LiveSave {
  /** The file the exec: command wrote (complete once this returns). */
  outPath: string;
  /** pmemsave of the paused source over `memoryLayout`. */
  dumpPath: string;
  memoryLayout: DumpRange[];
  queryMigrate: MigrationInfo;
  /**
   * Block scenarios: the source's disk (a copy of the fixture's source disk, attached to the
   * saved VM), complete once this returns since the source has quit.
   */
  diskPath: string | undefined;
  /** Seconds from `migrate` until QEMU reported completion. */
  migrateSeconds: number;
}

/**
 * `command(partialPath)` is the exec: command writing the saved file to `partialPath`; it is
 * renamed to `outPath` when the command exits (QEMU reports "completed" before its exec: child
 * has finished writing, see migrateToFile).
 */
export async function liveSave(name: string, dir: string, command: (partialPath: string) => string): Promise<LiveSave> {
  const scenario = findScenario(name);
  const fixture = loadFixture(name);
  const outPath = join(dir, 'saved');
  const partial = `${outPath}.partial`;
  const dumpPath = join(dir, 'source-ram.bin');
  const args = [...scenario.machine, ...guestArgs(scenario.guestMode)];
  let diskPath: string | undefined;
  if (scenario.disk) {
    diskPath = join(dir, 'source-disk.raw');
    await copyFile(fixture.sourceDisk, diskPath);
    args.push(...diskArgs(diskPath, scenario.disk));
  }
  const vm = await launchQemu({ args, accel: fixture.meta.accel, name: `live-save-${name}`, serialLogPath: join(dir, 'serial.log'), cwd: REPO_ROOT });
  try {
    await vm.waitForSerial(HEARTBEAT, 180_000);
    let converging = false;
    const started = Date.now();
    const queryMigrate = await migrateToExec(vm, `${command(partial)} && mv ${shellQuote(partial)} ${shellQuote(outPath)}`, {
      capabilities: scenario.capabilities,
      parameters: scenario.parameters,
      blk: scenario.disk !== undefined,
      timeoutMs: 5 * 60_000,
      // The scenario's converge plan, as the fixture builder applies it.
      onPoll: async (info, elapsedMs) => {
        const plan = scenario.converge;
        if (!plan || converging) return;
        if ((info.ram?.['dirty-sync-count'] ?? 0) >= plan.afterSyncs || elapsedMs >= plan.afterMs) {
          converging = true;
          await setParameters(vm, plan.parameters);
        }
      },
    });
    const migrateSeconds = (Date.now() - started) / 1000;
    const deadline = Date.now() + 120_000;
    while (!existsSync(outPath)) {
      if (Date.now() > deadline) throw new Error(`the exec: command did not finish writing ${outPath}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const memoryLayout = await dumpGuestMemory(vm, await guestMemoryLayout(vm), dumpPath);
    return { outPath, dumpPath, memoryLayout, queryMigrate, diskPath, migrateSeconds };
  } finally {
    await vm.quit();
  }
}
