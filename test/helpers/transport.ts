/**
 * Runs `migstream recv` and `migstream send` as child processes (the CLI runs dist/, as QEMU
 * would run it), a fault-injecting TCP proxy, and credentials made once per test file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeQuickStart } from '../../src/tls/certs.js';

export const BIN = join(import.meta.dirname, '../../bin/migstream');

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** Milliseconds from spawn to exit. */
  ms: number;
}

export interface Running {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<Finished>;
}

/** Runs `migstream ARGS`; `prefix` runs it through another command (e.g. `ip netns exec NS`). */
export function run(args: string[], options: { stdin?: 'ignore' | 'pipe'; stdout?: 'ignore' | 'pipe'; prefix?: string[] } = {}): Running {
  const started = Date.now();
  const argv = [...(options.prefix ?? []), process.execPath, BIN, ...args];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: [options.stdin ?? 'ignore', options.stdout ?? 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<Finished>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stderr, ms: Date.now() - started })));
  return { child, stderr: () => stderr, exited };
}

/** Starts `recv --listen HOST:0 …` and resolves with its port once it listens. */
export async function startRecv(args: string[], options: { host?: string; prefix?: string[]; stdout?: 'ignore' | 'pipe' } = {}): Promise<Running & { port: number }> {
  const running = run(['recv', '--listen', `${options.host ?? '127.0.0.1'}:0`, ...args], { prefix: options.prefix ?? [], stdout: options.stdout ?? 'ignore' });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`recv did not listen: ${running.stderr()}`)), 20_000);
    running.child.stderr!.on('data', () => {
      const match = /listening on [^ ]+:(\d+)/.exec(running.stderr());
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    void running.exited.then((f) => reject(new Error(`recv exited: ${f.stderr}`)));
  });
  return { ...running, port };
}

/** A free loopback port (released again: a small race a test can live with). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

let certsDir: string | undefined;

/** A `migstream certs` directory for 127.0.0.1/localhost, made once per test file. */
export function testCerts(): string {
  if (certsDir === undefined) {
    certsDir = mkdtempSync(join(tmpdir(), 'migstream-certs-'));
    makeQuickStart({ dir: certsDir, names: ['localhost', '127.0.0.1'], days: 2 });
  }
  return certsDir;
}

export interface Proxy {
  port: number;
  /** Connections in accept order. */
  connections: { client: Socket; upstream: Socket; bytes: number }[];
  close(): void;
}

/**
 * Forwards 127.0.0.1:port to `target`. `onBytes(connectionIndex, bytesSoFar, pair)` runs as
 * sender bytes pass, so a test can reset or cut one connection mid-transfer.
 */
export function startProxy(target: number, onBytes: (index: number, bytes: number, pair: { client: Socket; upstream: Socket }) => void): Promise<Proxy> {
  const connections: Proxy['connections'] = [];
  const server: Server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    const entry = { client, upstream, bytes: 0 };
    const index = connections.push(entry) - 1;
    client.on('data', (chunk: Buffer) => {
      entry.bytes += chunk.length;
      if (!upstream.destroyed) upstream.write(chunk);
      onBytes(index, entry.bytes, entry);
    });
    upstream.pipe(client);
    client.on('end', () => upstream.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as { port: number }).port,
        connections,
        close: () => {
          for (const c of connections) {
            c.client.destroy();
            c.upstream.destroy();
          }
          server.close();
        },
      }),
    ),
  );
}
