/* The Lua face of shared dicts and channels (lua/rill/shared.lua builds
 * rill.shared on it).
 *
 * Dicts: every operation is a plain C function of shared_dict.c that never
 * waits and never touches a Lua state, so Lua calls them all through the FFI
 * (core.shared_ffi_api, declared by core.shared_ffi_cdef): a loop of
 * dict:get / set / incr compiles. A dict is a light userdata (dicts live as
 * long as the process); core.sdict_open finds or makes one and
 * core.sdict_keys makes the table of keys.
 *
 * Channels: core.chan_open gives a userdata holding a reference on the
 * channel (released when collected; a subscriber holds one of its own),
 * core.chan_publish copies a message into it, and
 * core.chan_subscribe makes a "rill.subscription": a userdata with the
 * subscriber of shared_chan.c, whose `_read` waits (wait.h) until its hub
 * notifies it on this worker's loop. A subscription is on the worker's
 * object list, so a worker's end unsubscribes it; closing it or collecting it
 * does too, and a task waiting on it gets `nil, "closed"`. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_core.h"
#include "lua_sched.h"
#include "shared_chan.h"
#include "shared_dict.h"

#define SUB_MT "rill.subscription"
#define CHAN_MT "rill.channel_ref" /* a reference on a channel (shared_chan.h) */

/* ---- dicts ---- */

/* The FFI table: shared_dict.h's functions as they are. */
/* clang-format off */
#define RILL_SHARED_FFI_FIELDS                                                           \
  size_t size;                                                                           \
  int (*get)(rill_sdict_t *d, const char *k, size_t kl, char *buf, size_t cap,           \
             size_t *len, double *num);                                                  \
  int (*set)(rill_sdict_t *d, const char *k, size_t kl, int type, const char *s,         \
             size_t len, double num, double ttl_ms, int mode);                           \
  int (*incr)(rill_sdict_t *d, const char *k, size_t kl, double by, int has_init,        \
              double init, double init_ttl_ms, double *out);                             \
  int (*del)(rill_sdict_t *d, const char *k, size_t kl);                                 \
  int (*ttl)(rill_sdict_t *d, const char *k, size_t kl, double *left);                   \
  int (*expire)(rill_sdict_t *d, const char *k, size_t kl, double ttl_ms);               \
  void (*flush_all)(rill_sdict_t *d);                                                    \
  int (*flush_expired)(rill_sdict_t *d, int max);                                        \
  double (*capacity)(rill_sdict_t *d);                                                   \
  double (*free_space)(rill_sdict_t *d);
/* clang-format on */

typedef struct {
  RILL_SHARED_FFI_FIELDS
} rill_shared_ffi_t;

#define SHARED_STR_(x) #x
#define SHARED_STR(x) SHARED_STR_(x)
/* The declaration Lua hands to the FFI (lua/rill/shared.lua). */
#define RILL_SHARED_FFI_CDEF                                                             \
  "typedef struct rill_sdict_s rill_sdict_t; "                                           \
  "typedef struct { " SHARED_STR(RILL_SHARED_FFI_FIELDS) " } rill_shared_ffi_t;"

static const rill_shared_ffi_t shared_api = {
    sizeof(rill_shared_ffi_t), rill__sdict_get,        rill__sdict_set,
    rill__sdict_incr,          rill__sdict_delete,     rill__sdict_ttl,
    rill__sdict_expire,        rill__sdict_flush_all,  rill__sdict_flush_expired,
    rill__sdict_capacity,      rill__sdict_free_space,
};

/* core.sdict_open(name, size) → the dict (a light userdata), and whether
 * this call made it */
static int l_sdict_open(lua_State *L) {
  size_t nlen;
  const char *name = luaL_checklstring(L, 1, &nlen);
  lua_Number size = luaL_checknumber(L, 2);
  int created;
  rill_sdict_t *d = rill__sdict_open(name, nlen, (size_t)size, &created);
  if (d == NULL) return luaL_error(L, "out of memory");
  lua_pushlightuserdata(L, d);
  lua_pushboolean(L, created);
  return 2;
}

/* core.sdict_keys(d, max) → a table of the keys (see rill__sdict_keys) */
static int l_sdict_keys(lua_State *L) {
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  rill_sdict_t *d = lua_touserdata(L, 1);
  int max = (int)luaL_optinteger(L, 2, 0);
  char *block;
  size_t n;
  if (rill__sdict_keys(d, max, &block, &n) != 0) return luaL_error(L, "out of memory");
  lua_createtable(L, n > 1000000 ? 1000000 : (int)n, 0);
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    size_t klen = ((size_t)(unsigned char)block[at] << 8) | (unsigned char)block[at + 1];
    lua_pushlstring(L, block + at + 2, klen);
    lua_rawseti(L, -2, (int)i + 1);
    at += 2 + klen;
  }
  free(block);
  return 1;
}

/* ---- channels ---- */

typedef struct {
  rill_obj_t obj; /* on the worker's list while subscribed */
  rill_worker_t *w;
  rill_chan_sub_t *sub; /* NULL once closed */
  rill_waitq_t waits;   /* a task in _read */
} lsub_t;

/* core.chan_open(name) → a reference on the channel (a userdata: the
 * channel is released when it is collected) */
static int l_chan_open(lua_State *L) {
  size_t nlen;
  const char *name = luaL_checklstring(L, 1, &nlen);
  rill_chan_t **ud = lua_newuserdata(L, sizeof(*ud));
  *ud = NULL;
  luaL_getmetatable(L, CHAN_MT);
  lua_setmetatable(L, -2);
  *ud = rill__chan_open(name, nlen);
  if (*ud == NULL) return luaL_error(L, "out of memory");
  return 1;
}

static rill_chan_t *check_chan(lua_State *L, int idx) {
  rill_chan_t **ud = luaL_checkudata(L, idx, CHAN_MT);
  return *ud;
}

static int chan_gc(lua_State *L) {
  rill_chan_t **ud = luaL_checkudata(L, 1, CHAN_MT);
  if (*ud) rill__chan_release(*ud);
  *ud = NULL;
  return 0;
}

/* core.chan_count() → how many channels exist in the process (for tests) */
static int l_chan_count(lua_State *L) {
  lua_pushnumber(L, (lua_Number)rill__chan_count());
  return 1;
}

/* core.chan_publish(c, msg) → subscribers reached, or nil and "too large" */
static int l_chan_publish(lua_State *L) {
  rill_chan_t *c = check_chan(L, 1);
  size_t len;
  const char *msg = luaL_checklstring(L, 2, &len);
  int r = rill__chan_publish(c, msg, len);
  if (r < 0) {
    lua_pushnil(L);
    lua_pushstring(L, rill__chan_errmsg(r));
    return 2;
  }
  lua_pushinteger(L, r);
  return 1;
}

/* core.chan_subscribers(c) → how many subscribe now (on any worker) */
static int l_chan_subscribers(lua_State *L) {
  lua_pushinteger(L, rill__chan_subscribers(check_chan(L, 1)));
  return 1;
}

/* Unsubscribes and ends a waiting read with "closed". */
static void lsub_close(lsub_t *ls) {
  if (ls->sub == NULL) return;
  rill__chan_unsubscribe(ls->sub);
  ls->sub = NULL;
  rill__obj_unlink(&ls->obj);
  rill__waitq_cancel_all(&ls->waits, RILL_ECLOSED);
}

static void lsub_destroy(rill_obj_t *o) {
  lsub_close(rill__container_of(o, lsub_t, obj));
}

static int sub_cancel(rill_wait_t *wt, int status) {
  lua_State *co = rill__wait_task(wt)->co;
  lua_pushnil(co);
  lua_pushstring(co, rill__chan_errmsg(status));
  return 2;
}

/* Pushes what a take found onto L: the message, or nil and "overflow".
 * Returns how many values, 0 if the queue is empty. */
static int push_next(lua_State *L, lsub_t *ls) {
  rill_chan_msg_t *m;
  int r = rill__chan_next(ls->sub, &m);
  if (r == 0) return 0;
  if (r < 0) {
    lua_pushnil(L);
    lua_pushstring(L, rill__chan_errmsg(r));
    return 2;
  }
  lua_pushlstring(L, m->data, m->len);
  rill__chan_msg_unref(m);
  return 1;
}

/* The hub says the queue turned non-empty (on this worker's loop, outside
 * any task). */
static void lsub_notify(void *data) {
  lsub_t *ls = data;
  rill_wait_t *wt = ls->waits.head;
  if (wt == NULL || ls->sub == NULL || ls->w->stopping) return;
  int n = push_next(rill__wait_task(wt)->co, ls);
  if (n > 0) rill__wait_done(wt, n);
}

/* core.chan_subscribe(c, queue, bytes) → a subscription */
static int l_chan_subscribe(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  rill_chan_t *c = check_chan(L, 1);
  lua_Number q = luaL_optnumber(L, 2, 0), b = luaL_optnumber(L, 3, 0);
  rill_chan_hub_t *h = rill__chan_hub(w);
  if (h == NULL) return luaL_error(L, "out of memory");
  lsub_t *ls = lua_newuserdata(L, sizeof(*ls));
  memset(ls, 0, sizeof(*ls));
  ls->w = w;
  luaL_getmetatable(L, SUB_MT);
  lua_setmetatable(L, -2);
  ls->sub = rill__chan_subscribe(c, h, (size_t)q, (size_t)b, lsub_notify, ls);
  if (ls->sub == NULL) return luaL_error(L, "out of memory");
  rill__obj_link(w, &ls->obj, lsub_destroy);
  return 1;
}

static lsub_t *check_sub(lua_State *L) {
  return luaL_checkudata(L, 1, SUB_MT);
}

/* sub:_read([timeout_ms]) → a message; nil, "overflow" once after the
 * queue was dropped; nil, "timeout"; nil, "closed" */
static int sub_read(lua_State *L) {
  lsub_t *ls = check_sub(L);
  lua_Number ms = luaL_optnumber(L, 2, -1);
  if (ls->sub == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "closed");
    return 2;
  }
  int n = push_next(L, ls);
  if (n > 0) return n;
  rill_task_t *t = rill__task_check(ls->w, L);
  if (ls->waits.head)
    return luaL_error(L, "sub:read: the subscription has a reader already");
  int timeout = ms < 0 ? -1 : ms > 2e9 ? 2000000000 : (int)ms;
  return rill__task_wait(L, t, &ls->waits, 0, ls, timeout, sub_cancel);
}

/* sub:close() → true; a task waiting in read gets nil, "closed" */
static int sub_close(lua_State *L) {
  lsub_close(check_sub(L));
  lua_pushboolean(L, 1);
  return 1;
}

/* sub:pending() → messages queued now */
static int sub_pending(lua_State *L) {
  lsub_t *ls = check_sub(L);
  lua_pushinteger(L, ls->sub ? (lua_Integer)rill__chan_queued(ls->sub) : 0);
  return 1;
}

static int sub_gc(lua_State *L) {
  lsub_t *ls = check_sub(L);
  /* No task waits on it (a waiter's stack holds it): just unsubscribe. */
  if (ls->sub) {
    rill__chan_unsubscribe(ls->sub);
    ls->sub = NULL;
    rill__obj_unlink(&ls->obj);
  }
  return 0;
}

static const luaL_Reg shared_funcs[] = {
    {"sdict_open", l_sdict_open},         {"sdict_keys", l_sdict_keys},
    {"chan_open", l_chan_open},           {"chan_publish", l_chan_publish},
    {"chan_subscribe", l_chan_subscribe}, {"chan_subscribers", l_chan_subscribers},
    {"chan_count", l_chan_count},         {NULL, NULL},
};

void rill__open_shared(lua_State *L, rill_worker_t *w) {
  static const luaL_Reg sub_m[] = {
      {"_read", sub_read}, {"close", sub_close}, {"pending", sub_pending}, {NULL, NULL}};
  static const luaL_Reg chan_m[] = {{NULL, NULL}};
  rill__new_class(L, SUB_MT, sub_m, sub_gc);
  rill__new_class(L, CHAN_MT, chan_m, chan_gc);
  rill__register(L, w, shared_funcs);
  lua_pushlightuserdata(L, (void *)&shared_api);
  lua_setfield(L, -2, "shared_ffi_api");
  lua_pushliteral(L, RILL_SHARED_FFI_CDEF);
  lua_setfield(L, -2, "shared_ffi_cdef");
  luaL_getmetatable(L, SUB_MT);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "subscription_methods");
  lua_pop(L, 1);
}
