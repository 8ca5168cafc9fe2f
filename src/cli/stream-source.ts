/**
 * The QEMU stream an input holds, for the commands that read one (inspect, extract-ram): the
 * input's own bytes, or, when it starts with the migstream container magic, the stream
 * decompressed from it (src/decompress/piped.ts, every frame checked), so `inspect
 * vm.msz` works as `inspect vm.mig` does.
 */
import type { Readable } from 'node:stream';
import { CONTAINER_MAGIC } from '../container/format.js';

export interface StreamSource {
  /** Chunks of the QEMU stream. */
  readonly chunks: AsyncIterable<Buffer>;
  /** Bytes read from the input so far (container bytes for a container), for progress. */
  bytesRead(): number;
  /** Known once the first chunk is out: the input is a container. */
  readonly container: boolean;
}

export function streamSource(input: Readable): StreamSource {
  let read = 0;
  let container = false;
  async function* counted(): AsyncGenerator<Buffer> {
    for await (const chunk of input) {
      read += (chunk as Buffer).length;
      yield chunk as Buffer;
    }
  }
  async function* chunks(): AsyncGenerator<Buffer> {
    const source = counted();
    // Enough bytes to tell the magic, whatever the chunking (a pipe may hand them out one by one).
    const head: Buffer[] = [];
    let headBytes = 0;
    while (headBytes < CONTAINER_MAGIC.length) {
      const next = await source.next();
      if (next.done) break;
      head.push(next.value);
      headBytes += next.value.length;
    }
    const start = Buffer.concat(head);
    async function* rest(): AsyncGenerator<Buffer> {
      if (start.length > 0) yield start;
      yield* source;
    }
    if (start.length >= CONTAINER_MAGIC.length && start.subarray(0, CONTAINER_MAGIC.length).equals(CONTAINER_MAGIC)) {
      container = true;
      const { Decompressor } = await import('../decompress/piped.js');
      yield* new Decompressor().decompress(rest());
    } else {
      yield* rest();
    }
  }
  return {
    chunks: chunks(),
    bytesRead: () => read,
    get container() {
      return container;
    },
  };
}
