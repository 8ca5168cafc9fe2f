/** Option values and error wording shared by `migrate` and `incoming`. */
import type { QmpClient } from '../qemu/qmp.js';
import { UsageError } from './args.js';
import { tlsOptionSpec } from './transport-options.js';
import type { Address } from './transport-options.js';

/** The options both controllers take: TLS and report options, the QMP socket, --verify and its port. */
export const controllerOptionSpec = {
  ...tlsOptionSpec,
  qmp: { type: 'string' },
  verify: { type: 'boolean' },
  'control-port': { type: 'string' },
} as const;

const RATE_UNITS: Readonly<Record<string, number>> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** "12M" → 12 MiB/s; a plain number is bytes per second. */
export function parseRate(text: string): number {
  const match = /^(\d+(?:\.\d+)?)([KMG]?)(?:i?B)?(?:\/s)?$/i.exec(text);
  const unit = match ? RATE_UNITS[match[2]!.toUpperCase()] : undefined;
  if (!match || unit === undefined) throw new UsageError(`--max-bandwidth must be a rate like 100M (bytes/s, K/M/G = powers of 1024), got "${text}"`);
  const rate = Math.round(Number(match[1]) * unit);
  if (rate < 1) throw new UsageError(`--max-bandwidth must be at least 1 byte/s, got "${text}"`);
  return rate;
}

export function parseMs(text: string, name: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > 3_600_000) throw new UsageError(`${name} must be a whole number of milliseconds, got "${text}"`);
  return value;
}

/** The verification port: given, or the transport's port + 1. */
export function controlAddress(transport: Address, port: string | undefined): Address {
  if (port === undefined) {
    if (transport.port === 0 || transport.port === 65535) throw new UsageError('--control-port is needed when the transport port is 0 or 65535');
    return { host: transport.host, port: transport.port + 1 };
  }
  const value = Number(port);
  if (!Number.isInteger(value) || value < 1 || value > 65535) throw new UsageError(`--control-port must be a port number, got "${port}"`);
  return { host: transport.host, port: value };
}

/**
 * " (the source VM is running)": what an operator needs after a failure is the state the VM
 * was left in, asked of QEMU rather than assumed.
 */
export async function vmStateSuffix(qmp: QmpClient, role: 'source' | 'destination'): Promise<string> {
  if (qmp.closed) return ` (the ${role} QEMU is gone)`;
  const status = await qmp.execute<{ status: string }>('query-status').then((s) => s.status, () => 'unknown');
  return ` (the ${role} VM is ${status}${role === 'destination' && status !== 'running' ? ', not resumed' : ''})`;
}
