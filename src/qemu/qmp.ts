/**
 * QMP client over a unix socket: one JSON object per line in each direction. Replies are
 * matched to commands by the `id` member QMP echoes back, so commands may overlap.
 */
import { createConnection, type Socket } from 'node:net';
import { QmpConnectionError, QmpError, QemuTimeoutError, type QmpErrorReply } from './errors.js';
import { QmpLineSplitter, parseQmpLine, type QmpMessage } from './qmp-wire.js';

export interface QmpGreeting {
  QMP: {
    version: { qemu: { major: number; minor: number; micro: number }; package: string };
    capabilities: string[];
  };
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

type QmpArgs = Readonly<Record<string, unknown>>;

/** Anything that runs QMP commands: a QmpClient, a QemuVm, or a test's stand-in. */
export interface QmpExecutor {
  execute<T = unknown>(command: string, args?: QmpArgs): Promise<T>;
}

interface Pending {
  command: string;
  args: QmpArgs | undefined;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

export interface QmpConnectOptions {
  /** How long to wait for the greeting once connected. */
  timeoutMs?: number;
}

export class QmpClient {
  readonly greeting: QmpGreeting;
  private readonly socket: Socket;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<(event: QmpEvent) => void>();
  private nextId = 1;
  private closedError: QmpConnectionError | undefined;

  private constructor(socket: Socket, greeting: QmpGreeting, rest: LineReader) {
    this.socket = socket;
    this.greeting = greeting;
    rest.attach((line) => this.dispatch(line));
    socket.on('close', () => this.fail(new QmpConnectionError('QMP connection closed')));
    socket.on('error', (err) => this.fail(new QmpConnectionError(`QMP socket error: ${err.message}`, { cause: err })));
  }

  /** Connects, reads the greeting and leaves capabilities-negotiation mode. */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection(path);
      s.once('connect', () => resolve(s));
      s.once('error', (err) => reject(new QmpConnectionError(`cannot connect to QMP at ${path}: ${err.message}`, { cause: err })));
    });
    const reader = new LineReader(socket);
    let greeting: QmpGreeting;
    try {
      greeting = (await withTimeout(reader.next(), timeoutMs, `waiting for the QMP greeting on ${path}`)) as QmpGreeting;
    } catch (err) {
      socket.destroy();
      if (err instanceof NotQmpError) throw new QmpConnectionError(`${path} is not a QEMU QMP socket: it greeted with ${err.line.slice(0, 200)}`);
      throw err;
    }
    if (!greeting || typeof greeting !== 'object' || !('QMP' in greeting)) {
      socket.destroy();
      throw new QmpConnectionError(`${path} is not a QEMU QMP socket: it greeted with ${JSON.stringify(greeting).slice(0, 200)}`);
    }
    const client = new QmpClient(socket, greeting, reader);
    await client.execute('qmp_capabilities');
    return client;
  }

  /** Runs a command and resolves with its `return` value; rejects with QmpError on `error`. */
  execute<T = unknown>(command: string, args?: QmpArgs): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId++;
    const message = args ? { execute: command, arguments: args, id } : { execute: command, id };
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { command, args, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Subscribes to asynchronous events; returns the unsubscribe function. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Resolves with the next event named `name` (and accepted by `match`) that arrives from now on. */
  waitForEvent(name: string, timeoutMs: number, match: (event: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    let unsubscribe = (): void => undefined;
    const seen = new Promise<QmpEvent>((resolve) => {
      unsubscribe = this.onEvent((event) => {
        if (event.event === name && match(event)) resolve(event);
      });
    });
    return withTimeout(seen, timeoutMs, `waiting for QMP event ${name}`).finally(unsubscribe);
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  close(): void {
    this.socket.destroy();
    this.fail(new QmpConnectionError('QMP connection closed by client'));
  }

  private dispatch(line: string): void {
    let message: QmpMessage;
    try {
      message = parseQmpLine(line);
    } catch (error) {
      this.fail(error as QmpConnectionError);
      this.socket.destroy();
      return;
    }
    if (message.kind === 'event') {
      for (const listener of [...this.listeners]) listener(message.value as unknown as QmpEvent);
      return;
    }
    if (message.kind !== 'return' && message.kind !== 'error') return;
    const id = message.id;
    const pending = typeof id === 'number' ? this.pending.get(id) : undefined;
    if (!pending) return; // replies to commands without our id cannot be ours
    this.pending.delete(id as number);
    if (message.kind === 'error') {
      pending.reject(new QmpError(pending.command, pending.args, message.error as QmpErrorReply));
    } else {
      pending.resolve(message.value);
    }
  }

  private fail(error: QmpConnectionError): void {
    if (this.closedError) return;
    this.closedError = error;
    for (const pending of this.pending.values()) {
      pending.reject(new QmpConnectionError(`${error.message} while waiting for the reply to ${pending.command}`, { cause: error }));
    }
    this.pending.clear();
  }
}

/** Splits socket data into lines; until attach(), lines queue up for next(). */
class LineReader {
  private onLine: ((line: string) => void) | undefined;
  private readonly splitter = new QmpLineSplitter();
  private readonly queue: string[] = [];
  private waiter: { resolve: (v: unknown) => void; reject: (e: Error) => void } | undefined;

  constructor(socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = this.splitter.push(chunk);
      } catch (error) {
        this.waiter?.reject(error as Error);
        socket.destroy(error as Error);
        return;
      }
      for (const line of lines) this.push(line);
    });
    socket.on('close', () => this.waiter?.reject(new QmpConnectionError('QMP connection closed before the greeting')));
  }

  attach(onLine: (line: string) => void): void {
    this.onLine = onLine;
    for (const line of this.queue.splice(0)) onLine(line);
  }

  /** The greeting: the first line, which must be QMP's. */
  next(): Promise<unknown> {
    const line = this.queue.shift();
    if (line !== undefined) return Promise.resolve().then(() => parseGreeting(line));
    return new Promise((resolve, reject) => {
      this.waiter = {
        resolve: (l) => {
          try {
            resolve(parseGreeting(l as string));
          } catch (err) {
            reject(err);
          }
        },
        reject,
      };
    });
  }

  private push(line: string): void {
    if (this.onLine) {
      this.onLine(line);
    } else if (this.waiter) {
      const waiter = this.waiter;
      this.waiter = undefined;
      waiter.resolve(line);
    } else {
      this.queue.push(line);
    }
  }
}

/** A first line that is not QMP's greeting; connect() names the socket it came from. */
class NotQmpError extends QmpConnectionError {
  constructor(readonly line: string) {
    super(`unexpected QMP greeting: ${line.slice(0, 200)}`);
  }
}

function parseGreeting(line: string): unknown {
  const message = parseQmpLine(line);
  if (message.kind !== 'greeting') throw new NotQmpError(line);
  return message.value;
}

export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new QemuTimeoutError(what, timeoutMs)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
