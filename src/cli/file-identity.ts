/**
 * Which file a path or descriptor is, whatever name reaches it (st_dev and st_ino): a symlink,
 * a hard link or /dev/fd/N naming the input is the input.
 */
import { fstatSync, statSync, type Stats } from 'node:fs';

/** What identifies a file whatever name reaches it. */
export interface FileIdentity {
  readonly name: string;
  readonly dev: number;
  readonly ino: number;
}

function identity(name: string, stats: Stats): FileIdentity | null {
  // Pipes, sockets and terminals are not files one can overwrite by naming them.
  return stats.isFile() || stats.isBlockDevice() ? { name, dev: stats.dev, ino: stats.ino } : null;
}

/** The identity of an input path, or null when it is not a regular file (or does not exist). */
export function identityOfPath(path: string): FileIdentity | null {
  try {
    return identity(path, statSync(path));
  } catch {
    return null;
  }
}

/** The identity of an open descriptor (stdin as 0), or null when it is not a regular file. */
export function identityOfFd(fd: number, name: string): FileIdentity | null {
  try {
    return identity(name, fstatSync(fd));
  } catch {
    return null;
  }
}
