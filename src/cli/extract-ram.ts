import { createDecoder } from '../codec.js';
import { RamImage } from '../ram/image.js';
import { SparseFileStore, type RamBlockFile } from '../ram/sparse-file-store.js';
import { parse, UsageError, type Command } from './args.js';
import { blockSizeOptionSpec, blockSizeUsage, parseBlockSizeOption } from './block-size-option.js';
import { progressWanted, reportOptionSpec, reportUsageLines } from './conventions.js';
import { formatBytes, formatRate, table } from './format.js';
import { openInput } from './io.js';
import { streamSource } from './stream-source.js';
import { Progress } from './progress.js';

const usage = `Usage: migstream extract-ram [FILE|-] -o DIR [options]

Apply every RAM record of a migration stream (or of the stream in a migstream container) in order (pages, zero fills, XBZRLE deltas,
legacy zlib pages) and write the guest's final RAM as one sparse raw file per RAMBlock into
DIR, with DIR/index.json listing idstr, file and length. Memory use stays bounded: pages go
straight to the files.

Options:
  -o, --output DIR   directory for the block files (created if missing)
${blockSizeUsage('  ', 21)}
${reportUsageLines('  ', 16)}
  -h, --help         this help`;

export interface ExtractResult {
  input: string;
  bytes: number;
  seconds: number;
  blocks: RamBlockFile[];
  pages: number;
  zeroPages: number;
  xbzrlePages: number;
  compressedPages: number;
}

/** `blockSize`: the block section's chunk size (mig-block-size), found from the stream when omitted. */
export async function extractRam(inputPath: string | undefined, dir: string, showProgress = false, blockSize?: number): Promise<ExtractResult> {
  const input = openInput(inputPath);
  const decoder = createDecoder(blockSize === undefined ? {} : { blockSize });
  const store = new SparseFileStore(dir);
  const progress = new Progress(showProgress, 'extract-ram', input.size);
  const source = streamSource(input.stream);
  let image: RamImage<RamBlockFile> | undefined;
  let bytes = 0;
  try {
    for await (const chunk of source.chunks) {
      bytes += chunk.length;
      for (const record of decoder.push(chunk)) {
        // The page size is known once the configuration has been read, before any RAM record.
        image ??= new RamImage(store, { pageSize: decoder.parameters.pageSize });
        image.apply(record);
      }
      progress.update(source.bytesRead());
    }
    decoder.end();
  } catch (error) {
    input.stream.destroy();
    throw error;
  } finally {
    progress.done();
  }
  image ??= new RamImage(store, { pageSize: decoder.parameters.pageSize });
  const blocks = image.finish();
  const { pages, zeroPages, xbzrlePages, compressedPages } = image.stats;
  return { input: input.name, bytes, seconds: progress.elapsed(), blocks, pages, zeroPages, xbzrlePages, compressedPages };
}

export const extractRamCommand: Command = {
  name: 'extract-ram',
  usage,
  async run(argv) {
    const { values, positionals } = parse(
      argv,
      {
        output: { type: 'string', short: 'o' },
        ...blockSizeOptionSpec,
        ...reportOptionSpec,
      },
      1,
    );
    if (values.output === undefined) throw new UsageError('missing -o DIR');
    const blockSize = parseBlockSizeOption(values);
    const result = await extractRam(positionals[0], values.output, progressWanted(values), blockSize);
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    } else if (values.quiet !== true) {
      process.stdout.write(
        `${table(
          ['block', 'size', 'file'],
          result.blocks.map((b) => [b.idstr, formatBytes(b.usedLength), b.path]),
        )}\n`,
      );
      process.stdout.write(
        `${result.pages} pages, ${result.zeroPages} zero, ${result.xbzrlePages} xbzrle, ${result.compressedPages} compressed; ` +
          `${formatBytes(result.bytes)} in ${result.seconds.toFixed(2)} s (${formatRate(result.bytes, result.seconds)})\n`,
      );
    }
    return 0;
  },
};
