/**
 * DiskImage: a sink that applies `block` records to raw disk image files, one file per drive,
 * as QEMU's block_load applies them to the destination's drives.
 *
 *   const image = new DiskImage('out/', { sizes: { 'drive-virtio-disk0': 2 ** 30 } });
 *   for (const record of records) image.apply(record);   // other records are ignored
 *   const written = image.finish();                       // [{ device, path, size }]
 *
 * - Chunks are `blockSize` bytes (the stream's mig-block-size: QEMU's 1 MiB by default; a
 *   decoder that found it from the stream says it in `parameters.blockSize`). A data chunk of
 *   another length is refused, and a zero chunk covers `blockSize` bytes (block_load:
 *   BDRV_SECTORS_PER_DIRTY_CHUNK sectors, fewer at the drive's end).
 * - A data chunk is written at `sector * 512`. With a known drive size only the bytes before
 *   the drive's end are written (the rest of the last chunk is padding); a chunk that
 *   starts at or past the end is an error, as the write fails with -EIO in QEMU. With no known
 *   size the file grows to cover whole chunks.
 * - A zero chunk (ZERO_BLOCK), and a data chunk that is all zero (the native zero scan), is
 *   written as zeros only where the file may hold data: an HBitmap (one bit per chunk, at the
 *   chunk size's granularity) tracks chunks that were ever written with non-zero bytes. Elsewhere the file already reads
 *   as zero (hole or unwritten extension), so the image stays sparse, as with QEMU's
 *   BDRV_REQ_MAY_UNMAP.
 * - The drive name is looked up up to its first NUL byte, as block_load's C string does.
 *
 * I/O is synchronous: records arrive one at a time and each write completes before the next.
 */
import { closeSync, ftruncateSync, mkdirSync } from 'node:fs';
import { isAllZero } from '../native.js';
import { ArgumentError } from '../stream/errors.js';
import { ChunkBitmap } from './chunk-bitmap.js';
import { DEFAULT_BLOCK_SIZE, checkBlockSize } from './block-size.js';
import { BDRV_SECTOR_SIZE } from './flags.js';
import { imagePath, openImage, writeFully, type ImageMode, type ImageTarget } from './image-file.js';
import { isBlockRecord } from './records.js';

export type { ImageMode, ImageTarget } from './image-file.js';

export interface DiskImageOptions {
  /** Drive sizes in bytes by drive name. Drives not listed grow to cover their chunks. */
  readonly sizes?: Readonly<Record<string, number>>;
  /**
   * 'create' (default): each file is created empty (an existing one is truncated), so regions
   * never written are known to be zero. 'update': write into existing files, creating missing
   * ones (for example an incremental migration over a copy of the base image); zero chunks are
   * always written and files are never shortened.
   */
  readonly mode?: ImageMode;
  /** File name suffix for drives in a directory target; default ".raw". */
  readonly extension?: string;
  /** The stream's chunk size (mig-block-size), 4 KiB to 16 MiB; default QEMU's 1 MiB. */
  readonly blockSize?: number;
}

export interface DiskImageFile {
  readonly device: string;
  readonly path: string;
  /** Final size of the file in bytes. */
  readonly size: number;
}

interface Drive {
  readonly device: string;
  readonly path: string;
  readonly fd: number;
  /** Known size of the drive, or undefined to grow with the chunks. */
  readonly size: number | undefined;
  /** Length of the file on disk now. */
  fileLength: number;
  /** End of the furthest chunk applied (what the file must cover at finish). */
  end: number;
  /** Chunks that may hold non-zero bytes. */
  readonly written: ChunkBitmap;
}

export class DiskImage {
  private readonly drives = new Map<string, Drive>();
  private readonly sizes = new Map<string, number>();
  private readonly mode: ImageMode;
  private readonly extension: string;
  private readonly blockSize: number;
  /** `blockSize` zero bytes, made on first use. */
  private zeros: Buffer | undefined;
  private finished = false;

  /**
   * @param target a directory (created if missing) holding `<drive><extension>` per drive, or a
   *   map from drive name to image path; a drive missing from the map is an error, as block_load
   *   fails on an unknown drive.
   */
  constructor(
    private readonly target: ImageTarget,
    options: DiskImageOptions = {},
  ) {
    this.mode = options.mode ?? 'create';
    if (this.mode !== 'create' && this.mode !== 'update') {
      throw new ArgumentError(`DiskImage mode must be "create" or "update", got ${String(this.mode)}`);
    }
    this.extension = options.extension ?? '.raw';
    this.blockSize = checkBlockSize(options.blockSize ?? DEFAULT_BLOCK_SIZE, 'DiskImage blockSize');
    for (const [device, size] of Object.entries(options.sizes ?? {})) {
      if (!Number.isSafeInteger(size) || size <= 0) {
        throw new ArgumentError(`size of drive "${device}" must be a positive integer, got ${String(size)}`);
      }
      this.sizes.set(device, size);
    }
    if (typeof target === 'string') mkdirSync(target, { recursive: true });
  }

  /**
   * Applies one record. Returns true for block-data and block-zero records, false for any other
   * record (progress, EOS and records of other sections are ignored).
   */
  apply(record: { readonly type: string }): boolean {
    if (this.finished) throw new ArgumentError('DiskImage.apply() after finish()');
    if (!isBlockRecord(record)) return false;
    if (record.type !== 'block-data' && record.type !== 'block-zero') return false;
    const { sector } = record;
    const chunk = this.blockSize;
    const offset = sector * BDRV_SECTOR_SIZE;
    if (!Number.isSafeInteger(sector) || sector < 0 || !Number.isSafeInteger(offset + chunk)) {
      throw new ArgumentError(`sector ${sector} of drive "${record.device}" is out of range`);
    }
    if (record.type === 'block-data' && record.data.length !== chunk) {
      throw new ArgumentError(`data chunk of ${record.data.length} bytes for drive "${record.device}"; this DiskImage takes ${chunk}-byte chunks (its blockSize option)`);
    }
    const drive = this.drive(record.device);
    const limit = drive.size ?? offset + chunk;
    // block_load: nr_sectors = total_sectors - addr; a zero chunk right at the end is an empty
    // write, anything else at or past the end fails.
    if (offset > limit || (offset === limit && record.type === 'block-data')) {
      throw new ArgumentError(`${record.type} at byte ${offset} is past the end of drive "${drive.device}" (${limit} bytes)`);
    }
    const length = Math.min(chunk, limit - offset);
    if (length === 0) return true;
    drive.end = Math.max(drive.end, offset + length);
    const data = record.type === 'block-data' ? record.data.subarray(0, length) : undefined;
    if (data === undefined || isAllZero(data)) {
      this.zero(drive, offset, length);
    } else {
      writeFully(drive.fd, data, offset);
      drive.fileLength = Math.max(drive.fileLength, offset + length);
      drive.written.fill(this.chunkOf(offset), this.chunkOf(offset + length - 1), true);
    }
    return true;
  }

  /**
   * Sizes the files (a known size, else the end of the furthest chunk), closes them and lists
   * them in the order their drives first appeared. Drives that received no record get no file.
   */
  finish(): DiskImageFile[] {
    if (this.finished) throw new ArgumentError('DiskImage.finish() called twice');
    this.finished = true;
    const out: DiskImageFile[] = [];
    try {
      for (const drive of this.drives.values()) {
        const size = Math.max(drive.size ?? drive.end, this.mode === 'update' ? drive.fileLength : 0);
        if (drive.fileLength !== size) ftruncateSync(drive.fd, size);
        out.push({ device: drive.device, path: drive.path, size });
      }
    } finally {
      this.close();
    }
    return out;
  }

  /** Closes every file without sizing them (for error paths). Safe to call more than once. */
  close(): void {
    this.finished = true;
    const drives = [...this.drives.values()];
    this.drives.clear();
    for (const drive of drives) closeSync(drive.fd);
  }

  /** Writes zeros over `offset..offset+length` where the file may hold data. */
  private zero(drive: Drive, offset: number, length: number): void {
    const first = this.chunkOf(offset);
    const last = this.chunkOf(offset + length - 1);
    if (this.mode === 'create' && !drive.written.anySet(first, last)) return;
    this.zeros ??= Buffer.alloc(this.blockSize);
    writeFully(drive.fd, this.zeros.subarray(0, length), offset);
    drive.fileLength = Math.max(drive.fileLength, offset + length);
    // Chunks now wholly zero (up to the drive's end for the last one) need no write next time;
    // a chunk only partly covered may still hold data elsewhere.
    const end = offset + length;
    const size = this.blockSize;
    const whole = (chunk: number): boolean => chunk * size >= offset && Math.min((chunk + 1) * size, drive.size ?? Infinity) <= end;
    drive.written.fill(whole(first) ? first : first + 1, whole(last) ? last : last - 1, false);
  }

  private chunkOf(offset: number): number {
    return Math.floor(offset / this.blockSize);
  }

  private drive(name: string): Drive {
    // block_load reads the name into a C string: bytes after a NUL take no part in the lookup.
    const device = name.split('\0', 1)[0] ?? '';
    const known = this.drives.get(device);
    if (known !== undefined) return known;
    const path = imagePath(this.target, device, this.extension);
    const size = this.sizes.get(device);
    const { fd, length } = openImage(path, this.mode, size);
    const drive: Drive = { device, path, fd, size, fileLength: length, end: 0, written: new ChunkBitmap(this.blockSize) };
    this.drives.set(device, drive);
    return drive;
  }
}
