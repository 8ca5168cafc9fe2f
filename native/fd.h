// Descriptor state the JS side cannot see without writing (whether anybody still reads a pipe),
// and a pipe's capacity, which Node cannot set.
#ifndef MIGSTREAM_NATIVE_FD_H_
#define MIGSTREAM_NATIVE_FD_H_

namespace migstream {

// True when `fd` is the writing end of a pipe (or a socket) whose reading side is gone: poll(2)
// reports POLLERR/POLLHUP for it. False for anything else, including regular files, terminals,
// a full pipe that still has a reader, and descriptors that are not open. Never blocks.
bool reader_gone(int fd);

// Asks for a pipe's buffer to hold at least `bytes` (F_SETPIPE_SZ; the kernel rounds up to a
// power-of-two number of pages). Returns the capacity it now has, or -errno: -EBADF for a
// descriptor that is not a pipe, -EPERM past /proc/sys/fs/pipe-max-size or the user's quota.
// Never shrinks a pipe: a larger capacity is kept. Never blocks.
int widen_pipe(int fd, int bytes);

}  // namespace migstream

#endif  // MIGSTREAM_NATIVE_FD_H_
