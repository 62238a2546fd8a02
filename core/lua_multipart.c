/* The Lua face of multipart bodies: the "rill.multipart" userdata over
 * multipart.c. lua/rill/form.lua builds req:parts() on top.
 *
 *   core.multipart(body, boundary, max_parts, max_header_bytes)
 *     → mp | nil, "bad multipart: ..." (a boundary RFC 2046 does not allow)
 *   mp:next() → part stream, {name, value, ...} | nil (no more parts)
 *             | nil, err, status (400 broken, 413 over a limit, 408 too slow)
 *
 * Each part's data is a new "rill.stream" over the layer's part stream; the
 * next call of next() tells it that it is gone (its reads end "closed"). */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_core.h"
#include "lua_sched.h"
#include "lua_stream.h"
#include "multipart.h"

#define MP_MT "rill.multipart"

enum { W_NEXT = 1 };

typedef struct {
  rill_multipart_t m;
  int live;           /* m is bound (not released yet) */
  rill_waitq_t waits; /* next() */
  rill_worker_t *w;
  rill_defer_t dfr; /* on_next during a fast path, for later */
} lmp_t;

/* The HTTP status an error answers to, or 0. */
static int status_of(int err) {
  switch (err) {
  case RILL_EPROTO:
    return 400;
  case RILL_EBODY:
    return 413;
  case UV_ETIMEDOUT:
    return 408;
  default:
    return 0;
  }
}

static int push_error(lua_State *L, lmp_t *u, int err) {
  lua_pushnil(L);
  lua_pushstring(L, rill__mp_errmsg(&u->m, err));
  int status = status_of(err);
  if (status == 0) return 2;
  lua_pushinteger(L, status);
  return 3;
}

/* Pushes the results of rill__mp_next() = r (not EAGAIN). */
static int push_next(lua_State *L, lmp_t *u, int r) {
  rill_multipart_t *m = &u->m;
  if (r == RILL_EOF) {
    lua_pushnil(L);
    return 1;
  }
  if (r < 0) return push_error(L, u, r);
  rill__lstream_push(L, &m->base, 0, -1);
  lua_createtable(L, (int)m->nfields * 2, 0);
  for (unsigned i = 0; i < m->nfields; i++) {
    const rill_mp_field_t *f = &m->fields[i];
    lua_pushlstring(L, m->hbuf + f->name_off, f->name_len);
    lua_rawseti(L, -2, (int)i * 2 + 1);
    lua_pushlstring(L, m->hbuf + f->value_off, f->value_len);
    lua_rawseti(L, -2, (int)i * 2 + 2);
  }
  return 2;
}

static void next_ready(lmp_t *u) {
  rill_wait_t *wt = rill__waitq_find(&u->waits, W_NEXT);
  if (wt == NULL) return;
  int r = u->live ? rill__mp_next(&u->m) : RILL_ECLOSED;
  if (r == RILL_EAGAIN) return;
  rill__wait_done(wt, push_next(rill__wait_task(wt)->co, u, r));
}

static void deferred(rill_defer_t *d) {
  next_ready(rill__container_of(d, lmp_t, dfr));
}

/* The layer may go on: a waiting next() tries again (later, if a fast path
 * runs now: the waiter's stack keeps u alive until then). */
static void on_next(rill_multipart_t *m) {
  lmp_t *u = m->data;
  if (rill__waitq_find(&u->waits, W_NEXT) == NULL) return;
  if (rill__ffi_active(u->w)) {
    u->dfr.run = deferred;
    rill__defer(u->w, &u->dfr);
    return;
  }
  next_ready(u);
}

static int wait_cancel(rill_wait_t *wt, int status) {
  lmp_t *u = wt->obj;
  return push_error(rill__wait_task(wt)->co, u, status);
}

static lmp_t *check(lua_State *L) {
  return luaL_checkudata(L, 1, MP_MT);
}

/* mp:next() */
static int l_next(lua_State *L) {
  lmp_t *u = check(L);
  if (!u->live) return push_error(L, u, u->m.err ? u->m.err : RILL_ECLOSED);
  rill_task_t *t = rill__task_check(u->w, L);
  if (rill__waitq_find(&u->waits, W_NEXT))
    return luaL_error(L, "multipart body already has a reader waiting for its next part");
  if (rill__lstream_reading(&u->m.base))
    return luaL_error(L, "a part is being read: the next part waits for that read");
  int r = rill__mp_next(&u->m);
  if (r != RILL_EAGAIN) return push_next(L, u, r);
  return rill__task_wait(L, t, &u->waits, W_NEXT, u, -1, wait_cancel);
}

/* mp:close(): lets go of the body (the current part's reads end "closed");
 * the bytes the layer did not take stay in the body. */
static int l_close(lua_State *L) {
  lmp_t *u = check(L);
  if (u->live) {
    u->live = 0;
    rill__mp_release(&u->m);
    rill__waitq_cancel_all(&u->waits, RILL_ECLOSED);
  }
  return 0;
}

static int l_gc(lua_State *L) {
  lmp_t *u = check(L);
  rill__defer_drop(u->w, &u->dfr);
  if (u->live) {
    u->live = 0;
    rill__mp_release(&u->m);
  }
  return 0;
}

/* core.multipart(body, boundary, max_parts, max_header_bytes) */
static int l_multipart(lua_State *L) {
  rill_stream_t *body = rill__lstream_check(L, 1);
  size_t blen;
  const char *boundary = luaL_checklstring(L, 2, &blen);
  lua_Integer max_parts = luaL_checkinteger(L, 3);
  lua_Integer max_header = luaL_checkinteger(L, 4);
  luaL_argcheck(L, max_parts >= 0 && max_parts <= 0x7fffffff, 3, "0..2^31-1");
  luaL_argcheck(L, max_header >= 0 && max_header <= 0x7fffffff, 4, "0..2^31-1");
  lmp_t *u = lua_newuserdata(L, sizeof(*u));
  memset(u, 0, sizeof(*u));
  u->w = body->w;
  if (rill__mp_init(&u->m, body->w, body, boundary, blen, (unsigned)max_parts,
                    (size_t)max_header) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "bad multipart: the boundary is not one RFC 2046 allows");
    lua_pushinteger(L, 400);
    return 3;
  }
  u->live = 1;
  u->m.on_next = on_next;
  u->m.data = u;
  luaL_getmetatable(L, MP_MT);
  lua_setmetatable(L, -2);
  return 1;
}

void rill__open_multipart(lua_State *L, rill_worker_t *w) {
  static const luaL_Reg funcs[] = {{"multipart", l_multipart}, {NULL, NULL}};
  static const luaL_Reg methods[] = {{"next", l_next}, {"close", l_close}, {NULL, NULL}};
  rill__register(L, w, funcs);
  rill__new_class(L, MP_MT, methods, l_gc);
}
