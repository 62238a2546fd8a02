/* Writes that never raise SIGPIPE, per call: no change to the process's
 * disposition, nor to a thread's mask beyond the one call (rill is a guest
 * in its host's process, and the host may keep SIGPIPE at its default). */
#ifndef RILL_NOSIGPIPE_H
#define RILL_NOSIGPIPE_H

#include <sys/types.h>
#include <uv.h>

/* Writes bufs (at most IOV_MAX of them: the rest is left) to fd in one
 * call: sendmsg(2) with MSG_NOSIGNAL on a socket; on anything else (a
 * pipe(2), a tty, a file) writev(2) with SIGPIPE blocked on this thread for
 * the call and one it raised taken before the mask is restored. flags may
 * add MSG_DONTWAIT. *notsock (0 at first) remembers that fd is not a
 * socket. Returns the bytes written, 0 when fd would block, or a negative
 * error (UV_EPIPE when the reader has gone). */
ssize_t rill__writev_nosigpipe(int fd, const uv_buf_t *bufs, unsigned nbufs, int flags,
                               unsigned char *notsock);

/* Writes all of p[0..n) to fd (a blocking descriptor such as stderr) in as
 * few calls as it takes; gives up at an error or if fd would block. */
void rill__write_all_nosigpipe(int fd, const char *p, size_t n);

#endif /* RILL_NOSIGPIPE_H */
