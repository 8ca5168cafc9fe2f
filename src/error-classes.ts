/**
 * Every catalogued error class by name (src/errors.ts ERRORS), checked by the compiler: a class
 * added to the table and not here, or here and not in the table, does not build. Importing this
 * module registers them all for reviveError; each folder's error module also registers its own,
 * so a thread that loaded only those revives them. (src/migrate's classes are registered only
 * here.)
 */
import { registerErrorClasses, type ErrorClassName, type MigstreamError } from './errors.js';
import { CannotOpenError } from './cli/io.js';
import { OutputStalledError } from './cli/fd-io.js';
import { OutputFullError } from './cli/output-file.js';
import { UsageError } from './cli/args.js';
import { ContainerMagicError, CorruptFrameError, FrameOrderError, TruncatedContainerError } from './container/errors.js';
import { WorkerError } from './workers/errors.js';
import { DirtyRateError } from './migrate/dirty-rate.js';
import { ConvergenceError, LeverMissingError, VerifyError, VmStateError } from './migrate/errors.js';
import { GuestMemoryReadError } from './migrate/ram-reader.js';
import { SendStatsProtocolError } from './migrate/send-stats-wire.js';
import { PageHashFileError } from './migrate/stream-hashes.js';
import { VerdictChannelError } from './migrate/verdict-channel.js';
import { VerdictProtocolError } from './migrate/verdict-wire.js';
import { NativeAddonError } from './native/binding.js';
import { NbdCommandError, NbdConnectionError, NbdProtocolError, NbdRefusedError, NbdTimeoutError } from './nbd/errors.js';
import { MigrationFailedError, QemuExitedError, QemuLaunchError, QemuTimeoutError, QmpConnectionError, QmpError } from './qemu/errors.js';
import { XbzrleError, ZlibPageError } from './ram/errors.js';
import {
  ArgumentError,
  BadMagicError,
  EncodeError,
  FramingError,
  LimitExceededError,
  TruncatedStreamError,
  UnknownFlagError,
  VmdescError,
} from './stream/errors.js';
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
} from './tls/errors.js';

export const ERROR_CLASSES = {
  TruncatedStreamError,
  BadMagicError,
  UnknownFlagError,
  LimitExceededError,
  FramingError,
  VmdescError,
  EncodeError,
  ArgumentError,
  XbzrleError,
  ZlibPageError,
  ContainerMagicError,
  CorruptFrameError,
  FrameOrderError,
  TruncatedContainerError,
  WorkerError,
  ProtocolError,
  HandshakeError,
  AuthError,
  ChannelError,
  TimeoutError,
  ChecksumError,
  PeerAbortError,
  OutputError,
  CredentialsError,
  ListenError,
  QemuLaunchError,
  QemuExitedError,
  QemuTimeoutError,
  QmpConnectionError,
  QmpError,
  MigrationFailedError,
  VmStateError,
  LeverMissingError,
  ConvergenceError,
  VerifyError,
  VerdictChannelError,
  VerdictProtocolError,
  DirtyRateError,
  GuestMemoryReadError,
  SendStatsProtocolError,
  PageHashFileError,
  NbdProtocolError,
  NbdRefusedError,
  NbdCommandError,
  NbdConnectionError,
  NbdTimeoutError,
  NativeAddonError,
  UsageError,
  CannotOpenError,
  OutputFullError,
  OutputStalledError,
} as const satisfies { readonly [Name in ErrorClassName]: abstract new (...args: never[]) => MigstreamError };

registerErrorClasses(ERROR_CLASSES);
