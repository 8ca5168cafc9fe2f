/**
 * The page hashes of the final RAM image a stream carried, taken on the fly by `send` and
 * `recv` (`--page-hashes FILE`) for `migrate --verify` / `incoming --verify`, and the small
 * file they hand over through:
 *
 *   { "format": "migstream-page-hashes", "version": 1, "pageSize": 4096,
 *     "blocks": [ { "idstr": "pc.ram", "usedLength": N, "hashes": "<base64 of LE u64 XXH64s>" } ],
 *     "digest": "<sha256 hex of every block's idstr, length and hashes, in order>" }
 *
 * or, when the stream could not be followed (an XBZRLE delta needs the old page, which only
 * a full copy could give), { "format": …, "version": 1, "error": "…" }: the verification then
 * fails with that reason instead of comparing against a wrong image.
 *
 * The tap never stops the transfer it watches: a record it cannot follow only marks it failed.
 */
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createDecoder, type BodyRecord } from '../codec.js';
import type { FramingRecord } from '../stream/records.js';
import { RamImage } from '../ram/image.js';
import { MigstreamError } from '../stream/errors.js';
import { PageHashStore, type PageHashBlock } from './page-hashes.js';

const FORMAT = 'migstream-page-hashes';
/** A 1 TiB guest at 4 KiB pages is 2 GiB of hashes; refuse files claiming more than 64 MiB. */
const MAX_FILE_BYTES = 64 * 1024 * 1024;

export class PageHashFileError extends MigstreamError {
  constructor(message: string) {
    super('ERR_PAGE_HASH_FILE', message);
  }
}

export interface StreamHashes {
  pageSize: number;
  blocks: PageHashBlock[];
  digest: string;
}

/** Follows decoded records into page hashes. */
export class StreamHashTap {
  private store: PageHashStore | undefined;
  private image: RamImage | undefined;
  private failure: string | undefined;

  /** Records from a decoder; `pageSize` is the decoder's (known from the first RAM record). */
  apply(records: readonly (FramingRecord | BodyRecord)[], pageSize: () => number): void {
    if (this.failure !== undefined) return;
    try {
      for (const record of records) {
        if (record.type === 'ram-mem-size' && this.store === undefined) {
          this.store = new PageHashStore(pageSize());
          this.image = new RamImage(this.store, { pageSize: pageSize() });
        }
        this.image?.apply(record);
      }
    } catch (error) {
      this.failure = `the stream cannot be followed page by page: ${(error as Error).message}`;
    }
  }

  fail(reason: string): void {
    this.failure ??= reason;
  }

  result(): StreamHashes | { error: string } {
    if (this.failure !== undefined) return { error: this.failure };
    if (this.store === undefined) return { error: 'the stream carried no RAM' };
    const blocks = this.store.finish();
    return { pageSize: this.store.pageSize, blocks, digest: hashDigest(blocks) };
  }
}

/** A tap with its own decoder, for a side that sees only bytes (recv). */
export class StreamBytesTap {
  private readonly decoder = createDecoder();
  private readonly tap = new StreamHashTap();
  private broken = false;

  push(chunk: Buffer): void {
    if (this.broken) return;
    try {
      this.tap.apply(this.decoder.push(chunk), () => this.decoder.parameters.pageSize);
      this.decoder.releaseInput();
    } catch (error) {
      this.broken = true;
      this.tap.fail(`the stream did not decode: ${(error as Error).message}`);
    }
  }

  end(): StreamHashes | { error: string } {
    if (!this.broken) {
      try {
        this.tap.apply(this.decoder.end(), () => this.decoder.parameters.pageSize);
      } catch (error) {
        this.tap.fail(`the stream did not decode: ${(error as Error).message}`);
      }
    }
    return this.tap.result();
  }
}

export function hashDigest(blocks: readonly PageHashBlock[]): string {
  const sha = createHash('sha256');
  for (const block of blocks) {
    sha.update(`${block.idstr}\0${block.usedLength}\0`);
    sha.update(new Uint8Array(block.hashes.buffer, block.hashes.byteOffset, block.hashes.byteLength));
  }
  return sha.digest('hex');
}

/** Written whole under a temporary name and renamed: a reader never sees half a file. */
export function writePageHashFile(path: string, result: StreamHashes | { error: string }): void {
  const body =
    'error' in result
      ? { format: FORMAT, version: 1, error: result.error }
      : {
          format: FORMAT,
          version: 1,
          pageSize: result.pageSize,
          blocks: result.blocks.map((b) => ({ idstr: b.idstr, usedLength: b.usedLength, hashes: Buffer.from(b.hashes.buffer, b.hashes.byteOffset, b.hashes.byteLength).toString('base64') })),
          digest: result.digest,
        };
  const temporary = `${path}.partial`;
  writeFileSync(temporary, JSON.stringify(body));
  renameSync(temporary, path);
}

export function readPageHashFile(path: string): StreamHashes {
  const text = readFileSync(path);
  if (text.length > MAX_FILE_BYTES) throw new PageHashFileError(`${path}: ${text.length} bytes is more than a page-hash file holds`);
  let body: unknown;
  try {
    body = JSON.parse(text.toString('utf8'));
  } catch (error) {
    throw new PageHashFileError(`${path}: not JSON (${(error as Error).message})`);
  }
  const b = body as { format?: unknown; version?: unknown; error?: unknown; pageSize?: unknown; blocks?: unknown; digest?: unknown };
  if (typeof b !== 'object' || b === null || b.format !== FORMAT || b.version !== 1) throw new PageHashFileError(`${path}: not a version 1 page-hash file`);
  if (typeof b.error === 'string') throw new PageHashFileError(b.error);
  const pageSize = b.pageSize;
  if (typeof pageSize !== 'number' || !Number.isInteger(pageSize) || pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) {
    throw new PageHashFileError(`${path}: page size ${String(pageSize)} is not a power of two in 512..65536`);
  }
  if (!Array.isArray(b.blocks)) throw new PageHashFileError(`${path}: no block list`);
  const blocks: PageHashBlock[] = b.blocks.map((raw: unknown, i: number) => {
    const block = raw as { idstr?: unknown; usedLength?: unknown; hashes?: unknown };
    if (typeof block.idstr !== 'string' || typeof block.usedLength !== 'number' || !Number.isSafeInteger(block.usedLength) || block.usedLength < 0 || typeof block.hashes !== 'string') {
      throw new PageHashFileError(`${path}: block ${i} is malformed`);
    }
    const bytes = Buffer.from(block.hashes, 'base64');
    if (bytes.length !== Math.ceil(block.usedLength / pageSize) * 8) {
      throw new PageHashFileError(`${path}: block "${block.idstr}" holds ${bytes.length / 8} hashes for ${block.usedLength} bytes`);
    }
    const hashes = new BigUint64Array(bytes.length / 8);
    new Uint8Array(hashes.buffer).set(bytes);
    return { idstr: block.idstr, usedLength: block.usedLength, hashes };
  });
  const digest = hashDigest(blocks);
  if (b.digest !== digest) throw new PageHashFileError(`${path}: digest does not match its hashes`);
  return { pageSize, blocks, digest };
}
