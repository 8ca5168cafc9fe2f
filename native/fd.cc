#include "fd.h"

#ifndef _WIN32
#include <poll.h>
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

}  // namespace migstream
