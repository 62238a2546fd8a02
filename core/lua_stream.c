/* The Lua face of a stream: one userdata type, "rill.stream", for sockets,
 * pipes, HTTP bodies and whatever else implements rill_stream_vt.
 *
 * A read first tries to finish with the bytes the stream holds; only when it
 * cannot does it record the task on the stream and yield. The stream's fill
 * callback then runs the same step again and, once it finishes, pushes the
 * results onto the task's coroutine and wakes it. A read that needs bytes from
 * several fills (read(n), read_until) gathers them in s->acc, taking from the
 * stream only what it returns, so nothing after a separator is consumed. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_core.h"
#include "lua_stream.h"
#include "rill_sched.h"
#include "tls.h"

#define READ_SOME_MAX 65536
#define READ_UNTIL_MAX 65536

static lstream_ud *toud(lua_State *L, int idx) {
  return luaL_checkudata(L, idx, RILL_STREAM_MT);
}

static rill_stream_t *check_open(lua_State *L, int idx) {
  lstream_ud *ud = toud(L, idx);
  if (ud->s == NULL) luaL_error(L, "attempt to use a closed stream");
  return ud->s;
}

/* ---- the read step ---- */

static int acc_append(rill_stream_t *s, const char *p, size_t n) {
  if (s->acclen + n > s->acccap) {
    size_t cap = s->acccap ? s->acccap : 256;
    while (cap < s->acclen + n)
      cap *= 2;
    char *a = realloc(s->acc, cap);
    if (a == NULL) return UV_ENOMEM;
    s->acc = a;
    s->acccap = cap;
  }
  memcpy(s->acc + s->acclen, p, n);
  s->acclen += n;
  return 0;
}

static void rop_reset(rill_stream_t *s) {
  s->rop = RILL_ROP_NONE;
  s->acclen = 0;
  if (s->acccap > READ_UNTIL_MAX) {
    free(s->acc);
    s->acc = NULL;
    s->acccap = 0;
  }
}

/* The read ended without its full result: pushes nil, message, partial. At
 * the end of the stream, read() returns what it has and read_some() nil. */
static int rop_fail(rill_stream_t *s, lua_State *L, int err) {
  if (err == RILL_EOF) {
    if (s->acclen == 0) {
      lua_pushnil(L);
      return 1;
    }
    if (s->rop == RILL_ROP_EXACT) {
      lua_pushlstring(L, s->acc, s->acclen);
      return 1;
    }
  }
  lua_pushnil(L);
  lua_pushstring(L, rill__stream_errmsg(s, err));
  if (s->acclen == 0) return 2;
  lua_pushlstring(L, s->acc, s->acclen);
  return 3;
}

/* Finds s->sep in acc ++ p[0..n), looking only where it could start after
 * what was searched before. Returns its offset in that concatenation, or -1. */
static ssize_t find_sep(rill_stream_t *s, const char *p, size_t n) {
  size_t sl = s->seplen, al = s->acclen;
  size_t i = al >= sl ? al - sl + 1 : 0;
  for (; i < al; i++) {
    size_t inacc = al - i;
    if (i + sl > al + n) return -1;
    if (memcmp(s->acc + i, s->sep, inacc) == 0 &&
        memcmp(p, s->sep + inacc, sl - inacc) == 0)
      return (ssize_t)i;
  }
  const char *f = memmem(p, n, s->sep, sl);
  return f ? (ssize_t)(al + (size_t)(f - p)) : -1;
}

/* Tries to finish s's read with what the stream holds. Returns the number of
 * results pushed onto L, or -1 when it asked the stream for more. */
static int rop_step(rill_stream_t *s, lua_State *L) {
  for (;;) {
    const char *p;
    size_t n;
    int r = s->vt->peek(s, &p, &n);
    if (r < 0) return rop_fail(s, L, r);
    if (n > 0) {
      if (s->rop == RILL_ROP_SOME) {
        size_t take = n < s->rop_n ? n : s->rop_n;
        lua_pushlstring(L, p, take);
        s->vt->consume(s, take);
        return 1;
      }
      if (s->rop == RILL_ROP_EXACT) {
        size_t need = s->rop_n - s->acclen;
        if (n >= need) {
          if (s->acclen == 0) {
            lua_pushlstring(L, p, need);
          } else {
            if (acc_append(s, p, need)) return rop_fail(s, L, UV_ENOMEM);
            lua_pushlstring(L, s->acc, s->acclen);
          }
          s->vt->consume(s, need);
          return 1;
        }
        if (acc_append(s, p, n)) return rop_fail(s, L, UV_ENOMEM);
        s->vt->consume(s, n);
      } else { /* RILL_ROP_UNTIL */
        ssize_t f = find_sep(s, p, n);
        if (f >= 0) {
          size_t at = (size_t)f;
          size_t used =
              at + s->seplen - s->acclen; /* bytes of p up to the separator's end */
          if (at > s->rop_n) return rop_fail(s, L, RILL_ETOOLONG);
          if (at <= s->acclen) {
            lua_pushlstring(L, s->acc, at);
          } else if (s->acclen == 0) {
            lua_pushlstring(L, p, at);
          } else {
            if (acc_append(s, p, at - s->acclen)) return rop_fail(s, L, UV_ENOMEM);
            lua_pushlstring(L, s->acc, s->acclen);
          }
          s->vt->consume(s, used);
          return 1;
        }
        if (s->acclen + n >= s->rop_n + s->seplen) {
          /* No separator can start within max bytes any more. */
          size_t take = s->rop_n + s->seplen - s->acclen;
          if (take > n) take = n;
          acc_append(s, p, take);
          s->vt->consume(s, take);
          return rop_fail(s, L, RILL_ETOOLONG);
        }
        if (acc_append(s, p, n)) return rop_fail(s, L, UV_ENOMEM);
        s->vt->consume(s, n);
      }
    }
    r = s->vt->fill(s);
    if (r < 0) return rop_fail(s, L, r);
    /* fill() may have made bytes available without a callback (a layered
     * stream that decoded framing); only wait if it did not. */
    r = s->vt->peek(s, &p, &n);
    if (r == 0 && n == 0) return -1;
  }
}

static void lstream_fill_cb(rill_stream_t *s, int status) {
  rill_task_t *t = s->reader;
  if (t == NULL) return;
  int n = rop_step(s, t->co);
  if (n < 0) return;
  s->reader = NULL;
  rop_reset(s);
  rill__task_wake(t, n);
}

static int read_cancel(rill_task_t *t) {
  rill_stream_t *s = t->wait_obj;
  s->reader = NULL;
  int n = rop_fail(s, t->co, UV_ETIMEDOUT);
  rop_reset(s);
  return n;
}

static int read_start(lua_State *L, rill_stream_t *s) {
  rill_task_t *t = rill__task_check(s->w, L);
  if (s->reader) return luaL_error(L, "stream already has a reader waiting");
  if (s->vt->peek == NULL) return luaL_error(L, "stream is not readable");
  int n = rop_step(s, L);
  if (n >= 0) {
    rop_reset(s);
    return n;
  }
  s->reader = t;
  rill__task_wait(t, s->timeout_ms, read_cancel, s);
  return lua_yield(L, 0);
}

static int l_read_some(lua_State *L) {
  rill_stream_t *s = check_open(L, 1);
  lua_Integer max = luaL_optinteger(L, 2, READ_SOME_MAX);
  if (max < 1) return luaL_argerror(L, 2, "must be at least 1");
  if (s->reader) return luaL_error(L, "stream already has a reader waiting");
  s->rop = RILL_ROP_SOME;
  s->rop_n = (size_t)max;
  return read_start(L, s);
}

static int l_read(lua_State *L) {
  rill_stream_t *s = check_open(L, 1);
  lua_Integer n = luaL_checkinteger(L, 2);
  if (n < 0) return luaL_argerror(L, 2, "must not be negative");
  if (s->reader) return luaL_error(L, "stream already has a reader waiting");
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  s->rop = RILL_ROP_EXACT;
  s->rop_n = (size_t)n;
  return read_start(L, s);
}

static int l_read_until(lua_State *L) {
  rill_stream_t *s = check_open(L, 1);
  size_t seplen;
  const char *sep = luaL_checklstring(L, 2, &seplen);
  lua_Integer max = luaL_optinteger(L, 3, READ_UNTIL_MAX);
  if (seplen == 0) return luaL_argerror(L, 2, "separator must not be empty");
  if (max < 0) return luaL_argerror(L, 3, "must not be negative");
  if (s->reader) return luaL_error(L, "stream already has a reader waiting");
  if (s->sep != s->sep_small) free(s->sep);
  s->sep = seplen <= sizeof(s->sep_small) ? s->sep_small : malloc(seplen);
  if (s->sep == NULL) {
    s->sep = s->sep_small;
    return luaL_error(L, "out of memory");
  }
  memcpy(s->sep, sep, seplen);
  s->seplen = seplen;
  s->rop = RILL_ROP_UNTIL;
  s->rop_n = (size_t)max;
  return read_start(L, s);
}

/* ---- writes ---- */

static void lstream_drain_cb(rill_stream_t *s, int status) {
  rill_task_t *t = s->writer;
  if (t == NULL) return;
  s->writer = NULL;
  int n = 1;
  if (status < 0) {
    lua_pushnil(t->co);
    lua_pushstring(t->co, rill__stream_errmsg(s, status));
    n = 2;
  } else {
    lua_pushboolean(t->co, 1);
  }
  rill__task_wake(t, n);
}

static int write_cancel(rill_task_t *t) {
  rill_stream_t *s = t->wait_obj;
  s->writer = NULL;
  lua_pushnil(t->co);
  lua_pushliteral(t->co, "timeout");
  return 2;
}

int rill__lstream_wait_drain(lua_State *L, rill_task_t *t, rill_stream_t *s) {
  if (s->writer) return luaL_error(L, "stream already has a writer waiting");
  s->writer = t;
  rill__task_wait(t, s->timeout_ms, write_cancel, s);
  return lua_yield(L, 0);
}

int rill__lstream_write_result(lua_State *L, rill_task_t *t, rill_stream_t *s, int r) {
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r == RILL_EAGAIN) return rill__lstream_wait_drain(L, t, s);
  lua_pushnil(L);
  lua_pushstring(L, rill__stream_errmsg(s, r));
  return 2;
}

static int l_write(lua_State *L) {
  rill_stream_t *s = check_open(L, 1);
  rill_task_t *t = rill__task_check(s->w, L);
  if (s->writer) return luaL_error(L, "stream already has a writer waiting");
  if (s->vt->write == NULL) return luaL_error(L, "stream is not writable");
  int nargs = lua_gettop(L) - 1;
  uv_buf_t small[8], *bufs = small;
  if (nargs > 8) bufs = lua_newuserdata(L, sizeof(uv_buf_t) * (size_t)nargs);
  for (int i = 0; i < nargs; i++) {
    size_t len;
    const char *p = luaL_checklstring(L, i + 2, &len);
    bufs[i] = uv_buf_init((char *)p, (unsigned)len);
  }
  return rill__lstream_write_result(L, t, s, s->vt->write(s, bufs, (unsigned)nargs));
}

/* ---- the rest ---- */

static int l_shutdown(lua_State *L) {
  rill_stream_t *s = check_open(L, 1);
  int r = s->vt->shutdown ? s->vt->shutdown(s) : 0;
  if (r < 0) {
    lua_pushnil(L);
    lua_pushstring(L, rill__errmsg(r));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_close(lua_State *L) {
  lstream_ud *ud = toud(L, 1);
  rill_stream_t *s = ud->s;
  if (s) {
    rill__stream_detach(s);
    if (s->vt->close) s->vt->close(s);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_settimeout(lua_State *L) {
  rill_stream_t *s = check_open(L, 1);
  lua_Number ms = luaL_optnumber(L, 2, -1);
  s->timeout_ms = ms < 0 ? -1 : ms > 2e9 ? 2000000000 : (int)ms;
  lua_settop(L, 1);
  return 1;
}

static int push_addr(lua_State *L, int peer) {
  rill_stream_t *s = check_open(L, 1);
  while (rill__tls_is(s)) s = rill__tls_lower(s);
  char host[64];
  int port = rill__stream_addr(s, peer, host, sizeof(host));
  if (port < 0) {
    lua_pushnil(L);
    lua_pushstring(L, rill__errmsg(port));
    return 2;
  }
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 2;
}

static int l_peername(lua_State *L) {
  return push_addr(L, 1);
}

static int l_sockname(lua_State *L) {
  return push_addr(L, 0);
}

static int l_gc(lua_State *L) {
  lstream_ud *ud = toud(L, 1);
  rill_stream_t *s = ud->s;
  if (s == NULL) return 0;
  s->ud = NULL;
  ud->s = NULL;
  if (ud->owns && s->vt->close) s->vt->close(s);
  return 0;
}

static int l_tostring(lua_State *L) {
  lstream_ud *ud = toud(L, 1);
  if (ud->s)
    lua_pushfstring(L, "rill.stream (%s): %p", ud->s->vt->name, (void *)ud);
  else
    lua_pushfstring(L, "rill.stream (closed): %p", (void *)ud);
  return 1;
}

void rill__stream_detach(rill_stream_t *s) {
  lstream_ud *ud = s->ud;
  if (ud) {
    ud->s = NULL;
    s->ud = NULL;
  }
  if (s->w->stopping) {
    s->reader = s->writer = NULL;
    return;
  }
  rill_task_t *t = s->reader;
  if (t) {
    s->reader = NULL;
    int n = rop_fail(s, t->co, RILL_ECLOSED);
    rop_reset(s);
    rill__task_wake(t, n);
  }
  t = s->writer;
  if (t) {
    s->writer = NULL;
    lua_pushnil(t->co);
    lua_pushliteral(t->co, "closed");
    rill__task_wake(t, 2);
  }
}

void rill__lstream_push(lua_State *L, rill_stream_t *s, int owns) {
  lstream_ud *ud = lua_newuserdata(L, sizeof(*ud));
  ud->s = s;
  ud->owns = owns;
  s->ud = ud;
  if (s->fill_cb == NULL) s->fill_cb = lstream_fill_cb;
  if (s->drain_cb == NULL) s->drain_cb = lstream_drain_cb;
  luaL_getmetatable(L, RILL_STREAM_MT);
  lua_setmetatable(L, -2);
}

void rill__lstream_fill_cb(rill_stream_t *s, int status) {
  lstream_fill_cb(s, status);
}

void rill__lstream_drain_cb(rill_stream_t *s, int status) {
  lstream_drain_cb(s, status);
}

rill_stream_t *rill__lstream_check(lua_State *L, int idx) {
  return check_open(L, idx);
}

static const luaL_Reg methods[] = {
    {"read", l_read},
    {"read_some", l_read_some},
    {"read_until", l_read_until},
    {"write", l_write},
    {"shutdown", l_shutdown},
    {"close", l_close},
    {"settimeout", l_settimeout},
    {"peername", l_peername},
    {"sockname", l_sockname},
    {NULL, NULL},
};

void rill__lstream_open(lua_State *L) {
  rill__new_class(L, RILL_STREAM_MT, methods, l_gc);
  luaL_getmetatable(L, RILL_STREAM_MT);
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

void rill__lstream_rebind(void *udp, rill_stream_t *s) {
  lstream_ud *ud = udp;
  if (ud->s) ud->s->ud = NULL;
  ud->s = s;
  s->ud = ud;
  s->fill_cb = lstream_fill_cb;
  s->drain_cb = lstream_drain_cb;
}
