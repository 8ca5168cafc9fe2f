/** Messages between the main thread (pool.ts) and the workers (worker.ts). */
import type { CodecId } from './codecs.js';

/** Compress one DATA frame. */
export interface CompressRequest {
  readonly op: 'compress';
  readonly codec: CodecId;
  readonly level: number;
  readonly raw: Uint8Array;
}

/** Split a segment along its plan (split.ts) and compress its META and PAYLOAD frames. */
export interface SplitRequest {
  readonly op: 'split';
  readonly codec: CodecId;
  readonly level: number;
  readonly segment: Uint8Array;
  readonly cutList: Uint8Array;
  readonly ranges: Float64Array;
  readonly payloadBytes: number;
}

/** One stored frame to check and decompress. */
export interface StoredFrame {
  readonly codec: CodecId;
  readonly stored: Uint8Array;
  readonly rawLength: number;
  readonly rawChecksum: number;
  readonly storedChecksum: number;
}

/** Decompress one DATA frame. */
export interface DecompressRequest {
  readonly op: 'decompress';
  readonly frame: StoredFrame;
}

/** Decompress a META frame (and its PAYLOAD frame) and splice the segment back. */
export interface SpliceRequest {
  readonly op: 'splice';
  readonly meta: StoredFrame;
  readonly payload: StoredFrame | undefined;
  readonly pageSize: number;
  /** The container has a page window: report page positions (split.ts Spliced.pages). */
  readonly window: boolean;
}

/** Where a frame's stored bytes lie in the container file, and what to check them against. */
export interface FileFrame {
  readonly codec: CodecId;
  readonly position: number;
  readonly storedLength: number;
  readonly rawLength: number;
  readonly rawChecksum: number;
  readonly storedChecksum: number;
}

/**
 * Direct mode (direct.ts): read one segment's frames (META [+ PAYLOAD]) or a DATA frame from the
 * container file, check and decompress them, and keep the segment's bytes under `key` until a
 * WriteRequest or DropRequest for it comes to this worker.
 */
export interface LoadRequest {
  readonly op: 'load';
  readonly fd: number;
  readonly key: number;
  readonly data: boolean;
  readonly frames: readonly FileFrame[];
  readonly pageSize: number;
}

/** Direct mode: write the segment kept under `key` to `fd`, then forget it. */
export interface WriteRequest {
  readonly op: 'write';
  readonly fd: number;
  readonly key: number;
}

/** Direct mode: forget the segment kept under `key` without writing it. */
export interface DropRequest {
  readonly op: 'drop';
  readonly key: number;
}

export type WorkerRequest = CompressRequest | SplitRequest | DecompressRequest | SpliceRequest | LoadRequest | WriteRequest | DropRequest;

export interface PackedFrame {
  /** `none` when the codec did not make the frame smaller. */
  readonly codec: CodecId;
  readonly stored: Uint8Array;
  readonly rawLength: number;
  readonly rawChecksum: number;
  readonly storedChecksum: number;
}

export interface PackReply {
  readonly ok: true;
  /** DATA: one frame; split: META, then PAYLOAD when the segment has payload bytes. */
  readonly frames: readonly PackedFrame[];
}

export interface UnpackReply {
  readonly ok: true;
  readonly bytes: Uint8Array;
  readonly pages?: Float64Array | undefined;
}

export interface LoadReply {
  readonly ok: true;
  /** Stream bytes of the segment. */
  readonly length: number;
}

export interface DoneReply {
  readonly ok: true;
}

export type FailureKind = 'stored-checksum' | 'codec' | 'raw-checksum' | 'layout' | 'io' | 'internal';

export interface FailureReply {
  readonly ok: false;
  readonly kind: FailureKind;
  readonly message: string;
  /** Which frame of a splice or load request failed (0: the first). */
  readonly frame?: 'meta' | 'payload';
  /** For io failures: the errno code, e.g. EPIPE. */
  readonly code?: string;
  /** The checksum computed, for checksum failures. */
  readonly actual?: number;
}

/** A request as posted: `id` pairs it with its reply. */
export type Envelope<T> = T & { readonly id: number };

/** Every reply hands back the buffer the request's bytes came in (slots.ts). */
export type Returning<T> = T & { readonly returned?: ArrayBuffer | undefined };
