/**
 * A PageStore that writes one sparse file per RAMBlock into a directory, plus `index.json`
 * (`[{ idstr, file, length }]`). Memory stays bounded: only the coalescing buffer is held.
 *
 * Files are sized to used_length with ftruncate, so pages never written cost no disk space.
 * Contiguous writes to one block (a pass over RAM sends pages in order) are gathered in one
 * buffer and written with one call. All calls are synchronous.
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError } from '../stream/errors.js';
import type { PageStore, RamBlockImage } from './page-store.js';

export interface RamBlockFile extends RamBlockImage {
  /** File name inside the directory. */
  readonly file: string;
  /** Full path of the file. */
  readonly path: string;
}

export interface SparseFileStoreOptions {
  /** Bytes gathered before a write call (default 1 MiB). */
  coalesceBytes?: number;
}

export const INDEX_FILE = 'index.json';

/**
 * File name of a block: '/' becomes '_' and leading '_' are dropped
 * ("0000:00:02.0/vga.vram" → "0000:00:02.0_vga.vram", "/rom@etc/acpi/tables" →
 * "rom@etc_acpi_tables"). Names that would be empty, "." or ".." get a "block_" prefix.
 */
export function blockFileName(idstr: string): string {
  const name = idstr.replace(/\//g, '_').replace(/^_+/, '').replace(/\0/g, '_');
  return name === '' || name === '.' || name === '..' ? `block_${name}` : name;
}

interface BlockFile {
  readonly idstr: string;
  readonly file: string;
  readonly path: string;
  fd: number;
  length: number;
}

export class SparseFileStore implements PageStore<RamBlockFile> {
  /** write(2) calls made and bytes they wrote, to see the coalescing at work. */
  readonly stats = { writeCalls: 0, bytesWritten: 0 };
  private readonly files = new Map<string, BlockFile>();
  private readonly usedNames = new Set<string>([INDEX_FILE]);
  private readonly coalesceBytes: number;
  private slab: Buffer | undefined;
  private pending: BlockFile | undefined;
  private pendingOffset = 0;
  private pendingLength = 0;
  private lastFile: BlockFile | undefined;
  private closed = false;

  constructor(
    readonly dir: string,
    options: SparseFileStoreOptions = {},
  ) {
    this.coalesceBytes = options.coalesceBytes ?? 1 << 20;
    mkdirSync(dir, { recursive: true });
  }

  declareBlock(idstr: string, length: number): void {
    this.checkOpen();
    let block = this.files.get(idstr);
    if (block === undefined) {
      let file = blockFileName(idstr);
      for (let n = 2; this.usedNames.has(file); n++) file = `${blockFileName(idstr)}~${n}`;
      this.usedNames.add(file);
      const path = join(this.dir, file);
      block = { idstr, file, path, fd: openSync(path, 'w+'), length };
      this.files.set(idstr, block);
    } else {
      if (this.pending === block) this.flush();
      block.length = length;
    }
    ftruncateSync(block.fd, length);
  }

  write(idstr: string, offset: number, data: Uint8Array): void {
    const block = this.file(idstr);
    const length = data.length;
    if (block === this.pending && offset === this.pendingOffset + this.pendingLength && this.pendingLength + length <= this.coalesceBytes) {
      this.slab!.set(data, this.pendingLength);
      this.pendingLength += length;
      return;
    }
    this.flush();
    if (length >= this.coalesceBytes) {
      this.writeAt(block.fd, data, offset);
      return;
    }
    this.slab ??= Buffer.allocUnsafe(this.coalesceBytes);
    this.slab.set(data, 0);
    this.pending = block;
    this.pendingOffset = offset;
    this.pendingLength = length;
  }

  read(idstr: string, offset: number, into: Uint8Array): void {
    const block = this.file(idstr);
    if (block === this.pending) this.flush();
    let done = 0;
    while (done < into.length) {
      const n = readSync(block.fd, into, done, into.length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    into.fill(0, done);
  }

  /** Writes out the gathered bytes. */
  flush(): void {
    const block = this.pending;
    if (block === undefined) return;
    this.pending = undefined;
    this.writeAt(block.fd, this.slab!.subarray(0, this.pendingLength), this.pendingOffset);
    this.pendingLength = 0;
  }

  /** Flushes, closes the files, writes index.json and lists the blocks. */
  finish(): RamBlockFile[] {
    this.checkOpen();
    this.flush();
    this.close();
    const blocks = [...this.files.values()].map(({ idstr, file, path, length }) => ({
      idstr,
      usedLength: length,
      file,
      path,
    }));
    const index = blocks.map(({ idstr, file, usedLength }) => ({ idstr, file, length: usedLength }));
    writeFileSync(join(this.dir, INDEX_FILE), `${JSON.stringify(index, null, 2)}\n`);
    return blocks;
  }

  /** Closes the files without flushing or writing the index (after a failure). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = undefined;
    this.lastFile = undefined;
    for (const block of this.files.values()) closeSync(block.fd);
  }

  private writeAt(fd: number, data: Uint8Array, position: number): void {
    let done = 0;
    while (done < data.length) {
      done += writeSync(fd, data, done, data.length - done, position + done);
      this.stats.writeCalls++;
    }
    this.stats.bytesWritten += data.length;
  }

  private file(idstr: string): BlockFile {
    const last = this.lastFile;
    if (last !== undefined && last.idstr === idstr) return last;
    this.checkOpen();
    const block = this.files.get(idstr);
    if (block === undefined) throw new ArgumentError(`SparseFileStore: block "${idstr}" was not declared`);
    this.lastFile = block;
    return block;
  }

  private checkOpen(): void {
    if (this.closed) throw new ArgumentError('SparseFileStore is closed');
  }
}
