/* Writes that never raise SIGPIPE (nosigpipe.c), in a process that keeps
 * SIGPIPE at its default action and unblocked: a write to a socket and to a
 * pipe(2) whose reader has gone fails with EPIPE, and the process lives on
 * with its disposition and mask as they were. */
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pthread.h>

#include "check.h"
#include "nosigpipe.h"

static void gone_reader(int fd, int is_socket) {
  unsigned char notsock = 0;
  char data[100];
  memset(data, 'x', sizeof(data));
  uv_buf_t b[2] = {uv_buf_init(data, 60), uv_buf_init(data + 60, 40)};
  ssize_t n = rill__writev_nosigpipe(fd, b, 2, MSG_DONTWAIT, &notsock);
  CHECK(n == UV_EPIPE, "a write to a gone reader: %zd", n);
  CHECK(notsock == !is_socket, "notsock %d for %s", notsock,
        is_socket ? "a socket" : "a pipe");
  n = rill__writev_nosigpipe(fd, b, 2, 0, &notsock); /* again: still alive */
  CHECK(n == UV_EPIPE, "a second write: %zd", n);
  rill__write_all_nosigpipe(fd, data, sizeof(data));
}

int main(void) {
  signal(SIGPIPE, SIG_DFL);
  sigset_t pipe_set, mask;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_UNBLOCK, &pipe_set, NULL);

  /* one call, both buffers, by reference */
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
  unsigned char notsock = 0;
  uv_buf_t b[2] = {uv_buf_init("hello, ", 7), uv_buf_init("world", 5)};
  CHECK(rill__writev_nosigpipe(sv[0], b, 2, MSG_DONTWAIT, &notsock) == 12,
        "writev to a socket");
  char got[16] = {0};
  CHECK(read(sv[1], got, sizeof(got)) == 12 && strcmp(got, "hello, world") == 0,
        "read %s", got);
  close(sv[1]);
  gone_reader(sv[0], 1);
  close(sv[0]);

  int p[2];
  CHECK(pipe(p) == 0, "pipe");
  CHECK(rill__writev_nosigpipe(p[1], b, 2, 0, &notsock) == 12 && notsock == 1,
        "writev to a pipe");
  close(p[0]);
  notsock = 0;
  gone_reader(p[1], 0);
  close(p[1]);

  struct sigaction sa;
  sigaction(SIGPIPE, NULL, &sa);
  CHECK(sa.sa_handler == SIG_DFL, "SIGPIPE's disposition is still the default");
  pthread_sigmask(SIG_BLOCK, NULL, &mask);
  CHECK(!sigismember(&mask, SIGPIPE), "SIGPIPE is still unblocked");
  sigpending(&mask);
  CHECK(!sigismember(&mask, SIGPIPE), "no SIGPIPE left pending");
  printf("nosigpipe: %d checks, %d failures\n", checks, failures);
  return failures != 0;
}
