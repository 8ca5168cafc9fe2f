/** Descriptor state only the addon can see (native/fd.h). */
import { checkInteger, nativeBinding } from './binding.js';

/**
 * Whether `fd` is a pipe or socket whose reading side has gone away, so writing to it would
 * fail with EPIPE. Lets a process that has nothing to write yet (recv waiting for its sender)
 * notice that its reader, the destination QEMU, exited. False for files and terminals.
 */
export function readerGone(fd: number): boolean {
  return nativeBinding().readerGone(checkInteger('readerGone', 'fd', fd, 0, 2 ** 31 - 1));
}
