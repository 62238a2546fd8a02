/* The Lua face of WebSockets: the "rill.websocket" userdata over ws_conn.c,
 * and the handshake helpers. lua/rill/websocket.lua builds the handshake,
 * the client, message objects and streaming sends on top. */
#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_core.h"
#include "lua_ffi.h"
#include "lua_stream.h"
#include "lua_sched.h"
#include "ws_conn.h"

#define WS_MT "rill.websocket"

enum { W_NEXT = 1, W_WRITE, W_CLOSE };

typedef struct {
  rill_websocket_t *ws; /* NULL once freed */
  rill_waitq_t waits;   /* receive(), a send waiting for the drain, close() */
  int timeout_ms;
  int streaming;     /* a message is being sent in pieces (send_stream) */
  lstream_ud *msg;   /* the face of the message stream, made once ... */
  int msg_ref;       /* ... and kept in the registry (LUA_NOREF: none yet) */
  char protocol[64]; /* the negotiated subprotocol, or "" */
  char *extensions;  /* the negotiated Sec-WebSocket-Extensions, or NULL */
  /* what a callback during a fast path left for later (lua_sched.h) */
  rill_worker_t *w;
  rill_defer_t dfr;
  unsigned dfr_ev;
  int dfr_drain_status;
} lws_t;

enum { EV_NEXT = 1, EV_CLOSED = 2, EV_DRAINED = 4, EV_GONE = 8 };

static lws_t *check(lua_State *L) {
  lws_t *u = luaL_checkudata(L, 1, WS_MT);
  if (u->ws == NULL) luaL_error(L, "attempt to use a freed websocket");
  return u;
}

/* Pushes nil, why, code, reason for a websocket that ended. */
static int push_end(lua_State *L, rill_websocket_t *ws, int r) {
  lua_pushnil(L);
  if (r == RILL_ECLOSED || ws->close_received)
    lua_pushliteral(L, "closed");
  else if (r == RILL_EPROTO && ws->errmsg)
    lua_pushstring(L, ws->errmsg);
  else
    lua_pushstring(L, rill__errmsg(r));
  if (ws->close_code) {
    lua_pushinteger(L, ws->close_code);
    lua_pushstring(L, ws->close_reason);
    return 4;
  }
  return 2;
}

/* Pushes the results of rill__ws_next() = r (not EAGAIN). */
static int push_next(lua_State *L, lws_t *u, int r) {
  rill_websocket_t *ws = u->ws;
  if (r == RILL_WS_MESSAGE) {
    lua_pushstring(L, ws->msg_type == RILL_WS_TEXT ? "text" : "binary");
    /* rill__ws_next() let the last message's face go: it serves this one
     * (no userdata, binding and finalizer per message). */
    if (u->msg && rill__lstream_reuse(u->msg, &ws->msg, u->timeout_ms) == 0) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, u->msg_ref);
      return 2;
    }
    u->msg = rill__lstream_push(L, &ws->msg, 0, u->timeout_ms);
    luaL_unref(L, LUA_REGISTRYINDEX, u->msg_ref);
    lua_pushvalue(L, -1);
    u->msg_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 2;
  }
  return push_end(L, ws, r);
}

/* ---- what the websocket tells us ---- */

static void deferred(rill_defer_t *d);

/* Whether a callback with a waiter must leave ev for later (a fast path
 * runs): the waiter's stack keeps u alive until then. */
static int defer_ev(lws_t *u, unsigned ev) {
  if (!rill__ffi_active(u->w)) return 0;
  u->dfr_ev |= ev;
  u->dfr.run = deferred;
  rill__defer(u->w, &u->dfr);
  return 1;
}

static void next_ready(lws_t *u) {
  rill_wait_t *wt = rill__waitq_find(&u->waits, W_NEXT);
  if (wt == NULL || u->ws == NULL) return;
  int r = rill__ws_next(u->ws);
  if (r == RILL_EAGAIN) return;
  rill__wait_done(wt, push_next(rill__wait_task(wt)->co, u, r));
}

static void closed_ready(lws_t *u) {
  rill_wait_t *wt = rill__waitq_find(&u->waits, W_CLOSE);
  if (wt == NULL) return;
  lua_pushboolean(rill__wait_task(wt)->co, 1);
  rill__wait_done(wt, 1);
}

static void on_next(rill_websocket_t *ws) {
  lws_t *u = ws->data;
  if (rill__waitq_find(&u->waits, W_NEXT) == NULL || defer_ev(u, EV_NEXT)) return;
  next_ready(u);
}

static void on_closed(rill_websocket_t *ws) {
  lws_t *u = ws->data;
  if (rill__waitq_find(&u->waits, W_CLOSE) == NULL || defer_ev(u, EV_CLOSED)) return;
  closed_ready(u);
}

static void on_drained(rill_websocket_t *ws, int status) {
  lws_t *u = ws->data;
  rill_wait_t *wt = rill__waitq_find(&u->waits, W_WRITE);
  if (wt == NULL) return;
  u->dfr_drain_status = status; /* for a deferred run */
  if (defer_ev(u, EV_DRAINED)) return;
  rill__task_drained(wt, status);
}

/* Freed under us (a worker's teardown). */
static void on_gone(rill_websocket_t *ws) {
  lws_t *u = ws->data;
  u->ws = NULL;
  if (u->waits.head == NULL || defer_ev(u, EV_GONE)) return;
  rill__waitq_cancel_all(&u->waits, RILL_ECLOSED);
}

static void deferred(rill_defer_t *d) {
  lws_t *u = rill__container_of(d, lws_t, dfr);
  unsigned ev = u->dfr_ev;
  u->dfr_ev = 0;
  if (ev & EV_CLOSED) closed_ready(u);
  if (ev & EV_NEXT) next_ready(u);
  if (ev & EV_DRAINED)
    rill__task_drained(rill__waitq_find(&u->waits, W_WRITE), u->dfr_drain_status);
  if ((ev & EV_GONE) || u->ws == NULL) rill__waitq_cancel_all(&u->waits, RILL_ECLOSED);
}

static const rill_ws_ops_t ws_ops = {
    .next = on_next, .closed = on_closed, .drained = on_drained, .gone = on_gone};

static int wait_cancel(rill_wait_t *wt, int status) {
  lws_t *u = wt->obj;
  lua_State *co = rill__wait_task(wt)->co;
  if (wt->kind == W_NEXT && u->ws) rill__ws_next_cancel(u->ws);
  if (wt->kind == W_NEXT && status == RILL_ECLOSED && u->ws)
    return push_end(co, u->ws, status);
  lua_pushnil(co);
  lua_pushstring(co, rill__errmsg(status));
  return 2;
}

/* ---- methods ---- */

/* ws:next() → type, message stream | nil, "closed", code, reason */
static int l_next(lua_State *L) {
  lws_t *u = check(L);
  rill_websocket_t *ws = u->ws;
  rill_task_t *t = rill__task_check(ws->w, L);
  if (rill__waitq_find(&u->waits, W_NEXT))
    return luaL_error(L, "websocket already has a receiver waiting");
  if (rill__lstream_reading(&ws->msg)) return luaL_error(L, "a message is being read");
  int r = rill__ws_next(ws);
  if (r != RILL_EAGAIN) return push_next(L, u, r);
  return rill__task_wait(L, t, &u->waits, W_NEXT, u, u->timeout_ms, wait_cancel);
}

static int opcode_of(lua_State *L, int idx, int def) {
  static const char *const names[] = {"text", "binary", NULL};
  static const int codes[] = {RILL_WS_TEXT, RILL_WS_BINARY};
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_isnumber(L, idx)) return (int)lua_tointeger(L, idx);
  return codes[luaL_checkoption(L, idx, NULL, names)];
}

/* The results of a send: true, a wait for the transport to drain (the peer
 * reads slowly), or nil and why. */
static int send_result(lua_State *L, lws_t *u, rill_task_t *t, int r) {
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r == RILL_EAGAIN)
    return rill__task_wait(L, t, &u->waits, W_WRITE, u, u->timeout_ms, wait_cancel);
  lua_pushnil(L);
  lua_pushstring(L, r == RILL_ECLOSED ? "closed" : rill__errmsg(r));
  return 2;
}

static rill_task_t *check_writer(lua_State *L, lws_t *u) {
  rill_task_t *t = rill__task_check(u->ws->w, L);
  if (rill__waitq_find(&u->waits, W_WRITE))
    luaL_error(L, "websocket already has a writer waiting");
  return t;
}

/* ws:send(data [, "text" | "binary"]) — one whole frame (text by default) */
static int l_send(lua_State *L) {
  lws_t *u = check(L);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  int op = opcode_of(L, 3, RILL_WS_TEXT);
  rill_task_t *t = check_writer(L, u);
  return send_result(L, u, t, rill__ws_send(u->ws, op, 1, p, len));
}

/* ws:frame(opcode, fin, data) — one frame of a message sent in pieces */
static int l_frame(lua_State *L) {
  lws_t *u = check(L);
  int op = (int)luaL_checkinteger(L, 2);
  int fin = lua_toboolean(L, 3);
  size_t len;
  const char *p = luaL_optlstring(L, 4, "", &len);
  rill_task_t *t = check_writer(L, u);
  return send_result(L, u, t, rill__ws_send(u->ws, op, fin, p, len));
}

/* ws:_frame_begin(opcode, fin, length): a frame whose payload follows in
 * pieces (_frame_part), for a message of a length known before its bytes */
static int l_frame_begin(lua_State *L) {
  lws_t *u = check(L);
  int op = (int)luaL_checkinteger(L, 2);
  int fin = lua_toboolean(L, 3);
  lua_Number len = luaL_checknumber(L, 4);
  luaL_argcheck(L, len >= 0 && len < 9007199254740992.0, 4, "bad length");
  rill_task_t *t = check_writer(L, u);
  return send_result(L, u, t, rill__ws_send_begin(u->ws, op, fin, (uint64_t)len));
}

/* ws:_frame_part(data): the next bytes of that frame */
static int l_frame_part(lua_State *L) {
  lws_t *u = check(L);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  rill_task_t *t = check_writer(L, u);
  return send_result(L, u, t, rill__ws_send_part(u->ws, p, len));
}

/* ws:_frame_abort(why): a frame begun cannot end (its writer closed early):
 * the connection fails, as nothing else may follow the part sent. */
static int l_frame_abort(lua_State *L) {
  lws_t *u = check(L);
  rill__ws_fail(u->ws, RILL_WS_INTERNAL_ERROR, luaL_optstring(L, 2, "message cut short"));
  return 0;
}

/* ws:ping([data]), ws:pong([data]): wait like any write while the peer is
 * slow. */
static int control(lua_State *L, int op) {
  lws_t *u = check(L);
  size_t len;
  const char *p = luaL_optlstring(L, 2, "", &len);
  if (len > RILL_WS_CONTROL_MAX) return luaL_argerror(L, 2, "at most 125 bytes");
  rill_task_t *t = check_writer(L, u);
  return send_result(L, u, t, rill__ws_send(u->ws, op, 1, p, len));
}

static int l_ping(lua_State *L) {
  return control(L, RILL_WS_PING);
}

static int l_pong(lua_State *L) {
  return control(L, RILL_WS_PONG);
}

/* ws:close([code [, reason]]) — waits for the peer's close (or the timeout) */
static int l_close(lua_State *L) {
  lws_t *u = check(L);
  rill_websocket_t *ws = u->ws;
  unsigned code = (unsigned)luaL_optinteger(L, 2, RILL_WS_NORMAL);
  size_t rlen = 0;
  const char *reason = luaL_optlstring(L, 3, "", &rlen);
  if (code != 0 && !rill__ws_close_code_valid(code))
    return luaL_argerror(L, 2, "not a close code an endpoint may send");
  if (rill__waitq_find(&u->waits, W_CLOSE))
    return luaL_error(L, "websocket is closing already");
  int r = rill__ws_close(ws, code, reason, rlen);
  rill_task_t *t = rill__task_current(ws->w);
  if (r != RILL_EAGAIN || t == NULL || t->co != L) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return rill__task_wait(L, t, &u->waits, W_CLOSE, u, -1, wait_cancel);
}

/* ws:as_stream() — binary messages as one byte stream; writes send messages */
static int l_as_stream(lua_State *L) {
  lws_t *u = check(L);
  rill_websocket_t *ws = u->ws;
  if (ws->bytes.top) return luaL_error(L, "as_stream() was called already");
  rill__lstream_push(L, &ws->bytes, 0, u->timeout_ms);
  return 1;
}

static int l_settimeout(lua_State *L) {
  lws_t *u = check(L);
  lua_Number ms = luaL_optnumber(L, 2, -1);
  u->timeout_ms = ms < 0 ? -1 : (int)ms;
  lua_settop(L, 1);
  return 1;
}

/* ws:close_info() → code, reason (once closed) */
static int l_close_info(lua_State *L) {
  lws_t *u = check(L);
  if (u->ws->close_code == 0) return 0;
  lua_pushinteger(L, u->ws->close_code);
  lua_pushstring(L, u->ws->close_reason);
  return 2;
}

static int l_state(lua_State *L) {
  lws_t *u = check(L);
  static const char *names[] = {"open", "closing", "closed"};
  lua_pushstring(L, names[u->ws->state]);
  return 1;
}

/* ws:protocol() → the negotiated subprotocol, or nil */
static int l_protocol(lua_State *L) {
  lws_t *u = luaL_checkudata(L, 1, WS_MT);
  if (u->protocol[0] == 0) return 0;
  lua_pushstring(L, u->protocol);
  return 1;
}

/* ws:extensions() → the negotiated Sec-WebSocket-Extensions, or nil */
static int l_extensions(lua_State *L) {
  lws_t *u = luaL_checkudata(L, 1, WS_MT);
  if (u->extensions == NULL) return 0;
  lua_pushstring(L, u->extensions);
  return 1;
}

/* ws:_streaming([flag]) → whether a message was being sent in pieces (before
 * flag, if given, set it) */
static int l_streaming(lua_State *L) {
  lws_t *u = luaL_checkudata(L, 1, WS_MT);
  lua_pushboolean(L, u->streaming);
  if (!lua_isnone(L, 2) && !(u->streaming && lua_toboolean(L, 2)))
    u->streaming = lua_toboolean(L, 2);
  return 1;
}

/* ws:_wait_drained(): after a fast send the websocket took but asked to
 * wait for (the peer reads slowly): waits like send() would have. */
static int l_wait_drained(lua_State *L) {
  lws_t *u = check(L);
  return send_result(L, u, check_writer(L, u), RILL_EAGAIN);
}

/* ---- the fast paths (lua_sched.h: calls from compiled Lua) ---- */

/* The next message, if it has begun: 1 (text) or 2 (binary), the message
 * stream's face (u->msg, which Lua holds) bound to it; 0 for the slow path
 * (nothing yet, the end, a receiver or reader waiting, no face yet). */
int rill__ffi_ws_next(void *p) {
  lws_t *u = p;
  rill_websocket_t *ws = u->ws;
  if (ws == NULL || u->msg == NULL || u->waits.head || u->msg->waits.head ||
      rill__lstream_reading(&ws->msg) || !rill__ffi_enter(u->w))
    return 0;
  int r = rill__ws_next(ws), kind = 0;
  if (r == RILL_WS_MESSAGE) {
    /* rill__ws_next() let u->msg go, with no waiter: it binds again. */
    int reused = rill__lstream_reuse(u->msg, &ws->msg, u->timeout_ms);
    assert(reused == 0);
    (void)reused;
    kind = ws->msg_type == RILL_WS_TEXT ? 1 : 2;
  }
  rill__ffi_leave(u->w);
  return kind;
}

/* One frame: 0 sent (or queued), 1 sent but wait for the drain
 * (_wait_drained), 2 the slow path (a writer waits, an error to report). */
int rill__ffi_ws_send(void *p, int opcode, int fin, const char *data, size_t n) {
  lws_t *u = p;
  if (u->ws == NULL || n > UINT_MAX || rill__waitq_find(&u->waits, W_WRITE) ||
      !rill__ffi_enter(u->w))
    return 2;
  int r = rill__ws_send(u->ws, opcode, fin, data, n);
  rill__ffi_leave(u->w);
  return r == 0 ? 0 : r == RILL_EAGAIN ? 1 : 2;
}

/* The length of the message being read, if it came in one frame; else -1. */
double rill__ffi_ws_msg_length(void *p) {
  lws_t *u = p;
  if (u->ws == NULL || !u->ws->msg_active) return -1;
  return (double)u->ws->msg_len;
}

/* As ws:_streaming(): set < 0 reads the flag. */
int rill__ffi_ws_streaming(void *p, int set) {
  lws_t *u = p;
  int was = u->streaming;
  if (set >= 0 && !(was && set)) u->streaming = set;
  return was;
}

static int l_gc(lua_State *L) {
  lws_t *u = luaL_checkudata(L, 1, WS_MT);
  if (u->w) rill__defer_drop(u->w, &u->dfr);
  luaL_unref(L, LUA_REGISTRYINDEX, u->msg_ref);
  u->msg_ref = LUA_NOREF;
  u->msg = NULL;
  free(u->extensions);
  u->extensions = NULL;
  if (u->ws) {
    rill__ws_free(u->ws);
    u->ws = NULL;
  }
  return 0;
}

/* An integer option of table idx in lo..hi, or def when absent. */
static int int_opt(lua_State *L, int idx, const char *name, int lo, int hi, int def) {
  lua_Number v = rill__opt_number(L, idx, name, def);
  if (v < lo || v > hi || v != (int)v) luaL_error(L, "bad %s %f", name, v);
  return (int)v;
}

static int bool_opt(lua_State *L, int idx, const char *name) {
  lua_getfield(L, idx, name);
  int b = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return b;
}

/* The permessage-deflate parameters websocket.lua negotiated:
 * {own_bits=, peer_bits=, own_reset=, peer_reset=, level=, mem_level=,
 * min_size=, header=} at idx. */
static void deflate_opts(lua_State *L, int idx, rill_ws_opts_t *o) {
  o->deflate = 1;
  o->z_own_bits = int_opt(L, idx, "own_bits", 8, 15, 15);
  o->z_peer_bits = int_opt(L, idx, "peer_bits", 8, 15, 15);
  o->z_own_reset = bool_opt(L, idx, "own_reset");
  o->z_peer_reset = bool_opt(L, idx, "peer_reset");
  o->z_level = int_opt(L, idx, "level", 0, 9, 6);
  o->z_mem_level = int_opt(L, idx, "mem_level", 1, 9, 8);
  lua_Number min = rill__opt_number(L, idx, "min_size", 0);
  o->z_min_size = min < 0 ? 0 : (uint64_t)min;
}

/* core.ws_new(stream, {server=, max_frame=, max_message=, close_timeout=,
 * timeout=, protocol=, deflate= (see deflate_opts), extensions=}) →
 * websocket; takes the stream over. */
static int l_ws_new(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  luaL_checkudata(L, 1, RILL_STREAM_MT);
  luaL_checktype(L, 2, LUA_TTABLE);
  rill_ws_opts_t o;
  memset(&o, 0, sizeof(o));
  lua_getfield(L, 2, "server");
  o.server = lua_toboolean(L, -1);
  lua_pop(L, 1);
  o.max_frame = (uint64_t)rill__opt_number(L, 2, "max_frame", 0);
  o.max_message = (uint64_t)rill__opt_number(L, 2, "max_message", 0);
  lua_Number ct = rill__opt_number(L, 2, "close_timeout", 5000); /* milliseconds */
  o.close_timeout_ms = ct < 0 ? 0 : ct > 4e9 ? 4000000000u : (unsigned)ct;
  lua_Number to = rill__opt_number(L, 2, "timeout", -1);
  lua_getfield(L, 2, "deflate");
  if (lua_istable(L, -1)) deflate_opts(L, lua_gettop(L), &o);
  lua_pop(L, 1);
  lua_getfield(L, 2, "protocol");
  const char *proto = lua_tostring(L, -1);
  lua_pop(L, 1);
  lua_getfield(L, 2, "extensions");
  const char *ext = lua_tostring(L, -1);
  char *extensions = ext ? strdup(ext) : NULL;
  lua_pop(L, 1);
  lws_t *u = lua_newuserdata(L, sizeof(*u));
  memset(u, 0, sizeof(*u));
  u->timeout_ms = to < 0 ? -1 : to > 2e9 ? 2000000000 : (int)to;
  u->msg_ref = LUA_NOREF;
  if (proto) snprintf(u->protocol, sizeof(u->protocol), "%s", proto);
  u->extensions = extensions;
  luaL_getmetatable(L, WS_MT);
  lua_setmetatable(L, -2);
  rill_stream_t *t = rill__lstream_take(L, 1);
  u->w = w;
  u->ws = rill__ws_new(w, t, &o, &ws_ops, u);
  if (u->ws == NULL) return luaL_error(L, "out of memory");
  return 1;
}

/* core.ws_accept(key) → Sec-WebSocket-Accept, or nil for a bad key */
static int l_ws_accept(lua_State *L) {
  size_t len;
  const char *key = luaL_checklstring(L, 1, &len);
  char out[29];
  if (rill__ws_accept(key, len, out) != 0) return 0;
  lua_pushstring(L, out);
  return 1;
}

/* core.ws_key() → a fresh Sec-WebSocket-Key */
static int l_ws_key(lua_State *L) {
  uint8_t nonce[16];
  if (rill__random(rill__upworker(L), nonce, sizeof(nonce)) != 0)
    return luaL_error(L, "no random bytes");
  char out[25];
  rill__ws_key(nonce, out);
  lua_pushstring(L, out);
  return 1;
}

/* core.random(n) → n random bytes */
static int l_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  luaL_argcheck(L, n >= 0 && n <= 65536, 1, "0..65536");
  char buf[256];
  char *p = n <= (lua_Integer)sizeof(buf) ? buf : lua_newuserdata(L, (size_t)n);
  if (rill__random(rill__upworker(L), p, (size_t)n) != 0)
    return luaL_error(L, "no random bytes");
  lua_pushlstring(L, p, (size_t)n);
  return 1;
}

/* core.utf8_valid(s) */
static int l_utf8_valid(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushboolean(L, rill__utf8_valid((const uint8_t *)s, len));
  return 1;
}

void rill__open_ws(lua_State *L, rill_worker_t *w) {
  static const luaL_Reg funcs[] = {
      {"ws_new", l_ws_new}, {"ws_accept", l_ws_accept},   {"ws_key", l_ws_key},
      {"random", l_random}, {"utf8_valid", l_utf8_valid}, {NULL, NULL}};
  /* next, send and frame get fast paths in lua/rill/websocket.lua, in front
   * of these (kept as _next, _send, _frame). */
  static const luaL_Reg methods[] = {{"next", l_next},
                                     {"send", l_send},
                                     {"frame", l_frame},
                                     {"_next", l_next},
                                     {"_send", l_send},
                                     {"_frame", l_frame},
                                     {"ping", l_ping},
                                     {"pong", l_pong},
                                     {"close", l_close},
                                     {"as_stream", l_as_stream},
                                     {"settimeout", l_settimeout},
                                     {"close_info", l_close_info},
                                     {"state", l_state},
                                     {"protocol", l_protocol},
                                     {"extensions", l_extensions},
                                     {"_streaming", l_streaming},
                                     {"_wait_drained", l_wait_drained},
                                     {"_frame_begin", l_frame_begin},
                                     {"_frame_part", l_frame_part},
                                     {"_frame_abort", l_frame_abort},
                                     {NULL, NULL}};
  rill__register(L, w, funcs);
  rill__new_class(L, WS_MT, methods, l_gc);
  luaL_getmetatable(L, WS_MT);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "ws_methods"); /* the module table, for Lua methods */
  lua_pop(L, 1);
}
