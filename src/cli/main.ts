/**
 * Entry point of the `migstream` command: dispatches to one file per command and turns
 * errors into one line on stderr and an exit status (1 for a failed run, 2 for bad usage).
 */
import { readFileSync } from 'node:fs';
import { MigstreamError } from '../stream/errors.js';
import { UsageError, type Command } from './args.js';
import { benchCommand } from './bench.js';
import { compactCommand } from './compact.js';
import { compressCommand } from './compress.js';
import { copyCommand } from './copy.js';
import { decompressCommand } from './decompress.js';
import { extractRamCommand } from './extract-ram.js';
import { inspectCommand } from './inspect.js';
import { certsCommand } from './certs.js';
import { recvCommand } from './recv.js';
import { sendCommand } from './send.js';

const commands: readonly Command[] = [
  copyCommand,
  inspectCommand,
  extractRamCommand,
  compressCommand,
  decompressCommand,
  compactCommand,
  benchCommand,
  sendCommand,
  recvCommand,
  certsCommand,
];

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function overview(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'Usage: migstream <command> [options]',
    '',
    "A userspace engine for QEMU's live-migration stream: use it as QEMU's exec: migration",
    'program (migrate "exec:migstream …", -incoming "exec:migstream …") or on saved streams.',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run "migstream <command> --help" for the options of a command.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(`${overview()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`migstream ${version()}\n`);
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (command === undefined) {
    process.stderr.write(`migstream: unknown command "${name}"\n\n${overview()}\n`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`migstream ${command.name}: ${error.message}\n\n${command.usage}\n`);
      return 2;
    }
    if (error instanceof MigstreamError) {
      process.stderr.write(`migstream ${command.name}: error: ${error.message}\n`);
      return 1;
    }
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EPIPE') {
      process.stderr.write(`migstream ${command.name}: error: the reader closed the output early (EPIPE)\n`);
      return 1;
    }
    if (typeof code === 'string' && code.startsWith('E')) {
      process.stderr.write(`migstream ${command.name}: error: ${(error as Error).message}\n`);
      return 1;
    }
    throw error;
  }
}
