/**
 * The tunnel as a library: start either end (`startDialer`, `startListener`), follow the
 * migrations it carries (`MigrationFollower`), or drive the session machine yourself.
 */
export { startDialer, startListener, type DialerOptions, type ListenerOptions, type StreamRecord, type Tunnel, type TunnelEvents, type TunnelListener } from './host.js';
export { MigrationFollower } from './follow.js';
export { MigrationWatch, type MigrationReport, type MultifdCounts } from './migration-watch.js';
export { TunnelSession, DEFAULT_WINDOW, type TunnelAction, type TunnelSessionConfig, type TunnelSide } from './session.js';
export { classifyConnection, CONNECTION_KIND_NAMES, type ConnectionKind } from './classify.js';
export { TUNNEL_PROTOCOL_VERSION, TunnelFrameType, decodeTunnelFrame, type TunnelFrame } from './wire.js';
