/**
 * Every catalogued error class by name (src/errors.ts ERRORS): each folder's set as its error
 * module exports it, and the classes of folders that keep theirs beside the code that throws
 * them. A class in the table and not here does not build; one here and not in the table fails
 * test/errors.test.ts. Importing this
 * module registers them all for reviveError; each folder's error module also registers its own,
 * so a thread that loaded only those revives them. (src/migrate's classes are registered only
 * here.)
 */
import { registerErrorClasses, type ErrorClassName, type MigstreamError } from './errors.js';
import { CannotOpenError } from './cli/io.js';
import { OutputStalledError } from './cli/fd-io.js';
import { OutputFullError } from './cli/output-file.js';
import { UsageError } from './cli/args.js';
import { CONTAINER_ERROR_CLASSES } from './container/errors.js';
import { WorkerError } from './workers/errors.js';
import { DirtyRateError } from './migrate/dirty-rate.js';
import { ConvergenceError, DiskStreamMissingError, LeverMissingError, VerifyError, VmStateError } from './migrate/errors.js';
import { GuestMemoryReadError } from './migrate/ram-reader.js';
import { SendStatsProtocolError } from './migrate/send-stats-wire.js';
import { PageHashFileError } from './migrate/stream-hashes.js';
import { VerdictChannelError } from './migrate/verdict-channel.js';
import { VerdictProtocolError } from './migrate/verdict-wire.js';
import { NativeAddonError } from './native/binding.js';
import { NBD_ERROR_CLASSES } from './nbd/errors.js';
import { DISK_ERROR_CLASSES } from './disk/errors.js';
import { QEMU_ERROR_CLASSES } from './qemu/errors.js';
import { RAM_ERROR_CLASSES } from './ram/errors.js';
import { STREAM_ERROR_CLASSES } from './stream/errors.js';
import { TRANSPORT_ERROR_CLASSES } from './tls/errors.js';

export const ERROR_CLASSES = {
  ...STREAM_ERROR_CLASSES,
  ...RAM_ERROR_CLASSES,
  ...CONTAINER_ERROR_CLASSES,
  WorkerError,
  ...TRANSPORT_ERROR_CLASSES,
  ...QEMU_ERROR_CLASSES,
  VmStateError,
  LeverMissingError,
  ConvergenceError,
  VerifyError,
  DiskStreamMissingError,
  VerdictChannelError,
  VerdictProtocolError,
  DirtyRateError,
  GuestMemoryReadError,
  SendStatsProtocolError,
  PageHashFileError,
  ...NBD_ERROR_CLASSES,
  ...DISK_ERROR_CLASSES,
  NativeAddonError,
  UsageError,
  CannotOpenError,
  OutputFullError,
  OutputStalledError,
} as const satisfies { readonly [Name in ErrorClassName]: abstract new (...args: never[]) => MigstreamError };

registerErrorClasses(ERROR_CLASSES);
