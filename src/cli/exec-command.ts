/**
 * The command lines `migrate` and `incoming` hand to QEMU for exec: (`migstream send …`,
 * `migstream recv …`). QEMU runs them through /bin/sh from its own working directory, so every
 * path is made absolute and every word quoted.
 */
import { resolve } from 'node:path';
import { shellQuote } from '../qemu/migration.js';

/** This same migstream (same node, same entry script) with `args`, as one shell line. */
export function selfCommand(args: readonly string[]): string {
  const entry = process.argv[1];
  if (entry === undefined) throw new Error('cannot tell which script runs migstream (process.argv[1] is missing)');
  return [process.execPath, resolve(entry), ...args].map(shellQuote).join(' ');
}

interface TlsValues {
  tls?: string | undefined;
  'tls-ca'?: string | undefined;
  'tls-cert'?: string | undefined;
  'tls-key'?: string | undefined;
  insecure?: boolean | undefined;
}

/** The TLS options as given, for the send/recv that QEMU starts (paths absolute). */
export function tlsArgs(values: TlsValues): string[] {
  const args: string[] = [];
  if (values.insecure === true) args.push('--insecure');
  for (const name of ['tls', 'tls-ca', 'tls-cert', 'tls-key'] as const) {
    const value = values[name];
    if (value !== undefined) args.push(`--${name}`, resolve(value));
  }
  return args;
}
