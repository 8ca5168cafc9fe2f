/**
 * The receiver's admission rules for channels. Channel 0 opens a session (its id, channel
 * count and codec); channels 1..N-1 join with the same id, count and codec. Anything else is
 * refused with a reason the sender prints.
 */
import { codecById } from '../codecs/registry.js';
import { PROTOCOL_VERSION } from './wire.js';

export interface OpenRequest {
  version: number;
  sessionId: Uint8Array;
  channels: number;
  index: number;
  codec: number;
}

export interface SessionInfo {
  id: Buffer;
  channels: number;
  codec: number;
  joined: Set<number>;
}

export const MAX_CHANNELS = 64;

/** Who admits: `recv` speaks version 2, `tunnel` version 3 (src/tunnel/wire.ts). */
export interface Admitter {
  version: number;
  name: string;
}

/** The session created or joined by `request`, or the reason for refusing it. */
export function admit(session: SessionInfo | undefined, request: OpenRequest, admitter: Admitter = { version: PROTOCOL_VERSION, name: 'receiver' }): { session: SessionInfo } | { refuse: string } {
  if (request.version !== admitter.version) {
    return { refuse: `protocol version ${request.version}; this ${admitter.name} speaks version ${admitter.version}` };
  }
  if (session === undefined) {
    if (request.index !== 0) return { refuse: `channel ${request.index} arrived before channel 0 opened a session` };
    if (request.channels < 1 || request.channels > MAX_CHANNELS) return { refuse: `channel count ${request.channels} outside 1..${MAX_CHANNELS}` };
    if (codecById(request.codec) === undefined) return { refuse: `unknown codec ${request.codec}` };
    return { session: { id: Buffer.from(request.sessionId), channels: request.channels, codec: request.codec, joined: new Set([0]) } };
  }
  if (!session.id.equals(Buffer.from(request.sessionId))) return { refuse: 'unknown session id (a session is already in progress)' };
  if (request.channels !== session.channels || request.codec !== session.codec) {
    return { refuse: `channel count/codec ${request.channels}/${request.codec} differ from the session's ${session.channels}/${session.codec}` };
  }
  if (request.index >= session.channels) return { refuse: `channel ${request.index} outside the session's ${session.channels} channels` };
  if (session.joined.has(request.index)) return { refuse: `channel ${request.index} has already joined` };
  session.joined.add(request.index);
  return { session };
}
