import { formatBytes, formatRate } from './format.js';
import { integerOption, parse, UsageError, type Command } from './args.js';
import { reportUsageLines, type ReportValues } from './conventions.js';
import { LiveLine } from './live-line.js';
import { defaultChannels } from './send.js';
import { parseSize } from './transfer-progress.js';
import { parseAddress, parseSeconds, tlsMaterialFrom, tlsOptionSpec, tlsUsage } from './transport-options.js';
import { CONNECTION_KIND_NAMES } from '../tunnel/classify.js';
import { MigrationFollower, type FollowedMigration } from '../tunnel/follow.js';
import { startDialer, startListener, type StreamRecord, type Tunnel } from '../tunnel/host.js';
import { writePageHashFile } from '../migrate/stream-hashes.js';
import type { TransportError } from '../tls/errors.js';
import type { CodecName } from '../codecs/registry.js';

const usage = `Usage: migstream tunnel --to HOST:PORT --unix PATH[=TARGET]… [--channels N] [TLS options]
       migstream tunnel --listen HOST:PORT --unix PATH… [TLS options]

Forward UNIX-socket connections between two hosts over N (TLS) channels, both ways: what
libvirt's UNIX-socket migration needs (docs/libvirt.md). On the source host, "--to" connects
to the destination's tunnel, then listens on each --unix PATH; every connection made there is
carried to the destination, where the tunnel connects to TARGET (default: the same path) and
forwards both directions until either side closes. The destination only connects to the paths
its own --unix options name. Each connection is told apart by its first bytes (QEMU's
migration stream, multifd channels, NBD, libvirt's RPC) and reported.

  destination:  migstream tunnel --listen 0.0.0.0:4450 --tls /etc/migstream \\
                  --unix /run/libvirt/libvirt-sock --unix /run/mig/qemu.sock --unix /run/mig/nbd.sock
  source:       migstream tunnel --to dst:4450 --tls /etc/migstream \\
                  --unix /run/mig/driver.sock=/run/libvirt/libvirt-sock --unix /run/mig/qemu.sock --unix /run/mig/nbd.sock

The source side exits 0 on SIGINT/SIGTERM and 1 when the session fails (a channel lost, the
peer gone, a protocol error): every forwarded connection is then closed at both ends, so a
migration in progress fails and the VM keeps running on the source. The destination side
serves one session after another until it is stopped.

Options:
  --to HOST:PORT       source side: the destination tunnel's address
  --listen HOST:PORT   destination side: address to listen on (port 0: any; printed on stderr)
  --unix PATH[=TARGET] a socket to forward (repeat); TARGET only on the source side
  --channels N         source side: parallel connections; forwarded connections are spread
                       over them (default: cores - 1, from 1 to 4)
  -c, --codec C        source side: compress each forwarded chunk both ways with lz4 or zstd
                       (default none); a chunk that does not shrink goes raw
  --level N            source side: the codec's level (zstd -7..22, default 3)
  --page-cache SIZE    source side, with -c: page-aware compression; each QEMU migration stream
                       and multifd channel keeps SIZE of pages on both hosts, and a page sent
                       again goes as its difference from the copy sent before (default 64M;
                       0: off). Destination side: the most all streams' caches may take
                       together (default 1G)
  --socket-mode MODE   source side: permissions of the sockets it listens on (octal, e.g. 660
                       for a QEMU that runs as libvirt-qemu); default the umask's
  --page-hashes FILE   source side: after each migration, write the hashes of the final RAM it
                       carried to FILE (send's format; its digest is in the report); not when
                       pages go over multifd channels. Costs about a quarter more CPU
  --tls-name NAME      name the destination's certificate must carry (default: HOST)
  --tls-pin SHA256     accept the destination's certificate by fingerprint instead of the CA
  --no-client-auth     destination side: do not require a client certificate
  --timeout S          fail a session whose channel is silent for S seconds (both sides ping
                       every S/3), or whose channels do not all join within S (default 30)
${reportUsageLines('  ', 20)}
${tlsUsage}`;

export const tunnelCommand: Command = {
  name: 'tunnel',
  usage,
  async run(argv) {
    const { values } = parse(
      argv,
      {
        ...tlsOptionSpec,
        to: { type: 'string' },
        listen: { type: 'string' },
        unix: { type: 'string', multiple: true },
        channels: { type: 'string' },
        codec: { type: 'string', short: 'c' },
        level: { type: 'string' },
        'tls-name': { type: 'string' },
        'tls-pin': { type: 'string' },
        'no-client-auth': { type: 'boolean' },
        'page-hashes': { type: 'string' },
        'socket-mode': { type: 'string' },
        'page-cache': { type: 'string' },
      },
      0,
    );
    const unix = (values.unix as unknown as string[] | undefined) ?? [];
    if (unix.length === 0) throw new UsageError('give at least one --unix PATH to forward');
    if ((values.to === undefined) === (values.listen === undefined)) throw new UsageError('give either --to HOST:PORT (source side) or --listen HOST:PORT (destination side)');
    const timeoutMs = parseSeconds(values.timeout, 30);
    const log = new TunnelLog(values, values['page-hashes']);
    const pageCache = pageCacheOption(values['page-cache']);
    if (values.to !== undefined) {
      const address = parseAddress(values.to, '--to');
      const routes = unix.map((spec) => {
        const [listen, target = listen] = spec.split('=', 2) as [string, string?];
        if (listen === '' || target === '') throw new UsageError(`--unix needs PATH or PATH=TARGET, got "${spec}"`);
        return { listen, target };
      });
      const tls = tlsMaterialFrom('client', values, {
        ...(values['tls-name'] !== undefined ? { servername: values['tls-name'] } : {}),
        ...(values['tls-pin'] !== undefined ? { pin: values['tls-pin'] } : {}),
      });
      const channels = integerOption(values.channels, defaultChannels(), '--channels', 1, 64);
      const codec = values.codec ?? 'none';
      if (!['none', 'lz4', 'zstd'].includes(codec)) throw new UsageError(`-c must be lz4, zstd or none, got "${codec}"`);
      const level = values.level === undefined ? undefined : Number(values.level);
      const modeText = values['socket-mode'];
      if (modeText !== undefined && !/^0?[0-7]{3}$/.test(modeText)) throw new UsageError(`--socket-mode must be octal permissions like 660, got "${modeText}"`);
      const socketMode = modeText === undefined ? undefined : parseInt(modeText, 8);
      const tunnel = await startDialer({ host: address.host, port: address.port, channels, tls, timeoutMs, routes, codec: codec as CodecName, level, socketMode, pageCacheBytes: pageCache });
      log.follow(tunnel, true);
      log.event(
        'ready',
        `session open to ${address.host}:${address.port} over ${channels} channel(s); forwarding ${routes.map((r) => (r.listen === r.target ? r.listen : `${r.listen} → ${r.target}`)).join(', ')}`,
        {
          channels,
          routes,
        },
      );
      const stop = (): void => tunnel.stop();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      const error = await tunnel.ended;
      return log.finish(error);
    }
    if (
      values.channels !== undefined ||
      values.codec !== undefined ||
      values.level !== undefined ||
      values['tls-pin'] !== undefined ||
      values['tls-name'] !== undefined ||
      values['page-hashes'] !== undefined ||
      values['socket-mode'] !== undefined
    ) {
      throw new UsageError('--channels, -c, --level, --tls-name, --tls-pin, --page-hashes and --socket-mode belong to the source side (--to)');
    }
    if (unix.some((spec) => spec.includes('='))) throw new UsageError('--unix PATH=TARGET belongs to the source side; the destination names the paths it may connect to');
    const address = parseAddress(values.listen, '--listen');
    const tls = tlsMaterialFrom('server', values, values['no-client-auth'] === true ? { noClientAuth: true } : {});
    const listener = await startListener({ host: address.host, port: address.port, tls, timeoutMs, targets: unix, pageCacheLimitBytes: pageCache });
    log.event('listening', `listening on ${address.host}:${listener.port}; may connect to ${unix.join(', ')}`, { port: listener.port, targets: unix });
    listener.on('stranger', (peer, reason) => log.event('refused', `refused ${peer}: ${reason}`, { peer, reason }));
    listener.on('session', (session) => {
      log.event('session', 'session opened', {});
      log.follow(session, false);
    });
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        listener.close();
        resolve();
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    return 0;
  },
};

/** --page-cache SIZE in bytes (whole pages), or undefined for the side's default. */
export function pageCacheOption(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const bytes = parseSize(text);
  if (bytes === undefined || bytes > 64 * 1024 ** 3) throw new UsageError(`--page-cache must be a size like 64M (0 to turn it off, at most 64G), got "${text}"`);
  return bytes;
}

/** What the tunnel tells its operator: notes and a live line on stderr, or JSON lines on stdout. */
class TunnelLog {
  private readonly line: LiveLine;
  private ticker: NodeJS.Timeout | undefined;

  constructor(
    private readonly values: ReportValues,
    /** Where each migration's final RAM page hashes go (source side), if anywhere. */
    private readonly hashFile: string | undefined,
  ) {
    this.line = new LiveLine(values);
  }

  event(event: string, text: string, fields: object): void {
    if (this.values.json === true) process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
    else this.line.note(`migstream tunnel: ${text}`);
  }

  /** Reports `tunnel`'s streams; with `migrations` (the source side), also follows each migration and shows a live line. */
  follow(tunnel: Tunnel, migrations: boolean): void {
    tunnel.on('classified', (record) => this.event('stream', `stream ${record.id} → ${record.target}: ${CONNECTION_KIND_NAMES[record.kind!]} (channel ${record.channel})`, streamFields(record)));
    tunnel.on('closed', (record) => {
      const how = record.reset === null ? 'closed' : `reset (${record.reset})`;
      this.event('closed', `stream ${record.id} → ${record.target} ${how}: ${formatBytes(record.clientBytes)} forward, ${formatBytes(record.serverBytes)} back`, streamFields(record));
    });
    tunnel.on('end', (error) => {
      clearInterval(this.ticker);
      this.line.done();
      if (error !== null) this.event('session-failed', `session failed: ${error.message}`, { code: error.code, message: error.message });
      else this.event('session-stopped', 'session stopped', {});
    });
    if (!migrations) return;
    const follower = new MigrationFollower(
      tunnel,
      (report, main, watch) => {
        if (this.hashFile !== undefined) writePageHashFile(this.hashFile, watch.pageHashes()!);
        const seconds = ((main.closedAt ?? Date.now()) - main.openedAt) / 1000;
        this.event('migration', migrationText(report, main, seconds), { stream: main.id, target: main.target, seconds, ...report });
      },
      { pageHashes: this.hashFile !== undefined },
    );
    const started = Date.now();
    this.ticker = setInterval(() => {
      const now = follower.progress();
      const seconds = (Date.now() - started) / 1000;
      const pass = now === undefined || now.passes === 0 ? '' : `, pass ${now.passes}`;
      const multifd = now === undefined || now.multifdChannels === 0 ? '' : `, multifd ${now.multifdChannels}× ${formatBytes(now.multifdPageBytes)}`;
      this.line.update(`tunnel: ${formatBytes(follower.forwardBytes)} forward, ${formatBytes(follower.backBytes)} back (${formatRate(follower.forwardBytes, seconds)})${pass}${multifd}`);
    }, 500);
    this.ticker.unref();
  }

  finish(error: TransportError | null): number {
    if (error !== null) {
      process.stderr.write(`migstream tunnel: ${error.message}\n`);
      return 1;
    }
    return 0;
  }
}

/** The few lines a person reads after a migration went through. */
function migrationText(report: FollowedMigration, main: StreamRecord, seconds: number): string {
  const carried = report.streamBytes + report.multifdBytes;
  const lines = [
    `migration on stream ${main.id} → ${main.target}: ${formatBytes(carried)} in ${seconds.toFixed(1)} s (${formatRate(carried, seconds)}), return path ${formatBytes(report.returnBytes)}, ${formatBytes(report.wireBytes)} on the wire`,
  ];
  if (report.deltaPages > 0) lines.push(`  page-aware: ${report.deltaPages} pages sent as their difference from the copy sent before`);
  if (report.passes.length > 0) {
    lines.push(`  passes: ${report.passes.map((p) => `${p.index + 1}: ${p.pages} pages (${p.zeroPages} zero, ${p.resentPages} re-sent)`).join(' · ')}`);
  }
  const m = report.multifd;
  if (m.channels > 0) lines.push(`  multifd: ${m.channels} channels, ${m.packets} packets (${m.syncs} syncs), ${m.normalPages} pages (${formatBytes(m.pageBytes)}), ${m.zeroPages} zero pages`);
  for (const h of report.heat.slice(0, 3)) lines.push(`  hot: ${h.block}+0x${h.offset.toString(16)} (${formatBytes(h.length)}): ${h.resends} re-sent pages`);
  if (report.ramDigest !== null) lines.push(`  final RAM digest: ${report.ramDigest}`);
  for (const problem of report.problems) lines.push(`  not followed: ${problem}`);
  return lines.join('\n');
}

function streamFields(record: StreamRecord): object {
  return {
    stream: record.id,
    target: record.target,
    kind: record.kind,
    channel: record.channel,
    clientBytes: record.clientBytes,
    serverBytes: record.serverBytes,
    seconds: record.closedAt === null ? null : (record.closedAt - record.openedAt) / 1000,
    reset: record.reset,
  };
}
