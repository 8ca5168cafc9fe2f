// Descriptor state the JS side cannot see without writing (whether anybody still reads a pipe),
// and what Node cannot set: a pipe's capacity, a TCP socket's unsent-bytes limit.
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

// Caps the bytes a TCP socket holds that it has not sent yet (TCP_NOTSENT_LOWAT): writes past
// it fail with EAGAIN and the socket polls writable again only below it, so a non-blocking
// writer keeps its backlog in its own queue, where it can count it. Bytes sent but not yet
// acknowledged are not counted (the congestion window bounds those). Returns the limit now in
// force, read back with getsockopt, or -errno:
// -ENOTSOCK, -EOPNOTSUPP for a socket that is not TCP, -ENOSYS where the option does not exist.
int limit_unsent(int fd, int bytes);

}  // namespace migstream

#endif  // MIGSTREAM_NATIVE_FD_H_
