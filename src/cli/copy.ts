import { fstatSync } from 'node:fs';
import { createDecoder, createEncoder } from '../codec.js';
import { parse, type Command } from './args.js';
import { blockSizeOptionSpec, blockSizeUsage, describeBlockSize, parseBlockSizeOption } from './block-size-option.js';
import { emitSummary, progressWanted, reportOptionSpec, reportUsage } from './conventions.js';
import { formatBytes, formatRate } from './format.js';
import { openInputFd, readInto, writeAll } from './fd-io.js';
import { openOutputFile, writeOutput } from './output-file.js';
import { Progress } from './progress.js';

/** Read size: large reads keep syscalls and records-per-push overhead low. */
const READ_SIZE = 1024 * 1024;
/** Output slab: the re-encoded bytes of one read, written with one writev. */
const ENCODE_SLAB = 2 * 1024 * 1024;

const usage = `Usage: migstream copy [IN|-] [OUT|-] [options]

Decode a migration stream and re-encode it, byte for byte. A validating pass-through for
exec: pipelines: it stops with a non-zero exit and a message naming the byte offset and the
section as soon as the stream is damaged. Reads stdin and writes stdout by default.

  migrate "exec:migstream copy - vm.mig"
  qemu-system-x86_64 … -incoming "exec:migstream copy vm.mig"

Options:
${blockSizeUsage('      ', 21)}
${reportUsage}
  -h, --help         this help`;

export interface RecodeResult {
  /** Bytes read (and written). */
  bytes: number;
  /** The block chunk size (mig-block-size) when given or found from the stream; else undefined (no data chunk). */
  blockSize: number | undefined;
  blockSizeSource: 'option' | 'stream' | undefined;
}

/**
 * Decodes `input` and writes the re-encoded records to `output`. `blockSize`: the block
 * section's chunk size (mig-block-size), found from the stream when omitted.
 */
export function recodeFd(input: number, output: number, onChunk: (bytesIn: number) => void = () => {}, blockSize?: number): RecodeResult {
  const decoder = createDecoder(blockSize === undefined ? {} : { blockSize });
  const encoder = createEncoder(ENCODE_SLAB, blockSize === undefined ? {} : { blockSize });
  // One input buffer and one output slab, reused: fresh memory would cost a page fault per
  // 4 KiB, as much as the decoding itself.
  const buffer = Buffer.allocUnsafe(READ_SIZE);
  const write = (chunks: Buffer[]): void => writeAll(output, chunks);
  let bytesIn = 0;
  for (;;) {
    const chunk = readInto(input, buffer);
    const records = chunk.length === 0 ? decoder.end() : decoder.push(chunk);
    for (const record of records) encoder.write(record);
    // Nothing is written for a record until it has been read whole and checked.
    encoder.drainTo(write);
    if (chunk.length === 0) {
      const { blockSize: size, blockSizeSource } = decoder.parameters;
      return { bytes: bytesIn, blockSize: size, blockSizeSource };
    }
    decoder.releaseInput();
    bytesIn += chunk.length;
    onChunk(bytesIn);
  }
}

export const copyCommand: Command = {
  name: 'copy',
  usage,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...blockSizeOptionSpec, ...reportOptionSpec }, 2);
    const blockSize = parseBlockSizeOption(values);
    const input = openInputFd(positionals[0]);
    let result: RecodeResult;
    let seconds: number;
    let outputName: string;
    try {
      const output = openOutputFile(positionals[1], { inputs: [input.identity] });
      outputName = output.name;
      const size = fstatSync(input.fd);
      const progress = new Progress(progressWanted(values), 'copy', size.isFile() ? size.size : null);
      try {
        result = await writeOutput(output, (out) => recodeFd(input.fd, out.fd, (n) => progress.update(n), blockSize));
      } finally {
        progress.done();
      }
      seconds = progress.elapsed();
    } finally {
      input.close();
    }
    const { bytes } = result;
    const chunks = describeBlockSize(result);
    const block = chunks === undefined ? '' : `, block chunks ${chunks}`;
    emitSummary(
      values,
      outputName === 'stdout',
      () => `migstream copy: ${formatBytes(bytes)} in ${seconds.toFixed(2)} s (${formatRate(bytes, seconds)}), stream complete${block}\n`,
      () => ({
        command: 'copy',
        input: input.name,
        output: outputName,
        bytes,
        seconds,
        complete: true,
        ...(result.blockSize === undefined ? {} : { blockSize: result.blockSize, blockSizeSource: result.blockSizeSource }),
      }),
    );
    return 0;
  },
};
