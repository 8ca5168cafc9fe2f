/**
 * Errors of the multi-channel transport (send/recv).
 *
 *   MigstreamError
 *   └── TransportError          base of this folder; `channel` when one channel is to blame
 *       ├── ProtocolError       bytes on a channel that are not our protocol        (ERR_PROTOCOL)
 *       ├── HandshakeError      session refused: version, session id, count, late   (ERR_HANDSHAKE)
 *       ├── AuthError           TLS authentication failed                          (ERR_AUTH)
 *       ├── ChannelError        a channel's socket failed or closed early           (ERR_CHANNEL)
 *       ├── TimeoutError        nothing heard within the timeout                    (ERR_TIMEOUT)
 *       ├── ChecksumError       the end frame's totals or checksum disagree         (ERR_CHECKSUM)
 *       ├── PeerAbortError      the other side reported its own failure             (ERR_PEER_ABORT)
 *       ├── OutputError         recv's output cannot take the stream (reader gone)  (ERR_OUTPUT)
 *       ├── CredentialsError    certificate files missing or unreadable             (ERR_CREDENTIALS)
 *       └── ListenError         the receiver cannot listen                          (ERR_LISTEN)
 *
 * Errors cross the worker boundary serialized (`channelFailure`, src/errors.ts serializeError)
 * and are revived with `transportErrorFrom`, so the main thread throws the same class the
 * worker saw, with its channel and cause.
 */
import { MigstreamError, registerErrorClasses, reviveError, serializeError, type CodeUnder, type SerializedError } from '../errors.js';

function channelMessage(message: string, channel: number | undefined): string {
  return channel === undefined ? message : `channel ${channel}: ${message}`;
}

export class TransportError extends MigstreamError {
  readonly channel: number | undefined;
  constructor(code: CodeUnder<'TransportError'>, message: string, channel?: number, options?: { cause?: unknown }) {
    super(code, channelMessage(message, channel), options);
    this.channel = channel;
  }
}

export class ProtocolError extends TransportError {
  constructor(message: string, channel?: number) {
    super('ERR_PROTOCOL', message, channel);
  }
}

export class HandshakeError extends TransportError {
  constructor(message: string, channel?: number) {
    super('ERR_HANDSHAKE', message, channel);
  }
}

export class AuthError extends TransportError {
  constructor(message: string, channel?: number, options?: { cause?: unknown }) {
    super('ERR_AUTH', message, channel, options);
  }
}

export class ChannelError extends TransportError {
  constructor(message: string, channel?: number, options?: { cause?: unknown }) {
    super('ERR_CHANNEL', message, channel, options);
  }
}

export class TimeoutError extends TransportError {
  constructor(message: string, channel?: number) {
    super('ERR_TIMEOUT', message, channel);
  }
}

export class ChecksumError extends TransportError {
  constructor(message: string) {
    super('ERR_CHECKSUM', message);
  }
}

export class PeerAbortError extends TransportError {
  constructor(message: string, channel?: number) {
    super('ERR_PEER_ABORT', message, channel);
  }
}

export class OutputError extends TransportError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_OUTPUT', message, undefined, options);
  }
}

export class CredentialsError extends TransportError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CREDENTIALS', message, undefined, options);
  }
}

/** The receiver cannot listen (port in use, address not on this host): a start-up failure. */
export class ListenError extends TransportError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_LISTEN', message, undefined, options);
  }
}

/** This folder's catalogued classes (src/error-classes.ts gathers every folder's). */
export const TRANSPORT_ERROR_CLASSES = {
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
} as const;

registerErrorClasses(TRANSPORT_ERROR_CLASSES);

/**
 * What a channel worker posts when it fails (src/errors.ts serializeError): `error` is already
 * a transport error (socket-errors.ts); one that names no channel is told as the worker's
 * `channel`, when it has one.
 */
export function channelFailure(error: TransportError, channel?: number): SerializedError {
  const serialized = serializeError(error);
  if (error.channel !== undefined || channel === undefined) return serialized;
  return { ...serialized, message: channelMessage(error.message, channel), fields: { ...serialized.fields, channel } };
}

/** The error a channel worker posted, as the class it threw (any other error: a ChannelError). */
export function transportErrorFrom(serialized: SerializedError): TransportError {
  const error = reviveError(serialized);
  if (error instanceof TransportError) return error;
  const channel = serialized.fields['channel'];
  return new ChannelError(error.message, typeof channel === 'number' ? channel : undefined, { cause: error });
}
