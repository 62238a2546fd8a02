/* Unit tests of unix socket files (core/unix_sock.c): what is at the path
 * before, sharing one socket between listeners, removal by the last. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "unix_sock.h"

#include "check.h"

static char path[108];

static int exists(const char *p) {
  struct stat st;
  return lstat(p, &st) == 0;
}

static int mode_of(const char *p) {
  struct stat st;
  return lstat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

/* A socket bound to path, listening or not. */
static int bound(int listening) {
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0 ||
      (listening && listen(fd, 4) != 0)) {
    perror("bind");
    exit(1);
  }
  return fd;
}

int main(void) {
  snprintf(path, sizeof(path), "/tmp/rill_test_unix_%d.sock", (int)getpid());
  unlink(path);
  rill_unix_sock_t *a, *b;

  /* nothing there: made, with the mode asked for */
  int fa = rill__unix_open(path, 0600, &a);
  CHECK(fa >= 0, "open: %d", fa);
  CHECK(mode_of(path) == 0600, "mode %o", mode_of(path));
  /* the same path again in this process: a dup of the same socket */
  int fb = rill__unix_open(path, 0, &b);
  CHECK(fb >= 0 && fb != fa && a == b, "a second open shares the socket (%d)", fb);
  close(fa);
  rill__unix_release(a);
  CHECK(exists(path), "the file stays while a listener remains");
  close(fb);
  rill__unix_release(b);
  CHECK(!exists(path), "the last release removes the file");

  /* a stale socket (bound, closed) is replaced */
  close(bound(0));
  CHECK(exists(path), "a stale socket file");
  fa = rill__unix_open(path, 0, &a);
  CHECK(fa >= 0, "a stale socket is replaced: %d", fa);
  close(fa);
  rill__unix_release(a);

  /* a socket something listens on is left alone */
  int other = bound(1);
  fa = rill__unix_open(path, 0, &a);
  CHECK(fa == UV_EADDRINUSE, "a live socket: %d", fa);
  CHECK(exists(path), "and its file stays");
  close(other);
  unlink(path);

  /* a file that is not a socket is left alone */
  FILE *f = fopen(path, "w");
  fputs("data", f);
  fclose(f);
  fa = rill__unix_open(path, 0, &a);
  CHECK(fa == UV_EEXIST, "a plain file: %d", fa);
  CHECK(exists(path), "and it stays");
  unlink(path);

  /* a file replaced under the listener is not removed by its release */
  fa = rill__unix_open(path, 0, &a);
  CHECK(fa >= 0, "open: %d", fa);
  unlink(path);
  f = fopen(path, "w");
  fclose(f);
  close(fa);
  rill__unix_release(a);
  CHECK(exists(path), "someone else's file at the path stays");
  unlink(path);

  /* too long for sun_path */
  char longpath[200];
  memset(longpath, 'x', sizeof(longpath) - 1);
  longpath[0] = '/';
  longpath[sizeof(longpath) - 1] = 0;
  CHECK(rill__unix_open(longpath, 0, &a) == UV_ENAMETOOLONG, "a path too long");

  printf("%d checks, %d failures\n", checks, failures);
  return failures != 0;
}
