/**
 * The error catalogue (src/errors.ts): docs/errors.md is current, every class of the table
 * exists, is exported and carries its code, every code in the source is in the table, and
 * every catalogued error crosses a worker-thread boundary as itself.
 *
 * The worker half runs the built package (dist/, as the compression and transport workers do):
 * `npm test` builds it first; after a change to src/, run `npm run build` before this file.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, test } from 'vitest';
import { beforeAllOrFail } from './helpers/before-all.js';
import * as pkg from '../src/index.js';
import { ERROR_CLASSES } from '../src/error-classes.js';
import { ERRORS, ERROR_FAMILIES, MigstreamError, reviveError, serializeError, type ErrorCode, type SerializedError } from '../src/errors.js';
import { CannotOpenError } from '../src/cli/io.js';
import { OutputStalledError } from '../src/cli/fd-io.js';
import { OutputFullError } from '../src/cli/output-file.js';
import { UsageError } from '../src/cli/args.js';
import { ContainerMagicError, CorruptFrameError, FrameOrderError, TruncatedContainerError } from '../src/container/errors.js';
import { WorkerError } from '../src/workers/errors.js';
import { dataChecksum } from '../src/container/checksum.js';
import { failure } from '../src/decompress/frame-failure.js';
import { DirtyRateError } from '../src/migrate/dirty-rate.js';
import { ConvergenceError, DiskStreamMissingError, LeverMissingError, VerifyError, VmStateError } from '../src/migrate/errors.js';
import { GuestMemoryReadError } from '../src/migrate/ram-reader.js';
import { SendStatsProtocolError } from '../src/migrate/send-stats-wire.js';
import { PageHashFileError } from '../src/migrate/stream-hashes.js';
import { VerdictChannelError } from '../src/migrate/verdict-channel.js';
import { VerdictProtocolError } from '../src/migrate/verdict-wire.js';
import { NativeAddonError } from '../src/native/binding.js';
import { NbdCommandError, NbdConnectionError, NbdProtocolError, NbdRefusedError, NbdTimeoutError } from '../src/nbd/errors.js';
import { DiskExtentError, DiskMismatchError, DiskSizeError } from '../src/disk/errors.js';
import { MigrationFailedError, QemuExitedError, QemuLaunchError, QemuTimeoutError, QmpConnectionError, QmpError } from '../src/qemu/errors.js';
import { XbzrleError, ZlibPageError } from '../src/ram/errors.js';
import { ArgumentError, BadMagicError, EncodeError, FramingError, LimitExceededError, TruncatedStreamError, UnknownFlagError, VmdescError } from '../src/stream/errors.js';
import {
  AuthError,
  ChannelError,
  ChecksumError,
  CredentialsError,
  HandshakeError,
  ListenError,
  OutputError,
  PeerAbortError,
  ProtocolError,
  TimeoutError,
  TransportError,
  channelFailure,
  transportErrorFrom,
} from '../src/tls/errors.js';
import { renderErrorsDoc } from '../scripts/errors-doc.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CODES = Object.keys(ERRORS) as ErrorCode[];

const section = { id: 2, name: 'ram' };
const enoent = Object.assign(new Error("ENOENT: no such file or directory, open '/nope'"), { code: 'ENOENT', errno: -2, syscall: 'open', path: '/nope' });

/** One of each, built by its own constructor, with every field it has set. */
const SAMPLES: { readonly [C in ErrorCode]: () => MigstreamError } = {
  ERR_TRUNCATED: () => new TruncatedStreamError({ offset: 4660, section, context: 'ram record', expected: '8 bytes', actual: 3 }),
  ERR_BAD_MAGIC: () => new BadMagicError('not "QEVM"', { offset: 0, context: 'stream header', expected: '0x5145564d', actual: 0x1234 }),
  ERR_UNKNOWN_FLAG: () => new UnknownFlagError('unknown flags 0x1', { offset: 77, section, context: 'ram record', actual: 1n }),
  ERR_LIMIT: () => new LimitExceededError('idstr of 300 bytes', { offset: 12, section, context: 'ram record', expected: 'at most 256' }),
  ERR_FRAMING: () => new FramingError('footer names section 3', { offset: 99, section, context: 'section footer', expected: 'section 2', actual: 3 }),
  ERR_VMDESC: () => new VmdescError('devices[3].fields[0].size', 'not a number'),
  ERR_ENCODE: () => new EncodeError('idstr longer than 255 bytes', { cause: new RangeError('too long') }),
  ERR_ARGUMENT: () => new ArgumentError('pageSize must be a power of two, got 3'),
  ERR_XBZRLE: () => new XbzrleError('run past the page', 17, { offset: 4096, section, context: 'XBZRLE delta of pc.ram+0x1000' }),
  ERR_ZLIB_PAGE: () => new ZlibPageError('not one zlib page', { offset: 8192, section }, new Error('incorrect header check')),
  ERR_CONTAINER_MAGIC: () => new ContainerMagicError('not a container', 0, { expected: 'MSZC', actual: 'QEVM' }),
  ERR_CONTAINER_CORRUPT: () => new CorruptFrameError('raw bytes fail their checksum', { frame: 17, offset: 4194368, kind: 'PAYLOAD' }, { expected: 'xxh32 0x1', actual: '0x2' }),
  ERR_CONTAINER_ORDER: () => new FrameOrderError('frame 5 after frame 3', { frame: 4, offset: 1000, kind: 'DATA' }, { expected: '4', actual: 5 }),
  ERR_CONTAINER_TRUNCATED: () => new TruncatedContainerError('no END frame', { frame: 9, offset: 5000 }),
  ERR_WORKER: () => new WorkerError('worker thread 1 exited unexpectedly (exit code 1)', { cause: new Error('boom') }),
  ERR_PROTOCOL: () => new ProtocolError('frame 4: 10 bytes stored, 12 announced', 1),
  ERR_HANDSHAKE: () => new HandshakeError('session id mismatch', 2),
  ERR_AUTH: () => new AuthError('client certificate required', 0, { cause: Object.assign(new Error('alert'), { code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED' }) }),
  ERR_CHANNEL: () => new ChannelError('the receiver reset the connection (ECONNRESET)', 3, { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) }),
  ERR_TIMEOUT: () => new TimeoutError('nothing received for 30 s', 1),
  ERR_CHECKSUM: () => new ChecksumError('the end frame counts 10 frames, 9 arrived'),
  ERR_PEER_ABORT: () => new PeerAbortError('the sender failed: disk full', 0),
  ERR_OUTPUT: () => new OutputError("recv's output is gone (EPIPE)", { cause: Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }) }),
  ERR_CREDENTIALS: () => new CredentialsError('/tls/ca-cert.pem is missing', { cause: enoent }),
  ERR_LISTEN: () => new ListenError('cannot listen on 0.0.0.0:4444: address in use', { cause: Object.assign(new Error('listen EADDRINUSE'), { code: 'EADDRINUSE' }) }),
  ERR_QEMU_LAUNCH: () => new QemuLaunchError('QEMU did not start', 'qemu: -m: bad size\n', { cause: enoent }),
  ERR_QEMU_EXITED: () => new QemuExitedError('waiting for QMP', { code: null, signal: 'SIGKILL' }, 'killed\n', 'last event: STOP'),
  ERR_QEMU_TIMEOUT: () => new QemuTimeoutError('waiting for the serial line', 5000, 'last line: booting'),
  ERR_QMP_CONNECTION: () => new QmpConnectionError('QMP socket closed', { cause: new Error('EOF') }),
  ERR_QMP: () => new QmpError('migrate-set-parameters', { 'max-bandwidth': 1 }, { class: 'GenericError', desc: 'bad value' }),
  ERR_MIGRATION_FAILED: () => new MigrationFailedError('migration failed', { status: 'failed', 'error-desc': 'socket closed' }),
  ERR_VM_STATE: () => new VmStateError('the VM is not running', 'paused'),
  ERR_LEVER_MISSING: () => new LeverMissingError('this QEMU has no block migration'),
  ERR_NOT_CONVERGED: () => new ConvergenceError('pre-copy did not converge in 60 s'),
  ERR_VERIFY: () => new VerifyError('2 pages differ', 2, [{ idstr: 'pc.ram', offset: 4096, guestPhysAddr: 4096 }]),
  ERR_DISK_MISSING: () => new DiskStreamMissingError('no disk stream came for drive disk0'),
  ERR_VERDICT_CHANNEL: () => new VerdictChannelError('the control port closed', { cause: new Error('ECONNRESET') }),
  ERR_VERDICT_PROTOCOL: () => new VerdictProtocolError('not a verdict: {"x":1}'),
  ERR_DIRTY_RATE: () => new DirtyRateError('calc-dirty-rate never finished', { cause: new Error('timeout') }),
  ERR_GUEST_MEMORY_READ: () => new GuestMemoryReadError('mkfifo failed'),
  ERR_SEND_STATS_PROTOCOL: () => new SendStatsProtocolError('not a stats line'),
  ERR_PAGE_HASH_FILE: () => new PageHashFileError('claims 2 GiB of hashes'),
  ERR_NBD_PROTOCOL: () => new NbdProtocolError('OFFSET_DATA of 70000 bytes lies outside the request', { peer: 'unix:/run/nbd.sock export "disk"', request: { command: 'READ', offset: 65536, length: 65536 } }),
  ERR_NBD_REFUSED: () => new NbdRefusedError('the server has no export "disk"', { peer: 'unix:/run/nbd.sock export "disk"', option: 'NBD_OPT_GO' }, 0x8000_0006, "export 'disk' not present"),
  ERR_NBD_COMMAND: () => new NbdCommandError(28, 'ENOSPC', 'No space left', { peer: 'tcp:127.0.0.1:10809 export ""', request: { command: 'WRITE', offset: 0, length: 4096 } }),
  ERR_NBD_CONNECTION: () => new NbdConnectionError('cannot connect: ENOENT', { peer: 'unix:/nope export ""' }, { cause: enoent }),
  ERR_NBD_TIMEOUT: () => new NbdTimeoutError('the server said nothing for 100 ms', 100, { peer: 'unix:/run/nbd.sock export ""', request: { command: 'FLUSH', offset: 0, length: 0 } }),
  ERR_DISK_EXTENTS: () =>
    new DiskExtentError("an extent of 4096 bytes runs past the drive's end at 65536", 'qemu:dirty-bitmap:b1', 61440, { drive: 'disk0', peer: 'unix:/run/src.sock export "migstream-disk0-export-1"' }),
  ERR_DISK_SIZE: () => new DiskSizeError("the destination's export is smaller than the source drive", 67108864, 33554432, { drive: 'disk0', peer: 'unix:/run/dst.sock export "migstream-disk0-sink"' }),
  ERR_DISK_MISMATCH: () =>
    new DiskMismatchError(
      2,
      [
        { chunk: 3, offset: 3145728 },
        { chunk: 9, offset: 9437184 },
      ],
      1048576,
      { drive: 'disk0', peer: 'unix:/run/src.sock export "r"', destination: 'unix:/run/dst.sock export "s"' },
    ),
  ERR_NATIVE_ADDON: () => new NativeAddonError('the native addon is not built: run npm install', { cause: enoent }),
  ERR_USAGE: () => new UsageError('unknown option --frob'),
  ERR_OPEN: () => new CannotOpenError('read', '/nope', enoent),
  ERR_OUTPUT_FULL: () => new OutputFullError('out.mig', 'ENOSPC', { cause: Object.assign(new Error('ENOSPC'), { code: 'ENOSPC' }) }),
  ERR_OUTPUT_STALLED: () => new OutputStalledError(30),
};

/** What a revived error must match: class name, message, own fields, cause (recursively). */
function shape(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const fields = Object.fromEntries(Object.entries(error).map(([key, value]) => [key, shape(value)]));
  return { class: error.constructor.name, message: error.message, stack: error.stack, fields, cause: Object.hasOwn(error, 'cause') ? shape(error.cause) : '(none)' };
}

describe('the catalogue', () => {
  test('docs/errors.md is what npm run docs:errors writes', () => {
    const written = readFileSync(join(ROOT, 'docs/errors.md'), 'utf8');
    expect(written, 'docs/errors.md is stale: run "npm run docs:errors"').toBe(renderErrorsDoc());
  });

  test('every class in the table exists, is exported from the package and carries its code', () => {
    expect(Object.keys(ERROR_CLASSES).sort()).toEqual(CODES.map((c) => ERRORS[c].class).sort());
    for (const code of CODES) {
      const entry = ERRORS[code];
      const Class = ERROR_CLASSES[entry.class];
      expect((pkg as Record<string, unknown>)[entry.class], `${entry.class} exported from src/index.ts`).toBe(Class);
      expect(Class.name).toBe(entry.class);
      expect(Object.getPrototypeOf(Class).name, `${entry.class} extends`).toBe(entry.extends);
      const sample = SAMPLES[code]();
      expect(sample).toBeInstanceOf(Class);
      expect(sample).toBeInstanceOf(MigstreamError);
      expect(sample.code).toBe(code);
      expect(sample.name).toBe(entry.class);
    }
  });

  test('every family is exported and extends what the table says', () => {
    for (const [name, family] of Object.entries(ERROR_FAMILIES)) {
      const Class = (pkg as Record<string, unknown>)[name] as abstract new () => unknown;
      expect(Class, `${name} exported from src/index.ts`).toBeTypeOf('function');
      expect(Object.getPrototypeOf(Class).name, `${name} extends`).toBe(family.extends);
    }
    expect(pkg.MigstreamError).toBe(MigstreamError);
  });

  test('every code literal in src/ is in the table, and every code in the table is used', () => {
    // Node's own codes, which src/ compares against (socket-errors.ts, args.ts, codecs.ts…).
    const nodeCodes = /^ERR_(SSL_|TLS_|PARSE_ARGS_|BUFFER_TOO_LARGE$)/;
    const found = new Map<string, string>();
    const walk = (dir: string): void => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (name.endsWith('.ts') && path !== join(ROOT, 'src/errors.ts')) {
          const text = readFileSync(path, 'utf8');
          for (const m of text.matchAll(/'(ERR_[A-Z0-9_]*)'|\bcode\s*[:=]\s*'([^']*)'/g)) {
            const code = m[1] ?? m[2]!;
            if (!nodeCodes.test(code)) found.set(code, path.slice(ROOT.length));
          }
        }
      }
    };
    walk(join(ROOT, 'src'));
    const missing = [...found].filter(([code]) => !Object.hasOwn(ERRORS, code)).map(([code, file]) => `${code} (${file})`);
    expect(missing, 'codes not in src/errors.ts ERRORS').toEqual([]);
    expect(
      CODES.filter((code) => !found.has(code)),
      'codes in the table that src/ never uses',
    ).toEqual([]);
  });
});

/**
 * Revives what it is sent with the built package, checks the class there, and posts it back
 * serialized again: each error crosses the boundary both ways.
 */
const ECHO = `
const { parentPort, workerData } = require('node:worker_threads');
const loaded = import(workerData.index);
parentPort.on('message', async (serialized) => {
  const pkg = await loaded;
  const revived = pkg.reviveError(serialized);
  const Class = pkg.ERROR_CLASSES[revived.name];
  parentPort.postMessage({
    className: revived.constructor.name,
    ownClass: Class !== undefined && revived instanceof Class && revived instanceof pkg.MigstreamError,
    again: pkg.serializeError(revived),
  });
});
`;

describe('across a worker_threads boundary', () => {
  let worker: Worker;
  const roundTrip = (serialized: SerializedError): Promise<{ className: string; ownClass: boolean; again: SerializedError }> =>
    new Promise((resolve, reject) => {
      const fail = (error: Error): void => reject(error);
      worker.once('error', fail);
      worker.once('message', (reply: { className: string; ownClass: boolean; again: SerializedError }) => {
        worker.off('error', fail);
        resolve(reply);
      });
      worker.postMessage(serialized);
    });

  beforeAllOrFail(() => {
    const index = join(ROOT, 'dist/index.js');
    if (!existsSync(join(ROOT, 'dist/errors.js'))) throw new Error('dist/ is missing: run "npm run build" first');
    worker = new Worker(ECHO, { eval: true, workerData: { index: pathToFileURL(index).href } });
  });
  afterAll(() => worker?.terminate());

  test.each(CODES)('%s comes back as its class, with its code, message, fields and cause', async (code) => {
    const sample = SAMPLES[code]();
    const back = await roundTrip(serializeError(sample));
    expect(back.className).toBe(ERRORS[code].class);
    expect(back.ownClass, 'instanceof its class in the worker (dist/)').toBe(true);
    const revived = reviveError(back.again);
    expect(revived).toBeInstanceOf(ERROR_CLASSES[ERRORS[code].class]);
    expect((revived as MigstreamError).code).toBe(code);
    expect(shape(revived)).toEqual(shape(sample));
  });

  test('a transport error posted by a channel worker comes back through transportErrorFrom as its class', async () => {
    const transport = CODES.filter((code) => SAMPLES[code]() instanceof TransportError);
    expect(transport).toHaveLength(10);
    for (const code of transport) {
      const sample = SAMPLES[code]() as TransportError;
      const revived = transportErrorFrom((await roundTrip(channelFailure(sample, 5))).again);
      expect(revived, code).toBeInstanceOf(ERROR_CLASSES[ERRORS[code].class]);
      expect(revived.code).toBe(code);
      // A worker's channel is added to an error that named none, as before.
      expect(revived.channel).toBe(sample.channel ?? 5);
      expect(revived.message).toBe(sample.channel === undefined ? `channel 5: ${sample.message}` : sample.message);
    }
  });

  test('built-in errors keep their class and Node code; anything else comes back as an Error', async () => {
    const range = reviveError((await roundTrip(serializeError(new RangeError('Array buffer allocation failed')))).again);
    expect(range).toBeInstanceOf(RangeError);
    expect(range.message).toBe('Array buffer allocation failed');
    const errno = reviveError((await roundTrip(serializeError(enoent))).again) as NodeJS.ErrnoException;
    expect(errno).toBeInstanceOf(Error);
    expect([errno.code, errno.syscall, errno.path, errno.message]).toEqual(['ENOENT', 'open', '/nope', enoent.message]);
    const thrownString = reviveError((await roundTrip(serializeError('a string'))).again);
    expect([thrownString.constructor, thrownString.message]).toEqual([Error, 'a string']);
  });
});

describe('a compression worker that threw', () => {
  const frame = { kind: 2, codec: 1, flags: 0, number: 7, rawLength: 100, storedLength: 50, rawChecksum: 0, storedChecksum: 0, offset: 640 } as const;
  const checksum = dataChecksum(2);

  test('an error of ours is rethrown as itself, not as a corrupt frame', () => {
    const error = failure({ ok: false, kind: 'internal', message: 'm', error: serializeError(new ArgumentError('copyBytes: bad source')) }, frame, checksum);
    expect(error).toBeInstanceOf(ArgumentError);
    expect(error.code).toBe('ERR_ARGUMENT');
  });

  test('any other exception is still told against the frame', () => {
    const error = failure({ ok: false, kind: 'internal', message: 'Array buffer allocation failed', error: serializeError(new RangeError('Array buffer allocation failed')) }, frame, checksum);
    expect(error).toBeInstanceOf(CorruptFrameError);
    expect(error.message).toContain('Array buffer allocation failed');
  });
});
