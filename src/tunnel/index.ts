/**
 * The tunnel as a library: start either end (`startDialer`, `startListener`), follow the
 * migrations it carries (`MigrationFollower`), or drive the session machine yourself.
 */
export { startDialer, startListener, type DialerOptions, type ListenerOptions, type StreamRecord, type Tunnel, type TunnelEvents, type TunnelListener } from './host.js';
export { MigrationFollower, type FollowedMigration } from './follow.js';
export { MigrationWatch, type MigrationReport, type MultifdCounts } from './migration-watch.js';
export { TunnelSession, DEFAULT_WINDOW, type TunnelAction, type TunnelSessionConfig, type TunnelSide } from './session.js';
export { frameCodec, DEFAULT_PAGE_CACHE_BYTES, DEFAULT_PAGE_CACHE_LIMIT_BYTES, type FrameCodec, type FrameCodecOptions, type PageDeltaCounts, type StreamCodec } from './frame-codec.js';
export { PageDeltaEncoder, PageDeltaDecoder, PAGE_TABLE_FLAG, encodePageTable, decodePageTable, type PageSpan, type PageTable } from './page-delta.js';
export { PageFinder } from './page-finder.js';
export { classifyConnection, CONNECTION_KIND_NAMES, type ConnectionKind } from './classify.js';
export { TUNNEL_PROTOCOL_VERSION, TunnelFrameType, decodeTunnelFrame, type TunnelFrame } from './wire.js';
