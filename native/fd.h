// Descriptor state the JS side cannot see without writing: whether anybody still reads a pipe.
#ifndef MIGSTREAM_NATIVE_FD_H_
#define MIGSTREAM_NATIVE_FD_H_

namespace migstream {

// True when `fd` is the writing end of a pipe (or a socket) whose reading side is gone: poll(2)
// reports POLLERR/POLLHUP for it. False for anything else, including regular files, terminals,
// a full pipe that still has a reader, and descriptors that are not open. Never blocks.
bool reader_gone(int fd);

}  // namespace migstream

#endif  // MIGSTREAM_NATIVE_FD_H_
