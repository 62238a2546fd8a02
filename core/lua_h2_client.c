/* The Lua face of HTTP/2's client role (h2_client.c), for
 * lua/rill/client.lua:
 *
 *   local conn = core.h2_client(sock, {idle_timeout = ms})  -- takes sock
 *   local req = conn:request(method, scheme, authority, path, {name, value, ...},
 *                            has_body, content_length)
 *   req:write(data, ms) / req:finish()           -- the request body
 *   local status, headers, raw = req:head(ms)    -- waits for the response head
 *   local body = req:body()                      -- a rill.stream
 *   req:done()                                   -- the stream may go (reset if open)
 *
 * A request userdata keeps its connection's userdata alive (its uservalue),
 * and the connection's userdata holds the role (rill_h2_server_t) the C
 * connection points at: collecting it closes the connection first. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include <nghttp2/nghttp2.h>

#include "h2_conn.h"
#include "lua_core.h"
#include "lua_h2.h"
#include "lua_sched.h"
#include "lua_stream.h"

#define CONN_MT "rill.http.h2client"
#define REQ_MT "rill.http.h2request"

typedef struct {
  rill_h2_server_t role;
  rill_h2_conn_t *c; /* NULL once closed */
} lconn_t;

typedef struct {
  rill_h2_stream_t *st; /* NULL once done */
  rill_waitq_t waits;
  rill_worker_t *w;
} lreq_t;

enum { W_HEAD, W_WRITE };

static int ms_arg(lua_State *L, int idx) {
  lua_Number ms = luaL_optnumber(L, idx, -1);
  return ms < 0 ? -1 : ms > 2e9 ? 2000000000 : (int)ms;
}

/* ---- the role's callbacks ---- */

static void on_head(rill_h2_stream_t *st) {
  lreq_t *r = st->data;
  rill_wait_t *wt = r ? rill__waitq_find(&r->waits, W_HEAD) : NULL;
  if (wt) rill__wait_cancel(wt, 0);
}

static void on_drained(rill_h2_stream_t *st, int status) {
  lreq_t *r = st->data;
  rill_wait_t *wt = r ? rill__waitq_find(&r->waits, W_WRITE) : NULL;
  if (wt) rill__task_drained(wt, status);
}

static void on_close(rill_h2_conn_t *c) {
  lconn_t *lc = c->srv->data;
  lc->c = NULL;
}

/* The worker's teardown: the stream goes without our done(). */
static void abandon(rill_h2_stream_t *st) {
  lreq_t *r = st->data;
  st->data = NULL;
  if (r) r->st = NULL;
}

/* ---- the connection ---- */

/* core.h2_client(sock[, {idle_timeout = ms, window = bytes, max_header_bytes = n}])
 * → conn (window: a response's unread bytes, 256 KiB by default):
 * sock (TLS that chose "h2", or TCP for prior knowledge) is the
 * connection's from now on. */
static int l_h2_client(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  rill__lstream_check(L, 1);
  lconn_t *lc = lua_newuserdata(L, sizeof(*lc));
  memset(lc, 0, sizeof(*lc));
  lc->role.w = w;
  lc->role.client = 1;
  rill__h2_limits_default(&lc->role.limits, NULL);
  lc->role.limits.max_body_bytes = 0; /* the caller's to limit, as it reads */
  /* The requester's timeouts (read_timeout, timeout) bound its waits for a
   * response's bytes, not the server role's body deadline and rate. */
  lc->role.limits.body_timeout_ms = 0;
  lc->role.limits.min_body_rate = 0;
  lc->role.limits.max_header_bytes = 65536;
  lc->role.limits.max_concurrent_streams = 0; /* no pushes */
  lc->role.limits.stream_window = 262144;     /* a response's unread bytes */
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "idle_timeout");
    if (lua_isnumber(L, -1))
      lc->role.limits.idle_timeout_ms = (unsigned)lua_tonumber(L, -1);
    lua_getfield(L, 2, "window");
    if (lua_isnumber(L, -1)) {
      lua_Number n = lua_tonumber(L, -1);
      luaL_argcheck(L, n >= 65535 && n <= 2147483647, 2, "window: 65535 to 2^31-1 bytes");
      lc->role.limits.stream_window = (uint32_t)n;
    }
    lua_pop(L, 1);
    lua_getfield(L, 2, "max_header_bytes");
    if (lua_isnumber(L, -1))
      lc->role.limits.max_header_bytes = (size_t)lua_tonumber(L, -1);
    lua_pop(L, 2);
  }
  lc->role.on_request = on_head;
  lc->role.on_drained = on_drained;
  lc->role.on_close = on_close;
  lc->role.data = lc;
  luaL_getmetatable(L, CONN_MT);
  lua_setmetatable(L, -2);
  rill_stream_t *t = rill__lstream_take(L, 1);
  lc->c = rill__h2_conn_new(&lc->role, t);
  if (lc->c == NULL) {
    t->vt->abort(t);
    return luaL_error(L, "out of memory");
  }
  return 1;
}

static lconn_t *check_conn(lua_State *L) {
  return luaL_checkudata(L, 1, CONN_MT);
}

/* conn:request(method, scheme, authority, path, {name, value, ...}, has_body,
 * content_length) → req, or nil, err ("closed": take another connection) */
static int l_request(lua_State *L) {
  lconn_t *lc = check_conn(L);
  rill_h2_head_t h;
  memset(&h, 0, sizeof(h));
  h.method = luaL_checklstring(L, 2, &h.method_len);
  h.scheme = luaL_checklstring(L, 3, &h.scheme_len);
  h.authority = luaL_checklstring(L, 4, &h.authority_len);
  h.path = luaL_checklstring(L, 5, &h.path_len);
  rill_hdr_t small[16], *hd;
  h.nhdrs = rill__lhttp_get_hdrs(L, 6, small, 16, &hd);
  h.hdrs = hd;
  int with_body = lua_toboolean(L, 7);
  h.content_length = lua_isnumber(L, 8) ? (int64_t)lua_tonumber(L, 8) : -1;
  if (lc->c == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, rill__errmsg(RILL_ECLOSED));
    return 2;
  }
  lreq_t *r = lua_newuserdata(L, sizeof(*r));
  memset(r, 0, sizeof(*r));
  r->w = lc->c->w;
  luaL_getmetatable(L, REQ_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 1);
  lua_setfenv(L, -2); /* the connection's userdata lives while the request does */
  rill_h2_stream_t *st;
  int rv = rill__h2_request(lc->c, &h, with_body, &st);
  if (rv == UV_EINVAL) return luaL_error(L, "invalid method, path, header name or value");
  if (rv) {
    lua_pushnil(L);
    lua_pushstring(L, rill__errmsg(rv));
    return 2;
  }
  r->st = st;
  st->data = r;
  st->abandon = abandon;
  return 1;
}

/* conn:capacity() → how many more requests go out at once now (0: none; a
 * closed connection or one the server is ending) */
static int l_capacity(lua_State *L) {
  lconn_t *lc = check_conn(L);
  lua_pushinteger(L, lc->c ? rill__h2_capacity(lc->c) : 0);
  return 1;
}

/* conn:usable() → whether new requests may go on it */
static int l_usable(lua_State *L) {
  lconn_t *lc = check_conn(L);
  rill_h2_conn_t *c = lc->c;
  lua_pushboolean(L,
                  c && c->session && !c->closing && !c->stopping && !c->goaway_received);
  return 1;
}

/* conn:info() → {streams =, writes =, goaway = error code or nil} (tests) */
static int l_info(lua_State *L) {
  lconn_t *lc = check_conn(L);
  if (lc->c == NULL) return 0;
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, lc->c->nstreams);
  lua_setfield(L, -2, "streams");
  lua_pushnumber(L, (lua_Number)lc->c->writes);
  lua_setfield(L, -2, "writes");
  if (lc->c->goaway_received) {
    lua_pushinteger(L, lc->c->goaway_received_error);
    lua_setfield(L, -2, "goaway");
  }
  return 1;
}

/* conn:ref(on): whether the connection keeps the loop running (not while
 * idle, as a pooled HTTP/1.1 connection does not) */
static int l_ref(lua_State *L) {
  lconn_t *lc = check_conn(L);
  int on = lua_toboolean(L, 2);
  if (lc->c && lc->c->t) {
    rill__stream_ref(lc->c->t, on);
    if (lc->c->timer) {
      if (on)
        uv_ref((uv_handle_t *)lc->c->timer);
      else
        uv_unref((uv_handle_t *)lc->c->timer);
    }
  }
  return 0;
}

/* conn:close(): GOAWAY, then closes; requests in flight fail "closed" */
static int l_conn_close(lua_State *L) {
  lconn_t *lc = check_conn(L);
  if (lc->c) rill__h2_conn_close(lc->c, NGHTTP2_NO_ERROR);
  return 0;
}

static int l_conn_gc(lua_State *L) {
  lconn_t *lc = check_conn(L);
  if (lc->c) {
    lc->c->werr = lc->c->werr ? lc->c->werr : RILL_ECLOSED; /* nothing more is sent */
    rill__h2_conn_close(lc->c, NGHTTP2_NO_ERROR);
  }
  return 0;
}

/* ---- a request ---- */

static lreq_t *check_req(lua_State *L) {
  return luaL_checkudata(L, 1, REQ_MT);
}

/* Why a stream ended without (the rest of) its response. */
static void push_end(lua_State *L, rill_h2_stream_t *st) {
  lua_pushnil(L);
  if (st == NULL) {
    lua_pushliteral(L, "closed");
  } else if (st->close_error == NGHTTP2_REFUSED_STREAM) {
    lua_pushliteral(L, "closed: refused by the server (GOAWAY or REFUSED_STREAM)");
  } else if (st->reset_by_peer) {
    lua_pushfstring(L, "closed: the server reset the stream (%s)",
                    nghttp2_http2_strerror(st->close_error));
  } else if (st->in_err == RILL_EPROTO) {
    lua_pushliteral(L, "bad response: head too large");
  } else if (st->c->goaway_received && st->c->goaway_received_error) {
    lua_pushfstring(L, "closed: the server ended the connection (GOAWAY %s)",
                    nghttp2_http2_strerror(st->c->goaway_received_error));
  } else {
    lua_pushfstring(L, "closed: the connection %s",
                    st->c->werr && st->c->werr != RILL_ECLOSED ? rill__errmsg(st->c->werr)
                                                               : "was closed");
  }
}

/* nil and why a wait or a write failed with status: the stream's end, as
 * push_end says it, for RILL_ECLOSED. Returns 2. */
static int push_failure(lua_State *L, rill_h2_stream_t *st, int status) {
  if (status == RILL_ECLOSED) {
    push_end(L, st);
    return 2;
  }
  lua_pushnil(L);
  lua_pushstring(L, rill__errmsg(status));
  return 2;
}

static int head_cancel(rill_wait_t *wt, int status) {
  lreq_t *r = wt->obj;
  lua_State *co = rill__wait_task(wt)->co;
  if (status == 0) {
    lua_pushboolean(co, 1);
    return 1;
  }
  return push_failure(co, r->st, status);
}

/* req:head([ms]) → status, headers, raw {name, value, ...}; nil, err if the
 * stream ended without a head, or "timeout". Without a head yet it waits
 * (true, then call again). */
static int l_head(lua_State *L) {
  lreq_t *r = check_req(L);
  rill_h2_stream_t *st = r->st;
  if (st == NULL) return luaL_error(L, "the request is done");
  if (!st->got_head) {
    if (st->closed) {
      push_end(L, st);
      return 2;
    }
    rill_task_t *t = rill__task_check(r->w, L);
    if (rill__waitq_find(&r->waits, W_HEAD))
      return luaL_error(L, "the request already has a task waiting for its head");
    return rill__task_wait(L, t, &r->waits, W_HEAD, r, ms_arg(L, 2), head_cancel);
  }
  lua_pushinteger(L, st->status);
  const rill_h2_head_t *h = &st->head;
  lua_createtable(L, 0, (int)h->nhdrs);
  lua_createtable(L, (int)h->nhdrs * 2, 0);
  for (size_t i = 0; i < h->nhdrs; i++) {
    const rill_hdr_t *x = &h->hdrs[i];
    lua_pushlstring(L, x->name, x->nlen);
    lua_rawseti(L, -2, (int)i * 2 + 1);
    lua_pushlstring(L, x->value, x->vlen);
    lua_rawseti(L, -2, (int)i * 2 + 2);
    lua_pushlstring(L, x->name, x->nlen);
    lua_pushvalue(L, -1);
    lua_rawget(L, -4);
    int type = lua_type(L, -1);
    if (type == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushlstring(L, x->value, x->vlen);
      lua_rawset(L, -4);
    } else if (type == LUA_TSTRING) {
      lua_createtable(L, 2, 0);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
      lua_pushlstring(L, x->value, x->vlen);
      lua_rawseti(L, -2, 2);
      lua_rawset(L, -4);
    } else {
      lua_pushlstring(L, x->value, x->vlen);
      lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
      lua_pop(L, 2);
    }
  }
  return 3;
}

/* req:body() → the response body as a rill.stream (once) */
static int l_body(lua_State *L) {
  lreq_t *r = check_req(L);
  if (r->st == NULL) return luaL_error(L, "the request is done");
  if (r->st->body.top) return luaL_error(L, "the body stream was taken already");
  rill__lstream_push(L, &r->st->body, 0, -1);
  return 1;
}

static int write_cancel(rill_wait_t *wt, int status) {
  lreq_t *r = wt->obj;
  return push_failure(rill__wait_task(wt)->co, r->st, status);
}

static int write_result(lua_State *L, lreq_t *r, int rv, int ms) {
  if (rv == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (rv == RILL_EAGAIN) {
    rill_task_t *t = rill__task_check(r->w, L);
    if (rill__waitq_find(&r->waits, W_WRITE))
      return luaL_error(L, "the request body already has a writer waiting");
    return rill__task_wait(L, t, &r->waits, W_WRITE, r, ms, write_cancel);
  }
  return push_failure(L, r->st, rv);
}

/* req:write(data[, ms]) → true; nil, err. Waits while the stream's queue is
 * full (the server's window closed), up to ms. */
static int l_write(lua_State *L) {
  lreq_t *r = check_req(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  if (r->st == NULL) return luaL_error(L, "the request is done");
  if (r->st->resp == RILL_H2_RESP_DONE)
    return luaL_error(L, "the request body has ended");
  return write_result(L, r, rill__h2_write(r->st, 0, NULL, 0, data, len), ms_arg(L, 3));
}

/* req:finish() → true; nil, err: the request body ends */
static int l_finish(lua_State *L) {
  lreq_t *r = check_req(L);
  if (r->st == NULL) return luaL_error(L, "the request is done");
  return write_result(L, r, rill__h2_finish(r->st, 0, NULL, 0, NULL, 0), -1);
}

static void req_done(lreq_t *r) {
  rill_h2_stream_t *st = r->st;
  if (st == NULL) return;
  r->st = NULL;
  rill__waitq_cancel_all(&r->waits, RILL_ECLOSED);
  rill__h2_request_done(st);
}

/* req:reset(): RST_STREAM CANCEL (the request body's source failed) */
static int l_reset(lua_State *L) {
  lreq_t *r = check_req(L);
  if (r->st) rill__h2_reset(r->st, NGHTTP2_CANCEL);
  return 0;
}

/* req:done(): the caller is done with the request; an open stream is reset */
static int l_done(lua_State *L) {
  req_done(check_req(L));
  return 0;
}

/* req:ended() → whether the whole response came (its body read or not) */
static int l_ended(lua_State *L) {
  lreq_t *r = check_req(L);
  lua_pushboolean(L, r->st && r->st->in_eof);
  return 1;
}

static int l_req_gc(lua_State *L) {
  req_done(check_req(L));
  return 0;
}

void rill__open_h2_client(lua_State *L, rill_worker_t *w) {
  static const luaL_Reg funcs[] = {{"h2_client", l_h2_client}, {NULL, NULL}};
  static const luaL_Reg conn_m[] = {{"request", l_request},
                                    {"capacity", l_capacity},
                                    {"usable", l_usable},
                                    {"info", l_info},
                                    {"close", l_conn_close},
                                    {"ref", l_ref},
                                    {NULL, NULL}};
  static const luaL_Reg req_m[] = {
      {"head", l_head}, {"body", l_body},   {"write", l_write}, {"finish", l_finish},
      {"done", l_done}, {"ended", l_ended}, {"reset", l_reset}, {NULL, NULL}};
  rill__register(L, w, funcs);
  rill__new_class(L, CONN_MT, conn_m, l_conn_gc);
  rill__new_class(L, REQ_MT, req_m, l_req_gc);
}
