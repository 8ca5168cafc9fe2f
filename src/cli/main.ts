/**
 * Entry point of the `migstream` command: dispatches to one file per command and turns
 * errors into one line on stderr and an exit status (1 for a failed run, 2 for bad usage).
 */
import { readFileSync } from 'node:fs';
import { MigstreamError } from '../stream/errors.js';
import { HelpRequested, UsageError, type Command } from './args.js';

/**
 * Commands are loaded on use: a pass-through started by QEMU should not pay for loading the
 * compression and transport code (and their native modules).
 */
interface CommandEntry {
  readonly name: string;
  readonly summary: string;
  load(): Promise<Command>;
}

const commands: readonly CommandEntry[] = [
  { name: 'copy', summary: 'decode and re-encode a stream byte for byte (validating pass-through)', load: async () => (await import('./copy.js')).copyCommand },
  { name: 'inspect', summary: 'report what a stream holds (RAM, iterations, block devices, device state)', load: async () => (await import('./inspect.js')).inspectCommand },
  { name: 'extract-ram', summary: 'write the final guest RAM, one raw file per RAMBlock', load: async () => (await import('./extract-ram.js')).extractRamCommand },
  { name: 'compress', summary: 'compress a stream into a checksummed container, in parallel (exec: save)', load: async () => (await import('./compress.js')).compressCommand },
  { name: 'decompress', summary: 'restore the exact stream from a container, checking every frame (exec: restore)', load: async () => (await import('./decompress.js')).decompressCommand },
  { name: 'compact', summary: 'keep only the final content of each page of a saved stream', load: async () => (await import('./compact.js')).compactCommand },
  { name: 'bench', summary: 'compression ratio and MB/s per codec/level/threads, against lz4/zstd/gzip', load: async () => (await import('./bench.js')).benchCommand },
  { name: 'send', summary: 'send a stream to "migstream recv" over N (TLS) channels', load: async () => (await import('./send.js')).sendCommand },
  { name: 'recv', summary: 'receive a stream from "migstream send" and write it to stdout', load: async () => (await import('./recv.js')).recvCommand },
  { name: 'migrate', summary: 'move a running VM to "migstream incoming" through QMP: steer, report, verify', load: async () => (await import('./migrate.js')).migrateCommand },
  { name: 'incoming', summary: 'receive a VM into a QEMU in -incoming defer; resume only a good copy', load: async () => (await import('./incoming.js')).incomingCommand },
  { name: 'tunnel', summary: 'forward UNIX-socket connections (libvirt migrations) over N TLS channels, both ways', load: async () => (await import('./tunnel.js')).tunnelCommand },
  { name: 'certs', summary: 'make a CA and receiver/sender certificates for TLS send/recv', load: async () => (await import('./certs.js')).certsCommand },
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
    'Options:',
    '  -h, --help     this overview',
    '  -V, --version  print the version',
    '',
    'Run "migstream <command> --help" for the options of a command. Every command exits 0 on',
    'success, 1 when the run failed (the message names the file, offset or peer) and 2 for bad',
    'usage; messages go to stderr, and stdout carries only the stream or the report asked for.',
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
  const entry = commands.find((c) => c.name === name);
  if (entry === undefined) {
    process.stderr.write(`migstream: unknown command "${name}" (see "migstream --help")\n`);
    return 2;
  }
  const command = await entry.load();
  try {
    return await command.run(rest);
  } catch (error) {
    if (error instanceof HelpRequested) {
      process.stdout.write(`${command.usage}\n`);
      return 0;
    }
    if (error instanceof UsageError) {
      process.stderr.write(`migstream ${command.name}: ${error.message} (see "migstream ${command.name} --help")\n`);
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
