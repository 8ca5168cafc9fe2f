/**
 * Runs a pair of `migstream tunnel` processes (the CLI on dist/, as an operator runs it) with
 * --json, and collects their events: the destination side listening on an ephemeral port, the
 * source side dialling it and forwarding its UNIX paths.
 */
import { run, type Running } from './transport.js';

export interface TunnelEvent {
  event: string;
  [field: string]: unknown;
}

export interface TunnelProcess extends Running {
  events: TunnelEvent[];
  /** Resolves with the first event named `name` that `match` accepts (rejects if the process exits first). */
  waitFor(name: string, match?: (event: TunnelEvent) => boolean, timeoutMs?: number): Promise<TunnelEvent>;
}

function withEvents(running: Running): TunnelProcess {
  const events: TunnelEvent[] = [];
  let buffered = '';
  const waiters: (() => void)[] = [];
  running.child.stdout!.setEncoding('utf8').on('data', (text: string) => {
    buffered += text;
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    for (const line of lines) if (line !== '') events.push(JSON.parse(line) as TunnelEvent);
    for (const wake of waiters.splice(0)) wake();
  });
  let exited = false;
  void running.exited.then(() => {
    exited = true;
    for (const wake of waiters.splice(0)) wake();
  });
  const waitFor = async (name: string, match: (event: TunnelEvent) => boolean = () => true, timeoutMs = 30_000): Promise<TunnelEvent> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = events.find((e) => e.event === name && match(e));
      if (found !== undefined) return found;
      if (exited) throw new Error(`tunnel exited before "${name}": ${running.stderr()}`);
      if (Date.now() > deadline) throw new Error(`no "${name}" event within ${timeoutMs} ms: ${running.stderr()}`);
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  };
  return { ...running, events, waitFor };
}

export interface TunnelPairOptions {
  /** --unix paths on the source side: LISTEN=TARGET or PATH. */
  routes: string[];
  /** --unix paths the destination side may connect to. */
  targets: string[];
  channels?: number;
  /** `--tls DIR` on both sides, or plaintext. */
  tls?: string;
  extra?: { source?: string[]; destination?: string[] };
  /** `ip netns exec NS` prefixes and the address the source dials. */
  prefix?: { source?: string[]; destination?: string[] };
  host?: string;
}

export interface TunnelPair {
  source: TunnelProcess;
  destination: TunnelProcess;
  port: number;
  stop(): Promise<void>;
}

export async function startTunnelPair(options: TunnelPairOptions): Promise<TunnelPair> {
  const tls = options.tls === undefined ? ['--insecure'] : ['--tls', options.tls];
  const host = options.host ?? '127.0.0.1';
  const destination = withEvents(
    run(['tunnel', '--listen', `${host}:0`, ...options.targets.flatMap((t) => ['--unix', t]), ...tls, '--json', ...(options.extra?.destination ?? [])], {
      stdout: 'pipe',
      prefix: options.prefix?.destination ?? [],
    }),
  );
  const port = Number((await destination.waitFor('listening')).port);
  const source = withEvents(
    run(['tunnel', '--to', `${host}:${port}`, ...options.routes.flatMap((r) => ['--unix', r]), '--channels', String(options.channels ?? 1), ...tls, '--json', ...(options.extra?.source ?? [])], {
      stdout: 'pipe',
      prefix: options.prefix?.source ?? [],
    }),
  );
  await source.waitFor('ready');
  return {
    source,
    destination,
    port,
    async stop() {
      for (const side of [source, destination]) side.child.kill('SIGTERM');
      await Promise.all([source.exited, destination.exited]);
    },
  };
}
