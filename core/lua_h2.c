/* The Lua face of an HTTP/2 request stream (h2_conn.h): a userdata with the
 * methods of lua_http.c's connection face, so that lua/rill/http.lua's
 * request and response objects (and the router, middleware and proxy above
 * them) work unchanged. One userdata per request stream; gen is the stream
 * id. A file (conn:_sendfile) is read in the pool into pooled buffers
 * queued by reference as DATA, one buffer a call, never through a Lua
 * string. An Extended CONNECT (RFC 8441) becomes a tunnel (conn:upgrade)
 * that a websocket frames on. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include <nghttp2/nghttp2.h>

#include "deflate.h"
#include "file.h"
#include "h2_conn.h"
#include "inflate_stream.h"
#include "lua_core.h"
#include "lua_ffi.h"
#include "lua_h2.h"
#include "lua_sched.h"
#include "lua_stream.h"
#include "tls.h"

#define H2_MT "rill.http.h2"

typedef struct {
  rill_h2_stream_t *st; /* NULL once the request is over */
  rill_waitq_t waits;
  uint64_t started;
  unsigned send_timeout_ms;
  int cut;
  int ref, gone_ref; /* the face in the registry, for gone(face, id); or LUA_NOREF */
  rill_fsop_t *op;   /* a file read in the pool (conn:_sendfile) */
  size_t file_n;     /* its bytes, reported once the queue has drained */
} lh2_ud;

enum { W_WRITE, W_FILE };

static void task_done(rill_task_t *t, int status) {
  lh2_ud *ud = t->done_data;
  rill_h2_stream_t *st = ud->st;
  ud->st = NULL;
  rill__waitq_cancel_all(&ud->waits, RILL_ECLOSED);
  if (ud->ref != LUA_NOREF && st->c->w->L && !st->c->w->stopping)
    luaL_unref(st->c->w->L, LUA_REGISTRYINDEX, ud->ref);
  ud->ref = LUA_NOREF;
  st->data = NULL;
  if (ud->cut) rill__h2_reset(st, NGHTTP2_INTERNAL_ERROR);
  rill__h2_stream_handler_done(st, status == 0);
}

/* The worker's teardown ended the task unreported: the stream goes. */
static void abandon(rill_h2_stream_t *st) {
  lh2_ud *ud = st->data;
  st->data = NULL;
  if (ud) {
    ud->st = NULL;
    if (ud->op) rill__fsop_abandon(ud->op);
    ud->op = NULL;
  }
}

void rill__lh2_start(rill_h2_stream_t *st, int dispatch_ref, int handler_ref,
                     int gone_ref, unsigned send_timeout_ms) {
  rill_worker_t *w = st->c->w;
  rill_task_t *t = rill__task_new(w, "request handler");
  if (t == NULL) {
    rill__h2_stream_handler_done(st, 0);
    return;
  }
  lua_State *co = t->co;
  w->requests++;
  RILL_COUNT(w->m->requests, 1);
  lua_rawgeti(co, LUA_REGISTRYINDEX, dispatch_ref);
  lua_rawgeti(co, LUA_REGISTRYINDEX, handler_ref);
  lh2_ud *ud = lua_newuserdata(co, sizeof(*ud));
  memset(ud, 0, sizeof(*ud));
  ud->st = st;
  ud->started = uv_now(w->loop);
  ud->send_timeout_ms = send_timeout_ms;
  ud->gone_ref = gone_ref;
  luaL_getmetatable(co, H2_MT);
  lua_setmetatable(co, -2);
  ud->ref = LUA_NOREF;
  if (gone_ref != LUA_NOREF) {
    lua_pushvalue(co, -1);
    ud->ref = luaL_ref(co, LUA_REGISTRYINDEX);
  }
  st->data = ud;
  st->abandon = abandon;
  lua_pushinteger(co, st->id);
  t->done = task_done;
  t->done_data = ud;
  t->busy = 1;
  rill__task_start(t, 3);
}

void rill__lh2_drained(rill_h2_stream_t *st, int status) {
  lh2_ud *ud = st->data;
  rill_wait_t *wt = ud ? ud->waits.head : NULL;
  if (wt && wt->kind == W_FILE && status == 0) {
    if (ud->op) return; /* a drain left over from an earlier write */
    lua_pushnumber(rill__wait_task(wt)->co, (lua_Number)ud->file_n);
    rill__wait_done(wt, 1);
    return;
  }
  rill__task_drained(wt, status);
}

void rill__lh2_gone(rill_h2_stream_t *st) {
  lh2_ud *ud = st->data;
  if (ud == NULL || st->c->w->stopping) return; /* a teardown: no more Lua */
  rill__waitq_cancel_all(&ud->waits, RILL_ECLOSED);
  if (ud->ref == LUA_NOREF || ud->gone_ref == LUA_NOREF) return;
  rill_task_t *t = rill__task_new(st->c->w, "on_close callbacks");
  if (t == NULL) return;
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, ud->gone_ref);
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, ud->ref);
  lua_pushinteger(t->co, st->id);
  rill__task_start(t, 2);
}

static rill_h2_stream_t *check(lua_State *L) {
  lh2_ud *ud = luaL_checkudata(L, 1, H2_MT);
  lua_Integer gen = luaL_checkinteger(L, 2);
  if (ud->st == NULL || ud->st->id != gen) luaL_error(L, "the request is over");
  return ud->st;
}

/* conn:reqline(gen) → method, target, 20 (http.lua's version "2")
 * [, an Extended CONNECT's :protocol] */
static int l_reqline(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  lua_pushlstring(L, st->head.method, st->head.method_len);
  lua_pushlstring(L, st->head.path, st->head.path_len);
  lua_pushinteger(L, 20);
  if (st->head.protocol_len == 0) return 3;
  lua_pushlstring(L, st->head.protocol, st->head.protocol_len);
  return 4;
}

static int l_closed(lua_State *L) {
  lh2_ud *ud = luaL_checkudata(L, 1, H2_MT);
  lua_pushboolean(L, ud->st == NULL || ud->st->closed ||
                         ud->st->id != luaL_checkinteger(L, 2));
  return 1;
}

/* Adds a field to the table on top: a repeated field's values in an array. */
static void add_field(lua_State *L, const char *name, size_t nlen, const char *value,
                      size_t vlen) {
  lua_pushlstring(L, name, nlen);
  lua_pushvalue(L, -1);
  lua_rawget(L, -3);
  int type = lua_type(L, -1);
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    lua_pushlstring(L, value, vlen);
    lua_rawset(L, -3);
  } else if (type == LUA_TSTRING) {
    lua_createtable(L, 2, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
    lua_pushlstring(L, value, vlen);
    lua_rawseti(L, -2, 2);
    lua_rawset(L, -3);
  } else {
    lua_pushlstring(L, value, vlen);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    lua_pop(L, 2);
  }
}

/* The fields as lua_http.c gives them: lower-case names (HTTP/2's are),
 * repeated fields' values in an array; Host from :authority. */
static int l_headers(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  const rill_h2_head_t *h = &st->head;
  lua_createtable(L, 0, (int)h->nhdrs + 1);
  int has_host = 0;
  for (size_t i = 0; i < h->nhdrs; i++) {
    const rill_hdr_t *x = &h->hdrs[i];
    if (x->nlen == 4 && memcmp(x->name, "host", 4) == 0) has_host = 1;
    add_field(L, x->name, x->nlen, x->value, x->vlen);
  }
  if (!has_host && h->authority_len > 0) {
    lua_pushlstring(L, h->authority, h->authority_len);
    lua_setfield(L, -2, "host");
  }
  return 1;
}

static int l_raw_headers(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  const rill_h2_head_t *h = &st->head;
  lua_createtable(L, (int)h->nhdrs * 2, 0);
  for (size_t i = 0; i < h->nhdrs; i++) {
    lua_pushlstring(L, h->hdrs[i].name, h->hdrs[i].nlen);
    lua_rawseti(L, -2, (int)i * 2 + 1);
    lua_pushlstring(L, h->hdrs[i].value, h->hdrs[i].vlen);
    lua_rawseti(L, -2, (int)i * 2 + 2);
  }
  return 1;
}

static int l_body(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  if (st->body.top) return luaL_error(L, "the body stream was taken already");
  rill__lstream_push(L, &st->body, 0, -1);
  return 1;
}

static int l_peer(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  char host[48];
  int port =
      rill__stream_addr(&st->body, lua_toboolean(L, 3) ? RILL_ADDR_PROXY : RILL_ADDR_PEER,
                        host, sizeof(host));
  if (port < 0) return 0;
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 2;
}

static int l_scheme(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  lua_pushstring(L, st->c->t && rill__tls_is(st->c->t) ? "https" : "http");
  return 1;
}

/* conn:tls_client(gen): the verified client certificate (lua_http.c's). */
static int l_tls_client(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  return st->c->t && rill__ltls_push_client(L, st->c->t) ? 1 : 0;
}

static int write_cancel(rill_wait_t *wt, int status) {
  lh2_ud *ud = wt->obj;
  lua_State *co = rill__wait_task(wt)->co;
  if (ud->st && status == UV_ETIMEDOUT) ud->cut = 1; /* not the whole answer */
  lua_pushnil(co);
  lua_pushstring(co, rill__errmsg(status));
  return 2;
}

static int result(lua_State *L, rill_h2_stream_t *st, int r) {
  lh2_ud *ud = luaL_checkudata(L, 1, H2_MT);
  switch (r) {
  case 0:
  case RILL_HTTP_NOBODY:
    lua_pushboolean(L, 1);
    return 1;
  case RILL_EAGAIN: {
    rill_task_t *t = rill__task_check(st->c->w, L);
    if (ud->waits.head) return luaL_error(L, "the response already has a writer waiting");
    return rill__task_wait(L, t, &ud->waits, W_WRITE, ud, (int)ud->send_timeout_ms,
                           write_cancel);
  }
  case UV_EINVAL:
    return luaL_error(L, "invalid status, header name or header value");
  case RILL_EPROTO:
    return luaL_error(L,
                      "a 2xx answer to an HTTP/2 Extended CONNECT (:protocol %s) says "
                      "its tunnel is open: accept it with req:upgrade_websocket (or "
                      "rill.websocket.upgrade), or answer 4xx",
                      st->head.protocol);
  case UV_EBUSY:
    return luaL_error(L, "the response has already %s",
                      st->resp == RILL_H2_RESP_DONE ? "ended" : "started");
  default:
    lua_pushnil(L);
    lua_pushstring(L, rill__errmsg(r));
    return 2;
  }
}

/* ---- the fast paths (rill.ffi), as lua_http.c's: each answers at once ----
 * The stream of conn whose id is gen, or NULL (over, or another's). */
static rill_h2_stream_t *ffi_stream(void *conn, unsigned gen) {
  rill_h2_stream_t *st = ((lh2_ud *)conn)->st;
  return st && (unsigned)st->id == gen ? st : NULL;
}

/* conn:reqline: the HTTP/2 "version" 20, or -1 for the slow path (over, or
 * an Extended CONNECT, whose :protocol the slow path gives). */
int rill__ffi_h2_reqline(void *conn, unsigned gen, const char **method,
                         const char **target, int *target_len) {
  rill_h2_stream_t *st = ffi_stream(conn, gen);
  if (st == NULL || st->head.protocol_len > 0) return -1;
  *method = st->head.method;
  *target = st->head.path;
  *target_len = (int)st->head.path_len;
  return 20;
}

/* conn:write once the head went: 0 (taken), 1 (taken, wait for the drain)
 * or 2 (the slow path; nothing taken). */
int rill__ffi_h2_write(void *conn, unsigned gen, const char *p, size_t n) {
  rill_h2_stream_t *st = ffi_stream(conn, gen);
  if (st == NULL || st->resp != RILL_H2_RESP_STREAMING || ((lh2_ud *)conn)->waits.head ||
      n == 0 || !rill__ffi_enter(st->c->w))
    return 2;
  rill_worker_t *w = st->c->w;
  int r = rill__h2_write(st, 0, NULL, 0, p, n);
  rill__ffi_leave(w);
  return r == 0 || r == RILL_HTTP_NOBODY ? 0 : r == RILL_EAGAIN ? 1 : 2;
}

/* conn:respond: 0 (done), 2 (the slow path; nothing done), or another
 * status for conn:_result(). */
int rill__ffi_h2_respond(void *conn, unsigned gen, int status, const rill_ffi_hdr_t *h,
                         int nh, const char *body, size_t len) {
  rill_h2_stream_t *st = ffi_stream(conn, gen);
  if (st == NULL || st->resp != RILL_H2_RESP_NONE || ((lh2_ud *)conn)->waits.head ||
      nh < 0 || !rill__ffi_enter(st->c->w))
    return 2;
  rill_worker_t *w = st->c->w;
  int r = rill__h2_respond(st, status, (const rill_hdr_t *)h, (size_t)nh, body, len);
  rill__ffi_leave(w);
  return r; /* 0, RILL_HTTP_NOBODY or a negative error: never 2 */
}

static int l_respond(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  int status = (int)luaL_checkinteger(L, 3);
  size_t len = 0;
  const char *body = luaL_optlstring(L, 5, "", &len);
  rill_hdr_t small[16], *h;
  size_t nh = rill__lhttp_get_hdrs(L, 4, small, 16, &h);
  return result(L, st, rill__h2_respond(st, status, h, nh, body, len));
}

static int l_write(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  int status = (int)luaL_checkinteger(L, 3);
  size_t len;
  const char *data = luaL_checklstring(L, 5, &len);
  rill_hdr_t small[16], *h;
  size_t nh = rill__lhttp_get_hdrs(L, 4, small, 16, &h);
  return result(L, st, rill__h2_write(st, status, h, nh, data, len));
}

static int l_finish(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  if (((lh2_ud *)lua_touserdata(L, 1))->cut) { /* not whole: never ended as if it were */
    rill__h2_reset(st, NGHTTP2_INTERNAL_ERROR);
    lua_pushboolean(L, 1);
    return 1;
  }
  int status = (int)luaL_checkinteger(L, 3);
  if (st->head.protocol_len > 0 && !st->tunnel && st->resp == RILL_H2_RESP_NONE &&
      status < 300) { /* an Extended CONNECT not taken, nothing said: 501 at the end */
    lua_pushboolean(L, 1);
    return 1;
  }
  rill_hdr_t small[16], *h;
  size_t nh = rill__lhttp_get_hdrs(L, 4, small, 16, &h);
  return result(L, st, rill__h2_finish(st, status, h, nh, NULL, 0));
}

static int l_flush(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  int r = 0;
  if (st->resp == RILL_H2_RESP_NONE) {
    int status = (int)luaL_checkinteger(L, 3);
    rill_hdr_t small[16], *h;
    size_t nh = rill__lhttp_get_hdrs(L, 4, small, 16, &h);
    r = rill__h2_write(st, status, h, nh, "", 0);
  }
  if (r == 0) rill__h2_conn_flush(st->c);
  return result(L, st, r);
}

static int l_wait_drained(lua_State *L) {
  return result(L, check(L), RILL_EAGAIN);
}

static int l_result(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  return result(L, st, (int)luaL_checkinteger(L, 3));
}

static int l_response(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  lua_pushstring(L, st->resp == RILL_H2_RESP_NONE   ? "none"
                    : st->resp == RILL_H2_RESP_DONE ? "ended"
                                                    : "started");
  return 1;
}

static int l_cut(lua_State *L) {
  check(L);
  ((lh2_ud *)lua_touserdata(L, 1))->cut = 1;
  return 0;
}

static int l_abort(lua_State *L) {
  rill__h2_reset(check(L), NGHTTP2_INTERNAL_ERROR);
  return 0;
}

/* conn:_body_max(gen, bytes): lowers this request's body limit (never
 * raises it): "too large" past it, and a 413. */
static int l_body_max(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  lua_Number n = luaL_checknumber(L, 3);
  luaL_argcheck(L, n >= 1, 3, "must be at least 1");
  uint64_t max = st->c->session ? st->c->srv->limits.max_body_bytes : 0;
  uint64_t cur = st->max_body ? st->max_body : max;
  if (n < 1.8e19 && (cur == 0 || (uint64_t)n < cur)) st->max_body = (uint64_t)n;
  if (st->max_body && st->in_total > st->max_body && st->in_err == 0)
    st->in_err = RILL_EBODY;
  return 0;
}

static int l_started(lua_State *L) {
  lh2_ud *ud = luaL_checkudata(L, 1, H2_MT);
  lua_pushnumber(L, (lua_Number)ud->started);
  return 1;
}

static const char file_short[] = "file ended early (truncated while it was sent?)";

static int file_cancel(rill_wait_t *wt, int status) {
  lh2_ud *ud = wt->obj;
  lua_State *co = rill__wait_task(wt)->co;
  if (ud->op) rill__fsop_abandon(ud->op); /* it frees itself and its buffer */
  ud->op = NULL;
  if (ud->st && status == UV_ETIMEDOUT) ud->cut = 1; /* not the whole answer */
  lua_pushnil(co);
  lua_pushstring(co, rill__errmsg(status));
  return 2;
}

/* n bytes of the file in buf (taken over) go to the stream's queue: 0 when
 * the caller may report them now, RILL_EAGAIN when they are to be
 * reported once the queue drains (ud->file_n), or an error. */
static int file_queue(lh2_ud *ud, char *buf, size_t n) {
  int r = rill__h2_write_buf(ud->st, buf, n);
  if (r == RILL_EAGAIN) ud->file_n = n;
  return r;
}

static void file_read_cb(rill_fsop_t *op) {
  lh2_ud *ud = op->data;
  int res = op->result;
  char *buf = res > 0 ? rill__fsop_take_buf(op) : NULL;
  ud->op = NULL;
  rill__fsop_free(op);
  rill_wait_t *wt = rill__waitq_find(&ud->waits, W_FILE);
  assert(wt && ud->st); /* else the wait's end abandoned op */
  if (res <= 0) {
    if (res < 0) {
      rill__wait_cancel(wt, res);
      return;
    }
    ud->cut = 1;
    lua_State *co = rill__wait_task(wt)->co;
    lua_pushnil(co);
    lua_pushstring(co, file_short);
    rill__wait_done(wt, 2);
    return;
  }
  int r = file_queue(ud, buf, (size_t)res);
  if (r == RILL_EAGAIN) return; /* rill__lh2_drained ends the wait */
  if (r) {
    rill__wait_cancel(wt, r);
    return;
  }
  lua_pushnumber(rill__wait_task(wt)->co, res);
  rill__wait_done(wt, 1);
}

/* conn:_sendfile(gen, status, headers, file, offset, length) → bytes sent
 * (1..length: call again for the rest) | nil, err | nil, "unsupported"
 * (a compressed body: nothing done; the bytes go by writes). Up to a
 * pooled buffer of the range is read (from the page cache at once if it
 * can, else in the pool) and queued by reference; the call waits while the
 * stream's queue is above its high-water mark (send_timeout each wait). */
static int l_sendfile(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  lh2_ud *ud = lua_touserdata(L, 1);
  rill_worker_t *w = st->c->w;
  rill_task_t *t = rill__task_check(w, L);
  int status = (int)luaL_checkinteger(L, 3);
  rill_hdr_t small[16], *h;
  size_t nh = rill__lhttp_get_hdrs(L, 4, small, 16, &h);
  rill_file_t *f = rill__lfile_check(L, 5);
  lua_Number off = luaL_checknumber(L, 6), len = luaL_checknumber(L, 7);
  luaL_argcheck(L, off >= 0 && off < 9e18, 6, "must be a byte offset");
  luaL_argcheck(L, len >= 1 && len < 9e18, 7, "must be a positive length");
  if (ud->waits.head) return luaL_error(L, "the response already has a writer waiting");
  if (st->zformat) {
    lua_pushnil(L);
    lua_pushliteral(L, "unsupported");
    return 2;
  }
  int r = rill__h2_write(st, status, h, nh, "", 0); /* the head, if it has not gone */
  if (r == 0 && st->nobody) r = RILL_HTTP_NOBODY;
  if (r == RILL_HTTP_NOBODY) {
    lua_pushnumber(L, len);
    return 1;
  }
  if (r) return result(L, st, r);
  size_t n = len < RILL_BUF_SIZE ? (size_t)len : RILL_BUF_SIZE;
  char *buf = rill__buf_get(w);
  if (buf == NULL) return result(L, st, UV_ENOMEM);
  ssize_t got = rill__fs_read_now(f, buf, n, (int64_t)off);
  if (got != RILL_EAGAIN) { /* from the page cache: no trip to the pool */
    if (got <= 0) {
      rill__buf_put(w, buf);
      if (got < 0) return result(L, st, (int)got);
      ud->cut = 1;
      lua_pushnil(L);
      lua_pushstring(L, file_short);
      return 2;
    }
    r = file_queue(ud, buf, (size_t)got);
    if (r == RILL_EAGAIN)
      return rill__task_wait(L, t, &ud->waits, W_FILE, ud, (int)ud->send_timeout_ms,
                             file_cancel);
    if (r) return result(L, st, r);
    lua_pushnumber(L, (lua_Number)got);
    return 1;
  }
  rill__buf_put(w, buf);
  r = rill__fs_read(w, f, n, (int64_t)off, file_read_cb, ud, &ud->op);
  if (r) return result(L, st, r);
  return rill__task_wait(L, t, &ud->waits, W_FILE, ud, (int)ud->send_timeout_ms,
                         file_cancel);
}

/* conn:trailers(gen) → the request's trailer fields (a table as
 * conn:headers gives), or nil before the body has ended */
static int l_trailers(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  if (!st->in_eof) return 0;
  lua_createtable(L, 0, (int)st->ntr);
  const char *p = st->tr;
  for (unsigned i = 0; i < st->ntr; i++) {
    size_t nl = strlen(p);
    const char *v = p + nl + 1;
    size_t vl = strlen(v);
    add_field(L, p, nl, v, vl);
    p = v + vl + 1;
  }
  return 1;
}

static const char *const z_formats[] = {"gzip", "deflate", NULL};

/* conn:_compress(gen, format, level): the response's body is compressed. */
static int l_compress(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  int format =
      luaL_checkoption(L, 3, NULL, z_formats) == 0 ? RILL_Z_GZIP : RILL_Z_DEFLATE;
  lua_Integer level = luaL_checkinteger(L, 4);
  luaL_argcheck(L, level >= 1 && level <= 9, 4, "a level 1-9");
  if (rill__h2_compress(st, format, (int)level) != 0)
    return luaL_error(L, "the response has already started");
  return 0;
}

/* conn:_inflate(gen, format, max) → the request body inflated, "too large"
 * past max bytes (0: no limit). */
static int l_inflate(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  int format =
      luaL_checkoption(L, 3, NULL, z_formats) == 0 ? RILL_Z_GZIP : RILL_Z_DEFLATE;
  lua_Number max = luaL_checknumber(L, 4);
  luaL_argcheck(L, max >= 0, 4, "a byte count");
  if (st->body.top) return luaL_error(L, "the body stream was taken already");
  rill_inflate_stream_t *s = rill__inflate_stream_new(st->c->w, &st->body, format,
                                                      max >= 1.8e19 ? 0 : (uint64_t)max);
  if (s == NULL) return luaL_error(L, "out of memory");
  rill__lstream_push(L, &s->base, 1, -1);
  return 1;
}

/* conn:upgrade(gen, headers [, status]) → the stream of an Extended
 * CONNECT (RFC 8441), after a head of status (2xx, 200 by default) and
 * headers: reads are the request's DATA, writes send DATA, close ends the
 * stream. nil for any other request (a plain CONNECT included), or once
 * the response or the body's reading began. The handler may end before
 * the stream: whoever holds it owns it. */
static int l_upgrade(lua_State *L) {
  rill_h2_stream_t *st = check(L);
  rill_hdr_t small[16], *h;
  size_t nh = rill__lhttp_get_hdrs(L, 3, small, 16, &h);
  int status = (int)luaL_optinteger(L, 4, 200);
  luaL_argcheck(L, status >= 200 && status <= 299, 4, "a 2xx status");
  rill_stream_t *t = rill__h2_tunnel(st, status, h, nh);
  if (t == NULL) return 0;
  rill__lstream_push(L, t, 1, -1);
  return 1;
}

static int h2_tostring(lua_State *L) {
  lh2_ud *ud = luaL_checkudata(L, 1, H2_MT);
  lua_pushfstring(L, "rill.http.h2: %p%s", (void *)ud, ud->st ? "" : " (over)");
  return 1;
}

void rill__open_h2(lua_State *L, rill_worker_t *w) {
  static const luaL_Reg methods[] = {
      {"reqline", l_reqline},
      {"closed", l_closed},
      {"headers", l_headers},
      {"raw_headers", l_raw_headers},
      {"body", l_body},
      {"trailers", l_trailers},
      {"peer", l_peer},
      {"respond", l_respond},
      {"write", l_write},
      {"finish", l_finish},
      {"flush", l_flush},
      {"upgrade", l_upgrade},
      {"scheme", l_scheme},
      {"_wait_drained", l_wait_drained},
      {"_result", l_result},
      {"_response", l_response},
      {"_cut", l_cut},
      {"_abort", l_abort},
      {"_body_max", l_body_max},
      {"_started", l_started},
      {"_sendfile", l_sendfile},
      {"_compress", l_compress},
      {"_inflate", l_inflate},
      {"tls_client", l_tls_client},
      {NULL, NULL},
  };
  (void)w;
  rill__new_class(L, H2_MT, methods, NULL);
  luaL_getmetatable(L, H2_MT);
  lua_pushcfunction(L, h2_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
