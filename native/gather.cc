// Gathered writes of byte ranges; see gather.h.
#include "gather.h"

#include <cerrno>

#ifndef _WIN32
#include <poll.h>
#include <unistd.h>
#include <climits>
#endif

namespace migstream {

int write_all(int fd, struct iovec* iov, size_t count, size_t* written) {
  *written = 0;
#ifdef _WIN32
  (void)fd;
  (void)iov;
  (void)count;
  return ENOSYS;
#else
  size_t first = 0;
  while (first < count && iov[first].iov_len == 0) ++first;
  while (first < count) {
    const int batch = static_cast<int>(count - first < IOV_MAX ? count - first : IOV_MAX);
    const ssize_t n = writev(fd, iov + first, batch);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        struct pollfd entry = {fd, POLLOUT, 0};
        if (poll(&entry, 1, -1) < 0 && errno != EINTR) return errno;
        continue;
      }
      return errno;
    }
    size_t left = static_cast<size_t>(n);
    *written += left;
    // Skip the ranges written whole; the first one written in part starts later.
    while (first < count && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left > 0) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
    while (first < count && iov[first].iov_len == 0) ++first;
  }
  return 0;
#endif
}

}  // namespace migstream
