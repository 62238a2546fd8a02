/* The Lua face of TLS: options tables into configurations, sock:starttls(),
 * sock:alpn() and sock:tls_info(). Listeners and connect() use
 * rill__ltls_conf() for their `tls` option. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_core.h"
#include "lua_stream.h"
#include "lua_sched.h"
#include "tls.h"

#define MAX_ALPN 8
#define MAX_PAIRS 32

static void read_alpn(lua_State *L, int t, const char **alpn) {
  alpn[0] = NULL;
  lua_getfield(L, t, "alpn");
  if (lua_istable(L, -1)) {
    int n = (int)lua_objlen(L, -1);
    if (n > MAX_ALPN) n = MAX_ALPN;
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, -1, i + 1);
      alpn[i] = lua_tostring(L, -1); /* anchored by the options table */
      lua_pop(L, 1);
      alpn[i + 1] = NULL;
    }
  } else if (lua_isstring(L, -1)) {
    alpn[0] = lua_tostring(L, -1);
    alpn[1] = NULL;
  }
  lua_pop(L, 1);
}

static unsigned read_timeout(lua_State *L, int t) {
  lua_getfield(L, t, "handshake_timeout");
  lua_Number ms = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0; /* milliseconds */
  lua_pop(L, 1);
  return ms > 0 ? (ms > 4e9 ? 4000000000u : (unsigned)ms) : 0;
}

static int read_pair(lua_State *L, int t, rill_tls_pair_t *p) {
  lua_getfield(L, t, "cert");
  lua_getfield(L, t, "key");
  p->cert = lua_tostring(L, -2);
  p->key = lua_tostring(L, -1);
  lua_pop(L, 2);
  return p->cert && p->key;
}

/* Builds a configuration from the options at idx: for a server {cert=, key=}
 * or a list of them (plus alpn=, handshake_timeout=); for a client true or
 * {verify=, ca=, alpn=, handshake_timeout=}. default_alpn applies when the
 * options name none. Returns NULL with a message in err. */
rill_tls_conf_t *rill__ltls_conf(lua_State *L, rill_worker_t *w, int idx, int server,
                                 const char *const *default_alpn, char *err,
                                 size_t errlen) {
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  const char *alpn[MAX_ALPN + 1] = {NULL};
  unsigned timeout = 0;
  rill_tls_conf_t *c = NULL;
  if (lua_istable(L, idx)) {
    read_alpn(L, idx, alpn);
    timeout = read_timeout(L, idx);
  }
  const char *const *use_alpn = alpn[0] ? alpn : default_alpn;
  if (server) {
    rill_tls_pair_t pairs[MAX_PAIRS];
    size_t n = 0;
    if (!lua_istable(L, idx)) {
      snprintf(err, errlen, "tls must be {cert = FILE, key = FILE} or a list of them");
      return NULL;
    }
    if (read_pair(L, idx, &pairs[0])) {
      n = 1;
    } else {
      size_t len = lua_objlen(L, idx);
      for (size_t i = 0; i < len && n < MAX_PAIRS; i++) {
        lua_rawgeti(L, idx, (int)i + 1);
        if (lua_istable(L, -1) && read_pair(L, lua_gettop(L), &pairs[n])) n++;
        lua_pop(L, 1);
      }
    }
    if (n == 0) {
      snprintf(err, errlen, "tls needs cert and key files");
      return NULL;
    }
    if (rill__tls_server_conf(w, pairs, n, use_alpn, timeout, &c, err, errlen) != 0)
      return NULL;
    lua_getfield(L, idx, "ticket_keys");
    const char *keys = lua_tostring(L, -1);
    int r = keys ? rill__tls_conf_ticket_keys(c, keys, err, errlen) : 0;
    lua_pop(L, 1);
    /* Client certificates: client_ca = FILE, verify_client = "required"
     * (the default with client_ca) or "optional". */
    lua_getfield(L, idx, "client_ca");
    lua_getfield(L, idx, "verify_client");
    const char *ca = lua_tostring(L, -2), *mode = lua_tostring(L, -1);
    int m = mode == NULL ? (ca ? RILL_TLS_VERIFY_REQUIRED : RILL_TLS_VERIFY_NONE)
            : strcmp(mode, "required") == 0 ? RILL_TLS_VERIFY_REQUIRED
            : strcmp(mode, "optional") == 0 ? RILL_TLS_VERIFY_OPTIONAL
            : strcmp(mode, "none") == 0     ? RILL_TLS_VERIFY_NONE
                                            : -1;
    if (r == 0 && (ca || mode)) r = rill__tls_conf_verify_client(c, ca, m, err, errlen);
    lua_pop(L, 2);
    if (r != 0) {
      rill__tls_conf_unref(c);
      return NULL;
    }
    return c;
  }
  int verify = 1;
  const char *ca = NULL;
  if (lua_istable(L, idx)) {
    lua_getfield(L, idx, "verify");
    if (lua_isboolean(L, -1)) verify = lua_toboolean(L, -1);
    lua_getfield(L, idx, "ca");
    ca = lua_tostring(L, -1);
    lua_pop(L, 2);
  }
  if (rill__tls_client_conf(w, ca, verify, use_alpn, timeout, &c, err, errlen) != 0)
    return NULL;
  return c;
}

int rill__ltls_push_client(lua_State *L, rill_stream_t *s) {
  rill_tls_peer_t peer, *p = &peer;
  if (!rill__tls_client_cert(s, p)) return 0;
  const char *const keys[] = {"subject", "issuer", "dns", "email", "sha256"};
  const char *const vals[] = {p->subject, p->issuer, p->dns, p->email, p->sha256};
  lua_createtable(L, 0, 6);
  for (int i = 0; i < 5; i++) {
    if (vals[i][0] == 0) continue;
    lua_pushstring(L, vals[i]);
    lua_setfield(L, -2, keys[i]);
  }
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "verified");
  return 1;
}

/* ---- sock:starttls(opts) ---- */

enum { W_HANDSHAKE = 3 }; /* beside lua_stream.c's reads and writes */

/* A starttls in its handshake: bound to the TLS stream on top of the face,
 * driving the handshake as bytes come. The task's wait is in the face's
 * queue, so the stream closing resumes it. */
typedef struct {
  rill_binding_t b;
  rill_wait_t *wt;
} starttls_t;

static int starttls_cancel(rill_wait_t *wt, int status) {
  starttls_t *st = wt->obj;
  lua_State *co = rill__wait_task(wt)->co;
  rill_stream_t *s = st->b.s;
  lua_pushnil(co);
  lua_pushstring(co, s ? rill__stream_errmsg(s, status) : rill__errmsg(status));
  rill__stream_unbind(&st->b);
  free(st);
  return 2;
}

static void starttls_step(starttls_t *st) {
  int r = rill__tls_handshake(st->b.s);
  if (r == RILL_EAGAIN) return;
  if (r != 0) {
    rill__wait_cancel(st->wt, r);
    return;
  }
  rill_wait_t *wt = st->wt;
  rill__stream_unbind(&st->b);
  free(st);
  lua_pushboolean(rill__wait_task(wt)->co, 1);
  rill__wait_done(wt, 1);
}

static void starttls_readable(rill_binding_t *b, int status) {
  starttls_step((starttls_t *)b);
}

static void starttls_gone(rill_binding_t *b) {
  rill__wait_cancel(((starttls_t *)b)->wt, RILL_ECLOSED);
}

static const rill_binding_ops_t starttls_ops = {.readable = starttls_readable,
                                                .gone = starttls_gone};

/* sock:starttls([opts]) → true | nil, err. A client unless opts has cert/key
 * (or server = true); opts.server_name names the peer for SNI and the
 * certificate check. */
static int l_starttls(lua_State *L) {
  lstream_ud *ud = luaL_checkudata(L, 1, RILL_STREAM_MT);
  rill_stream_t *s = ud->s;
  if (s == NULL) return luaL_error(L, "attempt to use a closed stream");
  rill_task_t *t = rill__task_check(s->w, L);
  if (ud->waits.head) return luaL_error(L, "starttls while a read or write waits");
  if (rill__tls_is(s)) return luaL_error(L, "the stream is TLS already");
  int server = 0;
  const char *name = NULL;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "server");
    lua_getfield(L, 2, "cert");
    server = lua_toboolean(L, -2) || !lua_isnil(L, -1);
    lua_getfield(L, 2, "server_name");
    name = lua_tostring(L, -1);
    lua_pop(L, 3);
  }
  char err[256];
  rill_tls_conf_t *c = rill__ltls_conf(L, s->w, 2, server, NULL, err, sizeof(err));
  if (c == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  starttls_t *st = calloc(1, sizeof(*st));
  if (st == NULL) {
    rill__tls_conf_unref(c);
    return luaL_error(L, "out of memory");
  }
  /* The TLS stream takes the socket over; the same userdata reads through
   * TLS from now on. */
  rill__lstream_take(L, 1);
  rill_stream_t *ts = rill__tls_new(c, s, server ? NULL : name);
  rill__tls_conf_unref(c);
  if (ts == NULL) {
    free(st);
    return luaL_error(L, "out of memory");
  }
  rill__lstream_rebind(L, 1, ts);
  int r = rill__tls_handshake(ts);
  if (r == RILL_EAGAIN) {
    st->wt = &t->wait;
    rill__stream_bind(ts, &st->b, &starttls_ops);
    return rill__task_wait(L, t, &ud->waits, W_HANDSHAKE, st, rill__lstream_wait_ms(ud),
                           starttls_cancel);
  }
  free(st);
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, rill__stream_errmsg(ts, r));
  return 2;
}

static int l_alpn(lua_State *L) {
  rill_stream_t *s = rill__lstream_check(L, 1);
  const char *a = rill__tls_alpn(s);
  if (a == NULL) return 0;
  lua_pushstring(L, a);
  return 1;
}

/* sock:tls_info() → {version=, cipher=, alpn=, server_name=, client=} or nil */
static int l_tls_info(lua_State *L) {
  rill_stream_t *s = rill__lstream_check(L, 1);
  if (!rill__tls_is(s)) return 0;
  lua_createtable(L, 0, 4);
  const char *v;
  if ((v = rill__tls_version(s))) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, "version");
  }
  if ((v = rill__tls_cipher(s))) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, "cipher");
  }
  if ((v = rill__tls_alpn(s))) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, "alpn");
  }
  if ((v = rill__tls_sni(s))) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, "server_name");
  }
  if (rill__ltls_push_client(L, s)) lua_setfield(L, -2, "client");
  return 1;
}

/* sock:unref() / sock:ref(): whether the socket keeps the loop running (a
 * pooled idle connection should not keep a script alive). */
static int set_ref(lua_State *L, int ref) {
  rill_stream_t *s = rill__lstream_check(L, 1);
  rill__stream_ref(s, ref);
  lua_settop(L, 1);
  return 1;
}

static int l_ref(lua_State *L) {
  return set_ref(L, 1);
}

static int l_unref(lua_State *L) {
  return set_ref(L, 0);
}

void rill__open_tls(lua_State *L, rill_worker_t *w) {
  static const luaL_Reg methods[] = {{"starttls", l_starttls}, {"alpn", l_alpn},
                                     {"tls_info", l_tls_info}, {"ref", l_ref},
                                     {"unref", l_unref},       {NULL, NULL}};
  luaL_getmetatable(L, RILL_STREAM_MT);
  lua_getfield(L, -1, "__index");
  luaL_register(L, NULL, methods);
  lua_pop(L, 2);
}
