import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createDecoder, createEncoder } from '../codec.js';
import { parse, type Command } from './args.js';
import { formatBytes, formatRate } from './format.js';
import { openInput, openOutput } from './io.js';
import { Progress } from './progress.js';

const usage = `Usage: migstream copy [IN|-] [OUT|-] [--progress] [--quiet]

Decode a migration stream and re-encode it, byte for byte. A validating pass-through for
exec: pipelines: it stops with a non-zero exit and a message naming the byte offset and the
section as soon as the stream is damaged. Reads stdin and writes stdout by default.

  migrate "exec:migstream copy - vm.mig"
  qemu-system-x86_64 … -incoming "exec:migstream copy vm.mig"

Options:
  --progress   progress on stderr
  --quiet      no summary on stderr
  -h, --help   this help`;

/** Decodes each chunk and writes the re-encoded records in its place. */
export class RecodeTransform extends Transform {
  private readonly decoder = createDecoder();
  private readonly encoder = createEncoder();
  bytesIn = 0;

  constructor(private readonly onChunk: (bytesIn: number) => void = () => {}) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.bytesIn += chunk.length;
      for (const record of this.decoder.push(chunk)) this.encoder.write(record);
      for (const out of this.encoder.take()) this.push(out);
      this.onChunk(this.bytesIn);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      for (const record of this.decoder.end()) this.encoder.write(record);
      for (const out of this.encoder.take()) this.push(out);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }
}

export const copyCommand: Command = {
  name: 'copy',
  summary: 'decode and re-encode a stream byte for byte (validating pass-through)',
  usage,
  async run(argv) {
    const { values, positionals, help } = parse(argv, { progress: { type: 'boolean' }, quiet: { type: 'boolean' } }, 2);
    if (help) {
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    const input = openInput(positionals[0]);
    const output = openOutput(positionals[1]);
    const progress = new Progress(values.progress === true, 'copy', input.size);
    const recode = new RecodeTransform((bytes) => progress.update(bytes));
    await pipeline(input.stream, recode, output.stream);
    progress.done();
    if (values.quiet !== true) {
      const seconds = progress.elapsed();
      process.stderr.write(`migstream copy: ${formatBytes(recode.bytesIn)} in ${seconds.toFixed(2)} s (${formatRate(recode.bytesIn, seconds)}), stream complete\n`);
    }
    return 0;
  },
};
