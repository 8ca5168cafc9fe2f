import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpClient } from '../qemu/qmp.js';
import { formatProgressLine, type ProgressEvent } from '../migrate/progress.js';
import { buildMigrateReport, formatMigrateReport } from '../migrate/report.js';
import { assertMigratable, DEFAULT_DOWNTIME_MS, migrateSource, type MigrateEvent } from '../migrate/source.js';
import { verifySource, type VerifyOutcome } from '../migrate/verify.js';
import { SendStatsListener } from '../migrate/send-stats.js';
import { downtimeBudget, handoverMs } from '../migrate/handover.js';
import { formatProbe, probeSource, type ProbeReport } from '../migrate/probe.js';
import { readLevers } from '../migrate/levers.js';
import { probeLink } from '../migrate/verdict-channel.js';
import { DiskMover, type DiskEvent } from '../migrate/disk-mover.js';
import { parseSize } from './transfer-progress.js';
import { defaultChannels } from './send.js';
import { CODECS, codecByName, resolveLevel } from '../codecs/registry.js';
import { parse, UsageError, type Command } from './args.js';
import { reportUsageLines } from './conventions.js';
import { selfCommand, tlsArgs } from './exec-command.js';
import { LiveLine } from './live-line.js';
import { controllerOptionSpec, controlAddress, frameKiBForLink, verifyFraction, verifySampleUsage, parseMs, parseRate, vmStateSuffix } from './migrate-options.js';
import { parseAddress, parseSeconds, tlsMaterialFrom, tlsUsage } from './transport-options.js';

const usage = `Usage: migstream migrate --qmp SRC.sock --to HOST:PORT [options] [TLS options]

Move the running VM behind SRC.sock to a QEMU waiting under "migstream incoming" on HOST:PORT:
sets QEMU's capabilities and parameters, starts migrate "exec:migstream send …", steers it and
prints the report. On any failure the source VM keeps running.

  migstream migrate --qmp /run/vm1.qmp --to dest:4444 --tls /etc/migstream --verify

Options:
  --qmp PATH              the source QEMU's QMP socket
  --to HOST:PORT          where "migstream incoming" listens
  --channels N            parallel connections (default: send's default)
  -c, --codec NAME        per-frame compression: ${CODECS.map((c) => c.name).join(', ')} (default none)
  --downtime-limit MS     the downtime the guest may see (default 300); QEMU's downtime-limit
                          is this less the hand-over
  --handover MS           what to keep of it for the stream's tail on the link and the
                          destination's resume (default: the probe's measured tail + 100;
                          0: QEMU gets the whole limit)
  --max-bandwidth RATE    QEMU's max-bandwidth, bytes/s with K, M or G (powers of 1024)
  --hold MS               hot-page dropping: send holds up to MS of the link's worth of the
                          stream while the link is the bottleneck, and a page QEMU sends again
                          meanwhile replaces its earlier copy (default 0: off). Counted in the
                          hand-over, so QEMU's share of the downtime limit shrinks by MS
  --converge auto|off     throttle the guest when pre-copy stops shrinking (default off)
  --with-disk             carry the VM's writable disks in the stream (QEMU's block migration,
                          QEMU ≤ 9.0; the destination QEMU needs blank disks of the same size
                          and drive ids)
  --disk DRIVE            move this drive (its -drive id, qdev id or node name) through QEMU's
                          NBD server and dirty bitmaps, on any QEMU; repeat for more drives,
                          in the order "incoming --disk" names the destination's. RAM starts
                          once a dirty pass is small; the guest's write limit is lowered while
                          passes do not shrink; the last pass and a check of both drives run
                          with the source paused, before QEMU switches over
  --disk-block-size SIZE  chunk size of the disk records, 4K to 16M (default 1M); chunks dirtied
                          again go as their changed 4 KiB sub-blocks
  --disk-granularity SIZE dirty bitmap granularity (default 64K)
  --no-disk-throttle      never lower the guest's write limit
  --disk-target-is-zero   the destination drives are blank: the first copy skips what the
                          source reads as zeros instead of zeroing it there (the check at
                          switch-over still compares the whole drives)
  --force-downtime MS     with --converge auto: when throttling is exhausted, raise
                          downtime-limit to MS to force the switch-over
  --verify                before the destination resumes, compare the paused source's RAM
                          with the final image the stream carried (and the destination's
                          with the same image): a mismatch resumes the source instead
${verifySampleUsage}
  --control-port PORT     the destination's control port: probe and verdicts (default: PORT + 1)
  --probe                 only probe and predict: RAM, zero pages (and what -c makes of
                          them), dirty rate, the link's rate (a 2 s burst to the
                          destination's control port); no migration
  --no-probe              migrate without probing first (by default the probe runs first)
  --timeout S             cancel when not completed after S seconds (the source runs on)
  --tls-name NAME         name the receiver's certificate must carry (default: HOST)
${reportUsageLines('  ', 22)}
${tlsUsage}`;

/** A power-of-two size option within [min, max], or undefined when absent. */
function diskSizeOption(text: string | undefined, name: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const size = parseSize(text) ?? NaN;
  if (!(Number.isInteger(size) && size >= min && size <= max && (size & (size - 1)) === 0)) {
    throw new UsageError(`${name} must be a power of two from ${min} to ${max} bytes (K, M, G allowed), got "${text}"`);
  }
  return size;
}

/** send's hold in bytes: `ms` of a link of `bytesPerSecond`, at least one 64 KiB frame. */
function holdBytesFor(bytesPerSecond: number, ms: number): number {
  return Math.max(64 * 1024, Math.round((bytesPerSecond * ms) / 1000));
}

export const migrateCommand: Command = {
  name: 'migrate',
  usage,
  async run(argv) {
    const { values } = parse(
      argv,
      {
        ...controllerOptionSpec,
        to: { type: 'string' },
        channels: { type: 'string' },
        codec: { type: 'string', short: 'c' },
        'downtime-limit': { type: 'string' },
        handover: { type: 'string' },
        hold: { type: 'string' },
        'max-bandwidth': { type: 'string' },
        converge: { type: 'string' },
        'force-downtime': { type: 'string' },
        'tls-name': { type: 'string' },
        probe: { type: 'boolean' },
        'with-disk': { type: 'boolean' },
        disk: { type: 'string', multiple: true },
        'disk-block-size': { type: 'string' },
        'disk-granularity': { type: 'string' },
        'no-disk-throttle': { type: 'boolean' },
        'disk-target-is-zero': { type: 'boolean' },
        'no-probe': { type: 'boolean' },
      },
      0,
    );
    if (values.probe === true && values['no-probe'] === true) throw new UsageError('--probe and --no-probe exclude each other');
    if (values.qmp === undefined) throw new UsageError("--qmp PATH (the source QEMU's QMP socket) is required");
    const to = parseAddress(values.to, '--to');
    const converge = values.converge ?? 'off';
    if (converge !== 'auto' && converge !== 'off') throw new UsageError(`--converge must be auto or off, got "${converge}"`);
    const codec = values.codec ?? 'none';
    if (!CODECS.some((c) => c.name === codec)) throw new UsageError(`unknown codec "${codec}"`);
    const downtimeLimitMs = values['downtime-limit'] === undefined ? DEFAULT_DOWNTIME_MS : parseMs(values['downtime-limit'], '--downtime-limit');
    const handover = values.handover === undefined ? undefined : parseMs(values.handover, '--handover', 0);
    const holdMs = values.hold === undefined ? 0 : parseMs(values.hold, '--hold', 0);
    if (holdMs > 0 && values['no-probe'] === true && values['max-bandwidth'] === undefined) {
      throw new UsageError("--hold needs a link rate to size the hold: the probe's (drop --no-probe) or --max-bandwidth");
    }
    // parse() types a multiple option as its single form.
    const disks = (values.disk as string[] | undefined) ?? [];
    if (disks.length > 0 && values['with-disk'] === true) throw new UsageError('--disk and --with-disk exclude each other: one moves the drives through NBD, the other in the stream');
    if (new Set(disks).size !== disks.length) throw new UsageError('--disk names a drive twice');
    const diskChunk = diskSizeOption(values['disk-block-size'], '--disk-block-size', 4096, 16 * 1024 * 1024);
    const diskGranularity = diskSizeOption(values['disk-granularity'], '--disk-granularity', 512, 2 ** 31);
    const forceDowntimeLimitMs = values['force-downtime'] === undefined ? undefined : parseMs(values['force-downtime'], '--force-downtime');
    const maxBandwidth = values['max-bandwidth'] === undefined ? undefined : parseRate(values['max-bandwidth']);
    const timeoutMs = values.timeout === undefined ? undefined : parseSeconds(values.timeout, 0);
    // Loaded here so bad credentials fail before QEMU is touched; send loads its own copy.
    const tls = tlsMaterialFrom('client', values, values['tls-name'] !== undefined ? { servername: values['tls-name'] } : {});
    const sendArgs = ['send', `${to.host}:${to.port}`, '-c', codec, ...tlsArgs(values), '--quiet', '--no-progress'];
    if (values.channels !== undefined) sendArgs.push('--channels', values.channels);
    if (values['tls-name'] !== undefined) sendArgs.push('--tls-name', values['tls-name']);
    const scratch = mkdtempSync(join(tmpdir(), 'migstream-migrate-'));
    const hashFile = join(scratch, 'page-hashes.json');
    const verifyShare = verifyFraction(values);
    if (verifyShare !== undefined) sendArgs.push('--page-hashes', hashFile);
    const statsPath = join(scratch, 'send-stats.sock');
    sendArgs.push('--stats-socket', statsPath);

    let stats: SendStatsListener | undefined;
    const qmp = await Promise.all([QmpClient.connect(values.qmp), SendStatsListener.listen(statsPath).then((l) => (stats = l))])
      .then(([client]) => client)
      .catch((error: unknown) => {
        stats?.close();
        rmSync(scratch, { recursive: true, force: true });
        throw error;
      });
    const sendStats = stats!;
    const line = new LiveLine(values);
    let mover: DiskMover | undefined;
    try {
      let lastJson = 0;
      const onEvent = (event: MigrateEvent | DiskEvent): void => {
        if (values.json === true) {
          if (event.type !== 'progress' || event.elapsedMs - lastJson >= 1000) {
            if (event.type === 'progress') lastJson = event.elapsedMs;
            process.stdout.write(`${JSON.stringify(event)}\n`);
          }
        } else if (event.type === 'progress') line.update(formatProgressLine(event as ProgressEvent));
        else if (event.type === 'throttle') line.note(`throttle ${event.percent} %: ${event.reason}`);
        else if (event.type === 'notice') line.note(event.message);
        else if (event.type === 'disk-pass') line.update(`disk ${event.drive}: ${event.phase} pass ${event.pass}, ${(event.bytes / 1e6).toFixed(1)} MB in ${(event.ms / 1000).toFixed(1)} s`);
        else if (event.type === 'disk-throttle') line.note(`disk ${event.drive}: write limit ${(event.bytesPerSecond / 1e6).toFixed(1)} MB/s: ${event.reason}`);
        else if (event.type === 'disk-ready') line.note(`disk ready, RAM starts: ${event.reason}`);
      };
      let probe: ProbeReport | null = null;
      if (values['no-probe'] !== true) {
        await assertMigratable(qmp);
        const control = controlAddress(to, values['control-port']);
        const channels = values.channels === undefined ? defaultChannels() : Number(values.channels);
        line.update('probing: guest RAM, dirty rate, link …');
        probe = await probeSource({
          qmp,
          levers: await readLevers(qmp),
          downtimeLimitMs,
          ...(handover !== undefined ? { handoverMs: handover } : {}),
          holdMs,
          ...(maxBandwidth !== undefined ? { maxBandwidth } : {}),
          probeLink: () => probeLink({ ...control, tls, connections: channels, durationMs: 2000, maxBytes: 512 * 1024 * 1024, timeoutMs: 10_000 }),
          converge: converge === 'auto',
          ...(codec !== 'none' ? { codec: { id: codecByName(codec).id, level: resolveLevel(codecByName(codec), undefined), frameBytes: 1024 * 1024 } } : {}),
        });
        line.done();
        // Frames sized to the link, so what send holds after QEMU's last byte drains fast.
        sendArgs.push('--frame-size', String(frameKiBForLink(probe.rate, channels)));
        if (holdMs > 0) sendArgs.push('--hold', String(holdBytesFor(probe.rate, holdMs)));
        if (values.json === true) process.stdout.write(`${JSON.stringify({ type: 'probe', ...probe })}\n`);
        else if (values.quiet !== true) process.stderr.write(formatProbe(probe));
        if (values.probe === true) return 0;
      }
      if (holdMs > 0 && probe === null) sendArgs.push('--hold', String(holdBytesFor(maxBandwidth!, holdMs)));
      if (disks.length > 0) {
        line.update(`disk: opening ${disks.join(', ')} …`);
        mover = await DiskMover.start({
          qmp,
          drives: disks,
          scratch,
          control: controlAddress(to, values['control-port']),
          tls,
          ...(diskChunk !== undefined ? { chunkSize: diskChunk } : {}),
          ...(diskGranularity !== undefined ? { granularity: diskGranularity } : {}),
          ...(probe !== null ? { linkBytesPerSecond: probe.rate } : {}),
          throttle: values['no-disk-throttle'] !== true,
          zeroUnallocated: values['disk-target-is-zero'] !== true,
          onEvent,
        });
        await mover.converge();
        mover.startBesideRam();
      }
      const disk = mover;
      const result = await migrateSource({
        qmp,
        transport: selfCommand(sendArgs),
        downtimeLimitMs: (probe?.budget ?? downtimeBudget(downtimeLimitMs, handover ?? handoverMs(null, holdMs))).qemuLimitMs,
        ...(maxBandwidth !== undefined ? { maxBandwidth } : {}),
        ...(forceDowntimeLimitMs !== undefined ? { forceDowntimeLimitMs } : {}),
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        converge,
        withDisk: values['with-disk'] === true,
        onEvent,
        transportBytes: () => sendStats.latest,
        ...(disk !== undefined ? { beforeSwitchover: () => disk.switchover(), watch: () => disk.watch() } : {}),
      });
      line.done();
      // send reports its last figures once the receiver confirmed the stream's end.
      const finalStats = await sendStats.waitForFinal(5000);
      let verify: VerifyOutcome | null = null;
      if (verifyShare !== undefined) {
        verify = await verifySource({ qmp, hashFile, control: controlAddress(to, values['control-port']), tls, sampleFraction: verifyShare });
      }
      const report = buildMigrateReport(result, verify, finalStats ?? sendStats.latest ?? null, probe, mover?.report() ?? null);
      if (values.json === true) process.stdout.write(`${JSON.stringify({ type: 'summary', ...report })}\n`);
      else if (values.quiet !== true) process.stderr.write(formatMigrateReport(report));
      return 0;
    } catch (error) {
      line.done();
      // The RAM migration was cancelled (the source resumed); the drives' bitmaps, exports and write limits go too.
      await mover?.abort();
      if (error instanceof Error) error.message += await vmStateSuffix(qmp, 'source');
      throw error;
    } finally {
      line.done();
      qmp.close();
      sendStats.close();
      rmSync(scratch, { recursive: true, force: true });
    }
  },
};
