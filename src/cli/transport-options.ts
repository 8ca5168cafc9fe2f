/**
 * Command-line options shared by `send` and `recv`: the address and the TLS choice. TLS is
 * required unless --insecure says otherwise, so plaintext is never an accident.
 */
import { loadTlsMaterial, type TlsMaterial } from '../tls/credentials.js';
import { CredentialsError } from '../tls/errors.js';
import { UsageError } from './args.js';
import { reportOptionSpec } from './conventions.js';

export const tlsOptionSpec = {
  tls: { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  insecure: { type: 'boolean' },
  timeout: { type: 'string' },
  ...reportOptionSpec,
} as const;

export const tlsUsage = `TLS (mutual authentication; one of --tls/--tls-* or --insecure is required):
  --tls DIR          credentials from "migstream certs" (ca.pem, server.pem/client.pem and keys)
  --tls-ca FILE      CA certificate (PEM) that signs the peer's certificate
  --tls-cert FILE    our certificate (PEM)
  --tls-key FILE     our private key (PEM)
  --insecure         plaintext TCP, no authentication
  -h, --help         this help`;

export interface Address {
  host: string;
  port: number;
}

export function parseAddress(text: string | undefined, what: string): Address {
  if (text === undefined) throw new UsageError(`${what} HOST:PORT is required`);
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  if (match === null) throw new UsageError(`${what} must be HOST:PORT (or [IPv6]:PORT), got "${text}"`);
  const port = Number(match[3]);
  if (port > 65535) throw new UsageError(`port ${port} out of range`);
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

export function parseSeconds(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback * 1000;
  const seconds = Number(text);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError(`--timeout must be a positive number of seconds, got "${text}"`);
  return Math.round(seconds * 1000);
}

type TlsValues = { [K in 'tls' | 'tls-ca' | 'tls-cert' | 'tls-key']?: string | undefined } & { insecure?: boolean | undefined };

export function tlsMaterialFrom(role: 'server' | 'client', values: TlsValues, extra: Partial<TlsMaterial> = {}): TlsMaterial | null {
  const anyTls = values.tls !== undefined || values['tls-ca'] !== undefined || values['tls-cert'] !== undefined || values['tls-key'] !== undefined || extra.pin !== undefined;
  if (values.insecure === true) {
    if (anyTls) throw new UsageError('--insecure and TLS options exclude each other');
    return null;
  }
  if (!anyTls) throw new UsageError('give TLS credentials (--tls DIR or --tls-ca/--tls-cert/--tls-key) or --insecure for plaintext');
  const files = { dir: values.tls, ca: values['tls-ca'], cert: values['tls-cert'], key: values['tls-key'] };
  try {
    return { ...loadTlsMaterial(role, files, { noClientAuth: extra.noClientAuth, pinned: extra.pin !== undefined }), ...extra };
  } catch (error) {
    // Bad credentials are a start-up failure, told before anything listens or connects.
    if (error instanceof CredentialsError) throw new UsageError(error.message);
    throw error;
  }
}
