/**
 * The fuzzing loop: for input i of a run seeded S, a generator seeded inputSeed(S, i) picks a
 * seed, mutates it and chunks it; the target runs it under a deadline. Any one input can be
 * replayed from (S, i) alone, and failing inputs are also written out as files.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chunking, mutate } from './mutate.js';
import { Random, inputSeed } from './random.js';
import { WrongOutputError, type Target, type TargetSeed } from './targets.js';

export interface FuzzOptions {
  inputs: number;
  seed: number;
  /** An input that takes longer has hung (default 10 s). */
  timeoutMs?: number;
  /** Failing inputs are written here as TARGET-SEED-INDEX.bin. */
  crashDir?: string;
  /** Stop after this many failures (default 20). */
  maxFailures?: number;
  onProgress?: (done: number, report: FuzzReport) => void;
}

export interface FuzzFailure {
  index: number;
  seedName: string;
  /** Error class and message, or "hang". */
  error: string;
  stack?: string;
  file?: string;
}

export interface FuzzReport {
  target: string;
  layer: string;
  seed: number;
  inputs: number;
  accepted: number;
  refused: number;
  /** Refusals by error code. */
  refusals: Record<string, number>;
  failures: FuzzFailure[];
  seconds: number;
  /** Largest resident set seen, MiB: the bound on memory the run kept. */
  peakRssMiB: number;
}

class HangError extends Error {}

function deadline<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HangError(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, hang]).finally(() => clearTimeout(timer));
}

/** The input `index` of a run seeded `seed`: which seed it mutates, its bytes and its chunks. */
export function fuzzInput(target: Target, seeds: readonly TargetSeed[], seed: number, index: number): { seed: TargetSeed; bytes: Buffer; chunks: number[] } {
  const random = new Random(inputSeed(seed, index));
  const base = random.pick(seeds);
  const mutated = mutate(base, random, seeds);
  const bytes = target.fixup === undefined ? mutated : target.fixup(mutated, random);
  return { seed: base, bytes, chunks: chunking(bytes.length, random) };
}

export async function fuzzTarget(target: Target, options: FuzzOptions): Promise<FuzzReport> {
  const seeds = await target.seeds();
  const report: FuzzReport = {
    target: target.name,
    layer: target.layer,
    seed: options.seed,
    inputs: 0,
    accepted: 0,
    refused: 0,
    refusals: {},
    failures: [],
    seconds: 0,
    peakRssMiB: 0,
  };
  const started = performance.now();
  const timeoutMs = options.timeoutMs ?? 10_000;
  const maxFailures = options.maxFailures ?? 20;
  for (let index = 0; index < options.inputs && report.failures.length < maxFailures; index++) {
    const input = fuzzInput(target, seeds, options.seed, index);
    try {
      const outcome = await deadline(target.run(input.bytes, input.chunks, input.seed), timeoutMs);
      if (outcome === 'accepted') report.accepted++;
      else {
        report.refused++;
        report.refusals['(refused)'] = (report.refusals['(refused)'] ?? 0) + 1;
      }
    } catch (error) {
      if (!(error instanceof WrongOutputError) && !(error instanceof HangError) && target.isRefusal(error)) {
        report.refused++;
        const code = (error as { code?: string }).code ?? (error as Error).name;
        report.refusals[code] = (report.refusals[code] ?? 0) + 1;
      } else {
        report.failures.push(failure(target, options, index, input, error));
        // A hung input may still be running: the target's state cannot be trusted after it.
        if (error instanceof HangError) break;
      }
    }
    report.inputs++;
    if ((index & 255) === 0) {
      // Most targets finish on microtasks alone: let timers and I/O run (vitest's worker RPC
      // timed out behind a run that never yielded).
      await new Promise((resolve) => setImmediate(resolve));
      report.peakRssMiB = Math.max(report.peakRssMiB, process.memoryUsage().rss / 2 ** 20);
      options.onProgress?.(index + 1, report);
    }
  }
  report.peakRssMiB = Math.round(Math.max(report.peakRssMiB, process.memoryUsage().rss / 2 ** 20));
  report.seconds = (performance.now() - started) / 1000;
  return report;
}

function failure(target: Target, options: FuzzOptions, index: number, input: { seed: TargetSeed; bytes: Buffer }, error: unknown): FuzzFailure {
  const described = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  const out: FuzzFailure = { index, seedName: input.seed.name, error: described.slice(0, 500) };
  if (error instanceof Error && error.stack !== undefined) out.stack = error.stack.split('\n').slice(0, 8).join('\n');
  if (options.crashDir !== undefined) {
    mkdirSync(options.crashDir, { recursive: true });
    out.file = join(options.crashDir, `${target.name}-${options.seed}-${index}.bin`);
    writeFileSync(out.file, input.bytes);
  }
  return out;
}
