/**
 * Turns socket and TLS failures into transport errors with one clear sentence. OpenSSL codes
 * arrive as ERR_SSL_* (alerts from the peer) or as X.509 verification codes.
 */
import { AuthError, ChannelError, TransportError } from './errors.js';

const VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

export function socketError(error: unknown, channel: number, peer: 'sender' | 'receiver'): TransportError {
  if (error instanceof TransportError) return error;
  const err = error as NodeJS.ErrnoException;
  const code = err.code ?? '';
  const text = err.message ?? String(error);
  if (VERIFY_CODES.has(code)) return new AuthError(`the ${peer}'s certificate was rejected: ${text} (${code})`, channel, { cause: error });
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_HTTP_REQUEST') {
    return new AuthError(`the ${peer} does not speak TLS (a plaintext --insecure peer against a TLS one?)`, channel, { cause: error });
  }
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' || code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') {
    return new AuthError('client certificate required: the sender presented none (give --tls DIR, or --tls-cert and --tls-key)', channel, { cause: error });
  }
  if (code.startsWith('ERR_SSL_') && /ALERT|CERTIFICATE|VERIFY/.test(code)) {
    return new AuthError(`TLS authentication failed: ${text.replace(/^.*routines:/, '').trim()} (${code})`, channel, { cause: error });
  }
  if (code.startsWith('ERR_SSL_')) return new AuthError(`TLS failed: ${text} (${code})`, channel, { cause: error });
  if (code === 'ECONNREFUSED') return new ChannelError(`connection refused (is "migstream recv" listening there?)`, channel, { cause: error });
  if (code === 'ECONNRESET' || code === 'EPIPE') return new ChannelError(`the ${peer} reset the connection (${code})`, channel, { cause: error });
  return new ChannelError(`${text}${code ? ` (${code})` : ''}`, channel, { cause: error });
}
