/**
 * TLS settings of both ends, as plain data that can be posted to a channel worker, and their
 * translation into node:tls options there.
 *
 * Mutual authentication is the default: the receiver demands a client certificate signed by
 * the CA, the sender checks the receiver's certificate against the CA and a name, or against
 * a pinned SHA-256 fingerprint instead of the CA.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
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

export interface LoadOptions {
  /** Receiver: clients need no certificate, so no CA is needed either. */
  noClientAuth?: boolean | undefined;
  /** Sender: the receiver is checked by fingerprint, so no CA is needed. */
  pinned?: boolean | undefined;
  /** The time certificates must be valid at (default now). */
  now?: Date;
}

/**
 * Files from --tls DIR (a `migstream certs` output) overridden by explicit --tls-ca/cert/key,
 * read and checked before anything listens or connects: a missing file is named, and an
 * unparsable, expired or not-yet-valid certificate, or a key that is not the certificate's, is
 * refused here rather than by the peer's handshake (which would only show a closed
 * connection). `role` picks server.pem or client.pem from the directory.
 */
export function loadTlsMaterial(role: 'server' | 'client', files: TlsFiles & { dir?: string | undefined }, options: LoadOptions = {}): TlsMaterial {
  const own = role === 'server' ? { cert: CERT_FILES.server, key: CERT_FILES.serverKey } : { cert: CERT_FILES.client, key: CERT_FILES.clientKey };
  // From a directory every file the role uses must be there; a sender may go without a
  // client certificate only when the directory has neither half of it.
  const fromDir = (name: string, required: boolean): string | undefined => {
    if (files.dir === undefined) return undefined;
    const path = join(files.dir, name);
    if (existsSync(path)) return path;
    if (required) throw new CredentialsError(`${path} is missing (--tls ${files.dir} needs ${name} for the ${role === 'server' ? 'receiver' : 'sender'})`);
    return undefined;
  };
  const needCa = role === 'server' ? options.noClientAuth !== true : options.pinned !== true;
  const ownRequired = role === 'server' || (files.dir !== undefined && (existsSync(join(files.dir, own.cert)) || existsSync(join(files.dir, own.key))));
  const ca = files.ca ?? fromDir(CERT_FILES.ca, needCa);
  const cert = files.cert ?? fromDir(own.cert, ownRequired && files.key === undefined);
  const key = files.key ?? fromDir(own.key, ownRequired && files.cert === undefined);
  const material: TlsMaterial = {
    ca: ca === undefined ? undefined : read(ca, 'CA certificate'),
    cert: cert === undefined ? undefined : read(cert, 'certificate'),
    key: key === undefined ? undefined : read(key, 'private key'),
  };
  if ((material.cert === undefined) !== (material.key === undefined)) {
    throw new CredentialsError('a certificate needs its private key and the other way round (--tls-cert with --tls-key)');
  }
  const now = options.now ?? new Date();
  if (ca !== undefined) checkCertificate(material.ca!, ca, 'CA certificate', now);
  if (cert !== undefined) {
    const x509 = checkCertificate(material.cert!, cert, 'certificate', now);
    let privateKey;
    try {
      privateKey = createPrivateKey(material.key!);
    } catch (error) {
      throw new CredentialsError(`the private key ${key} cannot be read: ${(error as Error).message}`);
    }
    if (!x509.checkPrivateKey(privateKey)) throw new CredentialsError(`the private key ${key} is not the key of the certificate ${cert}`);
  }
  return material;
}

function checkCertificate(pem: string, path: string, what: string, now: Date): X509Certificate {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(pem);
  } catch (error) {
    throw new CredentialsError(`the ${what} ${path} is not a PEM certificate: ${(error as Error).message}`);
  }
  if (now < new Date(x509.validFrom)) throw new CredentialsError(`the ${what} ${path} is not valid before ${x509.validFrom}`);
  if (now > new Date(x509.validTo)) throw new CredentialsError(`the ${what} ${path} expired on ${x509.validTo}`);
  return x509;
}

/** "AB:CD:…" upper-case, as X509Certificate.fingerprint256 prints it. */
export function normalizeFingerprint(text: string): string {
  const hex = text
    .replace(/^sha256[:/]/i, '')
    .replace(/[^0-9a-f]/gi, '')
    .toUpperCase();
  if (hex.length !== 64) throw new CredentialsError(`a SHA-256 fingerprint has 64 hex digits, got "${text}"`);
  return hex.match(/../g)!.join(':');
}

export function fingerprintOf(pem: string): string {
  return new X509Certificate(pem).fingerprint256;
}

export function serverTlsOptions(material: TlsMaterial): TlsOptions {
  if (material.cert === undefined || material.key === undefined) {
    throw new CredentialsError('the receiver needs a certificate and key (--tls DIR, or --tls-cert and --tls-key)');
  }
  const mutual = material.noClientAuth !== true;
  if (mutual && material.ca === undefined) {
    throw new CredentialsError('client authentication needs the CA that signs client certificates (--tls DIR or --tls-ca)');
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
    checkServerIdentity: (_host: string, cert: PeerCertificate): Error | undefined => (pin === undefined ? checkServerIdentity(servername, cert) : undefined),
  };
}

/** Null when `cert` matches the pinned fingerprint (or nothing is pinned), else the problem. */
export function checkPin(material: TlsMaterial, cert: PeerCertificate | undefined): string | null {
  if (material.pin === undefined) return null;
  const pin = normalizeFingerprint(material.pin);
  const actual = cert?.fingerprint256;
  return actual === pin ? null : `receiver certificate fingerprint ${actual ?? '(none)'} is not the pinned ${pin}`;
}
