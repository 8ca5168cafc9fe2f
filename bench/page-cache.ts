/**
 * Reading a file from the disk rather than the page cache, for the restore benchmark: a save is
 * often restored long after it was written, from a disk slower than QEMU's loader.
 *
 *   evictFromPageCache(path)      the next reader reads `path` from the disk
 *   readIntoPageCache(path)       the next reader reads `path` from memory
 *   compactMemory()               defragment free memory (root; else nothing)
 *   throttledReader(path, mbps)   a shell prefix that runs a command with its reads from the
 *                                 disk holding `path` capped at `mbps` (cgroup v1 blkio; root)
 *   removeThrottles()             removes the cgroups throttledReader made
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export function readIntoPageCache(path: string): void {
  const result = spawnSync('cat', [path], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (result.status !== 0) throw new Error(`cat ${path} failed`);
}

/** Written back first (a dirty page is not dropped), then POSIX_FADV_DONTNEED through dd. */
export function evictFromPageCache(path: string): void {
  for (const command of [
    ['sync', path],
    ['dd', `if=${path}`, 'iflag=nocache', 'count=0', 'status=none'],
  ]) {
    const result = spawnSync(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
    if (result.status !== 0) throw new Error(`${command.join(' ')} failed`);
  }
}

export function compactMemory(): void {
  try {
    writeFileSync('/proc/sys/vm/compact_memory', '1\n');
  } catch {
    // Not root: runs stay as noisy as the machine's memory is fragmented.
  }
}

const BLKIO = '/sys/fs/cgroup/blkio';
const groups = new Set<string>();

/**
 * A prefix for `sh -c` that moves the shell into a cgroup whose reads from the disk holding
 * `path` are capped at `mbps` MB/s, then runs the command after it (`exec` keeps the process).
 * Throws with the reason where that cannot be set up.
 */
export function throttledReader(path: string, mbps: number): string {
  if (!existsSync(join(BLKIO, 'blkio.throttle.read_bps_device'))) {
    throw new Error(`--disk-mbps needs cgroup v1's blkio controller at ${BLKIO} (and root)`);
  }
  const group = join(BLKIO, `migstream-bench-${mbps}`);
  mkdirSync(group, { recursive: true });
  groups.add(group);
  writeFileSync(join(group, 'blkio.throttle.read_bps_device'), `${wholeDisk(path)} ${Math.round(mbps * 1e6)}\n`);
  return `echo $$ > ${join(group, 'tasks')} && exec`;
}

/** MAJOR:MINOR of the disk (not the partition) that holds `path`: throttling is per disk. */
function wholeDisk(path: string): string {
  const dev = statSync(path).dev;
  // Linux's encoding of dev_t (glibc's gnu_dev_major/minor).
  const major = ((dev >> 8) & 0xfff) | (Math.floor(dev / 2 ** 32) & ~0xfff);
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  const sys = `/sys/dev/block/${major}:${minor}`;
  if (!existsSync(sys)) throw new Error(`${path} is not on a block device (${major}:${minor})`);
  if (!existsSync(join(sys, 'partition'))) return `${major}:${minor}`;
  return readFileSync(join(dirname(realpathSync(sys)), 'dev'), 'utf8').trim();
}

/** A cgroup goes once its last process has exited, which the restores wait for. */
export function removeThrottles(): void {
  for (const group of groups) rmdirSync(group);
  groups.clear();
}
