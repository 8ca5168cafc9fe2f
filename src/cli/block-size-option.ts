/**
 * `--mig-block-size SIZE`, for the commands that decode a stream: the block section's chunk
 * size (QEMU's BLK_MIG_BLOCK_SIZE, 1 MiB; a patched build's mig-block-size parameter, 4 KiB to
 * 16 MiB). Without it the decoder finds the size from the stream (src/block/codec.ts).
 */
import { formatBlockSize, isBlockSize } from '../block/block-size.js';
import type { StreamParameters } from '../stream/section-codec.js';
import { UsageError } from './args.js';
import { parseSize } from './transfer-progress.js';

export const blockSizeOptionSpec = {
  'mig-block-size': { type: 'string' },
} as const;

/** The help line, `--mig-block-size SIZE` padded to `width` after `indent`. */
export function blockSizeUsage(indent: string, width: number): string {
  const pad = ' '.repeat(indent.length + width + 1);
  return `${indent}${'--mig-block-size SIZE'.padEnd(width)} chunk size of the block section (QEMU's mig-block-size): 4K to 16M,\n` + `${pad}a power of two; default: found from the stream (QEMU's is 1M)`;
}

/** The value of --mig-block-size in bytes, or undefined when absent; bad values are a UsageError. */
export function parseBlockSizeOption(values: { 'mig-block-size'?: string | undefined }): number | undefined {
  const text = values['mig-block-size'];
  if (text === undefined) return undefined;
  const size = parseSize(text);
  if (!isBlockSize(size)) {
    throw new UsageError(`--mig-block-size must be a power of two from 4K to 16M (4096..16777216), got "${text}"`);
  }
  return size;
}

/** "64 KiB (found from the stream)", or undefined when the stream had no data chunk and none was given. */
export function describeBlockSize(params: Pick<StreamParameters, 'blockSize' | 'blockSizeSource'>): string | undefined {
  if (params.blockSize === undefined) return undefined;
  const how = params.blockSizeSource === 'stream' ? 'found from the stream' : 'given';
  return `${formatBlockSize(params.blockSize)} (${how})`;
}
