/* The Lua face of a stream: one userdata type, "rill.stream", for sockets,
 * pipes, HTTP bodies and whatever else implements rill_stream_vt.
 *
 * The userdata binds to its stream and keeps what a Lua read needs: the read
 * in progress, the bytes gathered for it, and the waits of the tasks reading
 * and writing. A read first tries to finish with the bytes the stream holds;
 * only when it cannot does the task wait. The stream's readable() then runs
 * the same step again and, once it finishes, ends the wait with the results.
 * A read that needs bytes from several fills (read(n), read_until) gathers
 * them in acc, taking from the stream only what it returns, so nothing after
 * a separator is consumed. When the stream goes, every wait ends "closed". */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_core.h"
#include "lua_ffi.h"
#include "lua_stream.h"
#include "lua_sched.h"

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

static int acc_append(lstream_ud *s, const char *p, size_t n) {
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

static void rop_reset(lstream_ud *s) {
  s->rop = RILL_ROP_NONE;
  s->parse_seen = 0;
  s->acclen = 0;
  if (s->acccap > READ_UNTIL_MAX) {
    free(s->acc);
    s->acc = NULL;
    s->acccap = 0;
  }
}

/* The read ended without its full result: pushes nil, message, partial. At
 * the end of the stream, read() returns what it has and read_some() nil. */
static int rop_fail(lstream_ud *s, lua_State *L, int err) {
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
  lua_pushstring(L, s->s ? rill__stream_errmsg(s->s, err) : rill__errmsg(err));
  if (s->acclen == 0) return 2;
  lua_pushlstring(L, s->acc, s->acclen);
  return 3;
}

/* Finds s->sep in acc ++ p[0..n), looking only where it could start after
 * what was searched before. Returns its offset in that concatenation, or -1. */
static ssize_t find_sep(lstream_ud *s, const char *p, size_t n) {
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
static int rop_step(lstream_ud *ud, lua_State *L) {
  lstream_ud *s = ud;
  rill_stream_t *st = ud->s;
  for (;;) {
    const char *p;
    size_t n;
    int r = st->vt->peek(st, &p, &n);
    if (r < 0) return rop_fail(s, L, r);
    if (n > 0 && s->rop != RILL_ROP_PARSE) {
      if (s->rop == RILL_ROP_SOME) {
        size_t take = n < s->rop_n ? n : s->rop_n;
        lua_pushlstring(L, p, take);
        st->vt->consume(st, take);
        if (take == s->rop_n) return 1;
        /* A stream that decodes framing (a chunked body) may hold more
         * pieces now: up to max in one string, without waiting. */
        r = st->vt->peek(st, &p, &n);
        if (r < 0 || n == 0) return 1;
        size_t l0;
        const char *s0 = lua_tolstring(L, -1, &l0);
        if (acc_append(s, s0, l0)) return 1;
        lua_pop(L, 1);
        do {
          take = n < s->rop_n - s->acclen ? n : s->rop_n - s->acclen;
          if (acc_append(s, p, take)) break;
          st->vt->consume(st, take);
        } while (s->acclen < s->rop_n && st->vt->peek(st, &p, &n) == 0 && n > 0);
        lua_pushlstring(L, s->acc, s->acclen);
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
          st->vt->consume(st, need);
          return 1;
        }
        if (acc_append(s, p, n)) return rop_fail(s, L, UV_ENOMEM);
        st->vt->consume(st, n);
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
          st->vt->consume(st, used);
          return 1;
        }
        if (s->acclen + n >= s->rop_n + s->seplen) {
          /* No separator can start within max bytes any more. */
          size_t take = s->rop_n + s->seplen - s->acclen;
          if (take > n) take = n;
          acc_append(s, p, take);
          st->vt->consume(st, take);
          return rop_fail(s, L, RILL_ETOOLONG);
        }
        if (acc_append(s, p, n)) return rop_fail(s, L, UV_ENOMEM);
        st->vt->consume(st, n);
      }
    }
    if (s->rop == RILL_ROP_PARSE) {
      /* The parser looks at the stream's own buffer: nothing is copied or
       * consumed before it ends. */
      int nres = 0;
      long used = n > s->parse_seen ? s->parse(s->parse_state, L, p, n, &nres) : 0;
      s->parse_seen = n;
      if (used > 0) {
        st->vt->consume(st, (size_t)used);
        return nres;
      }
      if (used < 0) return nres > 0 ? nres : rop_fail(s, L, (int)used);
      if (n >= s->rop_n) return rop_fail(s, L, RILL_ETOOLONG);
      r = rill__stream_fill(st);
      if (r < 0) return rop_fail(s, L, r == RILL_EOF && n > 0 ? RILL_ECLOSED : r);
      r = st->vt->peek(st, &p, &n);
      if (r == 0 && n <= s->parse_seen) return -1;
      continue;
    }
    r = rill__stream_fill(st);
    if (r < 0) return rop_fail(s, L, r);
    /* fill() may have made bytes available without a callback (a layered
     * stream that decoded framing); only wait if it did not. */
    r = st->vt->peek(st, &p, &n);
    if (r == 0 && n == 0) return -1;
  }
}

/* ---- waits ---- */

enum { W_READ = 1, W_WRITE = 2 };

static int read_cancel(rill_wait_t *wt, int status) {
  lstream_ud *ud = wt->obj;
  int n = rop_fail(ud, rill__wait_task(wt)->co, status);
  rop_reset(ud);
  return n;
}

static int write_cancel(rill_wait_t *wt, int status) {
  lstream_ud *ud = wt->obj;
  lua_State *co = rill__wait_task(wt)->co;
  lua_pushnil(co);
  lua_pushstring(co, ud->s ? rill__stream_errmsg(ud->s, status) : rill__errmsg(status));
  return 2;
}

enum { EV_READABLE = 1, EV_DRAINED = 2, EV_GONE = 4 };

static void face_deferred(rill_defer_t *d);

/* Whether the callback must leave ev for later (a fast path runs). */
static int defer_ev(lstream_ud *ud, unsigned ev) {
  if (ud->w == NULL || !rill__ffi_active(ud->w)) return 0;
  ud->dfr_ev |= ev;
  ud->dfr.run = face_deferred;
  rill__defer(ud->w, &ud->dfr);
  return 1;
}

static void read_ready(lstream_ud *ud) {
  rill_wait_t *wt = rill__waitq_find(&ud->waits, W_READ);
  if (wt == NULL || ud->s == NULL) return;
  int n = rop_step(ud, rill__wait_task(wt)->co);
  if (n < 0) return;
  rop_reset(ud);
  rill__wait_done(wt, n);
}

/* The stream has bytes (or ended): go on with the read that waits. */
static void face_readable(rill_binding_t *b, int status) {
  lstream_ud *ud = rill__container_of(b, lstream_ud, b);
  if (rill__waitq_find(&ud->waits, W_READ) == NULL || defer_ev(ud, EV_READABLE)) return;
  read_ready(ud);
}

static void face_drained(rill_binding_t *b, int status) {
  lstream_ud *ud = rill__container_of(b, lstream_ud, b);
  rill_wait_t *wt = rill__waitq_find(&ud->waits, W_WRITE);
  if (wt == NULL) return;
  ud->dfr_drain_status = status; /* for a deferred run */
  if (defer_ev(ud, EV_DRAINED)) return;
  rill__task_drained(wt, status);
}

/* The stream is closing: the userdata lets go, and whoever waits on it is
 * resumed with "closed". */
static void face_gone(rill_binding_t *b) {
  lstream_ud *ud = rill__container_of(b, lstream_ud, b);
  ud->s = NULL;
  if (ud->waits.head == NULL || defer_ev(ud, EV_GONE)) return;
  rill__waitq_cancel_all(&ud->waits, RILL_ECLOSED);
}

static void face_deferred(rill_defer_t *d) {
  lstream_ud *ud = rill__container_of(d, lstream_ud, dfr);
  unsigned ev = ud->dfr_ev;
  ud->dfr_ev = 0;
  if (ev & EV_READABLE) read_ready(ud);
  if (ev & EV_DRAINED) rill__task_drained(rill__waitq_find(&ud->waits, W_WRITE), ud->dfr_drain_status);
  if ((ev & EV_GONE) || ud->s == NULL) rill__waitq_cancel_all(&ud->waits, RILL_ECLOSED);
}

static const rill_binding_ops_t face_ops = {
    .readable = face_readable,
    .drained = face_drained,
    .gone = face_gone,
};

/* Lets go of the stream without closing it. */
static void face_release(lstream_ud *ud) {
  rill__stream_unbind(&ud->b);
  if (ud->s) face_gone(&ud->b);
}

/* ---- reads ---- */

static int read_start(lua_State *L, lstream_ud *ud) {
  rill_task_t *t = rill__task_check(ud->s->w, L);
  if (ud->s->vt->peek == NULL) return luaL_error(L, "stream is not readable");
  int n = rop_step(ud, L);
  if (n >= 0) {
    rop_reset(ud);
    return n;
  }
  return rill__task_wait(L, t, &ud->waits, W_READ, ud, rill__lstream_wait_ms(ud), read_cancel);
}

static lstream_ud *check_reader(lua_State *L) {
  lstream_ud *ud = toud(L, 1);
  if (ud->s == NULL) luaL_error(L, "attempt to use a closed stream");
  if (rill__waitq_find(&ud->waits, W_READ))
    luaL_error(L, "stream already has a reader waiting");
  return ud;
}

static int l_read_some(lua_State *L) {
  lstream_ud *ud = check_reader(L);
  lua_Integer max = luaL_optinteger(L, 2, READ_SOME_MAX);
  if (max < 1) return luaL_argerror(L, 2, "must be at least 1");
  ud->rop = RILL_ROP_SOME;
  ud->rop_n = (size_t)max;
  return read_start(L, ud);
}

static int l_read(lua_State *L) {
  lstream_ud *ud = check_reader(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  if (n < 0) return luaL_argerror(L, 2, "must not be negative");
  if (n == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  ud->rop = RILL_ROP_EXACT;
  ud->rop_n = (size_t)n;
  return read_start(L, ud);
}

static int l_read_until(lua_State *L) {
  lstream_ud *ud = check_reader(L);
  size_t seplen;
  const char *sep = luaL_checklstring(L, 2, &seplen);
  lua_Integer max = luaL_optinteger(L, 3, READ_UNTIL_MAX);
  if (seplen == 0) return luaL_argerror(L, 2, "separator must not be empty");
  if (max < 0) return luaL_argerror(L, 3, "must not be negative");
  if (ud->sep != ud->sep_small) free(ud->sep);
  ud->sep = seplen <= sizeof(ud->sep_small) ? ud->sep_small : malloc(seplen);
  if (ud->sep == NULL) {
    ud->sep = ud->sep_small;
    return luaL_error(L, "out of memory");
  }
  memcpy(ud->sep, sep, seplen);
  ud->seplen = seplen;
  ud->rop = RILL_ROP_UNTIL;
  ud->rop_n = (size_t)max;
  return read_start(L, ud);
}

/* ---- writes ---- */

int rill__lstream_write_result(lua_State *L, rill_stream_t *s, int r) {
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, rill__stream_errmsg(s, r));
  return 2;
}

static int l_write(lua_State *L) {
  rill_stream_t *s = check_open(L, 1);
  lstream_ud *ud = toud(L, 1);
  rill_task_t *t = rill__task_check(s->w, L);
  if (rill__waitq_find(&ud->waits, W_WRITE))
    return luaL_error(L, "stream already has a writer waiting");
  if (s->vt->write == NULL) return luaL_error(L, "stream is not writable");
  int nargs = lua_gettop(L) - 1;
  uv_buf_t small[8], *bufs = small;
  if (nargs > 8) bufs = lua_newuserdata(L, sizeof(uv_buf_t) * (size_t)nargs);
  for (int i = 0; i < nargs; i++) {
    size_t len;
    const char *p = luaL_checklstring(L, i + 2, &len);
    bufs[i] = uv_buf_init((char *)p, (unsigned)len);
  }
  int r = s->vt->write(s, bufs, (unsigned)nargs);
  if (r == RILL_EAGAIN)
    return rill__task_wait(L, t, &ud->waits, W_WRITE, ud, rill__lstream_wait_ms(ud), write_cancel);
  return rill__lstream_write_result(L, s, r);
}

/* s:_wait_drained(): after a fast write the stream took but asked to wait
 * for (the peer reads slowly): waits like write() would have. */
static int l_wait_drained(lua_State *L) {
  lstream_ud *ud = toud(L, 1);
  if (ud->s == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, rill__errmsg(RILL_ECLOSED));
    return 2;
  }
  rill_task_t *t = rill__task_check(ud->s->w, L);
  if (rill__waitq_find(&ud->waits, W_WRITE))
    return luaL_error(L, "stream already has a writer waiting");
  return rill__task_wait(L, t, &ud->waits, W_WRITE, ud, rill__lstream_wait_ms(ud), write_cancel);
}

/* ---- the fast paths (lua_sched.h: calls from compiled Lua) ---- */

/* The bytes the stream holds for a read that would start now: their count,
 * with *p at them; -1 at the end of the stream (nothing held); 0 when the
 * read must take the slow path (nothing there, an error, a reader waiting,
 * not in a task). */
int rill__ffi_stream_peek(void *face, const char **p) {
  lstream_ud *ud = face;
  rill_stream_t *s = ud->s;
  if (s == NULL || s->vt->peek == NULL || rill__waitq_find(&ud->waits, W_READ) ||
      !rill__ffi_enter(ud->w))
    return 0;
  size_t n = 0;
  int r = s->vt->peek(s, p, &n);
  rill__ffi_leave(ud->w);
  if (r == RILL_EOF) return -1;
  if (r != 0) return 0;
  return n > INT_MAX ? INT_MAX : (int)n;
}

/* Consumes n bytes that rill__ffi_stream_peek showed; returns the bytes held after them
 * (a stream that decodes framing may hold more pieces), or 0. */
int rill__ffi_stream_consume(void *face, size_t n) {
  lstream_ud *ud = face;
  rill_stream_t *s = ud->s;
  if (s == NULL || !rill__ffi_enter(ud->w)) return 0;
  s->vt->consume(s, n);
  const char *p;
  size_t more = 0;
  int r = ud->s ? s->vt->peek(s, &p, &more) : -1;
  rill__ffi_leave(ud->w);
  return r != 0 ? 0 : more > INT_MAX ? INT_MAX : (int)more;
}

/* Writes p[0..n): 0 taken, 1 taken but wait for the drain (_wait_drained),
 * 2 the slow path (nothing was taken: a writer waits, an error to report, not
 * in a task). */
int rill__ffi_stream_write(void *face, const char *p, size_t n) {
  lstream_ud *ud = face;
  rill_stream_t *s = ud->s;
  if (s == NULL || s->vt->write == NULL || n > UINT_MAX ||
      rill__waitq_find(&ud->waits, W_WRITE) || !rill__ffi_enter(ud->w))
    return 2;
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int r = s->vt->write(s, &b, 1);
  rill__ffi_leave(ud->w);
  return r == 0 ? 0 : r == RILL_EAGAIN ? 1 : 2;
}

/* s:flush(): what was written leaves now, not when the task next waits. */
static int l_flush(lua_State *L) {
  rill_stream_t *s = check_open(L, 1);
  return rill__lstream_write_result(L, s, rill__stream_flush(s));
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

/* s:close(): closes the stream (a request body or a message just lets go);
 * whoever waits on it gets "closed". */
static int l_close(lua_State *L) {
  lstream_ud *ud = toud(L, 1);
  rill_stream_t *s = ud->s;
  if (s) {
    if (s->vt->close) s->vt->close(s); /* tells us (gone) if it closes */
    face_release(ud);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* s:_probe() → "idle" | "data" | "closed": for a pool of idle connections.
 * "idle" means nothing is waiting and the end has not come; the stream then
 * reads ahead, so that bytes or an end arriving later show at the next
 * probe (a pooled connection the peer closed, or one it sent stray bytes
 * on, is not one to reuse). */
static int l_probe(lua_State *L) {
  lstream_ud *ud = toud(L, 1);
  rill_stream_t *s = ud->s;
  const char *p;
  size_t n = 0;
  int r = s ? s->vt->peek(s, &p, &n) : RILL_ECLOSED;
  if (r == 0 && n == 0 && !rill__waitq_find(&ud->waits, W_READ)) {
    r = rill__stream_fill(s);
    if (r == 0) r = s->vt->peek(s, &p, &n);
  }
  lua_pushstring(L, r < 0 ? "closed" : n > 0 ? "data" : "idle");
  return 1;
}

static int l_settimeout(lua_State *L) {
  lstream_ud *ud = toud(L, 1);
  if (ud->s == NULL) return luaL_error(L, "attempt to use a closed stream");
  lua_Number ms = luaL_optnumber(L, 2, -1);
  ud->timeout_ms = ms < 0 ? -1 : ms > 2e9 ? 2000000000 : (int)ms;
  lua_settop(L, 1);
  return 1;
}

int rill__lstream_wait_ms(const lstream_ud *ud) {
  if (ud->deadline == 0) return ud->timeout_ms;
  uv_loop_t *loop = ud->w->loop;
  uv_update_time(loop);
  uint64_t now = uv_now(loop);
  int left = ud->deadline <= now ? 0 : ud->deadline - now > 2000000000 ? 2000000000
                                                                       : (int)(ud->deadline - now);
  return ud->timeout_ms < 0 || left < ud->timeout_ms ? left : ud->timeout_ms;
}

/* s:setdeadline([ms]): no wait of s lasts past ms from now (each wait
 * still stops at the timeout too); nil or a negative ms: no deadline. */
static int l_setdeadline(lua_State *L) {
  lstream_ud *ud = toud(L, 1);
  if (ud->s == NULL) return luaL_error(L, "attempt to use a closed stream");
  lua_Number ms = luaL_optnumber(L, 2, -1);
  if (ms < 0) {
    ud->deadline = 0;
  } else {
    uv_update_time(ud->w->loop);
    ud->deadline = uv_now(ud->w->loop) + (uint64_t)(ms > 4e12 ? 4e12 : ms);
    if (ud->deadline == 0) ud->deadline = 1;
  }
  lua_settop(L, 1);
  return 1;
}

static int push_addr(lua_State *L, int peer) {
  rill_stream_t *s = check_open(L, 1);
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

/* s:proxyname(): the load balancer's address, when a PROXY header gave the
 * peer's; nil, err otherwise. */
static int l_proxyname(lua_State *L) {
  rill_stream_t *s = check_open(L, 1);
  char host[64];
  int port = rill__stream_addr(s, RILL_ADDR_PROXY, host, sizeof(host));
  if (port == UV_ENOENT || port == UV_ENOTSUP) {
    lua_pushnil(L);
    lua_pushliteral(L, "no PROXY header");
    return 2;
  }
  return push_addr(L, RILL_ADDR_PROXY);
}

static int l_gc(lua_State *L) {
  lstream_ud *ud = toud(L, 1);
  rill_stream_t *s = ud->s;
  if (ud->w) rill__defer_drop(ud->w, &ud->dfr);
  if (s) {
    rill__stream_unbind(&ud->b);
    ud->s = NULL;
    if (ud->owns && s->vt->close) s->vt->close(s);
  }
  free(ud->acc);
  ud->acc = NULL;
  if (ud->parse_free) ud->parse_free(ud->parse_state);
  ud->parse_state = NULL;
  ud->parse_free = NULL;
  if (ud->sep != ud->sep_small) free(ud->sep);
  ud->sep = ud->sep_small;
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

lstream_ud *rill__lstream_push(lua_State *L, rill_stream_t *s, int owns, int timeout_ms) {
  lstream_ud *ud = lua_newuserdata(L, sizeof(*ud));
  memset(ud, 0, sizeof(*ud));
  ud->s = s;
  ud->w = s->w;
  ud->owns = owns;
  ud->timeout_ms = timeout_ms;
  ud->sep = ud->sep_small;
  rill__stream_bind(s, &ud->b, &face_ops);
  luaL_getmetatable(L, RILL_STREAM_MT);
  lua_setmetatable(L, -2);
  return ud;
}

int rill__lstream_reuse(lstream_ud *ud, rill_stream_t *s, int timeout_ms) {
  if (ud->s != NULL || ud->waits.head != NULL) return -1;
  ud->s = s;
  ud->owns = 0;
  ud->timeout_ms = timeout_ms;
  rop_reset(ud);
  rill__stream_bind(s, &ud->b, &face_ops);
  return 0;
}

lstream_ud *rill__lstream_ud(lua_State *L, int idx) {
  return toud(L, idx);
}

int rill__lstream_read_parsed(lua_State *L, int idx, rill_lstream_parse_fn parse, size_t max) {
  lua_pushvalue(L, idx);
  lua_replace(L, 1);
  lstream_ud *ud = check_reader(L);
  ud->rop = RILL_ROP_PARSE;
  ud->rop_n = max;
  ud->parse = parse;
  ud->parse_seen = 0;
  return read_start(L, ud);
}

rill_stream_t *rill__lstream_check(lua_State *L, int idx) {
  return check_open(L, idx);
}

void rill__lstream_rebind(lua_State *L, int idx, rill_stream_t *s) {
  lstream_ud *ud = toud(L, idx);
  rill__stream_unbind(&ud->b);
  ud->s = s;
  rill__stream_bind(s, &ud->b, &face_ops);
}

rill_stream_t *rill__lstream_take(lua_State *L, int idx) {
  lstream_ud *ud = toud(L, idx);
  rill_stream_t *s = ud->s;
  if (s == NULL) luaL_error(L, "attempt to use a closed stream");
  if (ud->waits.head) luaL_error(L, "the stream is busy");
  rill__stream_unbind(&ud->b);
  ud->s = NULL;
  return s;
}

int rill__lstream_reading(rill_stream_t *s) {
  for (rill_binding_t *b = s->top; b; b = b->below)
    if (b->ops == &face_ops &&
        rill__waitq_find(&rill__container_of(b, lstream_ud, b)->waits, W_READ))
      return 1;
  return 0;
}

/* read, read_some and write are replaced by lua/rill/init.lua with fast paths
 * in front of these (kept as _read, _read_some, _write). */
static const luaL_Reg methods[] = {
    {"read", l_read},
    {"read_some", l_read_some},
    {"_read", l_read},
    {"_read_some", l_read_some},
    {"_write", l_write},
    {"_wait_drained", l_wait_drained},
    {"read_until", l_read_until},
    {"write", l_write},
    {"flush", l_flush},
    {"shutdown", l_shutdown},
    {"close", l_close},
    {"settimeout", l_settimeout},
    {"setdeadline", l_setdeadline},
    {"_probe", l_probe},
    {"peername", l_peername},
    {"proxyname", l_proxyname},
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
