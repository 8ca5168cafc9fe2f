/** The multi-channel transport as a library: `send`/`receive` drive what the CLI commands run. */
export { send, type SendOptions } from './sender.js';
export { receive, type ReceiveOptions } from './receiver.js';
export type { ChannelStats, TransferSummary } from './summary.js';
export { loadTlsMaterial, fingerprintOf, normalizeFingerprint, CERT_FILES, type TlsMaterial, type TlsFiles } from './credentials.js';
export { makeQuickStart, makeCa, issue, validityDays, type Validity, type IssueOptions, type QuickStartOptions } from './certs.js';
export { TransportError, ProtocolError, HandshakeError, AuthError, ChannelError, TimeoutError, ChecksumError, PeerAbortError, CredentialsError } from './errors.js';
export { FrameParser, FrameType, PROTOCOL_VERSION, type Frame } from './wire.js';
