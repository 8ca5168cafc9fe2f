/**
 * Errors of the NBD client (src/nbd). Each names the peer (`unix:/path` or `tcp:host:port`
 * and the export) and, when one is to blame, the request: its command, offset and length, or
 * the option being negotiated.
 *
 *   MigstreamError
 *   └── NbdError                 base of this folder: `peer`, `request`, `option`
 *       ├── NbdProtocolError     the server broke the protocol: bad magic, a reply for another
 *       │                        option or request, a chunk out of range, extents that do not
 *       │                        advance, a length past a sane bound         (ERR_NBD_PROTOCOL)
 *       ├── NbdRefusedError      the server refused an option: no such export, no such meta
 *       │                        context, no structured replies             (ERR_NBD_REFUSED)
 *       ├── NbdCommandError      the server answered a request with an error (ERR_NBD_COMMAND)
 *       ├── NbdConnectionError   cannot connect, or the socket failed or closed (mid-reply)
 *       │                                                                    (ERR_NBD_CONNECTION)
 *       └── NbdTimeoutError      the server said nothing within the timeout (ERR_NBD_TIMEOUT)
 *
 * A protocol, connection or timeout error ends the connection and fails every request in
 * flight; a command error fails its request only.
 */
import { hex } from '../bytes/hex.js';
import { MigstreamError, registerErrorClasses, type CodeUnder } from '../errors.js';

/** The request an error is about, as the client sent it. */
export interface NbdRequestRef {
  readonly command: string;
  readonly offset: number;
  readonly length: number;
}

export interface NbdErrorContext {
  /** `unix:/run/x.sock export "disk"` or `tcp:127.0.0.1:10809 export ""`. */
  readonly peer: string;
  readonly request?: NbdRequestRef | undefined;
  /** The option being negotiated: `NBD_OPT_GO`… */
  readonly option?: string | undefined;
}

/** `READ offset 0x100000 length 65536`. */
export function describeRequest(request: NbdRequestRef): string {
  return `${request.command} offset ${hex(request.offset)} length ${request.length}`;
}

function contextMessage(message: string, context: NbdErrorContext): string {
  const about = context.request !== undefined ? `: ${describeRequest(context.request)}` : context.option !== undefined ? `: ${context.option}` : '';
  return `nbd ${context.peer}${about}: ${message}`;
}

export class NbdError extends MigstreamError {
  readonly peer: string;
  readonly request: NbdRequestRef | undefined;
  readonly option: string | undefined;
  constructor(code: CodeUnder<'NbdError'>, message: string, context: NbdErrorContext, options?: { cause?: unknown }) {
    super(code, contextMessage(message, context), options);
    this.peer = context.peer;
    this.request = context.request;
    this.option = context.option;
  }
}

export class NbdProtocolError extends NbdError {
  constructor(message: string, context: NbdErrorContext) {
    super('ERR_NBD_PROTOCOL', message, context);
  }
}

export class NbdRefusedError extends NbdError {
  /** The option reply type (NBD_REP_ERR_*), or undefined when the refusal is ours to tell. */
  readonly replyType: number | undefined;
  /** What the server said, if anything. */
  readonly serverMessage: string;
  constructor(message: string, context: NbdErrorContext, replyType?: number, serverMessage = '') {
    super('ERR_NBD_REFUSED', serverMessage ? `${message}: "${serverMessage}"` : message, context);
    this.replyType = replyType;
    this.serverMessage = serverMessage;
  }
}

export class NbdCommandError extends NbdError {
  /** The NBD error value (errno numbering: 5 EIO, 28 ENOSPC…). */
  readonly errno: number;
  /** Its name, or `errno N` for a value the protocol does not define. */
  readonly errnoName: string;
  readonly serverMessage: string;
  constructor(errno: number, errnoName: string, serverMessage: string, context: NbdErrorContext) {
    super('ERR_NBD_COMMAND', `the server failed the request with ${errnoName}${serverMessage ? `: "${serverMessage}"` : ''}`, context);
    this.errno = errno;
    this.errnoName = errnoName;
    this.serverMessage = serverMessage;
  }
}

export class NbdConnectionError extends NbdError {
  constructor(message: string, context: NbdErrorContext, options?: { cause?: unknown }) {
    super('ERR_NBD_CONNECTION', message, context, options);
  }
}

export class NbdTimeoutError extends NbdError {
  readonly timeoutMs: number;
  constructor(message: string, timeoutMs: number, context: NbdErrorContext) {
    super('ERR_NBD_TIMEOUT', message, context);
    this.timeoutMs = timeoutMs;
  }
}

/** This folder's catalogued classes (src/error-classes.ts gathers every folder's). */
export const NBD_ERROR_CLASSES = { NbdProtocolError, NbdRefusedError, NbdCommandError, NbdConnectionError, NbdTimeoutError } as const;

registerErrorClasses(NBD_ERROR_CLASSES);
