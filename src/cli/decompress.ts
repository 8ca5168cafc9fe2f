import { fstatSync, statSync } from 'node:fs';
import type { DecompressStats } from '../decompress/piped.js';
import { MAX_THREADS, defaultThreads } from '../workers/pool.js';
import { parse, type Command } from './args.js';
import { identityOfFd, identityOfPath } from './file-identity.js';
import { openOutputFile, writeOutput } from './output-file.js';
import { emitSummary, progressWanted, reportOptionSpec, reportUsageLines } from './conventions.js';
import { formatBytes } from './format.js';
import { TransferProgress, parseCount } from './transfer-progress.js';

const usage = `Usage: migstream decompress [IN|-] [-o OUT|-] [options]

Turn a migstream container back into the exact QEMU stream it was made from, checking every
frame. A damaged or truncated container stops it with a non-zero exit and a message naming the
frame and its byte offset; the end of the stream is only written once the whole container
checked out, so QEMU never completes a load from a bad file. Reads stdin and writes stdout by
default:

  qemu-system-x86_64 … -incoming "exec:migstream decompress vm.msz"
  migstream decompress vm.msz -o vm.mig

Options:
  -o, --output FILE   stream file (default: stdout)
  -j, --threads N     worker threads reading a pipe (default: ${defaultThreads()}, the number of cores);
                      a container file, also as stdin, needs none (it is read on the main
                      thread and decompressed on libuv's thread pool)
${reportUsageLines('      ', 15)}
  -h, --help          this help`;

export const decompressCommand: Command = {
  name: 'decompress',
  usage,
  async run(argv) {
    const { values, positionals } = parse(
      argv,
      {
        output: { type: 'string', short: 'o' },
        threads: { type: 'string', short: 'j' },
        ...reportOptionSpec,
      },
      1,
    );
    const threads = parseCount(values.threads, '--threads', 1, MAX_THREADS);
    const path = positionals[0];
    const fromStdin = path === undefined || path === '-';
    const inputSize = fromStdin ? sizeOfFd(0) : sizeOfPath(path);
    const progress = new TransferProgress(progressWanted(values), 'decompress', 'out', inputSize);
    const onProgress = (s: Readonly<DecompressStats>): void => progress.update(s.bytesIn, s.bytesOut);
    const summary = (stats: DecompressStats, outputName: string): void => {
      progress.done();
      const { bytesIn, bytesOut, frames, info } = stats;
      const seconds = progress.elapsed();
      emitSummary(
        values,
        outputName === 'stdout',
        () => {
          const what = info ? `${info.codec}${info.compacted ? ', compacted' : ''}` : '';
          return (
            `migstream decompress: ${progress.line(bytesIn, bytesOut).replace(/^decompress: /, '')} in ${seconds.toFixed(2)} s; ` +
            `${frames} frames (${what}) checked; ${formatBytes(bytesOut)} written to ${outputName}\n`
          );
        },
        () => ({ command: 'decompress', input: fromStdin ? 'stdin' : path, output: outputName, bytesIn, bytesOut, seconds, frames, codec: info?.codec ?? null, compacted: info?.compacted ?? false }),
      );
    };

    if (inputSize !== null) {
      // A container file (also as stdin: "decompress < vm.msz"): read, checked and decompressed
      // on this thread, written with gathered writes (direct.ts). Only what that needs is
      // loaded: this is QEMU's restore path.
      const output = openOutputFile(values.output, { inputs: [fromStdin ? identityOfFd(0, 'stdin') : identityOfPath(path)] });
      const { DirectDecompressor } = await import('../decompress/direct.js');
      const direct = new DirectDecompressor({ onProgress });
      await writeOutput(output, (out) => (fromStdin ? direct.runFd(0, out.fd) : direct.run(path, out.fd)));
      summary(direct.stats, output.name);
      return 0;
    }
    const [{ pipeline }, { Decompressor }, { openInput }] = await Promise.all([import('node:stream/promises'), import('../decompress/piped.js'), import('./io.js')]);
    const input = openInput(path);
    const output = openOutputFile(values.output, { inputs: [input.identity] });
    const decompressor = new Decompressor({ threads, onProgress });
    await writeOutput(output, (out) => pipeline(decompressor.decompress(input.stream), out.stream()));
    summary(decompressor.stats, output.name);
    return 0;
  },
};

/** The size of a regular file on `fd`, else null (a pipe). */
function sizeOfFd(fd: number): number | null {
  try {
    const stats = fstatSync(fd);
    return stats.isFile() ? stats.size : null;
  } catch {
    return null;
  }
}

function sizeOfPath(path: string): number | null {
  try {
    const stats = statSync(path);
    return stats.isFile() ? stats.size : null;
  } catch {
    return null;
  }
}
