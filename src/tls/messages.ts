/**
 * Messages between the main thread and the channel workers. Frame payloads travel as
 * transferred ArrayBuffers, never copied.
 */
import type { SerializedError } from '../errors.js';
import type { TlsMaterial } from './credentials.js';

export interface SendWorkerData {
  index: number;
  host: string;
  port: number;
  tls: TlsMaterial | null;
  sessionId: Uint8Array;
  channels: number;
  codec: number;
  level: number;
  timeoutMs: number;
  /** The most bytes the socket may hold unsent (TCP_NOTSENT_LOWAT); 0: the kernel's default. */
  unsentLimitBytes: number;
}

export type ToSendWorker =
  /** Channels 1..N-1 connect at once but send OPEN only once channel 0 has opened the session. */
  { t: 'join' } | { t: 'frame'; seq: number; data: Uint8Array } | { t: 'end'; frames: number; bytes: number; digest: bigint } | { t: 'abort'; reason: string };

export type FromSendWorker =
  | { t: 'open' }
  /** A frame has left; its buffer comes back for the input to read into again. */
  | { t: 'credit'; seq: number; raw: number; wire: number; buffer: ArrayBuffer }
  | { t: 'done'; bytes: number }
  /** After an abort: the socket is closed (ABORT flushed, or nothing to flush). */
  | { t: 'closed' }
  | { t: 'error'; error: SerializedError };

export interface RecvWorkerData {
  tls: TlsMaterial | null;
  timeoutMs: number;
  /** Frames posted and not yet acknowledged before the worker stops reading its socket. */
  window: number;
}

export type ToRecvWorker =
  /** The accepted TCP socket's descriptor: the worker wraps it (net.Socket({ fd })). */
  | { t: 'socket'; fd: number; peer: string }
  | { t: 'accept'; index: number }
  | { t: 'refuse'; reason: string }
  | { t: 'ack' }
  /** A frame's buffer, written out: the worker reads later frames into it (BufferPool). */
  | { t: 'recycle'; buffer: ArrayBuffer }
  | { t: 'done'; bytes: number }
  | { t: 'abort'; reason: string };

export type FromRecvWorker =
  | { t: 'open'; magic: number; version: number; sessionId: Uint8Array; channels: number; index: number; codec: number }
  | { t: 'frame'; seq: number; data: Uint8Array; wire: number }
  | { t: 'end'; frames: number; bytes: number; digest: bigint }
  | { t: 'finished' }
  /** The socket is closed: nothing of this channel is left to flush. */
  | { t: 'closed' }
  | { t: 'error'; error: SerializedError };
