/**
 * TLS settings of both ends, as plain data that can be posted to a channel worker, and their
 * translation into node:tls options there.
 *
 * Mutual authentication is the default: the receiver demands a client certificate signed by
 * the CA, the sender checks the receiver's certificate against the CA and a name, or against
 * a pinned SHA-256 fingerprint instead of the CA.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ConnectionOptions, PeerCertificate, TlsOptions } from 'node:tls';
import { checkServerIdentity } from 'node:tls';
import { CredentialsError } from './errors.js';

export interface TlsFiles {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
}

/** PEM contents, ready to cross to a worker. */
export interface TlsMaterial {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
  /** Sender: the name the receiver's certificate must carry (default: the host dialled). */
  servername?: string | undefined;
  /** Sender: SHA-256 fingerprint ("AB:CD:…" or hex) that replaces the CA check. */
  pin?: string | undefined;
  /** Receiver: accept clients without a certificate (mutual authentication off). */
  noClientAuth?: boolean | undefined;
}

/** Conventional names in a `migstream certs` directory. */
export const CERT_FILES = {
  ca: 'ca.pem',
  caKey: 'ca-key.pem',
  server: 'server.pem',
  serverKey: 'server-key.pem',
  client: 'client.pem',
  clientKey: 'client-key.pem',
} as const;

function read(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new CredentialsError(`cannot read the ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/**
 * Files from --tls-dir (a `migstream certs` output) overridden by explicit --tls-ca/cert/key.
 * `role` picks server.pem or client.pem from the directory.
 */
export function loadTlsMaterial(role: 'server' | 'client', files: TlsFiles & { dir?: string | undefined }): TlsMaterial {
  const fromDir = (name: string): string | undefined => {
    if (files.dir === undefined) return undefined;
    const path = join(files.dir, name);
    return existsSync(path) ? path : undefined;
  };
  const ca = files.ca ?? fromDir(CERT_FILES.ca);
  const cert = files.cert ?? fromDir(role === 'server' ? CERT_FILES.server : CERT_FILES.client);
  const key = files.key ?? fromDir(role === 'server' ? CERT_FILES.serverKey : CERT_FILES.clientKey);
  const material: TlsMaterial = {
    ca: ca === undefined ? undefined : read(ca, 'CA certificate'),
    cert: cert === undefined ? undefined : read(cert, 'certificate'),
    key: key === undefined ? undefined : read(key, 'private key'),
  };
  if ((material.cert === undefined) !== (material.key === undefined)) {
    throw new CredentialsError('a certificate needs its private key and the other way round (--tls-cert with --tls-key)');
  }
  // An expired certificate of our own is left for the handshake to refuse, so that both ends
  // report it.
  return material;
}

/** "AB:CD:…" upper-case, as X509Certificate.fingerprint256 prints it. */
export function normalizeFingerprint(text: string): string {
  const hex = text.replace(/^sha256[:/]/i, '').replace(/[^0-9a-f]/gi, '').toUpperCase();
  if (hex.length !== 64) throw new CredentialsError(`a SHA-256 fingerprint has 64 hex digits, got "${text}"`);
  return hex.match(/../g)!.join(':');
}

export function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

export function serverTlsOptions(material: TlsMaterial): TlsOptions {
  if (material.cert === undefined || material.key === undefined) {
    throw new CredentialsError('the receiver needs a certificate and key (--tls-cert, --tls-key or --tls-dir)');
  }
  const mutual = material.noClientAuth !== true;
  if (mutual && material.ca === undefined) {
    throw new CredentialsError('client authentication needs the CA that signs client certificates (--tls-ca or --tls-dir)');
  }
  return {
    minVersion: 'TLSv1.3',
    cert: material.cert,
    key: material.key,
    ca: material.ca,
    requestCert: mutual,
    rejectUnauthorized: mutual,
  };
}

export function clientTlsOptions(material: TlsMaterial, host: string): ConnectionOptions {
  const pin = material.pin === undefined ? undefined : normalizeFingerprint(material.pin);
  if (pin === undefined && material.ca === undefined) {
    throw new CredentialsError("the sender needs the CA that signs the receiver's certificate (--tls-ca) or its fingerprint (--tls-pin)");
  }
  const servername = material.servername ?? host;
  return {
    minVersion: 'TLSv1.3',
    cert: material.cert,
    key: material.key,
    ca: material.ca,
    // With a pin the certificate is checked by fingerprint alone (self-signed is fine).
    rejectUnauthorized: pin === undefined,
    // SNI must not be an IP address; the identity check below still uses servername.
    servername: /^[\d.]+$|:/.test(servername) ? undefined : servername,
    // Node skips this check when the chain does not verify, so the pin is checked after the
    // handshake by checkPin.
    checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined =>
      pin === undefined ? checkServerIdentity(servername, cert) : undefined,
  };
}

/** Null when `cert` matches the pinned fingerprint (or nothing is pinned), else the problem. */
export function checkPin(material: TlsMaterial, cert: PeerCertificate | undefined): string | null {
  if (material.pin === undefined) return null;
  const pin = normalizeFingerprint(material.pin);
  const actual = cert?.fingerprint256;
  return actual === pin ? null : `receiver certificate fingerprint ${actual ?? '(none)'} is not the pinned ${pin}`;
}
