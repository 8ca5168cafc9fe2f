#include "fd.h"

#ifndef _WIN32
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#endif

namespace migstream {

bool reader_gone(int fd) {
#ifdef _WIN32
  (void)fd;
  return false;
#else
  struct pollfd entry = {fd, POLLOUT, 0};
  if (poll(&entry, 1, 0) != 1) return false;
  // A pipe without readers polls as POLLERR (fs/pipe.c pipe_poll); POLLNVAL (not open) is not ours to judge.
  return (entry.revents & (POLLERR | POLLHUP)) != 0;
#endif
}

int widen_pipe(int fd, int bytes) {
#if defined(F_GETPIPE_SZ) && defined(F_SETPIPE_SZ)
  int now = fcntl(fd, F_GETPIPE_SZ);
  if (now < 0) return -errno;
  if (now >= bytes) return now;
  int got = fcntl(fd, F_SETPIPE_SZ, bytes);
  return got < 0 ? -errno : got;
#else
  (void)fd;
  (void)bytes;
  return -ENOSYS;
#endif
}

int limit_unsent(int fd, int bytes) {
#ifdef TCP_NOTSENT_LOWAT
  if (setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &bytes, sizeof bytes) != 0) return -errno;
  // Read back, so a caller knows the limit is the one in force.
  int now = 0;
  socklen_t length = sizeof now;
  if (getsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &now, &length) != 0) return -errno;
  return now;
#else
  (void)fd;
  (void)bytes;
  return -ENOSYS;
#endif
}

}  // namespace migstream
