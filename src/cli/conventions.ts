/**
 * What every command does the same way (CONTRIBUTING.md, "Command-line conventions"): the
 * --json / --progress / --no-progress / --quiet options, when progress shows, and where the
 * summary goes. stdout carries only the stream or the report asked for.
 */
import { isatty } from 'node:tty';

export const reportOptionSpec = {
  json: { type: 'boolean' },
  progress: { type: 'boolean' },
  'no-progress': { type: 'boolean' },
  quiet: { type: 'boolean' },
} as const;

const REPORT_OPTIONS: readonly [string, string][] = [
  ['--json', 'the summary as one JSON object (on stderr when stdout carries the stream)'],
  ['--progress', 'progress on stderr (default when stderr is a terminal)'],
  ['--no-progress', 'no progress line'],
  ['--quiet', 'no summary'],
];

/** The help lines of the report options, indented and aligned like the command's own. */
export function reportUsageLines(indent: string, width: number): string {
  return REPORT_OPTIONS.map(([option, text]) => `${indent}${option.padEnd(width)} ${text}`).join('\n');
}

/** For help texts whose options start "  -o, --output FILE": long options at column 6. */
export const reportUsage = reportUsageLines('      ', 14);

export interface ReportValues {
  json?: boolean | undefined;
  progress?: boolean | undefined;
  'no-progress'?: boolean | undefined;
  quiet?: boolean | undefined;
}

/** Progress shows when asked for, or by default when stderr is a terminal and nobody said quiet. */
export function progressWanted(values: ReportValues): boolean {
  if (values['no-progress'] === true) return false;
  if (values.progress === true) return true;
  return values.quiet !== true && values.json !== true && isatty(2);
}

/**
 * The end-of-run summary: `json` as one line of JSON with --json (on stdout, or on stderr when
 * stdout is the stream), else `text` on stderr unless --quiet.
 */
export function emitSummary(values: ReportValues, stdoutIsStream: boolean, text: () => string, json: () => object): void {
  if (values.json === true) {
    (stdoutIsStream ? process.stderr : process.stdout).write(`${JSON.stringify(json())}\n`);
  } else if (values.quiet !== true) {
    process.stderr.write(text());
  }
}
