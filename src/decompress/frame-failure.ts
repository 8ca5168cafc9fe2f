/** The error for a frame the codec or a worker found damaged, for both decompressors. */
import type { DataChecksum } from '../container/checksum.js';
import { checksumError } from '../container/checks.js';
import { CorruptFrameError } from '../container/errors.js';
import type { FrameHeader } from '../container/format.js';
import { frameRef } from '../container/reader.js';
import { codecById } from '../codecs/registry.js';
import type { MigstreamError } from '../errors.js';
import type { FailureReply } from '../workers/protocol.js';
import { thrownBy } from '../workers/errors.js';

/**
 * The error for a frame a worker reported damaged; `checksum` is the container version's. An
 * error of ours the worker threw is that error (`thrownBy`); any other is told against the frame.
 */
export function failure(reply: FailureReply, frame: FrameHeader & { readonly offset: number }, checksum: DataChecksum): MigstreamError {
  const thrown = thrownBy(reply);
  if (thrown !== undefined) return thrown;
  const ref = frameRef(frame);
  const codec = codecById(frame.codec)?.name ?? String(frame.codec);
  switch (reply.kind) {
    case 'stored-checksum':
      return checksumError('stored bytes fail their checksum', ref, checksum, frame.storedChecksum, reply.actual ?? 0);
    case 'raw-checksum':
      return checksumError(`${codec}-decompressed bytes fail their checksum`, ref, checksum, frame.rawChecksum, reply.actual ?? 0);
    case 'layout':
      return new CorruptFrameError(reply.message, ref);
    default:
      return new CorruptFrameError(`${codec} cannot decompress the stored bytes: ${reply.message}`, ref, {
        expected: `${frame.rawLength} raw bytes`,
      });
  }
}
