/**
 * The command-line compressors `migstream bench` measures as baselines, run on the same input
 * file in the same run: each writes its output to a temporary file (size), then decompresses
 * it to /dev/null (speed). A tool that is not installed is skipped with a note.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface Baseline {
  /** As shown in the table, e.g. "zstd -3 -T2". */
  readonly label: string;
  readonly tool: string;
  readonly compress: readonly string[];
  readonly decompress: readonly string[];
}

/** "lz4 -1", "zstd -3 -T4", "gzip -1" → how to run it. */
export function parseBaseline(spec: string): Baseline {
  const [tool, ...flags] = spec.trim().split(/\s+/);
  if (tool === undefined || tool === '') throw new Error(`empty baseline "${spec}"`);
  return { label: spec.trim(), tool, compress: [...flags, '-c'], decompress: ['-d', '-c'] };
}

export function defaultBaselines(cores: number): Baseline[] {
  return ['lz4 -1', `zstd -3 -T${cores}`, 'gzip -1'].map(parseBaseline);
}

export function toolAvailable(tool: string): boolean {
  return spawnSync(tool, ['--version'], { stdio: 'ignore' }).error === undefined;
}

export interface ToolResult {
  readonly bytes: number;
  readonly compressSeconds: number;
  readonly decompressSeconds: number;
}

function timed(tool: string, args: readonly string[], stdoutFd: number, input?: string): number {
  const started = process.hrtime.bigint();
  const inputFd = input === undefined ? 'ignore' : openSync(input, 'r');
  try {
    const result = spawnSync(tool, args, { stdio: [inputFd, stdoutFd, 'pipe'] });
    if (result.error) throw result.error;
    if (result.status !== 0) throw new Error(`${tool} ${args.join(' ')} exited with ${result.status}: ${result.stderr.toString().trim()}`);
  } finally {
    if (typeof inputFd === 'number') closeSync(inputFd);
  }
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/** Best of `repeat` runs of compression and of decompression of `input`. */
export function runBaseline(baseline: Baseline, input: string, scratch: string, repeat: number): ToolResult {
  const packed = join(scratch, `baseline.${baseline.tool}`);
  let compressSeconds = Infinity;
  let decompressSeconds = Infinity;
  try {
    for (let i = 0; i < repeat; i++) {
      const out = openSync(packed, 'w');
      try {
        compressSeconds = Math.min(compressSeconds, timed(baseline.tool, [...baseline.compress, input], out));
      } finally {
        closeSync(out);
      }
    }
    const bytes = statSync(packed).size;
    const sink = openSync('/dev/null', 'w');
    try {
      for (let i = 0; i < repeat; i++) decompressSeconds = Math.min(decompressSeconds, timed(baseline.tool, baseline.decompress, sink, packed));
    } finally {
      closeSync(sink);
    }
    return { bytes, compressSeconds, decompressSeconds };
  } finally {
    rmSync(packed, { force: true });
  }
}
