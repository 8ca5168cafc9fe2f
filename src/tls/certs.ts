/**
 * Quick-start credentials through the `openssl` command (node:crypto can verify X.509 but not
 * issue it): a CA, a server certificate for the receiver's names and a client certificate for
 * the sender, all ECDSA P-256. `openssl ca` issues them because it alone takes explicit
 * validity dates (the tests need an expired certificate).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { CERT_FILES } from './credentials.js';
import { CredentialsError } from './errors.js';

export interface Validity {
  /** openssl ca dates, "YYYYMMDDHHMMSSZ". */
  start: string;
  end: string;
}

function openssl(args: string[], cwd: string): void {
  const result = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (result.error) {
    throw new CredentialsError(`cannot run openssl (install it: apt-get install openssl): ${result.error.message}`, { cause: result.error });
  }
  if (result.status !== 0) throw new CredentialsError(`openssl ${args[0]} failed: ${result.stderr.trim().split('\n').slice(-2).join(' ')}`);
}

function opensslDate(date: Date): string {
  return `${date.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
}

export function validityDays(days: number, from = new Date()): Validity {
  const start = new Date(from.getTime() - 60 * 60_000); // an hour of slack for clock skew
  return { start: opensslDate(start), end: opensslDate(new Date(from.getTime() + days * 86_400_000)) };
}

export function defaultNames(): string[] {
  return [...new Set(['localhost', '127.0.0.1', '::1', hostname()])];
}

const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** Makes ca.pem and ca-key.pem in `dir`. */
export function makeCa(dir: string, validity: Validity, commonName = 'migstream CA'): void {
  mkdirSync(dir, { recursive: true });
  const days = Math.max(1, Math.ceil((Date.parse(isoOf(validity.end)) - Date.now()) / 86_400_000));
  openssl(
    [
      'req',
      '-x509',
      ...newKey,
      '-keyout',
      CERT_FILES.caKey,
      '-out',
      CERT_FILES.ca,
      '-days',
      String(days),
      '-subj',
      `/CN=${commonName}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
}

function isoOf(date: string): string {
  return `${date.slice(0, 4)}-${date.slice(4, 6)}-${date.slice(6, 8)}T${date.slice(8, 10)}:${date.slice(10, 12)}:${date.slice(12, 14)}Z`;
}

export interface IssueOptions {
  /** Directory holding ca.pem and ca-key.pem. */
  caDir: string;
  /** Output directory and base name: writes NAME.pem and NAME-key.pem. */
  outDir: string;
  name: string;
  role: 'server' | 'client';
  /** Server: DNS names and IP addresses the certificate is valid for. */
  altNames?: string[];
  commonName?: string;
  validity: Validity;
}

/** Issues a certificate signed by the CA in `caDir`. */
export function issue(input: IssueOptions): void {
  const options = { ...input, caDir: resolve(input.caDir), outDir: resolve(input.outDir) };
  mkdirSync(options.outDir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'migstream-certs-'));
  try {
    const key = join(options.outDir, `${options.name}-key.pem`);
    const cert = join(options.outDir, `${options.name}.pem`);
    const csr = join(work, 'req.csr');
    writeFileSync(join(work, 'index.txt'), '');
    writeFileSync(
      join(work, 'ca.cnf'),
      [
        '[ca]',
        'default_ca = local',
        '[local]',
        `database = ${join(work, 'index.txt')}`,
        `new_certs_dir = ${work}`,
        'default_md = sha256',
        'policy = any',
        'unique_subject = no',
        'rand_serial = yes',
        '[any]',
        'commonName = supplied',
        '',
      ].join('\n'),
    );
    const alt = (options.altNames ?? []).map((n) => (isIP(n) ? `IP:${n}` : `DNS:${n}`));
    writeFileSync(
      join(work, 'ext.cnf'),
      [
        'basicConstraints = critical,CA:FALSE',
        // keyEncipherment as well: QEMU's tls-creds-x509 (10.0's, with its gnutls) refuses a
        // client or server certificate without it, so the same files serve QEMU's own TLS too.
        'keyUsage = critical,digitalSignature,keyEncipherment',
        `extendedKeyUsage = ${options.role === 'server' ? 'serverAuth' : 'clientAuth'}`,
        ...(alt.length > 0 ? [`subjectAltName = ${alt.join(',')}`] : []),
        '',
      ].join('\n'),
    );
    const commonName = options.commonName ?? (options.role === 'server' ? (options.altNames?.[0] ?? 'migstream receiver') : 'migstream sender');
    openssl(['req', '-new', ...newKey, '-keyout', key, '-out', csr, '-subj', `/CN=${commonName}`], work);
    openssl(
      [
        'ca',
        '-batch',
        '-notext',
        '-config',
        'ca.cnf',
        '-cert',
        join(options.caDir, CERT_FILES.ca),
        '-keyfile',
        join(options.caDir, CERT_FILES.caKey),
        '-in',
        csr,
        '-out',
        cert,
        '-startdate',
        options.validity.start,
        '-enddate',
        options.validity.end,
        '-extfile',
        'ext.cnf',
      ],
      work,
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export interface QuickStartOptions {
  dir: string;
  names?: string[];
  days?: number;
  /** Keep an existing CA in `dir` and issue new leaf certificates from it. */
  reuseCa?: boolean;
}

/** The `migstream certs` set: CA, server (receiver) and client (sender) certificates. */
export function makeQuickStart(options: QuickStartOptions): string[] {
  const validity = validityDays(options.days ?? 825);
  if (!(options.reuseCa === true && existsSync(join(options.dir, CERT_FILES.ca)))) makeCa(options.dir, validity);
  const names = options.names && options.names.length > 0 ? options.names : defaultNames();
  issue({ caDir: options.dir, outDir: options.dir, name: 'server', role: 'server', altNames: names, validity });
  issue({ caDir: options.dir, outDir: options.dir, name: 'client', role: 'client', validity });
  return Object.values(CERT_FILES).map((f) => join(options.dir, f));
}

/**
 * The certificates of a `migstream certs` directory under the names QEMU's tls-creds-x509
 * (`dir=`) and libvirt's `default_tls_x509_cert_dir` look for, copied into `qemuDir`: the same
 * CA and certificates then serve QEMU's own TLS (its leaf certificates allow keyEncipherment,
 * which QEMU 10.0 requires).
 */
export const QEMU_CERT_NAMES: readonly (readonly [string, string])[] = [
  [CERT_FILES.ca, 'ca-cert.pem'],
  [CERT_FILES.server, 'server-cert.pem'],
  [CERT_FILES.serverKey, 'server-key.pem'],
  [CERT_FILES.client, 'client-cert.pem'],
  [CERT_FILES.clientKey, 'client-key.pem'],
];

export function copyForQemu(certsDir: string, qemuDir: string): void {
  mkdirSync(qemuDir, { recursive: true });
  for (const [ours, qemus] of QEMU_CERT_NAMES) copyFileSync(join(certsDir, ours), join(qemuDir, qemus));
}
