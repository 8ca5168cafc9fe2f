import { availableParallelism } from 'node:os';
import { CODECS, type CodecName } from '../codecs/registry.js';
import { send, type SendCounters } from '../tls/sender.js';
import { formatSummary, summaryJson } from './transport-summary.js';
import { emitSummary, progressWanted, reportUsageLines } from './conventions.js';
import { parseAddress, parseSeconds, tlsMaterialFrom, tlsOptionSpec, tlsUsage } from './transport-options.js';
import { openInputFd } from './fd-io.js';
import { integerOption, parse, UsageError, type Command } from './args.js';
import { Progress } from './progress.js';
import { StreamHashTap, writePageHashFile } from '../migrate/stream-hashes.js';
import { SendStatsReporter } from '../migrate/send-stats.js';
import { parseSize } from './transfer-progress.js';
import { blockSizeOptionSpec, blockSizeUsage, parseBlockSizeOption } from './block-size-option.js';
import { PassTracker } from '../migrate/pass-tracker.js';

const usage = `Usage: migstream send HOST:PORT [IN|-] [--channels N] [-c lz4|zstd|none] [TLS options]

Send a migration stream (stdin by default) to "migstream recv" over N parallel channels, each
encrypted in its own thread. Exits 0 only after the receiver confirmed the whole stream.

  migrate "exec:migstream send dest:4444 --channels 4 --tls /etc/migstream"

Options:
  --channels N       parallel connections (default: cores - 1, from 1 to 4: QEMU's migration
                     thread keeps a core)
  -c, --codec NAME   per-frame compression: ${CODECS.map((c) => c.name).join(', ')} (default none)
  --level N          compression level
  --tls-name NAME    name the receiver's certificate must carry (default: HOST)
  --tls-pin SHA256   accept the receiver's certificate by fingerprint instead of the CA
  --frame-size KiB   stream bytes per frame (default 1024)
  --timeout S        fail when a channel makes no progress for S seconds (default 30)
  --no-verify        do not decode the stream while sending
  --hold SIZE        hot-page dropping: while the link is the bottleneck, hold up to SIZE
                     of the stream (e.g. 2M) before it goes out, and cut out a page's earlier
                     copy when QEMU writes the page again meanwhile (default 0: off). What is
                     held when QEMU stops the guest adds to the downtime
${blockSizeUsage('  ', 18)}
  --page-hashes FILE when the input ends, write the hashes of the final RAM image it carried
                     to FILE (for "migrate --verify")
  --stats-socket PATH report bytes and passes over RAM to the Unix socket PATH twice a
                     second (how "migrate" follows the transfer)
${reportUsageLines('  ', 18)}
${tlsUsage}`;

/**
 * One channel per core beyond the one QEMU's migration thread uses, at most 4: a channel's
 * worker beyond the cores only adds start-up and switching (on 2 cores, 1 channel ran a live
 * migration of a filled guest in 1.7 s, 4 channels in 2.0–2.5 s; docs/transport.md).
 */
export function defaultChannels(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

export const sendCommand: Command = {
  name: 'send',
  usage,
  async run(argv) {
    const { values, positionals } = parse(
      argv,
      {
        ...tlsOptionSpec,
        channels: { type: 'string' },
        codec: { type: 'string', short: 'c' },
        level: { type: 'string' },
        'tls-name': { type: 'string' },
        'tls-pin': { type: 'string' },
        'frame-size': { type: 'string' },
        'no-verify': { type: 'boolean' },
        hold: { type: 'string' },
        ...blockSizeOptionSpec,
        'page-hashes': { type: 'string' },
        'stats-socket': { type: 'string' },
      },
      2,
    );
    const address = parseAddress(positionals[0], 'the destination');
    const channels = integerOption(values.channels, defaultChannels(), '--channels', 1, 64);
    const codec = (values.codec ?? 'none') as CodecName;
    if (!CODECS.some((c) => c.name === codec)) throw new UsageError(`unknown codec "${codec}"`);
    const tls = tlsMaterialFrom('client', values, {
      ...(values['tls-name'] !== undefined ? { servername: values['tls-name'] } : {}),
      ...(values['tls-pin'] !== undefined ? { pin: values['tls-pin'] } : {}),
    });
    const holdBytes = values.hold === undefined ? 0 : parseSize(values.hold);
    if (holdBytes === undefined || holdBytes > 1024 * 1024 * 1024) throw new UsageError(`bad --hold "${values.hold}" (a size up to 1G, e.g. 2M)`);
    const blockSize = parseBlockSizeOption(values);
    const input = openInputFd(positionals[1]);
    // QEMU may signal its exec: child once it has written the last byte (qio_channel_command
    // abort on close), while frames are still in flight: those must still arrive. Before the
    // input ended, a SIGTERM aborts the transfer.
    let draining = false;
    const onTerm = (): void => {
      if (draining) process.stderr.write('migstream send: SIGTERM while delivering the end of the stream; finishing first\n');
      else process.exit(143);
    };
    process.on('SIGTERM', onTerm);
    const progress = new Progress(progressWanted(values), 'send', null);
    const hashFile = values['page-hashes'];
    const tap = hashFile === undefined ? undefined : new StreamHashTap();
    const statsPath = values['stats-socket'];
    const counters: SendCounters = { streamBytes: 0, leftBytes: 0, wireBytes: 0 };
    const reporter = statsPath === undefined ? undefined : new SendStatsReporter(statsPath);
    let tracker: PassTracker | undefined;
    const stats = (final: boolean) => {
      const summary = tracker?.summary() ?? { passes: [], heat: [] };
      const { streamBytes, leftBytes, wireBytes } = counters;
      const hold = { limitBytes: holdBytes, ...(counters.hold ?? { droppedPages: 0, droppedBytes: 0, pinnedPages: 0, keptPages: 0 }) };
      return { type: 'send-stats' as const, streamBytes, leftBytes, wireBytes, passes: summary.passes, hold, ...(final ? { heat: summary.heat } : {}) };
    };
    const ticker = reporter === undefined ? undefined : setInterval(() => reporter.report(stats(false)), 500);
    try {
      const summary = await send({
        host: address.host,
        port: address.port,
        channels,
        tls,
        codec,
        level: values.level === undefined ? undefined : Number(values.level),
        input: input.fd,
        timeoutMs: parseSeconds(values.timeout, 30),
        frameBytes: integerOption(values['frame-size'], 1024, '--frame-size', 16, 32768) * 1024,
        verify: values['no-verify'] !== true,
        holdBytes,
        ...(blockSize !== undefined ? { blockSize } : {}),
        onProgress: (bytes) => progress.update(bytes),
        ...(tap || reporter
          ? {
              onRecords: (records, pageSize) => {
                tap?.apply(records, pageSize);
                if (reporter) {
                  tracker ??= new PassTracker(pageSize());
                  for (const record of records) tracker.apply(record);
                }
              },
            }
          : {}),
        counters,
        onInputEnd: () => {
          draining = true;
          if (tap) writePageHashFile(hashFile!, tap.result());
        },
      });
      clearInterval(ticker);
      await reporter?.finish(stats(true));
      progress.done();
      emitSummary(
        values,
        false,
        () => formatSummary('migstream send', summary),
        () => ({ command: 'send', ...summaryJson(summary) }),
      );
      return 0;
    } finally {
      clearInterval(ticker);
      reporter?.close();
      process.off('SIGTERM', onTerm);
      progress.done();
      input.close();
    }
  },
};
