/* Unix socket files a process listens on. See unix_sock.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "unix_sock.h"

struct rill_unix_sock_s {
  rill_unix_sock_t *next;
  char *path;
  int fd; /* a dup of the socket, for the next listener on the path */
  dev_t dev;
  ino_t ino;
  int refs;
};

static uv_once_t unix_once = UV_ONCE_INIT;
static uv_mutex_t unix_lock;
static rill_unix_sock_t *unix_socks;

static void unix_init(void) {
  uv_mutex_init(&unix_lock);
}

/* Before binding path: nothing there, or a socket nobody listens on any
 * more (removed). Anything else is left alone. */
static int unix_clear(const char *path, const struct sockaddr_un *sun) {
  struct stat st;
  if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : uv_translate_sys_error(errno);
  if (!S_ISSOCK(st.st_mode)) return UV_EEXIST;
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) return uv_translate_sys_error(errno);
  int r = connect(probe, (const struct sockaddr *)sun, sizeof(*sun));
  int e = errno;
  close(probe);
  if (r == 0 || e == EAGAIN)
    return UV_EADDRINUSE; /* someone listens (its queue may be full) */
  if (e != ECONNREFUSED) return uv_translate_sys_error(e);
  return unlink(path) == 0 || errno == ENOENT ? 0 : uv_translate_sys_error(errno);
}

/* A bound unix socket for path, new (its file's permissions mode, unless 0)
 * or a dup of this process's: returns the descriptor (its entry in *us) or
 * an error. */
int rill__unix_open(const char *path, unsigned mode, rill_unix_sock_t **us) {
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(sun.sun_path)) return UV_ENAMETOOLONG;
  memcpy(sun.sun_path, path, strlen(path));
  uv_once(&unix_once, unix_init);
  uv_mutex_lock(&unix_lock);
  for (rill_unix_sock_t *u = unix_socks; u; u = u->next) {
    if (strcmp(u->path, path) != 0) continue;
    int fd = fcntl(u->fd, F_DUPFD_CLOEXEC, 3);
    int r = fd < 0 ? uv_translate_sys_error(errno) : fd;
    if (fd >= 0) {
      u->refs++;
      *us = u;
    }
    uv_mutex_unlock(&unix_lock);
    return r;
  }
  int fd = -1, bound = 0, r = unix_clear(path, &sun);
  rill_unix_sock_t *u = NULL;
  struct stat st;
  if (r == 0 && (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
    r = uv_translate_sys_error(errno);
  if (r == 0 && bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0)
    r = uv_translate_sys_error(errno);
  else if (r == 0)
    bound = 1;
  /* before it listens: nobody connects with the umask's permissions */
  if (r == 0 && mode && chmod(path, mode & 07777) != 0) r = uv_translate_sys_error(errno);
  if (r == 0 && stat(path, &st) != 0) r = uv_translate_sys_error(errno);
  if (r == 0 && ((u = calloc(1, sizeof(*u))) == NULL || (u->path = strdup(path)) == NULL))
    r = UV_ENOMEM;
  if (r == 0 && (u->fd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0)
    r = uv_translate_sys_error(errno);
  if (r) {
    if (fd >= 0) close(fd);
    if (bound) unlink(path); /* the file we made */
    if (u) free(u->path);
    free(u);
    uv_mutex_unlock(&unix_lock);
    return r;
  }
  u->dev = st.st_dev;
  u->ino = st.st_ino;
  u->refs = 1;
  u->next = unix_socks;
  unix_socks = u;
  *us = u;
  uv_mutex_unlock(&unix_lock);
  return fd;
}

/* A listener on the file closed: the last one removes it. */
void rill__unix_release(rill_unix_sock_t *us) {
  uv_mutex_lock(&unix_lock);
  if (--us->refs > 0) {
    uv_mutex_unlock(&unix_lock);
    return;
  }
  for (rill_unix_sock_t **p = &unix_socks; *p; p = &(*p)->next)
    if (*p == us) {
      *p = us->next;
      break;
    }
  uv_mutex_unlock(&unix_lock);
  struct stat st;
  if (stat(us->path, &st) == 0 && st.st_dev == us->dev && st.st_ino == us->ino)
    unlink(us->path);
  close(us->fd);
  free(us->path);
  free(us);
}
