/**
 * Errors of the worker machinery:
 *
 *   MigstreamError
 *   └── WorkerError   a worker thread failed or exited   (ERR_WORKER)
 *
 * and what a worker threw, revived on this side (`thrownBy`).
 */
import { MigstreamError, registerErrorClasses, reviveError } from '../errors.js';
import type { FailureReply } from './protocol.js';

export class WorkerError extends MigstreamError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_WORKER', message, options);
  }
}

/**
 * What a worker threw while it handled a request (kind `internal`), revived as its own class
 * when it is one of ours: an ArgumentError or NativeAddonError is not a damaged frame.
 */
export function thrownBy(reply: FailureReply): MigstreamError | undefined {
  if (reply.kind !== 'internal' || reply.error === undefined) return undefined;
  const thrown = reviveError(reply.error);
  return thrown instanceof MigstreamError ? thrown : undefined;
}

registerErrorClasses({ WorkerError });
