import { readFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { reportingWritten } from '../bytes/written-back.js';
import { Compactor } from '../ram/compact.js';
import { CODECS, codecByName, resolveLevel, type CodecName } from '../codecs/registry.js';
import { Compressor, DEFAULT_DEDUP_WINDOW_PAGES, DEFAULT_FRAME_BYTES, type CompressOptions } from '../compress/compressor.js';
import { MAX_THREADS, defaultThreads } from '../workers/pool.js';
import { blockSizeOptionSpec, blockSizeUsage, parseBlockSizeOption } from './block-size-option.js';
import { parse, UsageError, type Command } from './args.js';
import { formatBytes } from './format.js';
import { openInput } from './io.js';
import { openOutputFile, writeOutput } from './output-file.js';
import { emitSummary, progressWanted, reportOptionSpec, reportUsageLines } from './conventions.js';
import { reopen, spool } from './spool.js';
import { TransferProgress, parseCount, parseSize } from './transfer-progress.js';

const usage = `Usage: migstream compress [IN|-] [-o OUT|-] [options]

Compress a QEMU migration stream into a migstream container (docs/container.md): page-aware,
on all cores, every frame checksummed. "migstream decompress" gives back the exact stream.
Reads stdin and writes stdout by default, so QEMU can save and restore through it:

  (qemu) migrate "exec:migstream compress -c zstd -o vm.msz"
  qemu-system-x86_64 … -incoming "exec:migstream decompress vm.msz"

Options:
  -o, --output FILE      container file (default: stdout)
  -c, --codec NAME       ${CODECS.map((c) => c.name).join(', ')} (default: zstd)
  -l, --level N          codec level: ${levelHelp()}
  -j, --threads N        worker threads (default: ${defaultThreads()}, the number of cores)
      --frame-size SIZE  raw bytes per frame, e.g. 4M (default ${DEFAULT_FRAME_BYTES / 1048576}M)
      --no-dedup         store every page (by default a page equal to one of the last
                         ${DEFAULT_DEDUP_WINDOW_PAGES} stored is stored as a reference: a 64 MiB window)
      --dedup-window N   the window in pages (default ${DEFAULT_DEDUP_WINDOW_PAGES})
      --dedup            the default, kept for scripts
      --compact          keep only the final content of each page: the container restores a
                         smaller stream that loads into the same RAM (two passes; stdin is
                         spooled to a temporary file next to OUT)
      --raw              the input is not a QEMU stream (e.g. extract-ram output): opaque bytes
${blockSizeUsage('      ', 18)}
${reportUsageLines('      ', 18)}
  -h, --help             this help`;

/** "zstd -7..22 (default 3), zlib 1..9 (default 1); lz4 has one", from the codec table. */
function levelHelp(): string {
  const ranged = CODECS.filter((c) => c.maxLevel > c.minLevel).map((c) => `${c.name} ${c.minLevel}..${c.maxLevel} (default ${c.defaultLevel})`);
  const single = CODECS.filter((c) => c.maxLevel === c.minLevel && c.name !== 'none').map((c) => c.name);
  return `${ranged.join(', ')}; ${single.join(', ')} ${single.length === 1 ? 'has' : 'have'} one`;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export const compressCommand: Command = {
  name: 'compress',
  usage,
  async run(argv) {
    const { values, positionals } = parse(
      argv,
      {
        output: { type: 'string', short: 'o' },
        codec: { type: 'string', short: 'c' },
        level: { type: 'string', short: 'l' },
        threads: { type: 'string', short: 'j' },
        'frame-size': { type: 'string' },
        dedup: { type: 'boolean' },
        'no-dedup': { type: 'boolean' },
        'dedup-window': { type: 'string' },
        compact: { type: 'boolean' },
        raw: { type: 'boolean' },
        ...blockSizeOptionSpec,
        ...reportOptionSpec,
      },
      1,
    );
    const codec = values.codec ?? 'zstd';
    if (!CODECS.some((c) => c.name === codec)) throw new UsageError(`unknown codec "${codec}"; known: ${CODECS.map((c) => c.name).join(', ')}`);
    if (values.compact && values.raw) throw new UsageError('--compact needs a QEMU stream, not --raw input');
    const blockSize = parseBlockSizeOption(values);
    if (blockSize !== undefined && values.raw) throw new UsageError('--mig-block-size needs a QEMU stream, not --raw input');
    const frameBytes = values['frame-size'] === undefined ? undefined : parseSize(values['frame-size']);
    if (frameBytes === undefined && values['frame-size'] !== undefined) throw new UsageError(`bad --frame-size "${values['frame-size']}"`);
    const window = parseCount(values['dedup-window'], '--dedup-window', 1, 1 << 24);
    if (values['no-dedup'] && (values.dedup || window !== undefined)) throw new UsageError('--no-dedup contradicts --dedup and --dedup-window');
    const level = parseCount(values.level, '--level', -7, 22);
    try {
      resolveLevel(codecByName(codec), level);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    const options: CompressOptions = {
      codec: codec as CodecName,
      level,
      threads: parseCount(values.threads, '--threads', 1, MAX_THREADS),
      frameBytes,
      mode: values.raw ? 'raw' : 'qemu',
      dedupWindowPages: values['no-dedup'] || values.raw ? 0 : (window ?? DEFAULT_DEDUP_WINDOW_PAGES),
      compacted: values.compact === true,
      ...(blockSize !== undefined ? { blockSize } : {}),
      creator: `migstream ${version()}`,
    };

    const input = openInput(positionals[0]);
    const output = openOutputFile(values.output, { inputs: [input.identity] });
    const progress = new TransferProgress(progressWanted(values), 'compress', 'in', input.size);
    const compressor = new Compressor({ ...options, onProgress: (s) => progress.update(s.bytesIn, s.bytesOut) });
    let cleanup = (): void => {};
    let compactor: Compactor | undefined;
    if (values.compact) {
      // Two passes: a pipe is kept in a temporary file first.
      const path = input.size === null ? await spool(input.stream, values.output) : undefined;
      if (path) cleanup = path.remove;
      else input.stream.destroy();
      compactor = new Compactor(reopen(path?.path ?? input.name), blockSize);
    }
    // The compacted records go to the compressor as they are: the input is decoded by the
    // compactor's two passes only, the compacted stream never.
    const containers = compactor ? compressor.compressRecords(compactor) : compressor.compress(input.stream);
    try {
      // Each chunk goes back to the compressor once written: its frame buffer carries a later frame.
      await writeOutput(output, (out) =>
        pipeline(
          containers,
          reportingWritten(out.stream(), (chunk) => compressor.written(chunk)),
        ),
      );
    } finally {
      cleanup();
    }
    progress.done();
    const { bytesIn, bytesOut, framesByCodec, refs } = compressor.stats;
    const seconds = progress.elapsed();
    emitSummary(
      values,
      output.name === 'stdout',
      () => {
        const compacted = compactor ? `, compacted ${compactor.stats.pageRecordsIn} page records to ${compactor.stats.pageRecordsOut}` : '';
        const stored = framesByCodec.none > 0 ? ` (${framesByCodec.none} frames stored uncompressed)` : '';
        return (
          `migstream compress: ${progress.line(bytesIn, bytesOut).replace(/^compress: /, '')} in ${seconds.toFixed(2)} s; ` +
          `${codec} level ${compressor.level}, ${compressor.threads} threads${stored}${refs ? `, ${refs} page references` : ''}${compacted}; ` +
          `${formatBytes(bytesOut)} written to ${output.name}\n`
        );
      },
      () => ({
        command: 'compress',
        input: input.name,
        output: output.name,
        bytesIn,
        bytesOut,
        ratio: bytesOut > 0 ? bytesIn / bytesOut : null,
        seconds,
        codec,
        level: compressor.level,
        threads: compressor.threads,
        framesByCodec,
        pageReferences: refs,
        ...(compactor ? { compacted: { pageRecordsIn: compactor.stats.pageRecordsIn, pageRecordsOut: compactor.stats.pageRecordsOut } } : {}),
      }),
    );
    return 0;
  },
};
