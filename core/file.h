/* Files through libuv's thread pool: stat, open, read, close, realpath,
 * readdir, and sendfile to a socket, each an operation (rill_fsop_t) that
 * runs in the pool and calls back on the loop. Nothing here blocks the loop
 * on the disk. No Lua: the Lua face (lua_fs.c) waits on an operation and is
 * called back.
 *
 * Who owns what: an operation is malloc'd by rill__fsop_new and belongs to
 * the libuv request until its callback has run. Whoever started it may walk
 * away (a task interrupted, a worker torn down) with rill__fsop_abandon: the
 * callback is not called, and the operation cleans up after itself when the
 * pool is done with it (a descriptor an abandoned open returned is closed;
 * a descriptor handed over with close_fd is closed). */
#ifndef RILL_FILE_H
#define RILL_FILE_H

#include "worker.h"

enum { RILL_FT_FILE, RILL_FT_DIR, RILL_FT_LINK, RILL_FT_OTHER };

typedef struct {
  int type; /* RILL_FT_* */
  uint64_t size;
  int64_t mtime_sec;
  long mtime_nsec;
  uint64_t ino, dev;
  unsigned mode; /* permission bits (07777) */
} rill_stat_t;

/* An open file's descriptor, shared by whoever uses it (a Lua file object,
 * operations in the pool, a response sending it): the descriptor is closed
 * (in the pool) when the last reference goes, never while an operation
 * still reads it. */
typedef struct rill_file_s {
  rill_worker_t *w;
  int fd;
  int refs;
} rill_file_t;

/* A file holding fd, with one reference; NULL when out of memory (fd is
 * then the caller's still). */
rill_file_t *rill__file_new(rill_worker_t *w, int fd);
static inline rill_file_t *rill__file_ref(rill_file_t *f) {
  f->refs++;
  return f;
}
void rill__file_unref(rill_file_t *f);
/* The same, closing on the calling thread (when the loop will run no more). */
void rill__file_unref_now(rill_file_t *f);

typedef struct rill_fsop_s rill_fsop_t;
typedef void (*rill_fsop_cb)(rill_fsop_t *op);

struct rill_fsop_s {
  uv_fs_t req;  /* req.result: the outcome (bytes, a descriptor, 0, or an error) */
  uv_work_t work; /* for sendfile */
  rill_worker_t *w;
  rill_fsop_cb cb; /* NULL once abandoned */
  void *data;
  int kind;
  int result;    /* req.result as an int (or the sendfile's error) */
  rill_stat_t st; /* stat, lstat, fstat: filled on success */
  char *buf;      /* read: the bytes (pooled when len <= RILL_BUF_SIZE) */
  char *path;     /* open with stat: a copy */
  size_t len;
  int close_fd;   /* a descriptor to close once the operation is done, or -1 */
  rill_file_t *file; /* read, fstat, sendfile: held until the operation is freed */
  /* sendfile */
  int out_fd;
  int64_t off;
  size_t sent;
};

/* Starts an operation; each returns 0 (cb follows, on the loop) or an error
 * (nothing started, *out NULL). Paths are copied by libuv. */
int rill__fs_stat(rill_worker_t *w, const char *path, int follow, rill_fsop_cb cb, void *data,
                  rill_fsop_t **out);
int rill__fs_fstat(rill_worker_t *w, rill_file_t *f, rill_fsop_cb cb, void *data,
                   rill_fsop_t **out);
/* Opens read-only (O_CLOEXEC); op->result is the descriptor. With stat,
 * op->st is the open file's too (fstat in the same pool trip). */
int rill__fs_open(rill_worker_t *w, const char *path, int stat, rill_fsop_cb cb, void *data,
                  rill_fsop_t **out);
/* Opens with open(2)'s flags (O_CLOEXEC added) and mode (for a file it
 * creates, less the umask); op->result is the descriptor. */
int rill__fs_open_flags(rill_worker_t *w, const char *path, int flags, int mode, rill_fsop_cb cb,
                        void *data, rill_fsop_t **out);
/* Writes a copy of len bytes at offset (-1: at the descriptor's position,
 * the end for O_APPEND); op->result is the byte count written. */
int rill__fs_write(rill_worker_t *w, rill_file_t *f, const char *bytes, size_t len, int64_t offset,
                   rill_fsop_cb cb, void *data, rill_fsop_t **out);
/* mkdir (with mode), rename (path to path2), unlink, rmdir; op->result 0. */
enum { RILL_FS_MKDIR, RILL_FS_RENAME, RILL_FS_UNLINK, RILL_FS_RMDIR };
int rill__fs_path_op(rill_worker_t *w, int what, const char *path, const char *path2, int mode,
                     rill_fsop_cb cb, void *data, rill_fsop_t **out);
/* Reads up to len bytes at offset on the calling thread, only from the page
 * cache (preadv2 with RWF_NOWAIT: it never waits for the disk). Returns
 * the byte count (0 at the end), RILL_EAGAIN when some of it is not cached
 * (read in the pool instead), or an error. */
ssize_t rill__fs_read_now(rill_file_t *f, char *buf, size_t len, int64_t offset);
/* Reads up to len bytes at offset (-1: at the descriptor's position, for
 * pipes and terminals) into a buffer of the operation's
 * (rill__fsop_take_buf takes it over); op->result is the byte count, 0 at
 * the end. */
int rill__fs_read(rill_worker_t *w, rill_file_t *f, size_t len, int64_t offset, rill_fsop_cb cb,
                  void *data, rill_fsop_t **out);
/* op->req.ptr is the path (valid until rill__fsop_free). */
int rill__fs_realpath(rill_worker_t *w, const char *path, rill_fsop_cb cb, void *data,
                      rill_fsop_t **out);
/* Walk the entries with rill__fs_next(op, ...) in the callback. */
int rill__fs_readdir(rill_worker_t *w, const char *path, rill_fsop_cb cb, void *data,
                     rill_fsop_t **out);
/* The next entry of a readdir (without "." and ".."): 1 with *name and *type
 * set, 0 at the end. */
int rill__fs_next(rill_fsop_t *op, const char **name, int *type);
/* Sends up to len bytes of f from offset to the socket out_fd, which is
 * non-blocking: the pool thread waits on the disk, never on the peer.
 * op->sent is the byte count (less than len once the socket is full);
 * op->result is that count (capped at INT32_MAX), or an error, UV_EAGAIN
 * when the socket took nothing, 0 when the file ended before the range.
 * SIGPIPE is never raised. */
int rill__fs_sendfile(rill_worker_t *w, int out_fd, rill_file_t *f, int64_t offset, size_t len,
                      rill_fsop_cb cb, void *data, rill_fsop_t **out);

/* Closes fd in the pool, with nobody told (a close of a file opened to be
 * read has nothing to report). */
void rill__fs_close(rill_worker_t *w, int fd);

/* The operation's read buffer, handed over: free it with rill__fs_buf_free. */
char *rill__fsop_take_buf(rill_fsop_t *op);
void rill__fs_buf_free(rill_worker_t *w, char *buf, size_t len);

/* For the callback's owner once it is done with op (in or after cb). */
void rill__fsop_free(rill_fsop_t *op);
/* The owner walks away from an operation whose callback has not run: it
 * will not run, and op frees itself (closing what it opened). */
void rill__fsop_abandon(rill_fsop_t *op);

/* ---- the open-file cache ----
 * A worker's cache of recent opens (as nginx's open_file_cache): a path's
 * descriptor and stat, or the error its open met, kept for reuse while they
 * are recent enough for the caller (valid_ms, asked at each lookup), at
 * most RILL_FCACHE_MAX entries (the least recently used goes first). The
 * cache holds a reference to each file: a descriptor it drops closes once
 * nobody else uses it. Cleared (every descriptor let go) at the worker's
 * end. */
#define RILL_FCACHE_MAX 1024

/* 1 with *f (a new reference; NULL for a cached failure), *err and *st when
 * path's entry was made or checked at most valid_ms ago; else 0. */
int rill__fcache_get(rill_worker_t *w, const char *path, uint64_t valid_ms, rill_file_t **f,
                     int *err, rill_stat_t *st);
/* Keeps the outcome of opening path now: f (the cache takes a reference of
 * its own) and st, or err (f NULL). Replaces what path had. */
void rill__fcache_put(rill_worker_t *w, const char *path, rill_file_t *f, int err,
                      const rill_stat_t *st);
/* Drops every entry; returns how many there were. */
unsigned rill__fcache_clear(rill_worker_t *w);

/* The type name ("file", "directory", "link", "other") of RILL_FT_*. */
const char *rill__fs_type_name(int type);

#endif /* RILL_FILE_H */
