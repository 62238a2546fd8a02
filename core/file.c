/* Files through libuv's thread pool. See file.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "file.h"

#define POLL_MS 2 /* the longest a pool thread waits for a full socket */

enum { K_STAT, K_OPEN, K_READ, K_REALPATH, K_READDIR, K_SENDFILE, K_OPENSTAT, K_WRITE, K_PATH };

rill_file_t *rill__file_new(rill_worker_t *w, int fd) {
  rill_file_t *f = malloc(sizeof(*f));
  if (f == NULL) return NULL;
  f->w = w;
  f->fd = fd;
  f->refs = 1;
  return f;
}

void rill__file_unref(rill_file_t *f) {
  if (f == NULL || --f->refs > 0) return;
  rill__fs_close(f->w, f->fd);
  free(f);
}

void rill__file_unref_now(rill_file_t *f) {
  if (f == NULL || --f->refs > 0) return;
  close(f->fd);
  free(f);
}

static rill_fsop_t *op_new(rill_worker_t *w, int kind, rill_fsop_cb cb, void *data) {
  rill_fsop_t *op = calloc(1, sizeof(*op));
  if (op == NULL) return NULL;
  op->w = w;
  op->kind = kind;
  op->cb = cb;
  op->data = data;
  op->close_fd = -1;
  op->req.data = op;
  op->work.data = op;
  return op;
}

/* An operation with a buffer of len bytes (pooled when it fits one). */
static rill_fsop_t *op_with_buf(rill_worker_t *w, int kind, size_t len, rill_fsop_cb cb,
                                void *data) {
  rill_fsop_t *op = op_new(w, kind, cb, data);
  if (op == NULL) return NULL;
  op->len = len;
  op->buf = len <= RILL_BUF_SIZE ? rill__buf_get(w) : malloc(len);
  if (op->buf == NULL) {
    free(op);
    return NULL;
  }
  return op;
}

static void stat_copy(rill_stat_t *out, const uv_stat_t *s) {
  unsigned fmt = (unsigned)s->st_mode & S_IFMT;
  out->type = fmt == S_IFREG ? RILL_FT_FILE
              : fmt == S_IFDIR ? RILL_FT_DIR
              : fmt == S_IFLNK ? RILL_FT_LINK
                               : RILL_FT_OTHER;
  out->size = s->st_size;
  out->mtime_sec = s->st_mtim.tv_sec;
  out->mtime_nsec = s->st_mtim.tv_nsec;
  out->ino = s->st_ino;
  out->dev = s->st_dev;
  out->mode = (unsigned)s->st_mode & 07777;
}

void rill__fs_buf_free(rill_worker_t *w, char *buf, size_t len) {
  if (buf == NULL) return;
  if (len <= RILL_BUF_SIZE)
    rill__buf_put(w, buf);
  else
    free(buf);
}

char *rill__fsop_take_buf(rill_fsop_t *op) {
  char *b = op->buf;
  op->buf = NULL;
  return b;
}

static void close_cb(uv_fs_t *req) {
  uv_fs_req_cleanup(req);
  free(req);
}

void rill__fs_close(rill_worker_t *w, int fd) {
  if (fd < 0) return;
  uv_fs_t *req = malloc(sizeof(*req));
  /* Out of memory: closed here, on the loop (a close of a file opened for
   * reading does not wait on the disk). */
  if (req == NULL || uv_fs_close(w->loop, req, fd, close_cb) != 0) {
    free(req);
    uv_fs_t sync;
    uv_fs_close(NULL, &sync, fd, NULL);
    uv_fs_req_cleanup(&sync);
  }
}

void rill__fsop_free(rill_fsop_t *op) {
  if (op == NULL) return;
  if (op->kind != K_SENDFILE && op->kind != K_OPENSTAT && op->kind != K_WRITE)
    uv_fs_req_cleanup(&op->req);
  free(op->path);
  rill__fs_buf_free(op->w, op->buf, op->len);
  rill__fs_close(op->w, op->close_fd);
  rill__file_unref(op->file);
  free(op);
}

void rill__fsop_abandon(rill_fsop_t *op) {
  op->cb = NULL;
}

/* The pool is done: tell the owner, or clean up for one that left. */
static void op_done(rill_fsop_t *op) {
  if (op->cb == NULL) {
    if ((op->kind == K_OPEN || op->kind == K_OPENSTAT) && op->result >= 0)
      op->close_fd = op->result;
    rill__fsop_free(op);
    return;
  }
  op->cb(op);
}

static void fs_cb(uv_fs_t *req) {
  rill_fsop_t *op = req->data;
  op->result = req->result < INT32_MIN ? INT32_MIN : (int)req->result;
  if (op->kind == K_STAT && req->result == 0) stat_copy(&op->st, &req->statbuf);
  op_done(op);
}

/* Starts op with r, the uv_fs_* call's answer. */
static int started(rill_fsop_t *op, int r, rill_fsop_t **out) {
  if (r < 0) {
    op->cb = NULL;
    rill__fsop_free(op);
    *out = NULL;
    return r;
  }
  *out = op;
  return 0;
}

int rill__fs_stat(rill_worker_t *w, const char *path, int follow, rill_fsop_cb cb, void *data,
                  rill_fsop_t **out) {
  rill_fsop_t *op = op_new(w, K_STAT, cb, data);
  *out = NULL;
  if (op == NULL) return UV_ENOMEM;
  int r = follow ? uv_fs_stat(w->loop, &op->req, path, fs_cb)
                 : uv_fs_lstat(w->loop, &op->req, path, fs_cb);
  return started(op, r, out);
}

int rill__fs_fstat(rill_worker_t *w, rill_file_t *f, rill_fsop_cb cb, void *data,
                   rill_fsop_t **out) {
  rill_fsop_t *op = op_new(w, K_STAT, cb, data);
  *out = NULL;
  if (op == NULL) return UV_ENOMEM;
  op->file = rill__file_ref(f);
  return started(op, uv_fs_fstat(w->loop, &op->req, f->fd, fs_cb), out);
}

/* In a pool thread: open and fstat in one trip. */
static void openstat_work(uv_work_t *wk) {
  rill_fsop_t *op = wk->data;
  int fd = open(op->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    op->result = -errno;
    return;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    op->result = -errno;
    close(fd);
    return;
  }
  uv_stat_t us = {0};
  us.st_mode = sb.st_mode;
  us.st_size = (uint64_t)sb.st_size;
  us.st_ino = sb.st_ino;
  us.st_dev = sb.st_dev;
  us.st_mtim.tv_sec = sb.st_mtim.tv_sec;
  us.st_mtim.tv_nsec = sb.st_mtim.tv_nsec;
  stat_copy(&op->st, &us);
  op->result = fd;
}

static void work_after(uv_work_t *wk, int status) {
  rill_fsop_t *op = wk->data;
  if (status < 0) op->result = status; /* cancelled */
  op_done(op);
}

/* In a pool thread: writes all of op->buf, at op->off (or the descriptor's
 * position for -1), through short writes and a descriptor that is not
 * blocking (a pipe shared with another process). A pipe whose reader has
 * gone fails with EPIPE and never raises SIGPIPE (pipe_block). */
/* In a pool thread, around a write that may raise SIGPIPE (sendfile(2) and
 * write(2) have no MSG_NOSIGNAL): SIGPIPE is blocked, and one the write
 * raised (EPIPE) is taken off the thread before the mask is restored, so
 * that a peer that left never kills a host that did not ignore SIGPIPE. */
static void pipe_block(sigset_t *old) {
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, old);
}

static void pipe_restore(const sigset_t *old, int err) {
  if (err == UV_EPIPE) {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    struct timespec zero = {0, 0};
    sigtimedwait(&pipe, NULL, &zero);
  }
  pthread_sigmask(SIG_SETMASK, old, NULL);
}

static void write_work(uv_work_t *wk) {
  rill_fsop_t *op = wk->data;
  sigset_t old;
  pipe_block(&old);
  size_t done = 0;
  int err = 0;
  while (done < op->len) {
    ssize_t n = op->off < 0 ? write(op->file->fd, op->buf + done, op->len - done)
                            : pwrite(op->file->fd, op->buf + done, op->len - done,
                                     (off_t)(op->off + (int64_t)done));
    if (n > 0) {
      done += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd pfd = {.fd = op->file->fd, .events = POLLOUT};
      poll(&pfd, 1, 1000);
      continue;
    }
    err = n < 0 ? -errno : UV_EIO;
    break;
  }
  pipe_restore(&old, err);
  op->result = done > 0 ? (int)(done > INT32_MAX ? INT32_MAX : done) : err;
}

static void work_after(uv_work_t *wk, int status);

int rill__fs_open_flags(rill_worker_t *w, const char *path, int flags, int mode, rill_fsop_cb cb,
                        void *data, rill_fsop_t **out) {
  rill_fsop_t *op = op_new(w, K_OPEN, cb, data);
  *out = NULL;
  if (op == NULL) return UV_ENOMEM;
  return started(op, uv_fs_open(w->loop, &op->req, path, flags | O_CLOEXEC, mode, fs_cb), out);
}

int rill__fs_write(rill_worker_t *w, rill_file_t *f, const char *data_, size_t len, int64_t offset,
                   rill_fsop_cb cb, void *data, rill_fsop_t **out) {
  *out = NULL;
  if (len == 0 || len > UINT_MAX) return UV_EINVAL;
  rill_fsop_t *op = op_with_buf(w, K_WRITE, len, cb, data);
  if (op == NULL) return UV_ENOMEM;
  /* A copy: the caller may walk away while the pool writes. */
  memcpy(op->buf, data_, len);
  op->file = rill__file_ref(f);
  op->off = offset;
  return started(op, uv_queue_work(w->loop, &op->work, write_work, work_after), out);
}

int rill__fs_path_op(rill_worker_t *w, int what, const char *path, const char *path2, int mode,
                     rill_fsop_cb cb, void *data, rill_fsop_t **out) {
  rill_fsop_t *op = op_new(w, K_PATH, cb, data);
  *out = NULL;
  if (op == NULL) return UV_ENOMEM;
  int r;
  switch (what) {
  case RILL_FS_MKDIR:
    r = uv_fs_mkdir(w->loop, &op->req, path, mode, fs_cb);
    break;
  case RILL_FS_RENAME:
    r = uv_fs_rename(w->loop, &op->req, path, path2, fs_cb);
    break;
  case RILL_FS_UNLINK:
    r = uv_fs_unlink(w->loop, &op->req, path, fs_cb);
    break;
  case RILL_FS_RMDIR:
    r = uv_fs_rmdir(w->loop, &op->req, path, fs_cb);
    break;
  default:
    r = UV_EINVAL;
  }
  return started(op, r, out);
}

int rill__fs_open(rill_worker_t *w, const char *path, int stat, rill_fsop_cb cb, void *data,
                  rill_fsop_t **out) {
  if (!stat) return rill__fs_open_flags(w, path, O_RDONLY, 0, cb, data, out);
  rill_fsop_t *op = op_new(w, K_OPENSTAT, cb, data);
  *out = NULL;
  if (op == NULL) return UV_ENOMEM;
  if ((op->path = strdup(path)) == NULL) return started(op, UV_ENOMEM, out);
  return started(op, uv_queue_work(w->loop, &op->work, openstat_work, work_after), out);
}

ssize_t rill__fs_read_now(rill_file_t *f, char *buf, size_t len, int64_t offset) {
#ifdef RWF_NOWAIT
  struct iovec iov = {buf, len};
  ssize_t n;
  do
    n = preadv2(f->fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
  while (n < 0 && errno == EINTR);
  if (n >= 0) return n;
  /* EOPNOTSUPP: a file system without it; read in the pool */
  return errno == EAGAIN || errno == EOPNOTSUPP || errno == ENOSYS ? RILL_EAGAIN : -errno;
#else
  (void)f, (void)buf, (void)len, (void)offset;
  return RILL_EAGAIN;
#endif
}

int rill__fs_read(rill_worker_t *w, rill_file_t *f, size_t len, int64_t offset, rill_fsop_cb cb,
                  void *data, rill_fsop_t **out) {
  *out = NULL;
  if (len == 0 || len > UINT_MAX) return UV_EINVAL;
  rill_fsop_t *op = op_with_buf(w, K_READ, len, cb, data);
  if (op == NULL) return UV_ENOMEM;
  op->file = rill__file_ref(f);
  uv_buf_t b = uv_buf_init(op->buf, (unsigned)len);
  return started(op, uv_fs_read(w->loop, &op->req, f->fd, &b, 1, offset, fs_cb), out);
}

int rill__fs_realpath(rill_worker_t *w, const char *path, rill_fsop_cb cb, void *data,
                      rill_fsop_t **out) {
  rill_fsop_t *op = op_new(w, K_REALPATH, cb, data);
  *out = NULL;
  if (op == NULL) return UV_ENOMEM;
  return started(op, uv_fs_realpath(w->loop, &op->req, path, fs_cb), out);
}

int rill__fs_readdir(rill_worker_t *w, const char *path, rill_fsop_cb cb, void *data,
                     rill_fsop_t **out) {
  rill_fsop_t *op = op_new(w, K_READDIR, cb, data);
  *out = NULL;
  if (op == NULL) return UV_ENOMEM;
  return started(op, uv_fs_scandir(w->loop, &op->req, path, 0, fs_cb), out);
}

int rill__fs_next(rill_fsop_t *op, const char **name, int *type) {
  uv_dirent_t d;
  while (uv_fs_scandir_next(&op->req, &d) == 0) {
    if (strcmp(d.name, ".") == 0 || strcmp(d.name, "..") == 0) continue;
    *name = d.name;
    *type = d.type == UV_DIRENT_FILE  ? RILL_FT_FILE
            : d.type == UV_DIRENT_DIR ? RILL_FT_DIR
            : d.type == UV_DIRENT_LINK ? RILL_FT_LINK
                                       : RILL_FT_OTHER;
    return 1;
  }
  return 0;
}

/* In a pool thread. sendfile(2) has no MSG_NOSIGNAL: SIGPIPE is blocked
 * around it and one it raised is taken off the thread before the mask is
 * restored, so that a client that left never kills a host that did not
 * ignore SIGPIPE. */
static void sendfile_work(uv_work_t *wk) {
  rill_fsop_t *op = wk->data;
  sigset_t old;
  pipe_block(&old);
  off_t off = (off_t)op->off;
  size_t sent = 0;
  int err = 0, again = 0;
  /* A socket buffer may take more than one call's worth; go on until the
   * range is sent or the file ends. When the socket is full, wait a little
   * for the client to make room (POLL_MS): a client reading at full speed
   * keeps the pool thread sending without a trip through the loop per
   * socket buffer; a slow one gives the thread back within POLL_MS. */
  while (sent < op->len) {
    ssize_t n = sendfile(op->out_fd, op->file->fd, &off, op->len - sent);
    if (n > 0) {
      sent += (size_t)n;
      continue;
    }
    if (n == 0) break; /* the file is shorter than the range */
    if (errno == EINTR) continue;
    if (errno != EAGAIN) {
      err = -errno;
      break;
    }
    struct pollfd pfd = {.fd = op->out_fd, .events = POLLOUT};
    if (poll(&pfd, 1, POLL_MS) == 1) continue;
    again = 1;
    break;
  }
  pipe_restore(&old, err);
  op->sent = sent;
  /* bytes sent; or the error; or EAGAIN (the socket took nothing); or 0:
   * the file ended before the range did */
  op->result = sent > 0 ? (int)(sent > INT32_MAX ? INT32_MAX : sent)
               : err    ? err
               : again  ? UV_EAGAIN
                        : 0;
}

int rill__fs_sendfile(rill_worker_t *w, int out_fd, rill_file_t *f, int64_t offset, size_t len,
                      rill_fsop_cb cb, void *data, rill_fsop_t **out) {
  rill_fsop_t *op = op_new(w, K_SENDFILE, cb, data);
  *out = NULL;
  if (op == NULL) return UV_ENOMEM;
  op->out_fd = out_fd;
  op->file = rill__file_ref(f);
  op->off = offset;
  op->len = len;
  return started(op, uv_queue_work(w->loop, &op->work, sendfile_work, work_after), out);
}

const char *rill__fs_type_name(int type) {
  static const char *const names[] = {"file", "directory", "link", "other"};
  return names[type >= 0 && type <= RILL_FT_OTHER ? type : RILL_FT_OTHER];
}
