import { pipeline } from 'node:stream/promises';
import { Compactor, compactedBytes } from '../ram/compact.js';
import { parse, type Command } from './args.js';
import { blockSizeOptionSpec, blockSizeUsage, parseBlockSizeOption } from './block-size-option.js';
import { formatBytes } from './format.js';
import { openInput } from './io.js';
import { openOutputFile, writeOutput } from './output-file.js';
import { emitSummary, progressWanted, reportOptionSpec, reportUsage } from './conventions.js';
import { Progress } from './progress.js';
import { reopen, spool } from './spool.js';

const usage = `Usage: migstream compact [IN|-] [OUT|-] [options]

Rewrite a saved stream so that every RAM page is sent once, with its final content: pages
re-sent in later iterations are dropped and XBZRLE deltas become full pages. The result loads
in QEMU into the same RAM (and disk) and is no larger than the guest's RAM plus device state.
Reads the input twice (a pipe is first copied to a temporary file). To compact and compress
in one go: "migstream compress --compact".

  migstream compact busy.mig busy-compact.mig
  qemu-system-x86_64 … -incoming "exec:cat busy-compact.mig"

Options:
${blockSizeUsage('  ', 18)}
${reportUsage}
  -h, --help         this help`;

export const compactCommand: Command = {
  name: 'compact',
  usage,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...blockSizeOptionSpec, ...reportOptionSpec }, 2);
    const blockSize = parseBlockSizeOption(values);
    const input = openInput(positionals[0]);
    const output = openOutputFile(positionals[1], { inputs: [input.identity] });
    const spooled = input.size === null ? await spool(input.stream, positionals[1]) : undefined;
    if (!spooled) input.stream.destroy();
    const compactor = new Compactor(reopen(spooled?.path ?? input.name), blockSize);
    let bytesOut = 0;
    const progress = new Progress(progressWanted(values), 'compact (out)', null);
    const counted = async function* (): AsyncGenerator<Buffer> {
      for await (const chunk of compactedBytes(compactor)) {
        bytesOut += chunk.length;
        progress.update(bytesOut);
        yield chunk;
      }
    };
    try {
      await writeOutput(output, (out) => pipeline(counted(), out.stream()));
    } finally {
      progress.done();
      spooled?.remove();
    }
    const { pageRecordsIn, pageRecordsOut, materialized } = compactor.stats;
    emitSummary(
      values,
      output.name === 'stdout',
      () => `migstream compact: ${pageRecordsIn} page records -> ${pageRecordsOut} (${materialized} XBZRLE deltas made full pages); ` + `${formatBytes(bytesOut)} written to ${output.name}\n`,
      () => ({ command: 'compact', input: input.name, output: output.name, bytesOut, seconds: progress.elapsed(), pageRecordsIn, pageRecordsOut, materialized }),
    );
    return 0;
  },
};
