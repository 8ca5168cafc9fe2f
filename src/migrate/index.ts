/**
 * Moving a VM from outside QEMU, for hypervisor tools that embed migstream: what the `migrate`
 * and `incoming` commands call. Each controller takes a connected QmpClient and the exec:
 * command QEMU should run (e.g. `migstream send …` / `migstream recv …`), reports progress
 * through `onEvent`, and throws a typed error (MigrateError, QemuError) with the VM left as the
 * module comments say: the source running, the destination not resumed. With drives to move
 * (`--disk`), DiskMover runs around migrateSource (converge before it, `beforeSwitchover` for the
 * last pass and the check) and DiskReceiver takes them on the destination's control port.
 */
export { migrateSource, assertMigratable, type SourceOptions, type SourceResult, type MigrateEvent, type TransportBytes } from './source.js';
export { receiveMigration, type DestinationOptions, type DestinationResult, type IncomingEvent } from './destination.js';
export { probeSource, formatProbe, type ProbeOptions, type ProbeReport } from './probe.js';
export { predictMigration, type Prediction, type PredictOptions, type ProbeResult } from './predict.js';
export { readLevers, type Levers } from './levers.js';
export { verifySource, verifyDestination, type VerifyOutcome } from './verify.js';
export { detectionProbability } from './verify-sample.js';
export { VerdictListener, probeLink, type LinkRate } from './verdict-channel.js';
export { buildMigrateReport, formatMigrateReport, type MigrateReport } from './report.js';
export { DiskMover, type DiskMoverOptions, type DiskEvent, type DiskMoveReport, type DriveReport } from './disk-mover.js';
export { DiskReceiver, type DriveArrival, type DiskReceiveEvent } from './disk-receiver.js';
export { DiskPolicy, readyBytesForLink, type DiskDecision, type DiskPassSample } from './disk-policy.js';
export { ConvergenceError, DiskStreamMissingError, LeverMissingError, MigrateError, VerifyError, VmStateError } from './errors.js';
export { QmpClient } from '../qemu/qmp.js';
