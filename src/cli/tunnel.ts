import { formatBytes } from './format.js';
import { integerOption, parse, UsageError, type Command } from './args.js';
import { reportUsageLines } from './conventions.js';
import { defaultChannels } from './send.js';
import { parseAddress, parseSeconds, tlsMaterialFrom, tlsOptionSpec, tlsUsage } from './transport-options.js';
import { CONNECTION_KIND_NAMES } from '../tunnel/classify.js';
import { startDialer, startListener, type StreamRecord, type Tunnel } from '../tunnel/host.js';
import type { TransportError } from '../tls/errors.js';

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
        'tls-name': { type: 'string' },
        'tls-pin': { type: 'string' },
        'no-client-auth': { type: 'boolean' },
      },
      0,
    );
    const unix = (values.unix as unknown as string[] | undefined) ?? [];
    if (unix.length === 0) throw new UsageError('give at least one --unix PATH to forward');
    if ((values.to === undefined) === (values.listen === undefined)) throw new UsageError('give either --to HOST:PORT (source side) or --listen HOST:PORT (destination side)');
    const timeoutMs = parseSeconds(values.timeout, 30);
    const log = new TunnelLog(values.json === true, values.quiet === true);
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
      const tunnel = await startDialer({ host: address.host, port: address.port, channels, tls, timeoutMs, routes });
      log.follow(tunnel);
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
    if (values.channels !== undefined || values['tls-pin'] !== undefined || values['tls-name'] !== undefined) throw new UsageError('--channels, --tls-name and --tls-pin belong to the source side (--to)');
    if (unix.some((spec) => spec.includes('='))) throw new UsageError('--unix PATH=TARGET belongs to the source side; the destination names the paths it may connect to');
    const address = parseAddress(values.listen, '--listen');
    const tls = tlsMaterialFrom('server', values, values['no-client-auth'] === true ? { noClientAuth: true } : {});
    const listener = await startListener({ host: address.host, port: address.port, tls, timeoutMs, targets: unix });
    log.event('listening', `listening on ${address.host}:${listener.port}; may connect to ${unix.join(', ')}`, { port: listener.port, targets: unix });
    listener.on('stranger', (peer, reason) => log.event('refused', `refused ${peer}: ${reason}`, { peer, reason }));
    listener.on('session', (session) => {
      log.event('session', 'session opened', {});
      log.follow(session);
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

/** What the tunnel tells its operator: one line per event on stderr, or JSON lines on stdout. */
class TunnelLog {
  private readonly streams: StreamRecord[] = [];

  constructor(
    private readonly json: boolean,
    private readonly quiet: boolean,
  ) {}

  event(event: string, text: string, fields: object): void {
    if (this.json) process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
    else if (!this.quiet) process.stderr.write(`migstream tunnel: ${text}\n`);
  }

  follow(tunnel: Tunnel): void {
    tunnel.on('classified', (record) => this.event('stream', `stream ${record.id} → ${record.target}: ${CONNECTION_KIND_NAMES[record.kind!]} (channel ${record.channel})`, streamFields(record)));
    tunnel.on('closed', (record) => {
      this.streams.push(record);
      const how = record.reset === null ? 'closed' : `reset (${record.reset})`;
      this.event('closed', `stream ${record.id} → ${record.target} ${how}: ${formatBytes(record.clientBytes)} forward, ${formatBytes(record.serverBytes)} back`, streamFields(record));
    });
    tunnel.on('end', (error) => {
      if (error !== null) this.event('session-failed', `session failed: ${error.message}`, { code: error.code, message: error.message });
      else this.event('session-stopped', 'session stopped', {});
    });
  }

  finish(error: TransportError | null): number {
    if (error !== null) {
      process.stderr.write(`migstream tunnel: ${error.message}\n`);
      return 1;
    }
    return 0;
  }
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
