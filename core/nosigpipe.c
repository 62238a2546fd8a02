/* Writes that never raise SIGPIPE. See nosigpipe.h.
 *
 * Linux has no per-socket SO_NOSIGPIPE; the per-call way is MSG_NOSIGNAL,
 * which only send(2) and sendmsg(2) take, on sockets. A descriptor that is
 * not a socket has no per-call flag, so for it the signal is blocked on the
 * calling thread around the one writev, and a SIGPIPE that writev raised
 * (it is pending then, for this thread) is taken with sigtimedwait before
 * the mask is restored: nothing reaches the host's disposition. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "nosigpipe.h"

/* A uv_buf_t array is given to sendmsg/writev as it is. */
_Static_assert(sizeof(uv_buf_t) == sizeof(struct iovec) &&
                   offsetof(uv_buf_t, base) == offsetof(struct iovec, iov_base) &&
                   offsetof(uv_buf_t, len) == offsetof(struct iovec, iov_len),
               "uv_buf_t is laid out as struct iovec");

static ssize_t writev_blocked(int fd, const uv_buf_t *bufs, unsigned nbufs) {
  sigset_t pipe, old;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &old);
  ssize_t n;
  do
    n = writev(fd, (const struct iovec *)bufs, (int)nbufs);
  while (n < 0 && errno == EINTR);
  int err = n < 0 ? errno : 0;
  if (err == EPIPE) {
    struct timespec zero = {0, 0};
    sigtimedwait(&pipe, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (n >= 0) return n;
  return err == EAGAIN || err == EWOULDBLOCK ? 0 : -err;
}

ssize_t rill__writev_nosigpipe(int fd, const uv_buf_t *bufs, unsigned nbufs, int flags,
                               unsigned char *notsock) {
  if (nbufs > IOV_MAX) nbufs = IOV_MAX;
  if (!*notsock) {
    struct msghdr m;
    memset(&m, 0, sizeof(m));
    m.msg_iov = (struct iovec *)bufs;
    m.msg_iovlen = nbufs;
    ssize_t n;
    do
      n = sendmsg(fd, &m, MSG_NOSIGNAL | flags);
    while (n < 0 && errno == EINTR);
    if (n >= 0) return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    if (errno != ENOTSOCK) return -errno;
    *notsock = 1;
  }
  return writev_blocked(fd, bufs, nbufs);
}

void rill__write_all_nosigpipe(int fd, const char *p, size_t n) {
  unsigned char notsock = 0;
  while (n > 0) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    ssize_t k = rill__writev_nosigpipe(fd, &b, 1, 0, &notsock);
    if (k <= 0) return;
    p += k;
    n -= (size_t)k;
  }
}
