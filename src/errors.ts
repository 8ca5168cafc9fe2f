/**
 * Every error migstream throws: the base class, the catalogue of codes, and how an error
 * crosses a worker-thread boundary.
 *
 * - `MigstreamError` is the base; its `code` is one of the catalogue's (`ErrorCode`).
 * - `ERRORS` lists every code: the class that carries it (each folder keeps its own classes:
 *   src/stream/errors.ts, src/tls/errors.ts…), the folder, what it means and the status the
 *   CLI exits with when it ends a command. `ERROR_FAMILIES` are the intermediate classes that
 *   carry no code of their own (DecodeError names a byte offset, TransportError a channel…).
 *   docs/errors.md is generated from both (`npm run docs:errors`); test/errors.test.ts checks
 *   the doc, the classes and the source's code literals against them.
 * - `serializeError` / `reviveError`: a worker posts `serializeError(error)` and the main thread
 *   throws `reviveError(posted)`, an instance of the class the worker threw, with its code,
 *   message, own fields (offset, section, frame, channel…) and cause. A class is revived when
 *   its module was loaded in the reviving thread (each error module registers its classes;
 *   src/error-classes.ts registers them all); otherwise it comes back as a MigstreamError with
 *   the same code and fields.
 */

/** What the CLI does with an error that ends a command (src/cli/main.ts, CONTRIBUTING.md). */
export type ExitStatus = 1 | 2;

export interface ErrorEntry {
  /** The class carrying the code, in `folder`. */
  readonly class: string;
  /** The class it extends: MigstreamError or one of ERROR_FAMILIES. */
  readonly extends: string;
  /** Folder under src/ that defines the class. */
  readonly folder: string;
  /** One line: what went wrong. */
  readonly meaning: string;
  /** The exit status of a command this error ends: 1 the run failed, 2 bad usage. */
  readonly exit: ExitStatus;
}

/** Classes between MigstreamError and the coded classes; they carry no code of their own. */
export const ERROR_FAMILIES = {
  DecodeError: {
    extends: 'MigstreamError',
    folder: 'stream',
    meaning: 'bytes that are not a valid migration stream: names the byte offset, the section and what was expected',
  },
  ContainerError: {
    extends: 'DecodeError',
    folder: 'container',
    meaning: 'bytes that are not a valid container (docs/container.md): names the frame and its offset',
  },
  TransportError: {
    extends: 'MigstreamError',
    folder: 'tls',
    meaning: 'the multi-channel transport (send/recv) failed: names the channel when one is to blame',
  },
  QemuError: {
    extends: 'MigstreamError',
    folder: 'qemu',
    meaning: 'driving a real QEMU failed',
  },
  MigrateError: {
    extends: 'MigstreamError',
    folder: 'migrate',
    meaning: "moving a VM (migrate/incoming) failed; QEMU's own failures stay QemuError",
  },
  NbdError: {
    extends: 'MigstreamError',
    folder: 'nbd',
    meaning: 'the NBD client failed: names the peer and export, and the request (command, offset, length) or option',
  },
  DiskError: {
    extends: 'MigstreamError',
    folder: 'disk',
    meaning: 'the disk path (source, sink, consistency check) failed: names the drive, the NBD export and the offset',
  },
} as const;

export type ErrorFamilyName = keyof typeof ERROR_FAMILIES;

/** Every code migstream throws. Codes never change: users and tests match on them. */
export const ERRORS = {
  // src/stream
  ERR_TRUNCATED: { class: 'TruncatedStreamError', extends: 'DecodeError', folder: 'stream', meaning: 'the input ended inside a record', exit: 1 },
  ERR_BAD_MAGIC: { class: 'BadMagicError', extends: 'DecodeError', folder: 'stream', meaning: 'not "QEVM", or a stream version we do not read', exit: 1 },
  ERR_UNKNOWN_FLAG: { class: 'UnknownFlagError', extends: 'DecodeError', folder: 'stream', meaning: 'flag bits or a type byte we do not know', exit: 1 },
  ERR_LIMIT: { class: 'LimitExceededError', extends: 'DecodeError', folder: 'stream', meaning: 'a length past any sane bound', exit: 1 },
  ERR_FRAMING: { class: 'FramingError', extends: 'DecodeError', folder: 'stream', meaning: 'footer, section id or CONTINUE inconsistencies', exit: 1 },
  ERR_VMDESC: { class: 'VmdescError', extends: 'MigstreamError', folder: 'stream', meaning: 'a vmdesc JSON not shaped as QEMU writes it; names the JSON path', exit: 1 },
  ERR_ENCODE: { class: 'EncodeError', extends: 'MigstreamError', folder: 'stream', meaning: 'a record that cannot be written', exit: 1 },
  ERR_ARGUMENT: { class: 'ArgumentError', extends: 'MigstreamError', folder: 'stream', meaning: 'a bad argument at an API boundary (also from the native addon)', exit: 1 },
  // src/ram
  ERR_XBZRLE: { class: 'XbzrleError', extends: 'DecodeError', folder: 'ram', meaning: 'an XBZRLE delta that xbzrle_decode_buffer would reject', exit: 1 },
  ERR_ZLIB_PAGE: { class: 'ZlibPageError', extends: 'DecodeError', folder: 'ram', meaning: 'a COMPRESS_PAGE payload that is not one zlib page', exit: 1 },
  // src/container, src/workers
  ERR_CONTAINER_MAGIC: { class: 'ContainerMagicError', extends: 'ContainerError', folder: 'container', meaning: 'not a container, or a container version we do not read', exit: 1 },
  ERR_CONTAINER_CORRUPT: { class: 'CorruptFrameError', extends: 'ContainerError', folder: 'container', meaning: "a frame's checksum, length, codec or layout is wrong", exit: 1 },
  ERR_CONTAINER_ORDER: { class: 'FrameOrderError', extends: 'ContainerError', folder: 'container', meaning: 'a frame number or kind out of sequence', exit: 1 },
  ERR_CONTAINER_TRUNCATED: { class: 'TruncatedContainerError', extends: 'ContainerError', folder: 'container', meaning: 'the container ends before its END frame', exit: 1 },
  ERR_WORKER: { class: 'WorkerError', extends: 'MigstreamError', folder: 'workers', meaning: 'a compression worker thread failed or exited', exit: 1 },
  // src/tls
  ERR_PROTOCOL: { class: 'ProtocolError', extends: 'TransportError', folder: 'tls', meaning: 'bytes on a channel that are not our protocol', exit: 1 },
  ERR_HANDSHAKE: { class: 'HandshakeError', extends: 'TransportError', folder: 'tls', meaning: 'session refused: version, session id, channel count, or too late', exit: 1 },
  ERR_AUTH: { class: 'AuthError', extends: 'TransportError', folder: 'tls', meaning: 'TLS authentication failed', exit: 1 },
  ERR_CHANNEL: { class: 'ChannelError', extends: 'TransportError', folder: 'tls', meaning: "a channel's socket failed or closed early", exit: 1 },
  ERR_TIMEOUT: { class: 'TimeoutError', extends: 'TransportError', folder: 'tls', meaning: 'nothing heard within the timeout', exit: 1 },
  ERR_CHECKSUM: { class: 'ChecksumError', extends: 'TransportError', folder: 'tls', meaning: "the end frame's totals or checksum disagree with what arrived", exit: 1 },
  ERR_PEER_ABORT: { class: 'PeerAbortError', extends: 'TransportError', folder: 'tls', meaning: 'the other side reported its own failure', exit: 1 },
  ERR_OUTPUT: { class: 'OutputError', extends: 'TransportError', folder: 'tls', meaning: "recv's output cannot take the stream (its reader is gone)", exit: 1 },
  ERR_CREDENTIALS: {
    class: 'CredentialsError',
    extends: 'TransportError',
    folder: 'tls',
    meaning: 'certificate files missing, unreadable or not matching; told as bad usage when a command loads them (certs: exit 1)',
    exit: 2,
  },
  ERR_LISTEN: { class: 'ListenError', extends: 'TransportError', folder: 'tls', meaning: 'the receiver cannot listen (port in use, address not on this host)', exit: 1 },
  // src/qemu
  ERR_QEMU_LAUNCH: { class: 'QemuLaunchError', extends: 'QemuError', folder: 'qemu', meaning: 'QEMU failed to start or exited at once; keeps its stderr', exit: 1 },
  ERR_QEMU_EXITED: { class: 'QemuExitedError', extends: 'QemuError', folder: 'qemu', meaning: 'QEMU exited while we waited on it; keeps its exit code, signal and stderr', exit: 1 },
  ERR_QEMU_TIMEOUT: { class: 'QemuTimeoutError', extends: 'QemuError', folder: 'qemu', meaning: 'a wait on QMP, the serial console or a migration timed out', exit: 1 },
  ERR_QMP_CONNECTION: { class: 'QmpConnectionError', extends: 'QemuError', folder: 'qemu', meaning: 'the QMP socket closed or spoke garbage', exit: 1 },
  ERR_QMP: { class: 'QmpError', extends: 'QemuError', folder: 'qemu', meaning: 'QMP answered a command with an error; keeps the command, its arguments and the reply', exit: 1 },
  ERR_MIGRATION_FAILED: { class: 'MigrationFailedError', extends: 'QemuError', folder: 'qemu', meaning: 'query-migrate ended in "failed"', exit: 1 },
  // src/migrate
  ERR_VM_STATE: { class: 'VmStateError', extends: 'MigrateError', folder: 'migrate', meaning: 'the VM is not in the state the step needs', exit: 1 },
  ERR_LEVER_MISSING: { class: 'LeverMissingError', extends: 'MigrateError', folder: 'migrate', meaning: 'this QEMU lacks an option that was asked for', exit: 1 },
  ERR_NOT_CONVERGED: { class: 'ConvergenceError', extends: 'MigrateError', folder: 'migrate', meaning: 'pre-copy did not converge in time', exit: 1 },
  ERR_VERIFY: { class: 'VerifyError', extends: 'MigrateError', folder: 'migrate', meaning: 'the copy did not check out; keeps the mismatch count and the first mismatches', exit: 1 },
  ERR_DISK_MISSING: { class: 'DiskStreamMissingError', extends: 'MigrateError', folder: 'migrate', meaning: "incoming --disk: a drive's disk stream never came, or did not finish arriving", exit: 1 },
  ERR_VERDICT_CHANNEL: { class: 'VerdictChannelError', extends: 'MigrateError', folder: 'migrate', meaning: 'the control port to the other side failed', exit: 1 },
  ERR_VERDICT_PROTOCOL: { class: 'VerdictProtocolError', extends: 'MigstreamError', folder: 'migrate', meaning: 'a control-port message that is not ours', exit: 1 },
  ERR_DIRTY_RATE: { class: 'DirtyRateError', extends: 'MigstreamError', folder: 'migrate', meaning: 'the dirty-rate probe failed', exit: 1 },
  ERR_GUEST_MEMORY_READ: { class: 'GuestMemoryReadError', extends: 'MigstreamError', folder: 'migrate', meaning: 'reading guest memory through pmemsave failed', exit: 1 },
  ERR_SEND_STATS_PROTOCOL: { class: 'SendStatsProtocolError', extends: 'MigstreamError', folder: 'migrate', meaning: "a message on send's stats socket that is not ours", exit: 1 },
  ERR_PAGE_HASH_FILE: { class: 'PageHashFileError', extends: 'MigstreamError', folder: 'migrate', meaning: 'a page-hash file that is not one we write', exit: 1 },
  // src/nbd
  ERR_NBD_PROTOCOL: {
    class: 'NbdProtocolError',
    extends: 'NbdError',
    folder: 'nbd',
    meaning: 'the NBD server broke the protocol: bad magic, a reply for another option or request, a chunk or extent out of range, a length past a sane bound',
    exit: 1,
  },
  ERR_NBD_REFUSED: { class: 'NbdRefusedError', extends: 'NbdError', folder: 'nbd', meaning: 'the NBD server refused an option: no such export or meta context, no structured replies', exit: 1 },
  ERR_NBD_COMMAND: { class: 'NbdCommandError', extends: 'NbdError', folder: 'nbd', meaning: 'the NBD server failed a request (EIO, ENOSPC, EINVAL…); keeps the error value and its message', exit: 1 },
  ERR_NBD_CONNECTION: { class: 'NbdConnectionError', extends: 'NbdError', folder: 'nbd', meaning: 'the NBD socket cannot connect, failed, or closed before a reply was whole', exit: 1 },
  ERR_NBD_TIMEOUT: { class: 'NbdTimeoutError', extends: 'NbdError', folder: 'nbd', meaning: 'the NBD server said nothing within the timeout', exit: 1 },
  // src/disk
  ERR_DISK_EXTENTS: {
    class: 'DiskExtentError',
    extends: 'DiskError',
    folder: 'disk',
    meaning: 'a block status answer that does not describe the drive: extents out of range, overlapping, leaving a gap or not adding up to the length asked',
    exit: 1,
  },
  ERR_DISK_SIZE: { class: 'DiskSizeError', extends: 'DiskError', folder: 'disk', meaning: 'a drive of the wrong size: the destination export smaller than the source, or a drive resized mid-run', exit: 1 },
  ERR_DISK_MISMATCH: { class: 'DiskMismatchError', extends: 'DiskError', folder: 'disk', meaning: 'the disk consistency check found chunks that differ; keeps their count and the first ones', exit: 1 },
  // src/native
  ERR_NATIVE_ADDON: { class: 'NativeAddonError', extends: 'MigstreamError', folder: 'native', meaning: 'the native addon cannot be loaded (not built, or built for another Node)', exit: 1 },
  // src/cli
  ERR_USAGE: { class: 'UsageError', extends: 'MigstreamError', folder: 'cli', meaning: 'bad usage: unknown option, missing or bad value, an output that is the input', exit: 2 },
  ERR_OPEN: { class: 'CannotOpenError', extends: 'MigstreamError', folder: 'cli', meaning: 'a file that cannot be opened; names the path', exit: 1 },
  ERR_OUTPUT_FULL: { class: 'OutputFullError', extends: 'MigstreamError', folder: 'cli', meaning: 'the output has no room left (ENOSPC, EDQUOT, EFBIG)', exit: 1 },
  ERR_OUTPUT_STALLED: { class: 'OutputStalledError', extends: 'MigstreamError', folder: 'cli', meaning: "the output's reader stopped reading", exit: 1 },
} as const satisfies Record<`ERR_${string}`, ErrorEntry>;

export type ErrorCode = keyof typeof ERRORS;
/** The name of a class that carries a code. */
export type ErrorClassName = (typeof ERRORS)[ErrorCode]['class'];
/** The code `Name` carries. */
export type CodeOf<Name extends ErrorClassName> = { [C in ErrorCode]: (typeof ERRORS)[C]['class'] extends Name ? C : never }[ErrorCode];

type FamilyParent<Name> = Name extends ErrorFamilyName ? (typeof ERROR_FAMILIES)[Name]['extends'] : never;
/** The codes of the classes under `Family`, two levels down (DecodeError includes ContainerError's). */
export type CodeUnder<Family extends ErrorFamilyName> = {
  [C in ErrorCode]: Family extends (typeof ERRORS)[C]['extends'] | FamilyParent<(typeof ERRORS)[C]['extends']> ? C : never;
}[ErrorCode];

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERRORS, code);
}

export class MigstreamError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * The base for a family whose constructor still takes its subclasses' codes as plain strings
 * (MigrateError in src/migrate/errors.ts). The same class as MigstreamError at run time; the
 * codes its subclasses pass are checked against ERRORS by test/errors.test.ts instead.
 */
export const MigstreamErrorWithStringCode = MigstreamError as unknown as new (code: string, message: string, options?: { cause?: unknown }) => MigstreamError;

// ---- crossing a worker boundary ----

/** What crosses a thread boundary (postMessage's structured clone) in place of an error. */
export interface SerializedError {
  /** The class name thrown: 'ChannelError', 'RangeError'… */
  readonly name: string;
  /** Its message, whole (a TransportError's includes its "channel N: "). */
  readonly message: string;
  /** A catalogued code, or the code a Node error carried ('ECONNRESET'…). */
  readonly code?: string | undefined;
  readonly stack?: string | undefined;
  /** The error's own fields other than name, message, code and stack: offset, section, channel… */
  readonly fields: Readonly<Record<string, unknown>>;
  /** The cause, when there is one: an error itself, or any other value. */
  readonly cause?: { readonly error: SerializedError } | { readonly value: unknown } | undefined;
}

type ErrorClass = abstract new (...args: never[]) => MigstreamError;

const registry = new Map<string, ErrorClass>();

/** Makes classes revivable in this thread; called by each module that defines them. */
export function registerErrorClasses(classes: { readonly [Name in ErrorClassName]?: ErrorClass }): void {
  for (const [name, Class] of Object.entries(classes)) if (Class !== undefined) registry.set(name, Class);
}

/** The registered class of a catalogued code, if its module was loaded in this thread. */
export function errorClassOf(code: ErrorCode): ErrorClass | undefined {
  return registry.get(ERRORS[code].class);
}

const OWN = new Set(['name', 'message', 'code', 'stack', 'cause']);

/** `value` in a form postMessage can clone: functions, symbols and class instances as text. */
function cloneable(value: unknown, seen: Set<object>): unknown {
  if (value === null || typeof value !== 'object') {
    return typeof value === 'function' || typeof value === 'symbol' ? String(value) : value;
  }
  if (seen.has(value)) return '[Circular]';
  if (value instanceof Error) return serialize(value, seen);
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer || value instanceof Date || value instanceof RegExp) return value;
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((item) => cloneable(item, seen));
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) return String(value);
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, cloneable(item, seen)]));
  } finally {
    seen.delete(value);
  }
}

function serialize(error: unknown, seen: Set<object>): SerializedError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error), fields: {} };
  seen.add(error);
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(error)) if (!OWN.has(key)) fields[key] = cloneable(value, seen);
  const code = (error as { code?: unknown }).code;
  let cause: SerializedError['cause'];
  if (Object.hasOwn(error, 'cause')) {
    cause = error.cause instanceof Error ? { error: serialize(error.cause, seen) } : { value: cloneable(error.cause, seen) };
  }
  seen.delete(error);
  return { name: error.name, message: error.message, code: typeof code === 'string' ? code : undefined, stack: error.stack, fields, cause };
}

/** An error as it can be posted to another thread; `reviveError` makes it an error again. */
export function serializeError(error: unknown): SerializedError {
  return serialize(error, new Set());
}

const BUILT_IN: Readonly<Record<string, ErrorConstructor>> = {
  Error,
  RangeError,
  TypeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

function define(target: object, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, writable: true, enumerable: false, configurable: true });
}

/**
 * The error `serialized` describes, as an instance of its own class: the catalogued class of
 * its code when registered here (else MigstreamError), a built-in error class by name, or Error.
 * No constructor runs: the message, code, fields and cause are the ones the thrower set.
 */
export function reviveError(serialized: SerializedError): Error {
  const { code } = serialized;
  let proto: object;
  if (isErrorCode(code)) proto = (errorClassOf(code) ?? MigstreamError).prototype;
  else proto = (BUILT_IN[serialized.name] ?? Error).prototype;
  const error = Object.create(proto) as Error;
  define(error, 'message', serialized.message);
  if (serialized.stack !== undefined) define(error, 'stack', serialized.stack);
  if (proto instanceof MigstreamError || proto === MigstreamError.prototype) {
    // As the MigstreamError constructor sets them: own, enumerable.
    Object.assign(error, { code, name: serialized.name });
  } else {
    if (serialized.name !== (proto as Error).name) define(error, 'name', serialized.name);
    if (code !== undefined) Object.assign(error, { code });
  }
  Object.assign(error, reviveFields(serialized.fields));
  if (serialized.cause !== undefined) {
    define(error, 'cause', 'error' in serialized.cause ? reviveError(serialized.cause.error) : serialized.cause.value);
  }
  return error;
}

function isSerializedError(value: unknown): value is SerializedError {
  const v = value as SerializedError;
  return typeof v === 'object' && v !== null && typeof v.name === 'string' && typeof v.message === 'string' && typeof v.fields === 'object';
}

/** Errors held in fields (serialized by `cloneable`) come back as errors. */
function reviveFields(fields: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(fields)) out[key] = isSerializedError(value) ? reviveError(value) : value;
  return out;
}
