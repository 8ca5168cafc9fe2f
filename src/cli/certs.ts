import { defaultNames, makeQuickStart } from '../tls/certs.js';
import { CERT_FILES, fingerprintOf } from '../tls/credentials.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, UsageError, type Command } from './args.js';

const usage = `Usage: migstream certs [-o DIR] [--name NAME]… [--days N] [options]

Make quick-start credentials for "send"/"recv" with openssl: a CA (ca.pem, ca-key.pem), the
receiver's certificate (server.pem, server-key.pem) for the given names, and the sender's
client certificate (client.pem, client-key.pem). Copy the directory to both hosts (the CA key
need not leave this one) and pass it as --tls DIR.

Options:
  -o, --output DIR   where to write (default ./migstream-certs)
  --name NAME        DNS name or IP address of the receiver (repeatable; default: ${defaultNames().join(', ')})
  --days N           validity (default 825)
  --reuse-ca         keep the CA in DIR (ca.pem, ca-key.pem) and issue new certificates from it
  --force            replace existing credentials in DIR, CA included (hosts holding the old
                     CA then refuse the new certificates)
  --json             the files written and the receiver's fingerprint as JSON on stdout
  --quiet            no summary
  -h, --help         this help

Existing credentials in DIR are never replaced without --reuse-ca or --force.`;

export const certsCommand: Command = {
  name: 'certs',
  usage,
  async run(argv) {
    const { values } = parse(
      argv,
      {
        output: { type: 'string', short: 'o' },
        name: { type: 'string', multiple: true },
        days: { type: 'string' },
        'reuse-ca': { type: 'boolean' },
        force: { type: 'boolean' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean' },
      },
      0,
    );
    const days = values.days === undefined ? 825 : Number(values.days);
    if (!Number.isInteger(days) || days < 1) throw new UsageError(`--days must be a positive integer, got "${String(values.days)}"`);
    const dir = (values.output as string | undefined) ?? 'migstream-certs';
    const names = values.name as unknown as string[] | undefined;
    const reuseCa = values['reuse-ca'] === true;
    if (reuseCa && values.force === true) throw new UsageError('--reuse-ca keeps the CA, --force replaces it: give one');
    const present = Object.values(CERT_FILES).filter((file) => existsSync(join(dir, file)));
    if (reuseCa && !(present.includes(CERT_FILES.ca) && present.includes(CERT_FILES.caKey))) {
      throw new UsageError(`--reuse-ca: no CA in ${dir} (${CERT_FILES.ca} and ${CERT_FILES.caKey} needed)`);
    }
    if (!reuseCa && values.force !== true && present.length > 0) {
      throw new UsageError(`${dir} already holds credentials (${present.join(', ')}): refusing to replace them; ` + '--reuse-ca issues new certificates from the same CA, --force replaces everything');
    }
    const files = makeQuickStart({ dir, names, days, reuseCa });
    const fingerprint = fingerprintOf(readFileSync(join(dir, 'server.pem'), 'utf8'));
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify({ command: 'certs', dir, files, receiverFingerprint: fingerprint, reusedCa: reuseCa })}\n`);
    } else if (values.quiet !== true) {
      process.stderr.write(`migstream certs: wrote ${files.join(', ')}\n`);
      process.stderr.write(`receiver fingerprint (for --tls-pin): ${fingerprint}\n`);
    }
    return 0;
  },
};
