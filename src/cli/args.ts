/**
 * Command-line parsing shared by the commands: node:util parseArgs, with usage errors that
 * say which command and option went wrong.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { MigstreamError, registerErrorClasses } from '../errors.js';

export class UsageError extends MigstreamError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}
registerErrorClasses({ UsageError });

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed<O extends Options> {
  values: { [K in keyof O]?: O[K]['type'] extends 'boolean' ? boolean : string };
  positionals: string[];
}

/** Thrown by parse() for -h/--help: main prints the command's usage and exits 0. */
export class HelpRequested extends Error {}

const NEGATIVE_NUMBER = /^-\d+(\.\d+)?$/;

/**
 * `-l -3` and `--level -3`: a string option followed by a negative number takes it as its
 * value (parseArgs would call it ambiguous). Rewritten as `--level=-3` before parsing.
 */
function joinNegativeValues(argv: readonly string[], options: Options): string[] {
  const stringOption = (arg: string): string | undefined => {
    if (arg.startsWith('--')) {
      const name = arg.slice(2);
      return options[name]?.type === 'string' ? name : undefined;
    }
    if (/^-[A-Za-z]$/.test(arg)) return Object.entries(options).find(([, o]) => o.short === arg[1] && o.type === 'string')?.[0];
    return undefined;
  };
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const name = stringOption(arg);
    const next = argv[i + 1];
    if (name !== undefined && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`--${name}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** parseArgs's messages, which explain its own syntax, as one short line. */
function usageMessage(error: Error & { code?: string }): string {
  const quoted = /'([^']+)'/.exec(error.message)?.[1];
  switch (error.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option ${quoted ?? error.message}`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const option = /--[\w-]+/.exec(error.message)?.[0] ?? quoted;
      if (/does not take an argument/.test(error.message)) return `${option} takes no value`;
      return `${option} needs a value`;
    }
    default:
      return error.message.split('\n')[0]!;
  }
}

/** Every command takes -h/--help (see HelpRequested); `options` adds its own. */
export function parse<O extends Options>(argv: string[], options: O, maxPositionals: number): Parsed<O> {
  let parsed;
  const all: Options = { ...options, help: { type: 'boolean', short: 'h' } };
  try {
    parsed = parseArgs({
      args: joinNegativeValues(argv, all),
      options: all,
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(usageMessage(error as Error & { code?: string }));
  }
  if (parsed.positionals.length > maxPositionals) {
    throw new UsageError(`unexpected argument "${parsed.positionals[maxPositionals]}"`);
  }
  const { help, ...values } = parsed.values as Record<string, unknown>;
  if (help === true) throw new HelpRequested();
  return { values: values as Parsed<O>['values'], positionals: parsed.positionals };
}

/** An integer option's value in min..max, or `fallback` when it is not given. */
export function integerOption(text: string | undefined, fallback: number, name: string, min: number, max: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new UsageError(`${name} must be an integer in ${min}..${max}, got "${text}"`);
  return value;
}

export interface Command {
  readonly name: string;
  readonly usage: string;
  run(argv: string[]): Promise<number>;
}
