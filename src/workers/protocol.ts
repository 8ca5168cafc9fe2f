/** Messages between the main thread (pool.ts) and the workers (worker.ts). */
import type { SerializedError } from '../errors.js';
import type { CodecId } from '../codecs/registry.js';

/** Compress one DATA frame. */
export interface CompressRequest {
  readonly op: 'compress';
  readonly codec: CodecId;
  readonly level: number;
  readonly raw: Uint8Array;
  /** A buffer of at least raw's length to build the frame in (transferred; the reply's frame lies in it). */
  readonly outputs?: readonly Uint8Array[] | undefined;
}

/**
 * Checksum and compress a segment's META frame and its PAYLOAD frame, if any. `meta` comes in a
 * transferred slot (handed back with the reply); `payload` is a view of the compressor's shared
 * payload ring, or a transferred buffer (payload-store.ts).
 */
export interface PackRequest {
  readonly op: 'pack';
  readonly codec: CodecId;
  readonly level: number;
  readonly meta: Uint8Array;
  readonly payload: Uint8Array | undefined;
  /** Buffers to build META and PAYLOAD in, each at least its raw length (as CompressRequest's). */
  readonly outputs?: readonly Uint8Array[] | undefined;
}

/** One stored frame to check and decompress. */
export interface StoredFrame {
  readonly codec: CodecId;
  /** The container version, which says what its checksums are (checksum.ts dataChecksum). */
  readonly checksum: 1 | 2;
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
  /** The container has a page window: report page positions (src/decompress/splice.ts Spliced.pages). */
  readonly window: boolean;
}

export type WorkerRequest = CompressRequest | PackRequest | DecompressRequest | SpliceRequest;

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
  /** DATA: one frame; pack: META, then PAYLOAD when the segment has one. */
  readonly frames: readonly PackedFrame[];
}

export interface UnpackReply {
  readonly ok: true;
  readonly bytes: Uint8Array;
  readonly pages?: Float64Array | undefined;
}

export type FailureKind = 'stored-checksum' | 'codec' | 'raw-checksum' | 'layout' | 'internal';

export interface FailureReply {
  readonly ok: false;
  readonly kind: FailureKind;
  readonly message: string;
  /** Which frame of a splice request failed. */
  readonly frame?: 'meta' | 'payload';
  /** The checksum computed, for checksum failures. */
  readonly actual?: number;
  /** `internal`: what the worker threw (src/errors.ts serializeError; revived by `thrownBy`). */
  readonly error?: SerializedError;
}

/** A request as posted: `id` pairs it with its reply. */
export type Envelope<T> = T & { readonly id: number };

/** Every reply hands back the buffer the request's bytes came in (to its BufferPool, src/bytes/buffer-pool.ts). */
export type Returning<T> = T & { readonly returned?: ArrayBuffer | undefined };
