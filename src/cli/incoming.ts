import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { receiveMigration, type IncomingEvent } from '../migrate/destination.js';
import { VerdictListener } from '../migrate/verdict-channel.js';
import { DiskReceiver, type DriveArrival } from '../migrate/disk-receiver.js';
import { DiskStreamMissingError } from '../migrate/errors.js';
import { verifyDestination, type VerifyOutcome } from '../migrate/verify.js';
import { QmpClient } from '../qemu/qmp.js';
import { parse, UsageError, type Command } from './args.js';
import { reportUsageLines } from './conventions.js';
import { selfCommand, tlsArgs } from './exec-command.js';
import { LiveLine } from './live-line.js';
import { controllerOptionSpec, controlAddress, verifyFraction, verifySampleUsage, vmStateSuffix } from './migrate-options.js';
import { parseAddress, parseSeconds, tlsMaterialFrom, tlsUsage } from './transport-options.js';

const usage = `Usage: migstream incoming --qmp DST.sock --listen HOST:PORT [options] [TLS options]

Take the QEMU behind DST.sock, started with -S -incoming defer, point it at
"exec:migstream recv --listen HOST:PORT …", wait for "migstream migrate" on the source, and
resume the guest only when the migration completed (and, with --verify, the copy checked out).
On any failure the guest stays paused (or QEMU has exited, as it does on a failed load).

  qemu-system-x86_64 … -S -incoming defer -qmp unix:/run/vm1.qmp,server=on,wait=off
  migstream incoming --qmp /run/vm1.qmp --listen 0.0.0.0:4444 --tls /etc/migstream --verify

Options:
  --qmp PATH              the destination QEMU's QMP socket
  --listen HOST:PORT      where the source's "migstream send" connects
  --verify                compare the loaded RAM with the stream's image and wait for the
                          source's own check before resuming (needs "migrate --verify")
${verifySampleUsage}
  --control-port PORT     where migrate probes the link and, with --verify, sends its
                          verdict (default: PORT + 1)
  --disk DRIVE            take this drive (its -drive id, qdev id or node name; an image of
                          at least the source drive's size) from "migrate --disk", through
                          this QEMU's NBD server; repeat in the order migrate names its drives.
                          The guest resumes only when every drive arrived and checked equal to
                          the source's. RAM arriving without the disk stops this QEMU (quit), so
                          the source's migration fails and the source runs on
  --no-client-auth        do not require a client certificate
  --no-resume             leave the guest paused after a good migration
  --timeout S             give up when no migration completed after S seconds
${reportUsageLines('  ', 22)}
${tlsUsage}`;

export const incomingCommand: Command = {
  name: 'incoming',
  usage,
  async run(argv) {
    const { values } = parse(
      argv,
      {
        ...controllerOptionSpec,
        listen: { type: 'string' },
        'no-client-auth': { type: 'boolean' },
        'no-resume': { type: 'boolean' },
        disk: { type: 'string', multiple: true },
      },
      0,
    );
    if (values.qmp === undefined) throw new UsageError("--qmp PATH (the destination QEMU's QMP socket) is required");
    const listen = parseAddress(values.listen, '--listen');
    const timeoutMs = values.timeout === undefined ? undefined : parseSeconds(values.timeout, 0);
    const tls = tlsMaterialFrom('server', values, values['no-client-auth'] === true ? { noClientAuth: true } : {});
    // The control port is always open: migrate probes the link through it before it starts,
    // and with --verify the two sides exchange their verdicts on it.
    const control = controlAddress(listen, values['control-port']);
    const scratch = mkdtempSync(join(tmpdir(), 'migstream-incoming-'));
    const hashFile = join(scratch, 'page-hashes.json');
    const recvArgs = ['recv', '--listen', `${listen.host}:${listen.port}`, ...tlsArgs(values), '--quiet', '--no-progress'];
    if (values['no-client-auth'] === true) recvArgs.push('--no-client-auth');
    const verifyShare = verifyFraction(values);
    if (verifyShare !== undefined) recvArgs.push('--page-hashes', hashFile);
    // parse() types a multiple option as its single form.
    const disks = (values.disk as string[] | undefined) ?? [];
    if (new Set(disks).size !== disks.length) throw new UsageError('--disk names a drive twice');
    const line = new LiveLine(values);
    let qmp: QmpClient | undefined;
    let listener: VerdictListener | undefined;
    let receiver: DiskReceiver | undefined;
    try {
      qmp = await QmpClient.connect(values.qmp);
      if (disks.length > 0) {
        receiver = await DiskReceiver.prepare({
          qmp,
          drives: disks,
          scratch,
          onEvent: (event) => {
            if (values.json === true) process.stdout.write(`${JSON.stringify(event)}\n`);
            else if (event.type === 'disk-failed') line.note(`migstream incoming: ${event.message}`);
            else line.update(`migstream incoming: disk ${event.drive}: ${event.type.slice(5)}`);
          },
        });
      }
      const disk = receiver;
      listener = await VerdictListener.listen({
        ...control,
        tls,
        onStray: (peer, reason) => line.note(`migstream incoming: ignored a connection from ${peer} on the control port: ${reason}`),
        ...(disk !== undefined ? { onDiskStream: disk.accept } : {}),
      });
      const client = qmp;
      const verdictListener = listener;
      let verify: VerifyOutcome | null = null;
      let arrivals: DriveArrival[] | null = null;
      const onEvent = (event: IncomingEvent): void => {
        if (values.json === true) process.stdout.write(`${JSON.stringify(event)}\n`);
        else line.update(`migstream incoming: ${event.type} (${(event.elapsedMs / 1000).toFixed(1)} s)`);
      };
      const result = await receiveMigration({
        qmp: client,
        transport: selfCommand(recvArgs),
        resume: values['no-resume'] !== true,
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        ...(verifyShare !== undefined || disk !== undefined
          ? {
              check: async () => {
                // The source checked its drives against ours before it let QEMU switch over; this
                // side compared them too, on its own.
                if (disk !== undefined) arrivals = await disk.waitAll(60_000);
                if (verifyShare !== undefined) verify = await verifyDestination({ qmp: client, hashFile, listener: verdictListener, sampleFraction: verifyShare });
              },
            }
          : {}),
        ...(disk !== undefined ? { watchLoad: () => disk.watch() } : {}),
        onEvent,
      }).catch(async (error: unknown) => {
        // RAM came without its disk: this QEMU must not complete the load, and the source must see
        // its migration fail (and run on), so this QEMU goes.
        if (error instanceof DiskStreamMissingError && !client.closed) await client.execute('quit').catch(() => undefined);
        throw error;
      });
      line.done();
      const summary = {
        type: 'summary',
        status: 'completed',
        resumed: result.resumedAtMs !== undefined,
        autostarted: result.autostarted,
        waitedMs: (result.loadStartedAtMs ?? result.loadedAtMs) - result.startedAtMs,
        loadMs: result.loadStartedAtMs === undefined ? null : result.loadedAtMs - result.loadStartedAtMs,
        checkMs: result.resumedAtMs === undefined ? null : Math.max(0, result.resumedAtMs - result.loadedAtMs),
        resumedAtMs: result.resumedAtMs ?? null,
        verify,
        disk: arrivals,
      };
      if (values.json === true) process.stdout.write(`${JSON.stringify(summary)}\n`);
      else if (values.quiet !== true) {
        const v = verify as VerifyOutcome | null;
        process.stderr.write(
          `migstream incoming: migration completed${summary.resumed ? ', guest resumed' : ', guest left paused'}` +
            (summary.disk !== null ? `; ${(summary.disk as DriveArrival[]).map((d) => `disk ${d.drive}: ${d.records} records, ${d.chunksChecked} MiB checked equal`).join(', ')}` : '') +
            (v ? `; verified ${v.destination.pagesCompared} pages here and ${v.source.pagesCompared} on the source, none differ (${v.local.ms} ms here)` : '') +
            '\n',
        );
      }
      return 0;
    } catch (error) {
      line.done();
      if (error instanceof Error && qmp !== undefined) error.message += await vmStateSuffix(qmp, 'destination');
      throw error;
    } finally {
      line.done();
      listener?.close();
      await receiver?.close();
      qmp?.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  },
};
