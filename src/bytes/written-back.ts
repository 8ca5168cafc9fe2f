/**
 * A Writable in front of `dest` that reports each chunk once `dest` has written it, so that
 * whoever lent the chunk may reuse its memory (Compressor.written). pipeline() hands a source's
 * chunks to write() and never says when they are written: this says it. Chunks that arrive
 * together go to `dest` together (its writev, one system call).
 *
 *   await pipeline(compressor.compress(input), reportingWritten(out, (chunk) => compressor.written(chunk)));
 */
import { Writable } from 'node:stream';

export function reportingWritten(dest: Writable, written: (chunk: Buffer) => void): Writable {
  const forward = (chunks: Buffer[], done: (error?: Error | null) => void): void => {
    let left = chunks.length;
    let failed: Error | null | undefined;
    for (const chunk of chunks) {
      dest.write(chunk, (error) => {
        if (error) failed ??= error;
        else written(chunk);
        if (--left === 0) done(failed);
      });
    }
  };
  const front = new Writable({
    highWaterMark: dest.writableHighWaterMark,
    write: (chunk: Buffer, _encoding, done) => forward([chunk], done),
    writev: (entries, done) =>
      forward(
        entries.map((entry) => entry.chunk as Buffer),
        done,
      ),
    final: (done) => {
      dest.end();
      finishedOrFailed(dest, done);
    },
    destroy: (error, done) => {
      if (error && !dest.destroyed) dest.destroy(error);
      done(error);
    },
  });
  dest.on('error', (error) => front.destroy(error));
  return front;
}

function finishedOrFailed(dest: Writable, done: (error?: Error | null) => void): void {
  if (dest.writableFinished) return done();
  const onFinish = (): void => {
    dest.off('error', onError);
    done();
  };
  const onError = (error: Error): void => {
    dest.off('finish', onFinish);
    done(error);
  };
  dest.once('finish', onFinish);
  dest.once('error', onError);
}
