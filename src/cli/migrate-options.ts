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
  'verify-sample': { type: 'string' },
  'control-port': { type: 'string' },
} as const;

/** The --verify/--verify-sample lines of both commands' help. */
export const verifySampleUsage = `  --verify-sample PCT     like --verify, comparing PCT % of RAM only (random 1 MiB pieces, each
                          side its own), at PCT % of the cost: one differing page is caught
                          with probability PCT/100, k scattered ones with 1 − (1 − PCT/100)^k`;

/**
 * What --verify and --verify-sample ask for: undefined (no check), or the share of RAM to
 * compare (1: all of it).
 */
export function verifyFraction(values: { verify?: boolean | undefined; 'verify-sample'?: string | undefined }): number | undefined {
  const text = values['verify-sample'];
  if (text === undefined) return values.verify === true ? 1 : undefined;
  const percent = Number(text);
  if (!(Number.isFinite(percent) && percent > 0 && percent <= 100)) throw new UsageError(`--verify-sample must be a percentage above 0 and at most 100, got "${text}"`);
  return percent / 100;
}

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

export function parseMs(text: string, name: string, min = 1): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > 3_600_000) throw new UsageError(`${name} must be a whole number of milliseconds, got "${text}"`);
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
  const status = await qmp.execute<{ status: string }>('query-status').then(
    (s) => s.status,
    () => 'unknown',
  );
  return ` (the ${role} VM is ${status}${role === 'destination' && status !== 'running' ? ', not resumed' : ''})`;
}

/** send holds `channels × SEND_CREDIT` frames between QEMU's pipe and the kernel (tls/sender.ts). */
const SEND_CREDIT = 4;
/** What may sit in send's frames after QEMU wrote its last byte: it adds to the downtime. */
const IN_FLIGHT_MS = 50;

/**
 * send's frame size (KiB) for a link of `bytesPerSecond`: small enough that the frames in
 * flight drain in IN_FLIGHT_MS, from 64 KiB (per-frame costs) to send's default 1 MiB. On a
 * 12.5 MB/s link 1 MiB frames held 4 MiB, 320 ms of the guest's downtime.
 */
export function frameKiBForLink(bytesPerSecond: number, channels: number): number {
  const kib = (bytesPerSecond * (IN_FLIGHT_MS / 1000)) / (channels * SEND_CREDIT) / 1024;
  // A power of two, rounded down, within 64..1024.
  return Math.min(1024, Math.max(64, 2 ** Math.floor(Math.log2(Math.max(1, kib)))));
}
