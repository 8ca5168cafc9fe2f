/**
 * What `exec:migstream copy` adds to a real restore, against `exec:cat` of the same stream:
 * a paused destination QEMU loads each recorded fixture stream both ways, alternately, and the
 * wall time from migrate-incoming to "completed" is compared.
 *
 *   npm run bench:passthrough [-- FIXTURE…]   (needs the fixtures of a test run)
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { launchQemu } from '../src/qemu/launcher.js';
import { restoreFromExec, shellQuote } from '../src/qemu/migration.js';
import { REPO_ROOT } from '../test/fixtures/meta.js';
import { loadFixture } from '../test/helpers/qemu.js';

const names = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['idle', 'dirty', 'xbzrle'];
const ROUNDS = 3;
const bin = join(REPO_ROOT, 'bin', 'migstream');

async function restoreMs(name: string, command: string): Promise<number> {
  const { meta } = loadFixture(name);
  if (meta.disk) throw new Error(`${name}: block fixtures need a disk; pick another fixture`);
  const vm = await launchQemu({ args: [...meta.machineArgs, '-S', '-incoming', 'defer'], accel: meta.accel, name: `bench-${name}`, cwd: REPO_ROOT });
  try {
    const started = performance.now();
    const info = await restoreFromExec(vm, command, { capabilities: meta.destinationCapabilities, pollMs: 20 });
    if (info.status !== 'completed') throw new Error(`${name}: ${info.status}`);
    return performance.now() - started;
  } finally {
    await vm.quit();
  }
}

for (const name of names) {
  const { stream, meta } = loadFixture(name);
  const commands: Record<string, string> = {
    cat: `cat ${shellQuote(stream)}`,
    'migstream copy': `${shellQuote(process.execPath)} ${shellQuote(bin)} copy --quiet ${shellQuote(stream)}`,
  };
  const times: Record<string, number[]> = { cat: [], 'migstream copy': [] };
  for (let round = 0; round < ROUNDS; round++) {
    for (const [label, command] of Object.entries(commands)) times[label]!.push(await restoreMs(name, command));
  }
  const best = (label: string): number => Math.min(...times[label]!);
  const mb = meta.streamBytes / 1e6;
  console.log(`\n${name} (${mb.toFixed(0)} MB stream, ${meta.accel}), best of ${ROUNDS}:`);
  for (const label of Object.keys(commands)) {
    console.log(`  exec:${label.padEnd(15)} ${best(label).toFixed(0).padStart(6)} ms  ${(mb / (best(label) / 1000)).toFixed(0)} MB/s`);
  }
  console.log(`  time added by migstream copy: ${((best('migstream copy') / best('cat') - 1) * 100).toFixed(1)}%`);
}
