/**
 * The fuzzer at a fixed seed, 20,000 inputs per target (npm run fuzz runs more): every input
 * mutated from real QEMU streams, containers and transport sessions ends in success or in its
 * layer's typed error, within the deadline, and an accepted input gives the right bytes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { fuzzTarget } from '../fuzz/fuzz.js';
import { allTargets } from '../fuzz/targets.js';

const INPUTS = 20_000;
const SEED = 20261203;
const scratch = mkdtempSync(join(tmpdir(), 'migstream-fuzz-test-'));
const targets = allTargets(scratch);

afterAll(async () => {
  for (const target of targets) await target.close?.();
  rmSync(scratch, { recursive: true, force: true });
});

describe(`fuzzing, seed ${SEED}, ${INPUTS} inputs per target`, () => {
  test.each(targets.map((t) => [t.name, t] as const))(
    '%s: every input accepted or refused with a typed error',
    async (_name, target) => {
      const report = await fuzzTarget(target, { inputs: INPUTS, seed: SEED, timeoutMs: 10_000 });
      expect(report.failures, JSON.stringify(report.failures, null, 1)).toEqual([]);
      expect(report.inputs).toBe(INPUTS);
      // The mutations reach both ends: some inputs pass, most are refused, for several reasons.
      expect(report.accepted).toBeGreaterThan(0);
      expect(report.refused).toBeGreaterThan(INPUTS / 4);
      // Layers with one error class (wire, qmp) or none (vmdesc reports problems) refuse with one code.
      const codes = ['stream', 'container', 'decompress'].includes(target.name) ? 3 : 1;
      expect(Object.keys(report.refusals).length).toBeGreaterThanOrEqual(codes);
      expect(report.peakRssMiB).toBeLessThan(1024);
    },
    300_000,
  );
});
