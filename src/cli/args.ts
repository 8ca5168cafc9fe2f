/**
 * Command-line parsing shared by the commands: node:util parseArgs, with usage errors that
 * say which command and option went wrong.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { MigstreamError } from '../stream/errors.js';

export class UsageError extends MigstreamError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed<O extends Options> {
  values: { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string };
  positionals: string[];
}

/** Thrown by parse() for -h/--help: main prints the command's usage and exits 0. */
export class HelpRequested extends Error {}

/** Every command takes -h/--help (see HelpRequested); `options` adds its own. */
export function parse<O extends Options>(argv: string[], options: O, maxPositionals: number): Parsed<O> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { ...options, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (parsed.positionals.length > maxPositionals) {
    throw new UsageError(`unexpected argument "${parsed.positionals[maxPositionals]}"`);
  }
  const { help, ...values } = parsed.values as Record<string, unknown>;
  if (help === true) throw new HelpRequested();
  return { values: values as Parsed<O>['values'], positionals: parsed.positionals };
}

export interface Command {
  readonly name: string;
  readonly usage: string;
  run(argv: string[]): Promise<number>;
}
