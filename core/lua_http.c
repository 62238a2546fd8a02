/* The Lua face of the HTTP server: listeners, and the primitives the request
 * and response objects of lua/rill/http.lua are built on.
 *
 * Each request runs in a task that starts `dispatch(handler, conn, gen)`;
 * conn is a userdata for the connection, gen the request's number on it,
 * which every method checks so that a request's objects die with the request.
 * The userdata is made for a connection's first request and kept for the
 * requests that follow at once (pipelined), but dropped once the connection
 * waits for its next request: an idle keep-alive connection keeps nothing
 * in Lua. */
#include <assert.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "file.h"
#include "http_conn.h"
#include "inflate_stream.h"
#include "lua_core.h"
#include "lua_ffi.h"
#include "lua_h2.h"
#include "lua_stream.h"
#include "lua_sched.h"
#include "tcp.h"
#include "tls.h"

#define CONN_MT "rill.http.conn"

/* One per connection: the request primitives, and the response writes that
 * wait for the client to read. */
typedef struct {
  rill_http_conn_t *c; /* NULL once the connection is closed */
  rill_waitq_t waits;
  uint64_t started; /* the loop's time (ms) when its latest request came */
} lconn_ud;

#define SPARE_FACES 16

typedef struct {
  rill_http_server_t srv;
  int handler_ref;
  int dispatch_ref;
  /* Userdata of connections gone idle, kept for the next request on any of
   * them (request numbers are unique among the server's connections, so a
   * stale request object never matches the new one's). */
  int spare[SPARE_FACES];
  int nspare;
  int gone_ref; /* gone(conn, gen): runs a request's on_close callbacks */
  rill_tls_conf_t *tls; /* NULL for plain HTTP */
  int http2; /* h2 by ALPN over TLS; h2c in clear, by prior knowledge or Upgrade */
  rill_h2_server_t h2;   /* its HTTP/2 connections (each holds a reference on srv) */
} lhttp_t;

/* ---- the server ---- */

static void http_task_done(rill_task_t *t, int status) {
  rill__http_conn_handler_done(t->done_data, status == 0);
}

static void http_task_yield(rill_task_t *t) {
  rill__http_conn_flush(t->done_data);
}

static int h2c_upgrade(rill_http_conn_t *c);

static void on_request(rill_http_conn_t *c) {
  lhttp_t *lh = c->srv->data;
  if (lh->http2 && lh->tls == NULL && (c->head->flags & RILL_HTTP_UPGRADE) &&
      h2c_upgrade(c))
    return;
  rill_task_t *t = rill__task_new(c->w, "request handler");
  if (t == NULL) {
    rill__http_conn_handler_done(c, 0);
    return;
  }
  lua_State *co = t->co;
  c->w->requests++;
  RILL_COUNT(c->w->m->requests, 1);
  lua_rawgeti(co, LUA_REGISTRYINDEX, lh->dispatch_ref);
  lua_rawgeti(co, LUA_REGISTRYINDEX, lh->handler_ref);
  if (c->ref == -1 && lh->nspare > 0) {
    c->ref = lh->spare[--lh->nspare];
    lua_rawgeti(co, LUA_REGISTRYINDEX, c->ref);
    lconn_ud *ud = lua_touserdata(co, -1);
    ud->c = c;
    c->data = ud;
  } else if (c->ref == -1) {
    lconn_ud *ud = lua_newuserdata(co, sizeof(*ud));
    memset(ud, 0, sizeof(*ud));
    ud->c = c;
    luaL_getmetatable(co, CONN_MT);
    lua_setmetatable(co, -2);
    lua_pushvalue(co, -1);
    c->ref = luaL_ref(co, LUA_REGISTRYINDEX);
    c->data = ud;
  } else {
    lua_rawgeti(co, LUA_REGISTRYINDEX, c->ref);
  }
  /* (the loop's time: a read of memory, not a clock per request) */
  ((lconn_ud *)c->data)->started = uv_now(c->w->loop);
  lua_pushinteger(co, c->gen);
  t->done = http_task_done;
  t->done_data = c;
  t->yield_cb = http_task_yield;
  t->busy = 1;
  rill__task_start(t, 3);
}

enum { W_WRITE, W_NOBODY, W_FILE }; /* what a task waits for on a connection */

static void on_file(rill_http_conn_t *c, int64_t result);

/* A response write may go on (or the client is gone). A file being sent
 * hears of its own progress through on_file. */
static void on_drained(rill_http_conn_t *c, int status) {
  lconn_ud *ud = c->data;
  if (ud && ud->waits.head && ud->waits.head->kind != W_FILE)
    rill__task_drained(ud->waits.head, status);
}

/* Detaches the connection's userdata: its methods say the request is over,
 * and what waits on it is woken with RILL_ECLOSED. */
static void drop_face(rill_http_conn_t *c) {
  lconn_ud *ud = c->data;
  /* touches Lua: never from inside a fast path (lua_sched.h); no fast path
   * reaches a connection's close */
  assert(!rill__ffi_active(c->w));
  c->data = NULL;
  if (ud) {
    ud->c = NULL;
    rill__waitq_cancel_all(&ud->waits, RILL_ECLOSED);
  }
  if (c->ref != -1 && c->w->L && !c->w->stopping) {
    lhttp_t *lh = c->srv->data;
    if (lh->nspare < SPARE_FACES)
      lh->spare[lh->nspare++] = c->ref;
    else
      luaL_unref(c->w->L, LUA_REGISTRYINDEX, c->ref);
  }
  c->ref = -1;
}

static void on_close(rill_http_conn_t *c) { drop_face(c); }

/* The client left while the handler runs: what waits to write is told, and
 * the request's on_close callbacks run in a task of their own. */
static void on_peer_gone(rill_http_conn_t *c) {
  lhttp_t *lh = c->srv->data;
  lconn_ud *ud = c->data;
  assert(!rill__ffi_active(c->w)); /* from a transport's read, on the loop */
  if (ud == NULL) return;
  rill__waitq_cancel_all(&ud->waits, RILL_ECLOSED);
  if (lh->gone_ref == LUA_NOREF) return;
  rill_task_t *t = rill__task_new(c->w, "on_close callbacks");
  if (t == NULL) return;
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, lh->gone_ref);
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, c->ref);
  lua_pushinteger(t->co, c->gen);
  rill__task_start(t, 2);
}

static void on_idle(rill_http_conn_t *c) {
  /* A fast path reading a body kept past its request could end a drain:
   * then the userdata stays until the connection's next wait or close. */
  if (!rill__ffi_active(c->w)) drop_face(c);
}

static void on_free(rill_http_server_t *srv) {
  lhttp_t *lh = srv->data;
  lua_State *L = srv->w->L;
  if (L) {
    luaL_unref(L, LUA_REGISTRYINDEX, lh->handler_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, lh->dispatch_ref);
    while (lh->nspare > 0) luaL_unref(L, LUA_REGISTRYINDEX, lh->spare[--lh->nspare]);
    luaL_unref(L, LUA_REGISTRYINDEX, lh->gone_ref);
  }
  rill__tls_conf_unref(lh->tls);
  rill__http_server_close(srv);
  free(lh);
}

/* ---- HTTP/2 ---- */

static void h2_on_request(rill_h2_stream_t *st) {
  lhttp_t *lh = st->c->srv->data;
  rill__lh2_start(st, lh->dispatch_ref, lh->handler_ref, lh->gone_ref,
                  lh->srv.limits.send_timeout_ms);
}

static void h2_on_close(rill_h2_conn_t *c) {
  lhttp_t *lh = c->srv->data;
  if (--lh->srv.refs == 0) on_free(&lh->srv);
}

/* Whether the comma-separated list v[0..n) holds token (lower case). */
static int has_token(const char *v, size_t n, const char *token) {
  size_t i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
      i++;
    size_t b = i;
    while (i < n && v[i] != ',')
      i++;
    size_t e = i;
    while (e > b && (v[e - 1] == ' ' || v[e - 1] == '\t'))
      e--;
    if (e > b && rill__http_name_is(v + b, e - b, token)) return 1;
  }
  return 0;
}

/* The HTTP/1.1 Upgrade to h2c (RFC 7540 3.2) of a request on a cleartext
 * http2 listener: with Connection: Upgrade, HTTP2-Settings, Upgrade: h2c,
 * exactly one HTTP2-Settings that decodes to a valid SETTINGS payload, and
 * no body, the answer is 101 and the connection goes on as HTTP/2, the
 * request its stream 1. Returns 1 if it took the request over; 0 to serve
 * it over HTTP/1.1 (anything missing or bad: the Upgrade is ignored, as RFC
 * 9110 7.8 lets a server do). */
static int h2c_upgrade(rill_http_conn_t *c) {
  lhttp_t *lh = c->srv->data;
  const rill_http_head_t *hd = c->head;
  const char *base = c->hbuf;
  /* (in a graceful stop the answer closes the connection: no new one) */
  if (hd->major != 1 || hd->minor != 1 || (hd->flags & RILL_HTTP_CHUNKED) ||
      ((hd->flags & RILL_HTTP_LENGTH) && hd->content_length > 0) || c->w->graceful)
    return 0;
  int conn_upgrade = 0, conn_settings = 0, up_h2c = 0, nsettings = 0;
  const char *settings = NULL;
  size_t settings_len = 0;
  const char *host = "";
  size_t host_len = 0;
  for (unsigned i = 0; i < hd->nfields; i++) {
    const rill_http_field_t *f = &hd->fields[i];
    const char *nm = base + f->name_off, *v = base + f->value_off;
    if (rill__http_name_is(nm, f->name_len, "connection")) {
      conn_upgrade |= has_token(v, f->value_len, "upgrade");
      conn_settings |= has_token(v, f->value_len, "http2-settings");
    } else if (rill__http_name_is(nm, f->name_len, "upgrade")) {
      up_h2c |= has_token(v, f->value_len, "h2c");
    } else if (rill__http_name_is(nm, f->name_len, "http2-settings")) {
      nsettings++;
      settings = v;
      settings_len = f->value_len;
    } else if (rill__http_name_is(nm, f->name_len, "host")) {
      host = v;
      host_len = f->value_len;
    }
  }
  if (!conn_upgrade || !conn_settings || !up_h2c || nsettings != 1) return 0;
  uint8_t payload[32 * 6]; /* the 32 settings nghttp2 takes */
  int plen = rill__h2_upgrade_settings(settings, settings_len, payload, sizeof(payload));
  if (plen < 0) {
    rill__log(c->w, RILL_LOG_DEBUG, "http: a bad HTTP2-Settings: no upgrade to h2c");
    return 0;
  }

  /* Stream 1's head: the fields but the connection's own and Host (its
   * value is the authority); pointing into the request's head, which stays
   * until rill__h2_conn_new_upgraded has copied it. */
  rill_hdr_t *fields = malloc((hd->nfields ? hd->nfields : 1) * sizeof(*fields));
  if (fields == NULL) return 0;
  static const char *const dropped[] = {
      "connection",       "upgrade", "http2-settings",
      "keep-alive",       "host",    "transfer-encoding",
      "proxy-connection", "te",      NULL};
  size_t n = 0;
  for (unsigned i = 0; i < hd->nfields; i++) {
    const rill_http_field_t *f = &hd->fields[i];
    const char *nm = base + f->name_off;
    int drop = 0;
    for (const char *const *d = dropped; *d && !drop; d++)
      drop = rill__http_name_is(nm, f->name_len, *d);
    if (!drop)
      fields[n++] = (rill_hdr_t){nm, f->name_len, base + f->value_off, f->value_len};
  }
  const char *method = llhttp_method_name((llhttp_method_t)hd->method);
  rill_h2_head_t head = {
      .method = method,
      .method_len = strlen(method),
      .path = base + hd->url_off,
      .path_len = hd->url_len,
      .scheme = "http",
      .scheme_len = 4,
      .authority = host,
      .authority_len = host_len,
      .hdrs = fields,
      .nhdrs = n,
      .content_length = -1,
      .is_head = hd->method == HTTP_HEAD,
  };

  static const rill_hdr_t h101[] = {{"Connection", 10, "Upgrade", 7},
                                    {"Upgrade", 7, "h2c", 3}};
  rill_stream_t *t = rill__http_conn_upgrade(c, 101, h101, 2);
  if (t == NULL) {
    free(fields);
    return 0;
  }
  lh->srv.refs++;
  rill_h2_conn_t *h2 =
      rill__h2_conn_new_upgraded(&lh->h2, t, payload, (size_t)plen, &head);
  free(fields);
  if (h2 == NULL) {
    lh->srv.refs--;
    t->vt->abort(t);
  } else {
    /* Bytes the client sent after the head (its preface, maybe) stay in
     * t's buffer: the connection reads them first. Until it reads, the
     * socket must still want bytes, as after sniff_done. */
    rill__stream_fill(t);
  }
  rill__http_conn_release(c); /* the transport is the h2 connection's */
  return 1;
}

/* Which protocol a new connection speaks, found from its first bytes: the
 * ALPN protocol over TLS (its handshake is done once bytes come), the
 * client preface ("PRI * HTTP/2.0", which no HTTP/1.1 request starts with)
 * in clear. */
typedef struct {
  rill_binding_t b;
  lhttp_t *lh;
  rill_stream_t *s;
  uv_timer_t timer; /* header_timeout: a client that sends nothing goes */
} sniff_t;

static void sniff_free_cb(uv_handle_t *h) {
  free(rill__container_of((uv_timer_t *)h, sniff_t, timer));
}

static void sniff_free(sniff_t *sn) {
  rill__stream_unbind(&sn->b);
  uv_close((uv_handle_t *)&sn->timer, sniff_free_cb);
}

static void sniff_timeout(uv_timer_t *h) {
  sniff_t *sn = rill__container_of(h, sniff_t, timer);
  rill_stream_t *s = sn->s;
  sniff_free(sn);
  s->vt->close(s);
}

static void sniff_done(sniff_t *sn, int h2) {
  lhttp_t *lh = sn->lh;
  rill_stream_t *s = sn->s;
  sniff_free(sn);
  if (h2) {
    lh->srv.refs++;
    if (rill__h2_conn_new(&lh->h2, s) == NULL) {
      lh->srv.refs--;
      s->vt->abort(s);
      return;
    }
    /* The connection reads from the burst's end; until then the socket must
     * still want bytes: libuv may read once more after this callback, and a
     * full buffer nobody wants more of fails with ENOBUFS (uvstream.c). */
    rill__stream_fill(s);
  } else if (rill__http_conn_new(&lh->srv, s) == NULL) {
    s->vt->abort(s);
  }
}

static void sniff(sniff_t *sn) {
  const char *p;
  size_t n;
  int r = sn->s->vt->peek(sn->s, &p, &n);
  if (r < 0) {
    sniff_done(sn, 0); /* the HTTP/1.1 connection sees the end and closes */
    return;
  }
  if (rill__tls_is(sn->s)) {
    if (n > 0) {
      const char *alpn = rill__tls_alpn(sn->s);
      sniff_done(sn, alpn && strcmp(alpn, "h2") == 0);
      return;
    }
  } else if (n >= 3 || (n > 0 && memcmp(p, "PRI", n) != 0)) {
    sniff_done(sn, n >= 3 && memcmp(p, "PRI", 3) == 0);
    return;
  }
  if (rill__stream_fill(sn->s) < 0) sniff_done(sn, 0);
}

static void sniff_readable(rill_binding_t *b, int status) {
  sniff(rill__container_of(b, sniff_t, b));
}

static void sniff_gone(rill_binding_t *b) {
  sniff_t *sn = rill__container_of(b, sniff_t, b);
  uv_close((uv_handle_t *)&sn->timer, sniff_free_cb);
}

static const rill_binding_ops_t sniff_ops = {.readable = sniff_readable, .gone = sniff_gone};

static void on_accept(rill_listener_t *l, rill_uvstream_t *u) {
  lhttp_t *lh = l->data;
  rill_stream_t *s = rill__uvstream_stream(u);
  /* Over TLS the connection's first read drives the handshake. */
  if (lh->tls && (s = rill__tls_new(lh->tls, s, NULL)) == NULL) return;
  if (lh->http2) {
    sniff_t *sn = calloc(1, sizeof(*sn));
    if (sn == NULL) {
      s->vt->abort(s);
      return;
    }
    sn->lh = lh;
    sn->s = s;
    uv_timer_init(lh->srv.w->loop, &sn->timer);
    uv_timer_start(&sn->timer, sniff_timeout, lh->srv.limits.header_timeout_ms, 0);
    rill__stream_bind(s, &sn->b, &sniff_ops);
    sniff(sn);
    return;
  }
  if (rill__http_conn_new(&lh->srv, s) == NULL) s->vt->abort(s);
}

static int make_room(rill_listener_t *l) {
  lhttp_t *lh = l->data;
  return rill__http_server_make_room(&lh->srv);
}

static void set_handler(rill_listener_t *l, int ref) {
  lhttp_t *lh = l->data;
  luaL_unref(lh->srv.w->L, LUA_REGISTRYINDEX, lh->handler_ref);
  lh->handler_ref = ref;
}

static void listener_free(rill_listener_t *l) {
  lhttp_t *lh = l->data;
  rill__listener_forget_ud(l);
  if (--lh->srv.refs == 0) on_free(&lh->srv);
}

static unsigned opt_ms(lua_State *L, const char *k, unsigned def_ms) {
  lua_Number ms = rill__opt_number(L, 1, k, (lua_Number)def_ms);
  if (ms < 0) ms = 0;
  return ms > 4e9 ? 4000000000u : (unsigned)ms;
}

/* A size option: a non-negative number, def when absent. */
static lua_Number opt_size(lua_State *L, const char *k, lua_Number def) {
  lua_Number v = rill__opt_number(L, 1, k, def);
  if (v < 0) luaL_error(L, "http.listen: %s must not be negative", k);
  return v;
}

/* core.http_listen{host=, port=, handler=, dispatch=, limits...} */
static int l_http_listen(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  /* Every option is read before anything is made: a bad one raises, and
   * leaves nothing behind. */
  rill_listen_at_t at;
  char where[160];
  rill__opt_listen_at(L, 1, 8080, &at, where, sizeof(where));
  int backlog = (int)rill__opt_number(L, 1, "backlog", 511);
  unsigned maxc = (unsigned)opt_size(L, "max_connections", 16384);
  unsigned per_addr = (unsigned)opt_size(L, "max_connections_per_address", 0);
  rill_http_limits_t lim;
  rill__http_limits_default(&lim);
  lim.max_header_bytes = (size_t)opt_size(L, "max_header_bytes", (lua_Number)lim.max_header_bytes);
  lim.max_headers = (unsigned)opt_size(L, "max_headers", lim.max_headers);
  lim.max_body_bytes = (uint64_t)opt_size(L, "max_body_bytes", (lua_Number)lim.max_body_bytes);
  lim.drain_bytes = (size_t)opt_size(L, "drain_bytes", (lua_Number)lim.drain_bytes);
  lim.min_body_rate = (uint64_t)opt_size(L, "min_body_rate", (lua_Number)lim.min_body_rate);
  lim.header_timeout_ms = opt_ms(L, "header_timeout", lim.header_timeout_ms);
  lim.body_timeout_ms = opt_ms(L, "body_timeout", lim.body_timeout_ms);
  lim.keepalive_timeout_ms = opt_ms(L, "keepalive_timeout", lim.keepalive_timeout_ms);
  lim.send_timeout_ms = opt_ms(L, "send_timeout", lim.send_timeout_ms);
  lim.body_rate_grace_ms = opt_ms(L, "body_rate_grace", lim.body_rate_grace_ms);
  if (lim.max_header_bytes < 64) lim.max_header_bytes = 64;
  rill_cidr_t from[RILL_PROXY_FROM_MAX];
  int nfrom = rill__opt_proxy(L, 1, from);
  if (lim.max_headers < 1) lim.max_headers = 1;
  lua_getfield(L, 1, "handler");
  lua_getfield(L, 1, "dispatch");
  if (!lua_isfunction(L, -2) || !lua_isfunction(L, -1))
    return luaL_argerror(L, 1, "handler and dispatch must be functions");

  lhttp_t *lh = calloc(1, sizeof(*lh));
  if (lh == NULL || rill__http_server_init(&lh->srv, w) != 0) {
    free(lh);
    return luaL_error(L, "out of memory");
  }
  lh->srv.on_request = on_request;
  lh->srv.on_drained = on_drained;
  lh->srv.on_close = on_close;
  lh->srv.on_idle = on_idle;
  lh->srv.on_peer_gone = on_peer_gone;
  lh->srv.on_free = on_free;
  lh->srv.on_file = on_file;
  lh->srv.data = lh;
  lh->srv.refs = 1;
  lh->srv.limits = lim;
  lh->dispatch_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lh->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, 1, "gone");
  if (lua_isfunction(L, -1)) {
    lh->gone_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  } else {
    lua_pop(L, 1);
    lh->gone_ref = LUA_NOREF;
  }
  lua_getfield(L, 1, "http2");
  lh->http2 = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (lh->http2) {
    lh->h2.w = w;
    rill__h2_limits_default(&lh->h2.limits, &lim);
    lh->h2.on_request = h2_on_request;
    lh->h2.on_drained = rill__lh2_drained;
    lh->h2.on_gone = rill__lh2_gone;
    lh->h2.on_close = h2_on_close;
    lh->h2.data = lh;
  }
  lua_getfield(L, 1, "tls");
  if (lua_toboolean(L, -1)) {
    static const char *const http_alpn[] = {"http/1.1", NULL};
    static const char *const h2_alpn[] = {"h2", "http/1.1", NULL};
    char err[256];
    lh->tls = rill__ltls_conf(L, w, -1, 1, lh->http2 ? h2_alpn : http_alpn, err, sizeof(err));
    if (lh->tls == NULL) {
      on_free(&lh->srv);
      lua_pushnil(L);
      lua_pushstring(L, err);
      return 2;
    }
  }
  lua_pop(L, 1);

  rill_listener_t *l;
  int r = rill__listen_at(w, &at, backlog, maxc, on_accept, lh, &l);
  if (r == 0 && ((per_addr && (r = rill__listener_limit_per_addr(l, per_addr)) != 0) ||
                 (nfrom >= 0 && (r = rill__listener_proxy(l, from, (size_t)nfrom,
                                                          lim.header_timeout_ms)) != 0)))
    rill__listener_close(l); /* its on_free is not set yet: lh is ours still */
  if (r) {
    on_free(&lh->srv);
    lua_pushnil(L);
    lua_pushfstring(L, "listen %s: %s", where,
                    at.fd >= 0 && r == UV_EINVAL ? "not a listening socket" : rill__errmsg(r));
    return 2;
  }
  l->on_free = listener_free;
  l->set_handler = set_handler;
  l->make_room = make_room;
  return rill__push_listener(L, l);
}

/* ---- request primitives ---- */

static rill_http_conn_t *check(lua_State *L) {
  lconn_ud *ud = luaL_checkudata(L, 1, CONN_MT);
  rill_http_conn_t *c = ud->c;
  lua_Integer gen = luaL_checkinteger(L, 2);
  if (c == NULL || c->state != RILL_CONN_HANDLER || c->gen != (unsigned)gen)
    luaL_error(L, "the request is over");
  return c;
}

/* conn:reqline(gen) → method, target, minor version */
static int l_reqline(lua_State *L) {
  rill_http_conn_t *c = check(L);
  lua_pushstring(L, llhttp_method_name((llhttp_method_t)c->head->method));
  lua_pushlstring(L, c->hbuf + c->head->url_off, c->head->url_len);
  lua_pushinteger(L, c->head->minor);
  return 3;
}

/* The fast path of conn:reqline (lua_sched.h: calls from compiled Lua):
 * *method (a C string) and the target (*target, *target_len) of the
 * request; returns its minor version, or -1 for the slow path (the request
 * is over: the C method says so). */
int rill__ffi_http_reqline(void *conn, unsigned gen, const char **method, const char **target,
                           int *target_len) {
  lconn_ud *ud = conn;
  rill_http_conn_t *c = ud->c;
  if (c == NULL || c->state != RILL_CONN_HANDLER || c->gen != gen) return -1;
  *method = llhttp_method_name((llhttp_method_t)c->head->method);
  *target = c->hbuf + c->head->url_off;
  *target_len = (int)c->head->url_len;
  return c->head->minor;
}

/* Pushes a table of the fields: lower-case names; a repeated field's values
 * in an array, in order. */
static void push_fields(lua_State *L, const char *base, const rill_http_field_t *f,
                        unsigned n) {
  lua_createtable(L, 0, (int)n);
  char small[64];
  for (unsigned i = 0; i < n; i++) {
    const char *name = base + f[i].name_off;
    size_t nl = f[i].name_len;
    char *lo = nl <= sizeof(small) ? small : lua_newuserdata(L, nl);
    for (size_t j = 0; j < nl; j++) {
      char ch = name[j];
      lo[j] = ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
    }
    lua_pushlstring(L, lo, nl);
    if (lo != small) lua_remove(L, -2);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    int type = lua_type(L, -1);
    if (type == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushlstring(L, base + f[i].value_off, f[i].value_len);
      lua_rawset(L, -3);
    } else if (type == LUA_TSTRING) {
      lua_createtable(L, 2, 0);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
      lua_pushlstring(L, base + f[i].value_off, f[i].value_len);
      lua_rawseti(L, -2, 2);
      lua_rawset(L, -3);
    } else {
      lua_pushlstring(L, base + f[i].value_off, f[i].value_len);
      lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
      lua_pop(L, 2);
    }
  }
}

static int l_headers(lua_State *L) {
  rill_http_conn_t *c = check(L);
  push_fields(L, c->hbuf, c->head->fields, c->head->nfields);
  return 1;
}

/* conn:raw_headers(gen) → {name, value, name, value, ...} as received */
static int l_raw_headers(lua_State *L) {
  rill_http_conn_t *c = check(L);
  lua_createtable(L, (int)c->head->nfields * 2, 0);
  for (unsigned i = 0; i < c->head->nfields; i++) {
    const rill_http_field_t *f = &c->head->fields[i];
    lua_pushlstring(L, c->hbuf + f->name_off, f->name_len);
    lua_rawseti(L, -2, (int)i * 2 + 1);
    lua_pushlstring(L, c->hbuf + f->value_off, f->value_len);
    lua_rawseti(L, -2, (int)i * 2 + 2);
  }
  return 1;
}

static int l_body(lua_State *L) {
  rill_http_conn_t *c = check(L);
  if (c->body->base.top) return luaL_error(L, "the body stream was taken already");
  /* body_timeout is kept by the connection (a timed-out body gets 408); a
   * handler may set a shorter deadline of its own. */
  rill__lstream_push(L, &c->body->base, 0, -1);
  return 1;
}

/* conn:trailers(gen) → table, or nil before the end of a chunked body */
static int l_trailers(lua_State *L) {
  rill_http_conn_t *c = check(L);
  const rill_chunked_t *ch = rill__http_conn_chunk(c);
  if (ch == NULL) return 0;
  rill_http_field_t f[RILL_CHUNK_TRAILERS_MAX];
  int n = rill__chunked_trailers(ch, f, RILL_CHUNK_TRAILERS_MAX);
  if (n < 0) n = 0;
  push_fields(L, ch->trailers, f, (unsigned)n);
  return 1;
}

/* core.http_reason(status) → the registered reason phrase, or nil */
static int l_reason(lua_State *L) {
  const char *r = rill__http_reason((int)luaL_checkinteger(L, 1));
  if (strcmp(r, "Unknown") == 0) return 0;
  lua_pushstring(L, r);
  return 1;
}

/* conn:closed(gen) → whether the client went away while the request was
 * handled (true too once the request is over) */
static int l_closed(lua_State *L) {
  lconn_ud *ud = luaL_checkudata(L, 1, CONN_MT);
  lua_Integer gen = luaL_checkinteger(L, 2);
  rill_http_conn_t *c = ud->c;
  lua_pushboolean(L, c == NULL || c->gen != (unsigned)gen || c->peer_gone ||
                         c->state != RILL_CONN_HANDLER);
  return 1;
}

/* conn:scheme(gen) → "https" over TLS, else "http" */
static int l_scheme(lua_State *L) {
  rill_http_conn_t *c = check(L);
  lua_pushstring(L, rill__tls_is(c->t) ? "https" : "http");
  return 1;
}

/* conn:tls_client(gen) → {subject =, dns =, email =, verified = true} or
 * nothing: the client certificate the handshake verified. */
static int l_tls_client(lua_State *L) {
  rill_http_conn_t *c = check(L);
  return c->t && rill__ltls_push_client(L, c->t) ? 1 : 0;
}

/* Whether s runs over a unix socket (a socket stream, under TLS or not,
 * that has no IP address). */
static int is_unix(rill_stream_t *s) {
  rill_stream_t *lower = rill__tls_lower(s);
  if (lower) s = lower;
  char host[64];
  /* its own peer has no address; behind a PROXY header, the balancer has none */
  return strcmp(s->vt->name, "socket") == 0 &&
         (rill__stream_addr(s, RILL_ADDR_PEER, host, sizeof(host)) == UV_ENOTSUP ||
          rill__stream_addr(s, RILL_ADDR_PROXY, host, sizeof(host)) == UV_ENOTSUP);
}

/* conn:peer(gen) → host, port: asked of the socket once per connection (it
 * does not change between requests), and kept only by connections whose
 * requests asked */
static int l_peer(lua_State *L) {
  rill_http_conn_t *c = check(L);
  if (lua_toboolean(L, 3)) {
    /* conn:peer(gen, true): the balancer's address behind a PROXY header */
    char host[48];
    int port =
        c->t ? rill__stream_addr(c->t, RILL_ADDR_PROXY, host, sizeof(host)) : UV_ENOTCONN;
    if (port == UV_ENOTSUP && is_unix(c->t)) {
      snprintf(host, sizeof(host), "unix");
      port = 0;
    }
    if (port < 0) return 0;
    lua_pushstring(L, host);
    lua_pushinteger(L, port);
    return 2;
  }
  if (c->peer_host == NULL) {
    char host[48];
    int port = c->t ? rill__stream_addr(c->t, 1, host, sizeof(host)) : UV_ENOTCONN;
    if (port == UV_ENOTSUP && is_unix(c->t)) {
      snprintf(host, sizeof(host), "unix"); /* a unix socket's peer has no address */
      port = 0;
    }
    if (port < 0) return 0;
    if ((c->peer_host = strdup(host)) == NULL) return luaL_error(L, "out of memory");
    c->peer_port = port;
  }
  lua_pushstring(L, c->peer_host);
  lua_pushinteger(L, c->peer_port);
  return 2;
}

/* Reads {name, value, ...} at idx into h (small, or a userdata pushed on the
 * stack when larger). The strings stay referenced by the table. */
size_t rill__lhttp_get_hdrs(lua_State *L, int idx, rill_hdr_t *small, size_t nsmall,
                            rill_hdr_t **out) {
  *out = small;
  if (lua_isnoneornil(L, idx)) return 0;
  luaL_checktype(L, idx, LUA_TTABLE);
  size_t n = lua_objlen(L, idx) / 2;
  rill_hdr_t *h = small;
  if (n > nsmall) h = lua_newuserdata(L, n * sizeof(*h));
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, idx, (int)(2 * i + 1));
    lua_rawgeti(L, idx, (int)(2 * i + 2));
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "header names and values must be strings");
    h[i].name = lua_tolstring(L, -2, &h[i].nlen);
    h[i].value = lua_tolstring(L, -1, &h[i].vlen);
    lua_pop(L, 2);
  }
  *out = h;
  return n;
}


static int write_cancel(rill_wait_t *wt, int status) {
  lconn_ud *ud = wt->obj;
  lua_State *co = rill__wait_task(wt)->co;
  if (wt->kind == W_NOBODY && status == UV_ETIMEDOUT) {
    /* A turn of the loop has passed; nothing was sent, nothing failed. */
    if (ud->c && !ud->c->peer_gone) {
      lua_pushboolean(co, 1);
      return 1;
    }
    status = RILL_ECLOSED;
  }
  /* A write past send_timeout: what was sent is not the whole answer. */
  if (ud->c && status == UV_ETIMEDOUT) rill__http_conn_cut(ud->c, status);
  lua_pushnil(co);
  lua_pushstring(co, rill__errmsg(status));
  return 2;
}

static int result(lua_State *L, rill_http_conn_t *c, rill_task_t *t, int r) {
  switch (r) {
  case 0:
    lua_pushboolean(L, 1);
    return 1;
  case RILL_EAGAIN: {
    /* Queued above the high-water mark: wait for the client to read. */
    lconn_ud *ud = luaL_checkudata(L, 1, CONN_MT);
    if (ud->waits.head) return luaL_error(L, "the response already has a writer waiting");
    return rill__task_wait(L, t, &ud->waits, W_WRITE, ud,
                           (int)c->srv->limits.send_timeout_ms, write_cancel);
  }
  case RILL_HTTP_NOBODY: {
    /* Nothing to send (HEAD): a loop of writes must still let others run,
     * and end once the client has gone. One turn of the loop, then true. */
    lconn_ud *ud = luaL_checkudata(L, 1, CONN_MT);
    rill__http_conn_watch(c);
    if (c->peer_gone) return result(L, c, t, RILL_ECLOSED);
    if (ud->waits.head) return luaL_error(L, "the response already has a writer waiting");
    return rill__task_wait(L, t, &ud->waits, W_NOBODY, ud, 0, write_cancel);
  }
  case UV_EINVAL:
    return luaL_error(L, "invalid status, header name or header value");
  case UV_EBUSY:
    return luaL_error(L, "the response has already %s",
                      c->resp == 2 ? "ended" : "started");
  case RILL_EBODY:
    return luaL_error(L, "more body bytes than the Content-Length header announced");
  default:
    lua_pushnil(L);
    lua_pushstring(L, c->t ? rill__stream_errmsg(c->t, r) : rill__errmsg(r));
    return 2;
  }
}

/* conn:respond(gen, status, headers, body) */
static int l_respond(lua_State *L) {
  rill_http_conn_t *c = check(L);
  rill_task_t *t = rill__task_check(c->w, L);
  int status = (int)luaL_checkinteger(L, 3);
  size_t len = 0;
  const char *body = luaL_optlstring(L, 5, "", &len);
  rill_hdr_t small[16], *h;
  size_t nh = rill__lhttp_get_hdrs(L, 4, small, 16, &h);
  return result(L, c, t, rill__http_respond(c, status, h, nh, body, len));
}

/* conn:write(gen, status, headers, data) */
static int l_write(lua_State *L) {
  rill_http_conn_t *c = check(L);
  rill_task_t *t = rill__task_check(c->w, L);
  int status = (int)luaL_checkinteger(L, 3);
  size_t len;
  const char *data = luaL_checklstring(L, 5, &len);
  rill_hdr_t small[16], *h;
  size_t nh = rill__lhttp_get_hdrs(L, 4, small, 16, &h);
  return result(L, c, t, rill__http_write(c, status, h, nh, data, len));
}

/* conn:_wait_drained(gen): after a fast write the connection took but asked
 * to wait for (the client reads slowly): waits like write() would have. */
static int l_wait_drained(lua_State *L) {
  rill_http_conn_t *c = check(L);
  return result(L, c, rill__task_check(c->w, L), RILL_EAGAIN);
}

/* The fast path of res:write (lua_sched.h: calls from compiled Lua): a piece
 * of a response whose head went already. 0 taken, 1 taken but wait for the
 * drain (_wait_drained), 2 the slow path (nothing taken: not started, over,
 * a writer waiting, an error to report). */
int rill__ffi_http_write(void *conn, unsigned gen, const char *p, size_t n) {
  lconn_ud *ud = conn;
  rill_http_conn_t *c = ud->c;
  if (c == NULL || c->state != RILL_CONN_HANDLER || c->gen != gen || !rill__http_started(c) ||
      ud->waits.head || n == 0 || n > UINT_MAX || !rill__ffi_enter(c->w))
    return 2;
  rill_worker_t *w = c->w;
  int r = rill__http_write(c, 0, NULL, 0, p, n);
  rill__ffi_leave(w);
  return r == 0 ? 0 : r == RILL_EAGAIN ? 1 : 2;
}

/* The fast path's header lines are rill_hdr_t's. */
_Static_assert(sizeof(rill_ffi_hdr_t) == sizeof(rill_hdr_t) &&
                   offsetof(rill_ffi_hdr_t, nlen) == offsetof(rill_hdr_t, nlen) &&
                   offsetof(rill_ffi_hdr_t, value) == offsetof(rill_hdr_t, value) &&
                   offsetof(rill_ffi_hdr_t, vlen) == offsetof(rill_hdr_t, vlen),
               "rill_ffi_hdr_t is rill_hdr_t");

/* The fast path of res:send: the whole response, as conn:respond(). Returns
 * 0 (done), 2 for the slow path (nothing done: over, started, a writer
 * waiting, not in a task), or another status for conn:_result() to report
 * as conn:respond() would. */
int rill__ffi_http_respond(void *conn, unsigned gen, int status, const rill_ffi_hdr_t *h, int nh,
                           const char *body, size_t len) {
  lconn_ud *ud = conn;
  rill_http_conn_t *c = ud->c;
  if (c == NULL || c->state != RILL_CONN_HANDLER || c->gen != gen || rill__http_started(c) ||
      ud->waits.head || nh < 0 || len > UINT_MAX || !rill__ffi_enter(c->w))
    return 2;
  rill_worker_t *w = c->w;
  int r = rill__http_respond(c, status, (const rill_hdr_t *)h, (size_t)nh, body, len);
  rill__ffi_leave(w);
  return r; /* 0 or a negative error: never the slow path's 2 */
}

/* conn:_result(gen, status): what conn:respond() answers for a status the
 * fast path met (true, a wait for the drain, nil and why, or an error). */
static int l_result(lua_State *L) {
  rill_http_conn_t *c = check(L);
  return result(L, c, rill__task_check(c->w, L), (int)luaL_checkinteger(L, 3));
}

/* conn:flush(gen, status, headers): starts the response if it has not
 * started (its head, then a streamed body), then sends what was gathered
 * now rather than when the handler next waits. */
static int l_flush(lua_State *L) {
  rill_http_conn_t *c = check(L);
  rill_task_t *t = rill__task_check(c->w, L);
  int r = 0;
  if (!rill__http_started(c)) {
    int status = (int)luaL_checkinteger(L, 3);
    rill_hdr_t small[16], *h;
    size_t nh = rill__lhttp_get_hdrs(L, 4, small, 16, &h);
    r = rill__http_write(c, status, h, nh, "", 0);
  }
  if (r == 0) {
    rill__http_conn_flush(c);
    r = c->werr;
  }
  if (r == 0 && c->t) r = rill__stream_flush(c->t);
  return result(L, c, t, r);
}

/* conn:finish(gen, status, headers) */
static int l_finish(lua_State *L) {
  rill_http_conn_t *c = check(L);
  rill_task_t *t = rill__task_check(c->w, L);
  int status = (int)luaL_checkinteger(L, 3);
  rill_hdr_t small[16], *h;
  size_t nh = rill__lhttp_get_hdrs(L, 4, small, 16, &h);
  return result(L, c, t, rill__http_finish(c, status, h, nh));
}

/* A sendfile call ended: bytes sent, or an error, to the waiting task. */
static void on_file(rill_http_conn_t *c, int64_t result) {
  lconn_ud *ud = c->data;
  rill_wait_t *wt = ud ? rill__waitq_find(&ud->waits, W_FILE) : NULL;
  if (wt == NULL) return;
  if (result < 0) {
    rill__wait_cancel(wt, (int)result);
    return;
  }
  lua_pushnumber(rill__wait_task(wt)->co, (lua_Number)result);
  rill__wait_done(wt, 1);
}

static int file_cancel(rill_wait_t *wt, int status) {
  lconn_ud *ud = wt->obj;
  lua_State *co = rill__wait_task(wt)->co;
  /* Ended before the send did (a deadline, an interrupt, the client gone):
   * the sender stops, and the response is cut. */
  if (ud->c) {
    if (ud->c->file && status == UV_ETIMEDOUT) rill__http_conn_cut(ud->c, status);
    rill__http_file_free(ud->c);
  }
  lua_pushnil(co);
  lua_pushstring(co, ud->c && ud->c->t ? rill__stream_errmsg(ud->c->t, status)
                                       : rill__errmsg(status));
  return 2;
}

/* conn:_sendfile(gen, status, headers, file, offset, length) → bytes sent
 * (1..length: call again for the rest) | nil, err: the range of file as
 * part of the body, by sendfile(2) (http_file.c); nil, "unsupported"
 * (nothing done) where the transport cannot (TLS). Waits at most
 * send_timeout for each piece. */
static int l_sendfile(lua_State *L) {
  rill_http_conn_t *c = check(L);
  rill_task_t *t = rill__task_check(c->w, L);
  int status = (int)luaL_checkinteger(L, 3);
  rill_hdr_t small[16], *h;
  size_t nh = rill__lhttp_get_hdrs(L, 4, small, 16, &h);
  rill_file_t *f = rill__lfile_check(L, 5);
  lua_Number off = luaL_checknumber(L, 6), len = luaL_checknumber(L, 7);
  luaL_argcheck(L, off >= 0 && off < 9e18, 6, "must be a byte offset");
  luaL_argcheck(L, len >= 1 && len < 9e18, 7, "must be a positive length");
  lconn_ud *ud = luaL_checkudata(L, 1, CONN_MT);
  if (ud->waits.head) return luaL_error(L, "the response already has a writer waiting");
  int r = rill__http_sendfile(c, status, h, nh, f, (int64_t)off, (uint64_t)len);
  if (r == 0)
    return rill__task_wait(L, t, &ud->waits, W_FILE, ud, (int)c->srv->limits.send_timeout_ms,
                           file_cancel);
  if (r == RILL_HTTP_NOBODY) {
    lua_pushnumber(L, len);
    return 1;
  }
  if (r == UV_ENOTSUP) {
    lua_pushnil(L);
    lua_pushliteral(L, "unsupported");
    return 2;
  }
  return result(L, c, t, r);
}

/* conn:_response(gen) → "none", "started" or "ended": how far the response
 * got, as the connection sees it (rill.hooks decides from it what a handler
 * that raised may still answer). */
static int l_response(lua_State *L) {
  rill_http_conn_t *c = check(L);
  lua_pushstring(L, c->resp == 0 ? "none" : c->resp == 2 ? "ended" : "started");
  return 1;
}

/* conn:_started() → the loop's time (ms, as rill.now) when the latest
 * request on this connection came; what res:on_finish measures from. */
static int l_started(lua_State *L) {
  lconn_ud *ud = luaL_checkudata(L, 1, CONN_MT);
  lua_pushnumber(L, (lua_Number)ud->started);
  return 1;
}

/* conn:_cut(gen): a response that started will not end whole (its handler
 * raised): the connection is reset when the handler is done, so that the
 * client never takes a part for the whole. */
static int l_cut(lua_State *L) {
  rill_http_conn_t *c = check(L);
  rill__http_conn_cut(c, RILL_ECLOSED);
  return 0;
}

/* conn:_abort(gen): closes the connection now (a handler past its deadline
 * whose response had started) */
static int l_abort(lua_State *L) {
  rill_http_conn_t *c = check(L);
  rill__http_conn_abort(c);
  return 0;
}

/* conn:_body_max(gen, bytes): lowers this request's body limit (never
 * raises it). A read past it fails with "too large" and the request is
 * answered 413 whatever the handler sends, as for max_body_bytes. */
static int l_body_max(lua_State *L) {
  rill_http_conn_t *c = check(L);
  lua_Number n = luaL_checknumber(L, 3);
  luaL_argcheck(L, n >= 1, 3, "must be at least 1");
  rill_body_t *b = c->body;
  uint64_t max = n >= 1.8e19 ? UINT64_MAX : (uint64_t)n;
  if (b && (b->max == 0 || max < b->max)) b->max = max;
  return 0;
}

static const char *const z_formats[] = {"gzip", "deflate", NULL};

/* conn:_compress(gen, format, level): the response, not started yet, is
 * compressed ("gzip" or "deflate", level 1-9); see rill__http_compress. */
static int l_compress(lua_State *L) {
  rill_http_conn_t *c = check(L);
  int format = luaL_checkoption(L, 3, NULL, z_formats) == 0 ? RILL_Z_GZIP : RILL_Z_DEFLATE;
  lua_Integer level = luaL_checkinteger(L, 4);
  luaL_argcheck(L, level >= 1 && level <= 9, 4, "a level 1-9");
  if (rill__http_compress(c, format, (int)level) != 0)
    return luaL_error(L, "the response has already started");
  return 0;
}

/* A decoded body passed its limit or was corrupt: the request is answered
 * 413 or 400. */
static void inflate_failed(rill_inflate_stream_t *s, int err) {
  rill__http_conn_body_failed(s->data, err);
}

/* conn:_inflate(gen, format, max) → a stream of the request body inflated
 * ("gzip" or "deflate"), failing with "too large" past max bytes (0: no
 * limit), and with the request answered 413 (or 400 for corrupt data). */
static int l_inflate(lua_State *L) {
  rill_http_conn_t *c = check(L);
  int format = luaL_checkoption(L, 3, NULL, z_formats) == 0 ? RILL_Z_GZIP : RILL_Z_DEFLATE;
  lua_Number max = luaL_checknumber(L, 4);
  luaL_argcheck(L, max >= 0, 4, "a byte count");
  if (c->body->base.top) return luaL_error(L, "the body stream was taken already");
  rill_inflate_stream_t *s = rill__inflate_stream_new(
      c->w, &c->body->base, format, max >= 1.8e19 ? 0 : (uint64_t)max);
  if (s == NULL) return luaL_error(L, "out of memory");
  s->on_error = inflate_failed;
  s->data = c;
  rill__lstream_push(L, &s->base, 1, -1);
  return 1;
}

/* conn:upgrade(gen, headers [, status]) → the connection's stream, after a
 * 101 head (or 200 for a CONNECT) made of headers; nil if the request had a
 * body or the response started. */
static int l_upgrade(lua_State *L) {
  rill_http_conn_t *c = check(L);
  rill_hdr_t small[16], *h;
  size_t nh = rill__lhttp_get_hdrs(L, 3, small, 16, &h);
  int status = (int)luaL_optinteger(L, 4, 101);
  if (status != 101 && !(status == 200 && c->head->method == HTTP_CONNECT))
    return luaL_argerror(L, 4, "101, or 200 for a CONNECT");
  rill_task_t *task = rill__task_current(c->w);
  rill_stream_t *t = rill__http_conn_upgrade(c, status, h, nh);
  if (t == NULL) return 0;
  rill__lstream_push(L, t, 1, -1);
  /* The connection's work is done: free it now, not when the handler (a
   * long WebSocket session, a tunnel) ends. */
  if (task && task->done_data == c) {
    task->done = NULL;
    task->yield_cb = NULL;
    task->done_data = NULL;
    rill__http_conn_release(c);
  }
  return 1;
}

/* Pushes what a parsed response head says: status, reason, minor version,
 * headers, body mode, length, keep-alive, raw headers (8 values). The body
 * mode follows the request's method (HEAD: none; CONNECT 2xx: none). */
static int push_response(lua_State *L, const char *head, const rill_http_head_t *h,
                         const char *method) {
  lua_pushinteger(L, h->status);
  lua_pushlstring(L, head + h->reason_off, h->reason_len);
  lua_pushinteger(L, h->minor);
  push_fields(L, head, h->fields, h->nfields);
  const char *mode = "none";
  int nobody = strcmp(method, "HEAD") == 0 || h->status < 200 || h->status == 204 ||
               h->status == 304 || (strcmp(method, "CONNECT") == 0 && h->status < 300);
  if (!nobody) {
    if (h->flags & RILL_HTTP_CHUNKED)
      mode = "chunked";
    else if (h->flags & RILL_HTTP_LENGTH)
      mode = h->content_length > 0 ? "length" : "none";
    else
      mode = "eof";
  }
  lua_pushstring(L, mode);
  lua_pushnumber(L, (lua_Number)h->content_length);
  lua_pushboolean(L, (h->flags & RILL_HTTP_KEEPALIVE) && strcmp(mode, "eof") != 0);
  lua_createtable(L, (int)h->nfields * 2, 0);
  for (unsigned i = 0; i < h->nfields; i++) {
    lua_pushlstring(L, head + h->fields[i].name_off, h->fields[i].name_len);
    lua_rawseti(L, -2, (int)i * 2 + 1);
    lua_pushlstring(L, head + h->fields[i].value_off, h->fields[i].value_len);
    lua_rawseti(L, -2, (int)i * 2 + 2);
  }
  return 8;
}

/* core.http_parse_response(head [, method]) → status, reason, minor version,
 * headers (lower-case, repeats in arrays), body mode ("none", "length",
 * "chunked", "eof"), length, keep-alive, raw headers {name, value, ...} as
 * received; or nil, why. The head is the bytes up to its empty line. */
static int l_parse_response(lua_State *L) {
  size_t len;
  const char *head = luaL_checklstring(L, 1, &len);
  const char *method = luaL_optstring(L, 2, "GET");
  rill_http_head_t h;
  rill__http_head_init(&h, HTTP_RESPONSE, 256);
  ssize_t r = rill__http_head_parse(&h, head, len, len + 1);
  if (r <= 0 || (size_t)r != len) {
    lua_pushnil(L);
    lua_pushstring(L, r < 0 && h.err_reason ? h.err_reason : "incomplete response head");
    rill__http_head_free(&h);
    return 2;
  }
  int n = push_response(L, head, &h, method);
  rill__http_head_free(&h);
  return n;
}

/* A response head read from a connection's own buffer: the parser state
 * stays with the connection's stream face for its next response. */
typedef struct {
  rill_http_head_t h;
  char method[16]; /* of the request it answers ("HEAD" and "CONNECT" matter) */
  size_t max;      /* bytes the head may take */
} resp_reader_t;

static long parse_response(void *state, lua_State *L, const char *p, size_t n, int *nres) {
  resp_reader_t *rr = state;
  ssize_t r = rill__http_head_parse(&rr->h, p, n, rr->max);
  if (r == 0) return 0;
  if (r < 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "bad response: %s", rr->h.err_reason ? rr->h.err_reason : "?");
    *nres = 2;
    return RILL_EPROTO;
  }
  *nres = push_response(L, p, &rr->h, rr->method);
  return (long)r;
}

static void free_response_reader(void *state) {
  resp_reader_t *rr = state;
  rill__http_head_free(&rr->h);
  free(rr);
}

/* core.http_read_response(sock, method, max) → as http_parse_response, read
 * from sock: the head is parsed where it lies in the socket's buffer and
 * consumed, the body's bytes stay. Errors: nil, "bad response: ...", nil
 * and a read error, or nil alone at the end of the stream before a byte. */
static int l_read_response(lua_State *L) {
  lstream_ud *ud = rill__lstream_ud(L, 1);
  size_t mlen;
  const char *method = luaL_checklstring(L, 2, &mlen);
  lua_Integer max = luaL_checkinteger(L, 3);
  luaL_argcheck(L, max > 0, 3, "must be positive");
  resp_reader_t *rr = ud->parse_state;
  if (rr == NULL || ud->parse_free != free_response_reader) {
    if (ud->parse_free) ud->parse_free(ud->parse_state);
    ud->parse_state = NULL;
    ud->parse_free = NULL;
    rr = malloc(sizeof(*rr));
    if (rr == NULL) return luaL_error(L, "out of memory");
    rill__http_head_init(&rr->h, HTTP_RESPONSE, 256);
    ud->parse_state = rr;
    ud->parse_free = free_response_reader;
  } else {
    rill__http_head_reset(&rr->h);
  }
  snprintf(rr->method, sizeof(rr->method), "%s", mlen < sizeof(rr->method) ? method : "");
  rr->max = (size_t)max;
  return rill__lstream_read_parsed(L, 1, parse_response, (size_t)max);
}

/* core.http_body(stream, mode, length [, max]) → a stream of the body read
 * through stream ("length", "chunked" or "eof"); it lets go of stream at its
 * end, so stream can carry the next message. */
static int l_body_stream(lua_State *L) {
  rill_stream_t *t = rill__lstream_check(L, 1);
  static const char *const modes[] = {"none", "length", "chunked", "eof", NULL};
  int mode = luaL_checkoption(L, 2, NULL, modes);
  uint64_t length = (uint64_t)luaL_optnumber(L, 3, 0);
  uint64_t max = (uint64_t)luaL_optnumber(L, 4, 0);
  rill_body_t *b = rill__body_new(t->w, t, mode, length, max);
  if (b == NULL) return luaL_error(L, "out of memory");
  lstream_ud *sud = luaL_checkudata(L, 1, RILL_STREAM_MT);
  rill__lstream_push(L, &b->base, 1, sud->timeout_ms)->deadline = sud->deadline;
  return 1;
}

/* core.inflate(stream, format, max) → a stream of stream's bytes inflated
 * ("gzip" or "deflate"), failing with "too large" past max bytes (0: no
 * limit). It sits above stream's face, which stays the owner of stream:
 * close both. The new face's waits carry stream's timeout and deadline. */
static int l_inflate_stream(lua_State *L) {
  rill_stream_t *below = rill__lstream_check(L, 1);
  int format = luaL_checkoption(L, 2, NULL, z_formats) == 0 ? RILL_Z_GZIP : RILL_Z_DEFLATE;
  lua_Number max = luaL_checknumber(L, 3);
  luaL_argcheck(L, max >= 0, 3, "a byte count");
  rill_inflate_stream_t *s =
      rill__inflate_stream_new(below->w, below, format, max >= 1.8e19 ? 0 : (uint64_t)max);
  if (s == NULL) return luaL_error(L, "out of memory");
  lstream_ud *bud = rill__lstream_ud(L, 1);
  rill__lstream_push(L, &s->base, 1, bud->timeout_ms)->deadline = bud->deadline;
  return 1;
}

/* core.http_trailers(body) → the trailers of a chunked body that ended, or nil */
static int l_body_trailers(lua_State *L) {
  rill_stream_t *s = rill__lstream_check(L, 1);
  if (strcmp(s->vt->name, "body") != 0) return 0;
  const rill_chunked_t *ch = rill__body_trailers(rill__container_of(s, rill_body_t, base));
  if (ch == NULL) return 0;
  rill_http_field_t f[RILL_CHUNK_TRAILERS_MAX];
  int n = rill__chunked_trailers(ch, f, RILL_CHUNK_TRAILERS_MAX);
  push_fields(L, ch->trailers, f, n < 0 ? 0 : (unsigned)n);
  return 1;
}

static int conn_tostring(lua_State *L) {
  lconn_ud *ud = luaL_checkudata(L, 1, CONN_MT);
  lua_pushfstring(L, "rill.http.conn: %p%s", (void *)ud, ud->c ? "" : " (closed)");
  return 1;
}

void rill__open_http(lua_State *L, rill_worker_t *w) {
  static const luaL_Reg funcs[] = {{"http_listen", l_http_listen},
                                   {"http_reason", l_reason},
                                   {"http_parse_response", l_parse_response},
                                   {"http_read_response", l_read_response},
                                   {"http_body", l_body_stream},
                                   {"inflate", l_inflate_stream},
                                   {"http_trailers", l_body_trailers},
                                   {NULL, NULL}};
  static const luaL_Reg methods[] = {
      {"reqline", l_reqline}, {"closed", l_closed}, {"headers", l_headers},   {"raw_headers", l_raw_headers},
      {"body", l_body},       {"trailers", l_trailers}, {"peer", l_peer},
      {"tls_client", l_tls_client},
      {"respond", l_respond}, {"write", l_write},       {"finish", l_finish}, {"flush", l_flush},
      {"upgrade", l_upgrade}, {"scheme", l_scheme},     {"_wait_drained", l_wait_drained},
      {"_result", l_result},
      {"_response", l_response}, {"_cut", l_cut}, {"_abort", l_abort}, {"_body_max", l_body_max},
      {"_started", l_started}, {"_sendfile", l_sendfile},
      {"_compress", l_compress}, {"_inflate", l_inflate},
      {NULL, NULL},
  };
  rill__register(L, w, funcs);
  rill__open_h2(L, w);
  rill__new_class(L, CONN_MT, methods, NULL);
  luaL_getmetatable(L, CONN_MT);
  lua_pushcfunction(L, conn_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}
