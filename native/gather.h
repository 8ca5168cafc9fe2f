// Gathered writes (writev) of byte ranges to a descriptor: how direct-mode decompression
// (src/decompress/direct.ts) writes a segment, as ranges of the buffers it already holds (META
// structure bytes, PAYLOAD bytes, referenced pages), without a JS object per range. The caller
// describes the ranges; nothing here knows the container format.
#ifndef MIGSTREAM_NATIVE_GATHER_H_
#define MIGSTREAM_NATIVE_GATHER_H_

#include <cstddef>

#ifndef _WIN32
#include <sys/uio.h>
#else
struct iovec {
  void* iov_base;
  size_t iov_len;
};
#endif

namespace migstream {

// Writes every byte of the `count` ranges in `iov`, in order, to `fd`: goes on after partial
// writes, retries on EINTR, and waits with poll(2) when a non-blocking descriptor is full
// (EAGAIN), as a descriptor shared with a parent that set O_NONBLOCK may be. Returns 0, or the
// errno of the write that failed (EPIPE: nobody reads a pipe any more). Advances `iov` as it
// goes; `*written` counts the bytes written, also on failure. Blocks: run it off the JS thread.
int write_all(int fd, struct iovec* iov, size_t count, size_t* written);

}  // namespace migstream

#endif  // MIGSTREAM_NATIVE_GATHER_H_
