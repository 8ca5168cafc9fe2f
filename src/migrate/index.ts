/**
 * Moving a VM from outside QEMU, for hypervisor tools that embed migstream: what the `migrate`
 * and `incoming` commands call. Each controller takes a connected QmpClient and the exec:
 * command QEMU should run (e.g. `migstream send …` / `migstream recv …`), reports progress
 * through `onEvent`, and throws a typed error (MigrateError, QemuError) with the VM left as the
 * module comments say: the source running, the destination not resumed.
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
export { ConvergenceError, LeverMissingError, MigrateError, VerifyError, VmStateError } from './errors.js';
export { QmpClient } from '../qemu/qmp.js';
