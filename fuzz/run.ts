/**
 * npm run fuzz -- [--inputs N] [--seed S] [--target NAME]... [--json] [--replay INDEX]
 *
 * Mutates real QEMU streams (and containers and transport sessions made from them) and feeds
 * them to each layer's parser; exit 1 when any input ended other than in success or the layer's
 * typed error. Failing inputs are written to .cache/fuzz-crashes/.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../test/fixtures/meta.js';
import { fuzzTarget, type FuzzReport } from './fuzz.js';
import { allTargets } from './targets.js';

const { values } = parseArgs({
  options: {
    inputs: { type: 'string', default: '10000' },
    seed: { type: 'string', default: '1' },
    target: { type: 'string', multiple: true },
    json: { type: 'boolean' },
    replay: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});

const scratch = mkdtempSync(join(tmpdir(), 'migstream-fuzz-'));
const targets = allTargets(scratch);
if (values.help) {
  process.stdout.write(`Usage: npm run fuzz -- [--inputs N] [--seed S] [--target NAME]... [--json] [--replay INDEX]\n\nTargets: ${targets.map((t) => t.name).join(', ')}\n`);
  process.exit(0);
}
const inputs = Number(values.inputs);
const seed = Number(values.seed);
if (!Number.isSafeInteger(inputs) || inputs < 1 || !Number.isSafeInteger(seed)) {
  process.stderr.write('fuzz: --inputs must be a positive integer and --seed an integer\n');
  process.exit(2);
}
const chosen = values.target === undefined ? targets : targets.filter((t) => values.target!.includes(t.name));
const unknown = (values.target ?? []).filter((name) => !targets.some((t) => t.name === name));
if (unknown.length > 0) {
  process.stderr.write(`fuzz: unknown target ${unknown.join(', ')} (targets: ${targets.map((t) => t.name).join(', ')})\n`);
  process.exit(2);
}

const reports: FuzzReport[] = [];
try {
  for (const target of chosen) {
    const replay = values.replay === undefined ? undefined : Number(values.replay);
    let nextLog = 50_000;
    const report = await fuzzTarget(target, {
      inputs: replay === undefined ? inputs : replay + 1,
      seed,
      crashDir: join(REPO_ROOT, '.cache', 'fuzz-crashes'),
      onProgress: (done, r) => {
        if (process.stderr.isTTY) process.stderr.write(`\r${target.name}: ${done}/${inputs}, ${r.failures.length} failures`);
        // In a log, a line every 50,000 inputs: a long run stopped early still tells its count.
        else if (done >= nextLog) {
          nextLog += 50_000;
          process.stderr.write(`${target.name}: ${r.inputs} inputs, ${r.accepted} accepted, ${r.refused} refused, ${r.failures.length} failures\n`);
        }
      },
    });
    if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    await target.close?.();
    reports.push(report);
    if (!values.json) {
      const refusals = Object.entries(report.refusals)
        .map(([code, n]) => `${code} ${n}`)
        .join(', ');
      process.stdout.write(
        `${report.target.padEnd(10)} ${report.inputs} inputs in ${report.seconds.toFixed(1)} s: ${report.accepted} accepted, ${report.refused} refused (${refusals}), ` +
          `${report.failures.length} failures, peak RSS ${report.peakRssMiB} MiB\n`,
      );
      for (const f of report.failures) process.stdout.write(`  input ${f.index} (seed ${f.seedName}): ${f.error}\n    ${f.file ?? ''}\n${f.stack ?? ''}\n`);
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
if (values.json) process.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
process.exit(reports.some((r) => r.failures.length > 0) ? 1 : 0);
