/** Shared printing for the tinybench benchmarks: MB/s and the ratio to a baseline task. */
import type { Bench, Task } from 'tinybench';

export function megabytesPerSecond(task: Task, bytes: number): number {
  const result = task.result;
  if (result.state !== 'completed') throw new Error(`task ${task.name} did not complete: ${result.state}`);
  return bytes / (result.period / 1000) / 1e6;
}

/** Prints one line per task: MB/s and the ratio against `baseline` (a task name). */
export function printThroughput(title: string, bench: Bench, bytes: number, baseline: string): Record<string, number> {
  const rates: Record<string, number> = {};
  for (const task of bench.tasks) rates[task.name] = megabytesPerSecond(task, bytes);
  const base = rates[baseline] ?? Number.NaN;
  const width = Math.max(...Object.keys(rates).map((n) => n.length));
  console.log(`\n${title}`);
  for (const [name, rate] of Object.entries(rates)) {
    const ratio = name === baseline ? 'baseline' : `${(rate / base).toFixed(2)}x of ${baseline}`;
    console.log(`  ${name.padEnd(width)}  ${rate.toFixed(0).padStart(7)} MB/s  ${ratio}`);
  }
  return rates;
}
