/**
 * File plumbing for DiskImage: where a drive's image lives, opening it, writing all of a buffer.
 * Synchronous: DiskImage applies one record at a time.
 */
import { fstatSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError } from '../stream/errors.js';

/** A directory holding `<drive><extension>` per drive, or a map from drive name to path. */
export type ImageTarget = string | Readonly<Record<string, string>>;

export type ImageMode = 'create' | 'update';

/** Drive names usable as file names: QEMU's id_wellformed() ids, or a digit/_ first. */
const FILE_SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]*$/;

export function imagePath(target: ImageTarget, device: string, extension: string): string {
  const shown = JSON.stringify(device);
  if (typeof target === 'string') {
    if (!FILE_SAFE_NAME.test(device)) {
      throw new ArgumentError(`drive name ${shown} is not a safe file name; give DiskImage a map of drive to path`);
    }
    return join(target, device + extension);
  }
  const path = Object.hasOwn(target, device) ? target[device] : undefined;
  if (path === undefined) {
    throw new ArgumentError(`no image path for drive ${shown} (block_load: unknown block device)`);
  }
  return path;
}

/**
 * Opens an image: 'create' truncates (or creates) it, 'update' keeps its bytes (creating a
 * missing file). A known size is applied at once ('update' never shortens). Returns the fd and
 * the file's length.
 */
export function openImage(path: string, mode: ImageMode, size: number | undefined): { fd: number; length: number } {
  const fd = mode === 'create' ? openSync(path, 'w+') : openForUpdate(path);
  let length = fstatSync(fd).size;
  if (size !== undefined && (mode === 'create' || length < size)) {
    ftruncateSync(fd, size);
    length = size;
  }
  return { fd, length };
}

function openForUpdate(path: string): number {
  try {
    return openSync(path, 'r+');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    return openSync(path, 'w+');
  }
}

/** writeSync until every byte of `data` is at `position` (a write may be short). */
export function writeFully(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) {
    done += writeSync(fd, data, done, data.length - done, position + done);
  }
}
