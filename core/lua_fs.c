/* The Lua face of files (rill.fs): each call starts an operation in libuv's
 * thread pool (file.c) and makes the calling task wait for it; the loop goes
 * on serving meanwhile. Failures are nil, message, code (libuv's error name:
 * "ENOENT", "EACCES", ...).
 *
 *   local st, err, code = fs.stat(path)     -- follows symlinks
 *   local f = fs.open(path); local data = f:read(65536, 0); f:close()
 *
 * A file object ("rill.file") holds a rill_file_t reference; the descriptor
 * is closed when the object is closed or collected and no operation (a read
 * in the pool, a response sending it) still uses it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "file.h"
#include "lua_core.h"
#include "lua_sched.h"

#define FILE_MT "rill.file"
#define READ_MAX (16u << 20) /* the most one file:read returns */

typedef struct {
  rill_file_t *f; /* NULL once closed */
  int64_t pos;    /* where a read or write without an offset starts; -1: at the
                   * descriptor's own position (pipes, terminals, appending) */
  int has_st;     /* opened with cache: st is its stat as of the open */
  rill_stat_t st;
} lfile_ud;

enum { C_STAT, C_LSTAT, C_REALPATH, C_READDIR, C_OPEN, C_READ, C_FSTAT, C_WRITE, C_PATH };

/* A call in progress: the task waits in its queue until the operation
 * calls back, or the wait ends first (a deadline, an interrupt, the
 * worker's end) and the operation is abandoned. */
typedef struct {
  rill_waitq_t waits;
  rill_fsop_t *op;
  int what;        /* C_* */
  lfile_ud *file;  /* C_READ: the object read (alive: on the task's stack) */
  int cache;       /* C_OPEN: keep the outcome in the open-file cache */
  int seq;         /* C_OPEN: the file reads and writes at its own position */
  char path[];     /* for error messages */
} lcall_t;

static void push_error(lua_State *L, int err, const char *path) {
  lua_pushnil(L);
  if (path && *path)
    lua_pushfstring(L, "%s: %s", rill__errmsg(err), path);
  else
    lua_pushstring(L, rill__errmsg(err));
  char name[32];
  uv_err_name_r(err, name, sizeof(name));
  lua_pushstring(L, name);
}

static void push_stat(lua_State *L, const rill_stat_t *st) {
  lua_createtable(L, 0, 7);
  lua_pushstring(L, rill__fs_type_name(st->type));
  lua_setfield(L, -2, "type");
  lua_pushnumber(L, (lua_Number)st->size);
  lua_setfield(L, -2, "size");
  lua_pushnumber(L, (lua_Number)st->mtime_sec + (lua_Number)st->mtime_nsec / 1e9);
  lua_setfield(L, -2, "mtime");
  lua_pushnumber(L, (lua_Number)st->mtime_sec);
  lua_setfield(L, -2, "mtime_sec");
  lua_pushnumber(L, (lua_Number)st->ino);
  lua_setfield(L, -2, "ino");
  lua_pushnumber(L, (lua_Number)st->dev);
  lua_setfield(L, -2, "dev");
  lua_pushinteger(L, (lua_Integer)st->mode);
  lua_setfield(L, -2, "mode");
}

static void push_file(lua_State *L, rill_file_t *f, const rill_stat_t *st, int seq) {
  lfile_ud *ud = lua_newuserdata(L, sizeof(*ud));
  ud->f = f;
  ud->pos = seq ? -1 : 0;
  ud->has_st = st != NULL;
  if (st) ud->st = *st;
  luaL_getmetatable(L, FILE_MT);
  lua_setmetatable(L, -2);
}

/* The wait ended before the operation: it goes on alone and cleans up. */
static int call_cancel(rill_wait_t *wt, int status) {
  lcall_t *c = wt->obj;
  lua_State *co = rill__wait_task(wt)->co;
  push_error(co, status, c->path);
  rill__fsop_abandon(c->op);
  free(c);
  return 3;
}

/* The operation is done: its results go to the waiting task. */
static void call_done(rill_fsop_t *op) {
  lcall_t *c = op->data;
  rill_wait_t *wt = c->waits.head;
  lua_State *co = rill__wait_task(wt)->co;
  int r = op->result, n = 1;
  if (r < 0) {
    if (c->what == C_OPEN && c->cache) rill__fcache_put(op->w, c->path, NULL, r, NULL);
    push_error(co, r, c->path);
    n = 3;
  } else {
    switch (c->what) {
    case C_STAT:
    case C_LSTAT:
    case C_FSTAT:
      push_stat(co, &op->st);
      break;
    case C_REALPATH:
      lua_pushstring(co, op->req.ptr);
      break;
    case C_READDIR: {
      const char *name;
      int type, i = 0;
      lua_newtable(co);
      while (rill__fs_next(op, &name, &type)) {
        lua_createtable(co, 0, 2);
        lua_pushstring(co, name);
        lua_setfield(co, -2, "name");
        lua_pushstring(co, rill__fs_type_name(type));
        lua_setfield(co, -2, "type");
        lua_rawseti(co, -2, ++i);
      }
      break;
    }
    case C_OPEN: {
      rill_file_t *f = rill__file_new(op->w, r);
      if (f == NULL) {
        op->close_fd = r;
        push_error(co, UV_ENOMEM, c->path);
        n = 3;
      } else {
        if (c->cache) rill__fcache_put(op->w, c->path, f, 0, &op->st);
        push_file(co, f, c->cache ? &op->st : NULL, c->seq);
      }
      break;
    }
    case C_READ:
      if (r == 0) {
        lua_pushnil(co); /* the end */
      } else {
        lua_pushlstring(co, op->buf, (size_t)r);
        if (c->file && c->file->pos >= 0) c->file->pos += r;
      }
      break;
    case C_WRITE:
      lua_pushinteger(co, r);
      if (c->file && c->file->pos >= 0) c->file->pos += r;
      break;
    case C_PATH:
      lua_pushboolean(co, 1);
      break;
    }
  }
  rill__fsop_free(op);
  rill__wait_done(wt, n); /* the wait is in c: free it after */
  free(c);
}

static lcall_t *call_new(lua_State *L, int what, const char *path) {
  size_t pl = path ? strlen(path) : 0;
  lcall_t *c = calloc(1, sizeof(*c) + pl + 1);
  if (c == NULL) luaL_error(L, "out of memory");
  c->what = what;
  if (path) memcpy(c->path, path, pl + 1);
  return c;
}

/* Waits for c's operation, started with r. */
static int call_wait(lua_State *L, rill_task_t *t, lcall_t *c, int r) {
  if (r < 0) {
    push_error(L, r, c->path);
    free(c);
    return 3;
  }
  return rill__task_wait(L, t, &c->waits, c->what, c, -1, call_cancel);
}

/* open(2)'s flags for a mode as fopen(3) spells it ("r", "w", "a", "r+",
 * "w+", "a+", and "x" after w for a file that must not exist); -1 for
 * another. */
static int mode_flags(const char *m) {
  int plus = strchr(m, '+') != NULL, x = strchr(m, 'x') != NULL;
  int rw = plus ? O_RDWR : 0;
  for (const char *p = m + 1; *p; p++)
    if (*p != '+' && *p != 'x' && *p != 'b') return -1;
  switch (m[0]) {
  case 'r':
    return x ? -1 : plus ? O_RDWR : O_RDONLY;
  case 'w':
    return (rw ? rw : O_WRONLY) | O_CREAT | O_TRUNC | (x ? O_EXCL : 0);
  case 'a':
    return x ? -1 : (rw ? rw : O_WRONLY) | O_CREAT | O_APPEND;
  }
  return -1;
}

static int path_call(lua_State *L, int what) {
  rill_worker_t *w = rill__upworker(L);
  const char *path = luaL_checkstring(L, 1);
  rill_task_t *t = rill__task_check(w, L);
  /* fs.open(path [, mode] [, {cache = ms}]): options read before anything
   * is made */
  lua_Number ms = -1;
  int flags = O_RDONLY, oi = 2;
  if (what == C_OPEN && lua_type(L, 2) == LUA_TSTRING) {
    flags = mode_flags(lua_tostring(L, 2));
    luaL_argcheck(L, flags >= 0, 2, "a mode: r, w, a, r+, w+, a+ (wx, w+x: must not exist)");
    oi = 3;
  }
  if (what == C_OPEN && !lua_isnoneornil(L, oi)) {
    luaL_argcheck(L, lua_istable(L, oi), oi, "must be a table");
    ms = rill__opt_number(L, oi, "cache", -1);
    luaL_argcheck(L, ms < 0 || flags == O_RDONLY, oi, "cache is for files opened to read");
  }
  lcall_t *c = call_new(L, what, path);
  c->seq = (flags & O_APPEND) != 0;
  int r;
  switch (what) {
  case C_STAT:
  case C_LSTAT:
    r = rill__fs_stat(w, path, what == C_STAT, call_done, c, &c->op);
    break;
  case C_REALPATH:
    r = rill__fs_realpath(w, path, call_done, c, &c->op);
    break;
  case C_READDIR:
    r = rill__fs_readdir(w, path, call_done, c, &c->op);
    break;
  default: {
    /* the open-file cache first */
    if (ms >= 0) {
      rill_file_t *f;
      int err;
      rill_stat_t st;
      if (rill__fcache_get(w, path, (uint64_t)ms, &f, &err, &st)) {
        free(c);
        if (f == NULL) {
          push_error(L, err, path);
          return 3;
        }
        push_file(L, f, &st, 0);
        return 1;
      }
      c->cache = 1;
    }
    if (flags == O_RDONLY)
      r = rill__fs_open(w, path, c->cache, call_done, c, &c->op);
    else
      r = rill__fs_open_flags(w, path, flags, 0666, call_done, c, &c->op);
    break;
  }
  }
  return call_wait(L, t, c, r);
}

/* fs.stat(path) → st | nil, message, code */
static int l_stat(lua_State *L) { return path_call(L, C_STAT); }
/* fs.lstat(path) → st (a symlink itself) | nil, message, code */
static int l_lstat(lua_State *L) { return path_call(L, C_LSTAT); }
/* fs.realpath(path) → the absolute path, links resolved | nil, message, code */
static int l_realpath(lua_State *L) { return path_call(L, C_REALPATH); }
/* fs.readdir(path) → {{name=, type=}, ...} | nil, message, code */
static int l_readdir(lua_State *L) { return path_call(L, C_READDIR); }
/* fs.mkdir(path [, mode]) / fs.rename(from, to) / fs.unlink(path) /
 * fs.rmdir(path) → true | nil, message, code */
static int path_op(lua_State *L, int op) {
  rill_worker_t *w = rill__upworker(L);
  const char *path = luaL_checkstring(L, 1);
  const char *path2 = op == RILL_FS_RENAME ? luaL_checkstring(L, 2) : NULL;
  int mode = op == RILL_FS_MKDIR ? (int)luaL_optinteger(L, 2, 0777) : 0;
  rill_task_t *t = rill__task_check(w, L);
  lcall_t *c = call_new(L, C_PATH, path);
  return call_wait(L, t, c, rill__fs_path_op(w, op, path, path2, mode, call_done, c, &c->op));
}
static int l_mkdir(lua_State *L) { return path_op(L, RILL_FS_MKDIR); }
static int l_rename(lua_State *L) { return path_op(L, RILL_FS_RENAME); }
static int l_unlink(lua_State *L) { return path_op(L, RILL_FS_UNLINK); }
static int l_rmdir(lua_State *L) { return path_op(L, RILL_FS_RMDIR); }

/* core.fs_stdio(fd) → a file reading or writing a duplicate of fd (0, 1 or
 * 2) at its own position, never closing fd itself. */
static int l_stdio(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  int fd = (int)luaL_checkinteger(L, 1);
  luaL_argcheck(L, fd >= 0 && fd <= 2, 1, "0, 1 or 2");
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) {
    push_error(L, -errno, NULL);
    return 3;
  }
  rill_file_t *f = rill__file_new(w, d);
  if (f == NULL) {
    close(d);
    return luaL_error(L, "out of memory");
  }
  push_file(L, f, NULL, 1);
  return 1;
}

/* fs.open(path [, {cache = ms}]) → file (read-only) | nil, message, code.
 * With cache: an open (or its failure) of at most ms ago is reused, and the
 * file's stat as of then comes with it. */
static int l_open(lua_State *L) { return path_call(L, C_OPEN); }

static lfile_ud *check_ud(lua_State *L) {
  return luaL_checkudata(L, 1, FILE_MT);
}

rill_file_t *rill__lfile_check(lua_State *L, int idx) {
  lfile_ud *ud = luaL_checkudata(L, idx, FILE_MT);
  if (ud->f == NULL) luaL_argerror(L, idx, "the file is closed");
  return ud->f;
}

/* file:read(n [, offset]) → up to n bytes | nil at the end | nil, message,
 * code. Without offset it reads on from where the last such read ended. */
static int f_read(lua_State *L) {
  lfile_ud *ud = check_ud(L);
  rill_worker_t *w = rill__upworker(L);
  lua_Number n = luaL_checknumber(L, 2);
  luaL_argcheck(L, n >= 1, 2, "must be at least 1");
  int has_off = !lua_isnoneornil(L, 3);
  lua_Number off = luaL_optnumber(L, 3, 0);
  luaL_argcheck(L, off >= 0 && off < 9e18, 3, "must be a byte offset (0 or more)");
  if (ud->f == NULL) luaL_error(L, "file:read: the file is closed");
  rill_task_t *t = rill__task_check(w, L);
  size_t len = n > READ_MAX ? READ_MAX : (size_t)n;
  lcall_t *c = call_new(L, C_READ, NULL);
  if (!has_off) c->file = ud;
  int r = rill__fs_read(w, ud->f, len, has_off ? (int64_t)off : ud->pos, call_done, c, &c->op);
  return call_wait(L, t, c, r);
}

/* file:_write(data [, offset]) → the byte count written (all of data for a
 * file; maybe less for a pipe) | nil, message, code. Without offset it
 * writes on from where the last read or write ended (or at the end, for a
 * file opened to append). */
static int f_write(lua_State *L) {
  lfile_ud *ud = check_ud(L);
  rill_worker_t *w = rill__upworker(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  int has_off = !lua_isnoneornil(L, 3);
  lua_Number off = luaL_optnumber(L, 3, 0);
  luaL_argcheck(L, off >= 0 && off < 9e18, 3, "must be a byte offset (0 or more)");
  luaL_argcheck(L, len <= READ_MAX, 2, "at most 16 MiB per call");
  if (ud->f == NULL) luaL_error(L, "file:write: the file is closed");
  if (len == 0) {
    lua_pushinteger(L, 0);
    return 1;
  }
  rill_task_t *t = rill__task_check(w, L);
  lcall_t *c = call_new(L, C_WRITE, NULL);
  if (!has_off) c->file = ud;
  int r = rill__fs_write(w, ud->f, data, len, has_off ? (int64_t)off : ud->pos, call_done, c,
                         &c->op);
  return call_wait(L, t, c, r);
}

/* file:stat() → st | nil, message, code. A file from the cache answers at
 * once with its stat as of its open. */
static int f_stat(lua_State *L) {
  lfile_ud *ud = check_ud(L);
  rill_worker_t *w = rill__upworker(L);
  if (ud->f == NULL) luaL_error(L, "file:stat: the file is closed");
  if (ud->has_st) {
    push_stat(L, &ud->st);
    return 1;
  }
  rill_task_t *t = rill__task_check(w, L);
  lcall_t *c = call_new(L, C_FSTAT, NULL);
  return call_wait(L, t, c, rill__fs_fstat(w, ud->f, call_done, c, &c->op));
}

/* file:_read_now(n, offset) → up to n bytes read from the page cache now,
 * without waiting ("" at the end), or nil when they are not all cached (or
 * the read fails): read them in the pool then. For small files sent whole
 * (res:send_file): the bytes join the head in one write. */
static int f_read_now(lua_State *L) {
  lfile_ud *ud = check_ud(L);
  rill_worker_t *w = rill__upworker(L);
  lua_Number n = luaL_checknumber(L, 2), off = luaL_checknumber(L, 3);
  luaL_argcheck(L, n >= 1 && n <= RILL_BUF_SIZE, 2, "must be 1 to 65536");
  luaL_argcheck(L, off >= 0 && off < 9e18, 3, "must be a byte offset");
  if (ud->f == NULL) luaL_error(L, "file:_read_now: the file is closed");
  char *buf = rill__buf_get(w);
  if (buf == NULL) return 0;
  ssize_t r = rill__fs_read_now(ud->f, buf, (size_t)n, (int64_t)off);
  if (r >= 0 && (r == (ssize_t)n || r == 0)) lua_pushlstring(L, buf, (size_t)r);
  rill__buf_put(w, buf);
  /* a short read: the rest is uncached, or the file ends (the caller's
   * length said otherwise: let the pool path find out which) */
  return r >= 0 && (r == (ssize_t)n || r == 0) ? 1 : 0;
}

/* file:close() → true. Returns at once: the descriptor is closed in the
 * pool once nothing uses it. A second close does nothing. */
static int f_close(lua_State *L) {
  lfile_ud *ud = check_ud(L);
  rill__file_unref(ud->f);
  ud->f = NULL;
  lua_pushboolean(L, 1);
  return 1;
}

static int f_gc(lua_State *L) {
  lfile_ud *ud = check_ud(L);
  rill_worker_t *w = rill__upworker(L);
  /* At the worker's end (the Lua state closing) the loop runs no more:
   * the descriptor is closed here. */
  if (ud->f && w->stopping)
    rill__file_unref_now(ud->f);
  else if (ud->f)
    rill__file_unref(ud->f);
  ud->f = NULL;
  return 0;
}

static int f_tostring(lua_State *L) {
  lfile_ud *ud = check_ud(L);
  if (ud->f)
    lua_pushfstring(L, "rill.file: fd %d", ud->f->fd);
  else
    lua_pushliteral(L, "rill.file: closed");
  return 1;
}

void rill__open_fs(lua_State *L, rill_worker_t *w) {
  static const luaL_Reg funcs[] = {{"fs_stat", l_stat},       {"fs_lstat", l_lstat},
                                   {"fs_realpath", l_realpath}, {"fs_readdir", l_readdir},
                                   {"fs_open", l_open},       {"fs_mkdir", l_mkdir},
                                   {"fs_rename", l_rename},   {"fs_unlink", l_unlink},
                                   {"fs_rmdir", l_rmdir},     {"fs_stdio", l_stdio},
                                   {NULL, NULL}};
  static const luaL_Reg methods[] = {
      {"read", f_read}, {"_write", f_write}, {"stat", f_stat}, {"close", f_close},
      {"_read_now", f_read_now}, {NULL, NULL}};
  rill__register(L, w, funcs);
  /* The methods and __gc need the worker as their upvalue. */
  luaL_newmetatable(L, FILE_MT);
  lua_pushstring(L, FILE_MT);
  lua_setfield(L, -2, "__name");
  lua_newtable(L);
  rill__register(L, w, methods);
  lua_setfield(L, -2, "__index");
  lua_pushlightuserdata(L, w);
  lua_pushcclosure(L, f_gc, 1);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, f_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
