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
 *       └── CredentialsError    certificate files missing or unreadable             (ERR_CREDENTIALS)
 *
 * Errors cross the worker boundary as { code, message, channel } and are rebuilt with
 * `transportErrorFrom`, so the main thread throws the same class the worker saw.
 */
import { MigstreamError } from '../stream/errors.js';

export class TransportError extends MigstreamError {
  readonly channel: number | undefined;
  constructor(code: string, message: string, channel?: number, options?: { cause?: unknown }) {
    super(code, channel === undefined ? message : `channel ${channel}: ${message}`, options);
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

/** What a worker posts when it fails; `message` is without the "channel N:" prefix. */
export interface SerializedError {
  code: string;
  message: string;
  channel?: number | undefined;
}

const byCode: Record<string, new (message: string, channel?: number) => TransportError> = {
  ERR_PROTOCOL: ProtocolError,
  ERR_HANDSHAKE: HandshakeError,
  ERR_AUTH: AuthError,
  ERR_CHANNEL: ChannelError,
  ERR_TIMEOUT: TimeoutError,
  ERR_PEER_ABORT: PeerAbortError,
};

export function serializeError(error: unknown, channel?: number): SerializedError {
  if (error instanceof TransportError) {
    const prefix = error.channel === undefined ? '' : `channel ${error.channel}: `;
    const message = error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
    return { code: error.code, message, channel: error.channel ?? channel };
  }
  if (error instanceof MigstreamError) return { code: error.code, message: error.message, channel };
  return { code: 'ERR_CHANNEL', message: (error as Error).message ?? String(error), channel };
}

export function transportErrorFrom(serialized: SerializedError): TransportError {
  if (serialized.code === 'ERR_CHECKSUM') return new ChecksumError(serialized.message);
  const Class = byCode[serialized.code];
  if (Class !== undefined) return new Class(serialized.message, serialized.channel);
  return new TransportError(serialized.code, serialized.message, serialized.channel);
}
