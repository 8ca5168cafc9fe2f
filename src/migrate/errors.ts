/**
 * Errors of moving a VM (`migrate` / `incoming`).
 *
 *   MigstreamError
 *   └── MigrateError                  base                                        (ERR_MIGRATE)
 *       ├── VmStateError               the VM is not in the state the step needs  (ERR_VM_STATE)
 *       ├── LeverMissingError          this QEMU lacks an option that was asked for (ERR_LEVER_MISSING)
 *       ├── ConvergenceError           pre-copy did not converge in time          (ERR_NOT_CONVERGED)
 *       ├── VerifyError                the copy did not check out                 (ERR_VERIFY)
 *       └── DiskStreamMissingError     incoming --disk: a drive's disk stream never came or
 *                                      did not finish                             (ERR_DISK_MISSING)
 *   VerdictProtocolError               a control-port line that is not ours       (ERR_VERDICT_PROTOCOL)
 * QEMU's own failures stay QemuError subclasses (src/qemu/errors.ts).
 */
import { MigstreamError, MigstreamErrorWithStringCode } from '../errors.js';
import type { RamMismatch } from './ram-compare.js';

export class MigrateError extends MigstreamErrorWithStringCode {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export class VmStateError extends MigrateError {
  readonly status: string;
  constructor(message: string, status: string) {
    super('ERR_VM_STATE', message);
    this.status = status;
  }
}

export class LeverMissingError extends MigrateError {
  constructor(message: string) {
    super('ERR_LEVER_MISSING', message);
  }
}

export class ConvergenceError extends MigrateError {
  constructor(message: string) {
    super('ERR_NOT_CONVERGED', message);
  }
}

export class VerifyError extends MigrateError {
  readonly mismatches: number;
  readonly first: readonly RamMismatch[];
  constructor(message: string, mismatches: number, first: readonly RamMismatch[]) {
    super('ERR_VERIFY', message);
    this.mismatches = mismatches;
    this.first = first;
  }
}

export class DiskStreamMissingError extends MigrateError {
  constructor(message: string) {
    super('ERR_DISK_MISSING', message);
  }
}

/** A control-port line (verdict, link probe, disk) that is not one of ours. */
export class VerdictProtocolError extends MigstreamError {
  constructor(message: string) {
    super('ERR_VERDICT_PROTOCOL', message);
  }
}
