/* The Lua face of WebSockets: the "rill.websocket" userdata over websocket.c,
 * and the handshake helpers. lua/rill/websocket.lua builds the handshake,
 * the client, message objects and streaming sends on top. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_core.h"
#include "lua_stream.h"
#include "rill_sched.h"
#include "tls.h"
#include "websocket.h"

#define WS_MT "rill.websocket"

typedef struct {
  rill_websocket_t *ws;
  rill_task_t *next_task, *close_task;
  int timeout_ms;
  int streaming;     /* a message is being sent in pieces (send_stream) */
  char protocol[64]; /* the negotiated subprotocol, or "" */
} lws_t;

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

/* Pushes the results of rill_ws_next() = r (not EAGAIN). */
static int push_next(lua_State *L, rill_websocket_t *ws, int r) {
  if (r == RILL_WS_MESSAGE) {
    lua_pushstring(L, ws->msg_type == RILL_WS_TEXT ? "text" : "binary");
    rill__lstream_push(L, &ws->msg, 0);
    return 2;
  }
  return push_end(L, ws, r);
}

static void next_cb(rill_websocket_t *ws) {
  lws_t *u = ws->data;
  rill_task_t *t = u->next_task;
  if (t == NULL) return;
  int r = rill_ws_next(ws);
  if (r == RILL_EAGAIN) return;
  u->next_task = NULL;
  rill__task_wake(t, push_next(t->co, ws, r));
}

static int next_cancel(rill_task_t *t) {
  lws_t *u = t->wait_obj;
  u->next_task = NULL;
  if (u->ws) rill_ws_next_cancel(u->ws);
  lua_pushnil(t->co);
  lua_pushliteral(t->co, "timeout");
  return 2;
}

/* ws:next() → type, message stream | nil, "closed", code, reason */
static int l_next(lua_State *L) {
  lws_t *u = check(L);
  rill_websocket_t *ws = u->ws;
  rill_task_t *t = rill__task_check(ws->w, L);
  if (u->next_task) return luaL_error(L, "websocket already has a receiver waiting");
  if (ws->msg.reader) return luaL_error(L, "a message is being read");
  /* The previous message object dies here; what is left of it is dropped. */
  rill__stream_detach(&ws->msg);
  ws->msg.timeout_ms = u->timeout_ms;
  int r = rill_ws_next(ws);
  if (r != RILL_EAGAIN) return push_next(L, ws, r);
  u->next_task = t;
  rill__task_wait(t, u->timeout_ms, next_cancel, u);
  return lua_yield(L, 0);
}

static int opcode_of(lua_State *L, int idx, int def) {
  static const char *const names[] = {"text", "binary", NULL};
  static const int codes[] = {RILL_WS_TEXT, RILL_WS_BINARY};
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_isnumber(L, idx)) return (int)lua_tointeger(L, idx);
  return codes[luaL_checkoption(L, idx, NULL, names)];
}

static int send_result(lua_State *L, lws_t *u, int r) {
  rill_websocket_t *ws = u->ws;
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (r == RILL_EAGAIN && ws->t)
    return rill__lstream_wait_drain(L, rill__task_check(ws->w, L), ws->t);
  lua_pushnil(L);
  lua_pushstring(L, r == RILL_ECLOSED ? "closed" : rill__errmsg(r));
  return 2;
}

/* ws:send(data [, "text" | "binary"]) — one whole frame (text by default) */
static int l_send(lua_State *L) {
  lws_t *u = check(L);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  int op = opcode_of(L, 3, RILL_WS_TEXT);
  rill__task_check(u->ws->w, L);
  if (u->ws->t && u->ws->t->writer)
    return luaL_error(L, "websocket already has a writer waiting");
  return send_result(L, u, rill_ws_send(u->ws, op, 1, p, len));
}

/* ws:frame(opcode, fin, data) — one frame of a message sent in pieces */
static int l_frame(lua_State *L) {
  lws_t *u = check(L);
  int op = (int)luaL_checkinteger(L, 2);
  int fin = lua_toboolean(L, 3);
  size_t len;
  const char *p = luaL_optlstring(L, 4, "", &len);
  rill__task_check(u->ws->w, L);
  if (u->ws->t && u->ws->t->writer)
    return luaL_error(L, "websocket already has a writer waiting");
  return send_result(L, u, rill_ws_send(u->ws, op, fin, p, len));
}

static int control(lua_State *L, int op) {
  lws_t *u = check(L);
  size_t len;
  const char *p = luaL_optlstring(L, 2, "", &len);
  if (len > RILL_WS_CONTROL_MAX) return luaL_argerror(L, 2, "at most 125 bytes");
  int r = rill_ws_send(u->ws, op, 1, p, len);
  if (r == RILL_EAGAIN) r = 0; /* control frames do not wait */
  return send_result(L, u, r);
}

static int l_ping(lua_State *L) {
  return control(L, RILL_WS_PING);
}

static int l_pong(lua_State *L) {
  return control(L, RILL_WS_PONG);
}

/* The transport drained: wake a ws:send() waiting on it, and a writer of the
 * byte stream (whose writes go to the same transport). */
static void drain_cb(rill_stream_t *t, int status) {
  rill_websocket_t *ws = t->data;
  rill__lstream_drain_cb(t, status);
  if (ws && ws->bytes.drain_cb) ws->bytes.drain_cb(&ws->bytes, status);
}

static void closed_cb(rill_websocket_t *ws) {
  lws_t *u = ws->data;
  rill_task_t *t = u->close_task;
  if (t == NULL) return;
  u->close_task = NULL;
  lua_pushboolean(t->co, 1);
  rill__task_wake(t, 1);
}

/* ws:close([code [, reason]]) — waits for the peer's close (or the timeout) */
static int l_close(lua_State *L) {
  lws_t *u = check(L);
  rill_websocket_t *ws = u->ws;
  unsigned code = (unsigned)luaL_optinteger(L, 2, RILL_WS_NORMAL);
  size_t rlen = 0;
  const char *reason = luaL_optlstring(L, 3, "", &rlen);
  if (code != 0 && !rill_ws_close_code_valid(code))
    return luaL_argerror(L, 2, "not a close code an endpoint may send");
  if (u->close_task) return luaL_error(L, "websocket is closing already");
  int r = rill_ws_close(ws, code, reason, rlen);
  if (r != RILL_EAGAIN || ws->w->current == NULL || ws->w->current->co != L) {
    lua_pushboolean(L, 1);
    return 1;
  }
  rill_task_t *t = rill__task_check(ws->w, L);
  u->close_task = t;
  rill__task_wait(t, -1, NULL, u);
  return lua_yield(L, 0);
}

/* ws:as_stream() — binary messages as one byte stream; writes send messages */
static int l_as_stream(lua_State *L) {
  lws_t *u = check(L);
  rill_websocket_t *ws = u->ws;
  if (ws->bytes.ud) return luaL_error(L, "as_stream() was called already");
  ws->bytes.timeout_ms = u->timeout_ms;
  rill__lstream_push(L, &ws->bytes, 0);
  return 1;
}

static int l_settimeout(lua_State *L) {
  lws_t *u = check(L);
  lua_Number ms = luaL_optnumber(L, 2, -1);
  u->timeout_ms = ms < 0 ? -1 : (int)ms;
  u->ws->msg.timeout_ms = u->timeout_ms;
  u->ws->bytes.timeout_ms = u->timeout_ms;
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

/* ws:_streaming([flag]) → whether a message is being sent in pieces */
static int l_streaming(lua_State *L) {
  lws_t *u = luaL_checkudata(L, 1, WS_MT);
  if (!lua_isnone(L, 2)) u->streaming = lua_toboolean(L, 2);
  lua_pushboolean(L, u->streaming);
  return 1;
}

static int l_gc(lua_State *L) {
  lws_t *u = luaL_checkudata(L, 1, WS_MT);
  if (u->ws) {
    u->ws->data = NULL;
    rill_ws_free(u->ws);
    u->ws = NULL;
  }
  return 0;
}

/* core.ws_new(stream, {server=, max_frame=, max_message=, close_timeout=,
 * timeout=}) → websocket; takes the stream over. */
static int l_ws_new(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  lstream_ud *sud = luaL_checkudata(L, 1, RILL_STREAM_MT);
  luaL_checktype(L, 2, LUA_TTABLE);
  rill_stream_t *t = sud->s;
  if (t == NULL) return luaL_error(L, "attempt to use a closed stream");
  if (t->reader || t->writer) return luaL_error(L, "the stream is busy");
  rill_ws_opts_t o;
  memset(&o, 0, sizeof(o));
  lua_getfield(L, 2, "server");
  o.server = lua_toboolean(L, -1);
  lua_pop(L, 1);
  o.max_frame = (uint64_t)rill__opt_number(L, 2, "max_frame", 0);
  o.max_message = (uint64_t)rill__opt_number(L, 2, "max_message", 0);
  o.close_timeout_ms = (unsigned)(rill__opt_number(L, 2, "close_timeout", 5) * 1000);
  lua_Number to = rill__opt_number(L, 2, "timeout", -1);
  lua_getfield(L, 2, "protocol");
  const char *proto = lua_tostring(L, -1);
  lua_pop(L, 1);
  sud->s = NULL;
  t->ud = NULL;
  lws_t *u = lua_newuserdata(L, sizeof(*u));
  memset(u, 0, sizeof(*u));
  u->timeout_ms = to < 0 ? -1 : (int)(to * 1000);
  if (proto) snprintf(u->protocol, sizeof(u->protocol), "%s", proto);
  luaL_getmetatable(L, WS_MT);
  lua_setmetatable(L, -2);
  rill_websocket_t *ws = rill_ws_new(w, t, &o);
  if (ws == NULL) return luaL_error(L, "out of memory");
  u->ws = ws;
  ws->data = u;
  ws->backref = &u->ws;
  ws->next_cb = next_cb;
  ws->closed_cb = closed_cb;
  t->drain_cb = drain_cb;
  ws->msg.timeout_ms = ws->bytes.timeout_ms = u->timeout_ms;
  return 1;
}

/* core.ws_accept(key) → Sec-WebSocket-Accept, or nil for a bad key */
static int l_ws_accept(lua_State *L) {
  size_t len;
  const char *key = luaL_checklstring(L, 1, &len);
  char out[29];
  if (rill_ws_accept(key, len, out) != 0) return 0;
  lua_pushstring(L, out);
  return 1;
}

/* core.ws_key() → a fresh Sec-WebSocket-Key */
static int l_ws_key(lua_State *L) {
  uint8_t nonce[16];
  if (rill__random(rill__upworker(L), nonce, sizeof(nonce)) != 0)
    return luaL_error(L, "no random bytes");
  char out[25];
  rill_ws_key(nonce, out);
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
  lua_pushboolean(L, rill_utf8_valid((const uint8_t *)s, len));
  return 1;
}

void rill__open_ws(lua_State *L, rill_worker_t *w) {
  static const luaL_Reg funcs[] = {
      {"ws_new", l_ws_new}, {"ws_accept", l_ws_accept},   {"ws_key", l_ws_key},
      {"random", l_random}, {"utf8_valid", l_utf8_valid}, {NULL, NULL}};
  static const luaL_Reg methods[] = {{"next", l_next},
                                     {"send", l_send},
                                     {"frame", l_frame},
                                     {"ping", l_ping},
                                     {"pong", l_pong},
                                     {"close", l_close},
                                     {"as_stream", l_as_stream},
                                     {"settimeout", l_settimeout},
                                     {"close_info", l_close_info},
                                     {"state", l_state},
                                     {"protocol", l_protocol},
                                     {"_streaming", l_streaming},
                                     {NULL, NULL}};
  rill__register(L, w, funcs);
  rill__new_class(L, WS_MT, methods, l_gc);
  luaL_getmetatable(L, WS_MT);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "ws_methods"); /* the module table, for Lua methods */
  lua_pop(L, 1);
}
