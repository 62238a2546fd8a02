/* The rill.core module: time, light threads, timers, raw TCP listeners and
 * connections, logging. lua/rill/init.lua builds the public `rill` table on
 * top of it. Every function here has the worker as its first upvalue. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <mbedtls/md.h>

#include "lua_core.h"
#include "lua_ffi.h"
#include "lua_stream.h"
#include "lua_sched.h"
#include "tcp.h"
#include "tls.h"

#define THREAD_MT "rill.thread"
#define TIMER_MT "rill.timer"
#define LISTENER_MT "rill.listener"

/* ---- time ---- */

static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)uv_hrtime() / 1e6);
  return 1;
}

static int l_time(lua_State *L) {
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  lua_pushnumber(L, (lua_Number)tv.tv_sec + (lua_Number)tv.tv_usec / 1e6);
  return 1;
}

static int sleep_done(rill_wait_t *wt, int status) {
  if (status != UV_ECANCELED) return 0;
  lua_State *co = rill__wait_task(wt)->co;
  lua_pushnil(co);
  lua_pushstring(co, rill__errmsg(status));
  return 2;
}

static int l_sleep(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  lua_Number ms = luaL_checknumber(L, 1);
  rill_task_t *t = rill__task_check(w, L);
  int d = ms < 0 ? 0 : ms > 2e9 ? 2000000000 : (int)ms;
  return rill__task_wait(L, t, NULL, 0, NULL, d, sleep_done);
}

/* ---- light threads: rill.spawn / rill.wait ---- */

typedef struct {
  rill_task_t *t;      /* while running */
  rill_waitq_t waits;  /* a task in rill.wait() on this thread */
  int self_ref;        /* keeps the userdata alive while the thread runs */
  int res_ref;         /* {n = count, ...}: the results, once done */
  int done, ok;
  rill_worker_t *unhandled; /* it raised and nobody has taken the error yet */
} lthread_ud;

/* Pushes ok and the results of a finished thread onto L. */
static int thread_push_results(lua_State *L, lthread_ud *th) {
  if (th->unhandled) { /* the error is someone's now */
    th->unhandled->unhandled--;
    th->unhandled = NULL;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, th->res_ref);
  lua_getfield(L, -1, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  lua_pushboolean(L, th->ok);
  for (int i = 1; i <= n; i++)
    lua_rawgeti(L, -1 - i, i);
  lua_remove(L, -2 - n);
  return n + 1;
}

static void thread_done(rill_task_t *t, int status) {
  lua_State *co = t->co;
  lthread_ud *th = t->done_data;
  int n = status == 0 ? lua_gettop(co) : 1;
  lua_createtable(co, n, 1);
  for (int i = 1; i <= n; i++) {
    lua_pushvalue(co, status == 0 ? i : -2);
    lua_rawseti(co, -2, i);
  }
  lua_pushinteger(co, n);
  lua_setfield(co, -2, "n");
  th->res_ref = luaL_ref(co, LUA_REGISTRYINDEX);
  th->done = 1;
  th->ok = status == 0;
  th->t = NULL;
  rill_wait_t *wt = th->waits.head;
  if (status != 0 && wt == NULL) {
    th->unhandled = t->w;
    t->w->unhandled++;
  }
  if (wt) rill__wait_done(wt, thread_push_results(rill__wait_task(wt)->co, th));
  luaL_unref(co, LUA_REGISTRYINDEX, th->self_ref);
  th->self_ref = LUA_NOREF;
  /* What a cancelled thread opened and let go of (its sockets, files,
   * processes) is closed now, not at some later collection. */
  if (t->canceled) lua_gc(co, LUA_GCCOLLECT, 0);
}

static int l_spawn(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int nargs = lua_gettop(L) - 1;
  rill_task_t *t = rill__task_new(w, "thread");
  if (t == NULL) return luaL_error(L, "out of memory");
  lthread_ud *th = lua_newuserdata(L, sizeof(*th));
  memset(th, 0, sizeof(*th));
  th->res_ref = LUA_NOREF;
  th->t = t;
  luaL_getmetatable(L, THREAD_MT);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  th->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_insert(L, 1); /* th, fn, args... */
  lua_xmove(L, t->co, nargs + 1);
  t->done = thread_done;
  t->done_data = th;
  rill__task_start(t, nargs);
  return 1;
}

static int wait_cancel(rill_wait_t *wt, int status) {
  lua_State *co = rill__wait_task(wt)->co;
  lua_pushnil(co);
  lua_pushstring(co, rill__errmsg(status));
  return 2;
}

static int l_wait(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  lthread_ud *th = luaL_checkudata(L, 1, THREAD_MT);
  lua_Number ms = luaL_optnumber(L, 2, -1);
  if (th->done) return thread_push_results(L, th);
  rill_task_t *t = rill__task_check(w, L);
  if (th->t == t) return luaL_error(L, "a thread cannot wait for itself");
  if (th->waits.head) return luaL_error(L, "thread already has a waiter");
  return rill__task_wait(L, t, &th->waits, 0, th, ms < 0 ? -1 : (int)ms, wait_cancel);
}

static int thread_gc(lua_State *L) {
  lthread_ud *th = luaL_checkudata(L, 1, THREAD_MT);
  if (th->res_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, th->res_ref);
  th->res_ref = LUA_NOREF;
  return 0;
}

/* core.on_signal(sig, on) → the signal's number: worker 0 of `rill run`
 * takes sig itself (on) or leaves it to its default; raises elsewhere. */
static int l_on_signal(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  int sig = rill__signal_number(L, 1, 0);
  int r = rill__runtime_on_signal(w, sig, lua_toboolean(L, 2));
  if (r == UV_ENOTSUP)
    return luaL_error(L, "rill.on_signal: only a `rill run` script takes signals itself");
  if (r != 0) return luaL_error(L, "rill.on_signal: INT, TERM, HUP, USR1 or USR2, not %s",
                                lua_tostring(L, 1));
  lua_pushinteger(L, sig);
  return 1;
}

/* th:cancel() → true, or false for a thread that has ended. */
static int thread_cancel(lua_State *L) {
  lthread_ud *th = luaL_checkudata(L, 1, THREAD_MT);
  if (th->done || th->t == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  rill__task_cancel(th->t);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- wait queues: core.waitq(), what rill.semaphore and rill.queue wait on ---- */

#define WAITQ_MT "rill.waitq"

typedef struct {
  rill_waitq_t waits;
  rill_worker_t *w;
} lwaitq_ud;

static int waitq_cancel(rill_wait_t *wt, int status) {
  lua_State *co = rill__wait_task(wt)->co;
  lua_pushnil(co);
  lua_pushstring(co, rill__errmsg(status));
  return 2;
}

/* q:wait([ms]) → true once signalled; nil, "timeout" | "canceled" | "closed" */
static int waitq_wait(lua_State *L) {
  lwaitq_ud *q = luaL_checkudata(L, 1, WAITQ_MT);
  lua_Number ms = luaL_optnumber(L, 2, -1);
  rill_task_t *t = rill__task_check(q->w, L);
  return rill__task_wait(L, t, &q->waits, 0, q, ms < 0 ? -1 : ms > 2e9 ? 2000000000 : (int)ms,
                         waitq_cancel);
}

/* q:signal() → whether a waiter was woken (the first, in order of waiting) */
static int waitq_signal(lua_State *L) {
  lwaitq_ud *q = luaL_checkudata(L, 1, WAITQ_MT);
  rill_wait_t *wt = q->waits.tail;
  if (wt) {
    lua_pushboolean(rill__wait_task(wt)->co, 1);
    rill__wait_done(wt, 1);
  }
  lua_pushboolean(L, wt != NULL);
  return 1;
}

/* q:waiting() → how many tasks wait */
static int waitq_waiting(lua_State *L) {
  lwaitq_ud *q = luaL_checkudata(L, 1, WAITQ_MT);
  int n = 0;
  for (rill_wait_t *wt = q->waits.head; wt; wt = wt->next)
    n++;
  lua_pushinteger(L, n);
  return 1;
}

static int waitq_gc(lua_State *L) {
  lwaitq_ud *q = luaL_checkudata(L, 1, WAITQ_MT);
  rill__waitq_cancel_all(&q->waits, RILL_ECLOSED);
  return 0;
}

static int l_waitq(lua_State *L) {
  lwaitq_ud *q = lua_newuserdata(L, sizeof(*q));
  memset(q, 0, sizeof(*q));
  q->w = rill__upworker(L);
  luaL_getmetatable(L, WAITQ_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int thread_status(lua_State *L) {
  lthread_ud *th = luaL_checkudata(L, 1, THREAD_MT);
  lua_pushstring(L, !th->done ? "running" : th->ok ? "done" : "failed");
  return 1;
}

/* ---- timers: rill.timer(ms, fn [, repeat_ms]) ---- */

typedef struct ltimer_s {
  rill_obj_t obj;
  uv_timer_t h;
  rill_worker_t *w;
  int fn_ref;
  int active;
  struct ltimer_s **ud;
} ltimer_t;

static void ltimer_closed(uv_handle_t *h) {
  free(h->data);
}

static void ltimer_stop(ltimer_t *tm) {
  if (!tm->active) return;
  tm->active = 0;
  if (tm->ud) *tm->ud = NULL;
  if (tm->w->L && !tm->w->stopping) luaL_unref(tm->w->L, LUA_REGISTRYINDEX, tm->fn_ref);
  rill__obj_unlink(&tm->obj);
  uv_close((uv_handle_t *)&tm->h, ltimer_closed);
}

static void ltimer_destroy(rill_obj_t *o) {
  ltimer_t *tm = rill__container_of(o, ltimer_t, obj);
  ltimer_stop(tm);
}

static void ltimer_cb(uv_timer_t *h) {
  ltimer_t *tm = h->data;
  rill_worker_t *w = tm->w;
  rill_task_t *t = rill__task_new(w, "timer");
  if (t) lua_rawgeti(t->co, LUA_REGISTRYINDEX, tm->fn_ref);
  if (uv_timer_get_repeat(h) == 0) ltimer_stop(tm);
  if (t) rill__task_start(t, 0);
}

/* ---- graceful stops ---- */

/* core.on_shutdown(fn): fn() runs in a task of its own when this worker
 * begins a graceful stop (SIGTERM, rill_stop). Once per worker: rill.lua
 * keeps the list of hooks. */
typedef struct {
  rill_obj_t obj;
  rill_worker_t *w;
  int fn_ref;
} lshutdown_t;

static void shutdown_run(rill_obj_t *o) {
  lshutdown_t *s = rill__container_of(o, lshutdown_t, obj);
  rill_task_t *t = rill__task_new(s->w, "shutdown hooks");
  if (t == NULL) return;
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, s->fn_ref);
  rill__task_start(t, 0);
}

static void shutdown_destroy(rill_obj_t *o) {
  lshutdown_t *s = rill__container_of(o, lshutdown_t, obj);
  rill__obj_unlink(o);
  if (s->w->L && !s->w->stopping) luaL_unref(s->w->L, LUA_REGISTRYINDEX, s->fn_ref);
  free(s);
}

static int l_on_shutdown(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lshutdown_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return luaL_error(L, "out of memory");
  s->w = w;
  lua_pushvalue(L, 1);
  s->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rill__obj_link(w, &s->obj, shutdown_destroy);
  s->obj.shutdown = shutdown_run;
  return 0;
}

/* core.current_task() → the running task, as a light userdata (for
 * core.interrupt; valid only while that task runs or waits) */
static int l_current_task(lua_State *L) {
  rill_task_t *t = rill__task_current(rill__upworker(L));
  if (t == NULL) return 0;
  lua_pushlightuserdata(L, t);
  return 1;
}

/* core.interrupt(task): ends the task's current wait as if its deadline had
 * passed (it returns nil, "timeout"); nothing if the task is not waiting.
 * The caller guarantees the task has not ended (a deadline timer cancelled
 * when the task's function returns). */
static int l_interrupt(lua_State *L) {
  luaL_checktype(L, 1, LUA_TLIGHTUSERDATA);
  rill_task_t *t = lua_touserdata(L, 1);
  if (t->state == RILL_TASK_WAITING && !t->w->stopping) rill__wait_cancel(&t->wait, UV_ETIMEDOUT);
  return 0;
}

/* core.stopping() → whether this worker has begun a graceful stop */
static int l_stopping(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  lua_pushboolean(L, w->graceful || w->stopping);
  return 1;
}

static int l_timer(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  lua_Number ms = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_Number rep = luaL_optnumber(L, 3, 0);
  ltimer_t *tm = calloc(1, sizeof(*tm));
  if (tm == NULL) return luaL_error(L, "out of memory");
  tm->w = w;
  uv_timer_init(w->loop, &tm->h);
  tm->h.data = tm;
  lua_pushvalue(L, 2);
  tm->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  tm->active = 1;
  rill__obj_link(w, &tm->obj, ltimer_destroy);
  uv_update_time(w->loop);
  uv_timer_start(&tm->h, ltimer_cb, ms < 0 ? 0 : (uint64_t)ms,
                 rep <= 0 ? 0 : (uint64_t)rep);
  ltimer_t **ud = lua_newuserdata(L, sizeof(*ud));
  *ud = tm;
  tm->ud = ud;
  luaL_getmetatable(L, TIMER_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int timer_cancel(lua_State *L) {
  ltimer_t **ud = luaL_checkudata(L, 1, TIMER_MT);
  int was = *ud != NULL;
  if (*ud) ltimer_stop(*ud);
  lua_pushboolean(L, was);
  return 1;
}

/* timer:unref(): the timer no longer keeps the loop running by itself. */
static int timer_unref(lua_State *L) {
  ltimer_t **ud = luaL_checkudata(L, 1, TIMER_MT);
  if (*ud) uv_unref((uv_handle_t *)&(*ud)->h);
  lua_settop(L, 1);
  return 1;
}

static int timer_gc(lua_State *L) {
  ltimer_t **ud = luaL_checkudata(L, 1, TIMER_MT);
  if (*ud) (*ud)->ud = NULL; /* a timer nobody holds still fires */
  return 0;
}

/* ---- raw TCP: rill.listen{...} ---- */

typedef struct {
  rill_listener_t *l;
} llistener_ud;

typedef struct {
  rill_worker_t *w;
  int handler_ref;
  int timeout_ms;       /* each wait of a connection's socket; -1: none */
  rill_tls_conf_t *tls; /* NULL for plain TCP */
} llistener_t;

#define RAW_TIMEOUT_MS 300000 /* a raw connection's waits, unless told */

static void conn_task_done(rill_task_t *t, int status) {
  /* The handler returned: close its socket unless it did. */
  int ref = (int)(intptr_t)t->done_data;
  lua_rawgeti(t->co, LUA_REGISTRYINDEX, ref);
  lstream_ud *ud = lua_touserdata(t->co, -1);
  lua_pop(t->co, 1);
  luaL_unref(t->co, LUA_REGISTRYINDEX, ref);
  if (ud && ud->s) {
    rill_stream_t *s = ud->s;
    if (status != 0)
      s->vt->abort(s);
    else
      s->vt->close(s);
  }
}

/* Starts the handler of a connection whose stream is ready. */
static void raw_start(llistener_t *ll, rill_stream_t *s) {
  rill_task_t *t = rill__task_new(ll->w, "connection handler");
  if (t == NULL) {
    s->vt->abort(s);
    return;
  }
  lua_State *co = t->co;
  lua_rawgeti(co, LUA_REGISTRYINDEX, ll->handler_ref);
  rill__lstream_push(co, s, 1, ll->timeout_ms);
  lua_pushvalue(co, -1);
  t->done_data = (void *)(intptr_t)luaL_ref(co, LUA_REGISTRYINDEX);
  t->done = conn_task_done;
  t->busy = 1;
  rill__task_start(t, 1);
}

/* A TLS connection in its handshake, before its handler starts: bound to
 * the stream, which drives the handshake as bytes come. */
typedef struct {
  rill_binding_t b;
  llistener_t *ll;
} raw_hs_t;

static void raw_hs_step(raw_hs_t *hs, rill_stream_t *s) {
  int r = rill__tls_handshake(s);
  if (r == RILL_EAGAIN) return;
  llistener_t *ll = hs->ll;
  rill__stream_unbind(&hs->b);
  free(hs);
  if (r != 0) {
    rill__log(s->w, RILL_LOG_DEBUG, "TLS: %s", rill__stream_errmsg(s, r));
    s->vt->abort(s);
    return;
  }
  raw_start(ll, s);
}

static void raw_hs_readable(rill_binding_t *b, int status) {
  raw_hs_step((raw_hs_t *)b, b->s);
}

static void raw_hs_gone(rill_binding_t *b) {
  free(b); /* closed in its handshake (a worker's teardown) */
}

static const rill_binding_ops_t raw_hs_ops = {.readable = raw_hs_readable,
                                              .gone = raw_hs_gone};

static void raw_accept(rill_listener_t *l, rill_uvstream_t *u) {
  llistener_t *ll = l->data;
  rill_stream_t *s = rill__uvstream_stream(u);
  if (ll->tls == NULL) {
    raw_start(ll, s);
    return;
  }
  s = rill__tls_new(ll->tls, s, NULL);
  if (s == NULL) return;
  raw_hs_t *hs = calloc(1, sizeof(*hs));
  if (hs == NULL) {
    s->vt->abort(s);
    return;
  }
  hs->ll = ll;
  rill__stream_bind(s, &hs->b, &raw_hs_ops);
  raw_hs_step(hs, s);
}

static void raw_set_handler(rill_listener_t *l, int ref) {
  llistener_t *ll = l->data;
  luaL_unref(ll->w->L, LUA_REGISTRYINDEX, ll->handler_ref);
  ll->handler_ref = ref;
}

static void raw_listener_free(rill_listener_t *l) {
  llistener_t *ll = l->data;
  rill__listener_forget_ud(l);
  if (ll->w->L && !ll->w->stopping)
    luaL_unref(ll->w->L, LUA_REGISTRYINDEX, ll->handler_ref);
  rill__tls_conf_unref(ll->tls);
  free(ll);
}

static const char *opt_string(lua_State *L, int t, const char *k, const char *def) {
  lua_getfield(L, t, k);
  const char *v = lua_isnil(L, -1) ? def : luaL_checkstring(L, -1);
  lua_pop(L, 1);
  return v;
}

static const char *caller_name(lua_State *L) {
  lua_Debug ar;
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) return ar.name;
  return "?";
}

int rill__opt_port(lua_State *L, int t, int def) {
  lua_Number v = rill__opt_number(L, t, "port", def);
  if (!(v >= 0 && v <= 65535) || v != (lua_Number)(int)v) {
    lua_pushnumber(L, v);
    luaL_error(L, "%s: option port must be an integer 0-65535, got %s", caller_name(L),
               lua_tostring(L, -1));
  }
  return (int)v;
}

void rill__opt_listen_at(lua_State *L, int t, int def, rill_listen_at_t *at, char *name,
                         size_t namelen) {
  memset(at, 0, sizeof(*at));
  at->fd = -1;
  lua_getfield(L, t, "unix");
  lua_getfield(L, t, "fd");
  int has_unix = !lua_isnil(L, -2), has_fd = !lua_isnil(L, -1);
  lua_pop(L, 2);
  lua_getfield(L, t, "host");
  lua_getfield(L, t, "port");
  int has_host = !lua_isnil(L, -2) || !lua_isnil(L, -1);
  lua_pop(L, 2);
  if (has_unix + has_fd + (has_host ? 1 : 0) > 1)
    luaL_error(L, "%s: give one of host/port, unix and fd", caller_name(L));
  if (has_unix) {
    lua_getfield(L, t, "unix");
    if (lua_type(L, -1) != LUA_TSTRING || lua_objlen(L, -1) == 0)
      luaL_error(L, "%s: option unix must be a socket file's path", caller_name(L));
    at->unix_path = lua_tostring(L, -1);
    lua_pop(L, 1);
    /* unix_mode: permission bits, a number (tonumber("660", 8)) or octal digits */
    lua_getfield(L, t, "unix_mode");
    if (!lua_isnil(L, -1)) {
      const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
      char *end = NULL;
      long v = m                                ? strtol(m, &end, 8)
               : lua_type(L, -1) == LUA_TNUMBER ? (long)lua_tonumber(L, -1)
                                                : -1;
      if ((m && (*m == 0 || *end != 0)) || v <= 0 || v > 07777 ||
          (!m && (lua_Number)v != lua_tonumber(L, -1)))
        luaL_error(L, "%s: option unix_mode must be permission bits (\"660\" or 432)",
                   caller_name(L));
      at->unix_mode = (unsigned)v;
    }
    lua_pop(L, 1);
    snprintf(name, namelen, "unix:%s", at->unix_path);
    return;
  }
  if (has_fd) {
    lua_Number v = rill__opt_number(L, t, "fd", -1);
    if (!(v >= 0 && v < 2147483647) || v != (lua_Number)(int)v)
      luaL_error(L, "%s: option fd must be a descriptor (an integer >= 0)",
                 caller_name(L));
    at->fd = (int)v;
    snprintf(name, namelen, "fd %d", at->fd);
    return;
  }
  at->host = opt_string(L, t, "host", "127.0.0.1");
  at->port = rill__opt_port(L, t, def);
  snprintf(name, namelen, "%s:%d", at->host, at->port);
}

lua_Number rill__opt_number(lua_State *L, int t, const char *k, lua_Number def) {
  lua_getfield(L, t, k);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  if (!lua_isnumber(L, -1)) {
    /* Name the function as its caller did, and the option. */
    luaL_error(L, "%s: option %s must be a number, not %s", caller_name(L), k,
               luaL_typename(L, -1));
  }
  lua_Number v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

int rill__opt_proxy(lua_State *L, int t, rill_cidr_t *from) {
  lua_getfield(L, t, "proxy_protocol");
  int on = lua_toboolean(L, -1);
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_error(L, "%s: option proxy_protocol must be a boolean, not %s", caller_name(L),
               luaL_typename(L, -1));
  lua_pop(L, 1);
  lua_getfield(L, t, "proxy_from");
  int n = 0;
  if (lua_isstring(L, -1)) {
    /* one source, as a string */
    if (rill__cidr_parse(lua_tostring(L, -1), &from[0]) != 0)
      luaL_error(L, "%s: option proxy_from: bad address %s", caller_name(L),
                 lua_tostring(L, -1));
    n = 1;
  } else if (lua_istable(L, -1)) {
    int len = (int)lua_objlen(L, -1);
    if (len > RILL_PROXY_FROM_MAX)
      luaL_error(L, "%s: option proxy_from: at most %d sources", caller_name(L),
                 RILL_PROXY_FROM_MAX);
    for (int i = 1; i <= len; i++) {
      lua_rawgeti(L, -1, i);
      const char *a = lua_tostring(L, -1);
      if (a == NULL || rill__cidr_parse(a, &from[n]) != 0)
        luaL_error(L, "%s: option proxy_from: bad address %s", caller_name(L),
                   a ? a : luaL_typename(L, -1));
      n++;
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "%s: option proxy_from must be a list of addresses, not %s",
               caller_name(L), luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return on ? n : -1;
}

int rill__push_listener(lua_State *L, rill_listener_t *l) {
  llistener_ud *ud = lua_newuserdata(L, sizeof(*ud));
  ud->l = l;
  l->ud = ud;
  luaL_getmetatable(L, LISTENER_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int l_listen(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  rill_listen_at_t at;
  char where[160];
  rill__opt_listen_at(L, 1, 0, &at, where, sizeof(where));
  int backlog = (int)rill__opt_number(L, 1, "backlog", 511);
  unsigned maxc = (unsigned)rill__opt_number(L, 1, "max_connections", 16384);
  unsigned per_addr = (unsigned)rill__opt_number(L, 1, "max_connections_per_address", 0);
  lua_getfield(L, 1, "timeout");
  int timeout_ms = RAW_TIMEOUT_MS;
  if (lua_isboolean(L, -1) && !lua_toboolean(L, -1)) {
    timeout_ms = -1;
  } else if (!lua_isnil(L, -1)) {
    lua_Number t = rill__opt_number(L, 1, "timeout", RAW_TIMEOUT_MS);
    timeout_ms = t < 0 ? -1 : t > 2e9 ? 2000000000 : (int)t;
  }
  lua_pop(L, 1);
  rill_cidr_t from[RILL_PROXY_FROM_MAX];
  int nfrom = rill__opt_proxy(L, 1, from);
  lua_getfield(L, 1, "handler");
  luaL_argcheck(L, lua_isfunction(L, -1), 1, "handler must be a function");
  rill_tls_conf_t *tls = NULL;
  lua_getfield(L, 1, "tls");
  if (!lua_isnil(L, -1) && lua_toboolean(L, -1)) {
    char err[256];
    tls = rill__ltls_conf(L, w, -1, 1, NULL, err, sizeof(err));
    if (tls == NULL) {
      lua_pushnil(L);
      lua_pushstring(L, err);
      return 2;
    }
  }
  lua_pop(L, 1);
  llistener_t *ll = calloc(1, sizeof(*ll));
  if (ll == NULL) return luaL_error(L, "out of memory");
  ll->w = w;
  ll->tls = tls;
  ll->timeout_ms = timeout_ms;
  ll->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  rill_listener_t *l;
  int r = rill__listen_at(w, &at, backlog, maxc, raw_accept, ll, &l);
  if (r) {
    luaL_unref(L, LUA_REGISTRYINDEX, ll->handler_ref);
    rill__tls_conf_unref(tls);
    free(ll);
    lua_pushnil(L);
    lua_pushfstring(L, "listen %s: %s", where,
                    at.fd >= 0 && r == UV_EINVAL ? "not a listening socket" : rill__errmsg(r));
    return 2;
  }
  l->on_free = raw_listener_free;
  l->set_handler = raw_set_handler;
  if ((per_addr && rill__listener_limit_per_addr(l, per_addr) != 0) ||
      (nfrom >= 0 &&
       rill__listener_proxy(l, from, (size_t)nfrom,
                            timeout_ms > 0 && timeout_ms < 30000 ? (unsigned)timeout_ms
                                                                 : 30000) != 0)) {
    rill__listener_close(l);
    return luaL_error(L, "out of memory");
  }
  return rill__push_listener(L, l);
}

void rill__listener_forget_ud(rill_listener_t *l) {
  llistener_ud *ud = l->ud;
  if (ud) ud->l = NULL;
  l->ud = NULL;
}

/* Listener userdata methods; the listener behind may be raw or HTTP. */
static llistener_ud *check_listener(lua_State *L) {
  return luaL_checkudata(L, 1, LISTENER_MT);
}

static int listener_close(lua_State *L) {
  llistener_ud *ud = check_listener(L);
  if (ud->l) rill__listener_close(ud->l);
  lua_pushboolean(L, 1);
  return 1;
}

static int listener_addr(lua_State *L) {
  llistener_ud *ud = check_listener(L);
  if (ud->l == NULL) return luaL_error(L, "listener is closed");
  char host[128];
  int port = rill__listener_addr(ud->l, host, sizeof(host));
  lua_pushstring(L, host);
  lua_pushinteger(L, port);
  return 2;
}

static int listener_port(lua_State *L) {
  listener_addr(L);
  return 1;
}

static int listener_connections(lua_State *L) {
  llistener_ud *ud = check_listener(L);
  lua_pushinteger(L, ud->l ? (lua_Integer)ud->l->nconns : 0);
  return 1;
}

/* listener:set_handler(fn): new connections (or requests) go to fn; those in
 * flight keep the old one. */
static int listener_set_handler(lua_State *L) {
  llistener_ud *ud = check_listener(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (ud->l == NULL) return luaL_error(L, "listener is closed");
  lua_pushvalue(L, 2);
  ud->l->set_handler(ud->l, luaL_ref(L, LUA_REGISTRYINDEX));
  return 0;
}

/* listener:_adopt(fd) → true | nil, err: serves fd, a connection the host
 * accepted (rill_serve_fd), as if this listener had; fd is taken (closed on
 * error too). */
static int listener_adopt(lua_State *L) {
  llistener_ud *ud = check_listener(L);
  int fd = (int)luaL_checkinteger(L, 2);
  int r = ud->l ? rill__listener_adopt(ud->l, fd) : (close(fd), RILL_ECLOSED);
  if (r) {
    lua_pushnil(L);
    lua_pushstring(L, rill__errmsg(r));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* core._close_fd(fd): closes a descriptor handed to Lua (rill_serve_fd's, when
 * its listener is gone). */
static int l_close_fd(lua_State *L) {
  close((int)luaL_checkinteger(L, 1));
  return 0;
}

static int listener_gc(lua_State *L) {
  llistener_ud *ud = check_listener(L);
  if (ud->l) rill__listener_forget_ud(ud->l); /* it goes on serving */
  return 0;
}

/* ---- rill.connect(host, port [, opts]) ---- */

/* A connect in progress: the task waits on it until the socket (and its TLS
 * handshake) is ready, or the connect fails, or its deadline passes. */
typedef struct {
  rill_waitq_t waits;
  rill_binding_t b;   /* bound to the TLS stream during its handshake */
  rill_connect_t *c;  /* while connecting */
  rill_stream_t *tls; /* while in the TLS handshake */
  rill_tls_conf_t *conf;
  char *server_name;
} lconnect_t;

static void lconnect_free(lconnect_t *lc) {
  rill__tls_conf_unref(lc->conf);
  free(lc->server_name);
  free(lc);
}

/* Ends the connect with an error (or the deadline): undoes what is under
 * way, pushes nil and why. */
static int connect_cancel(rill_wait_t *wt, int status) {
  lconnect_t *lc = wt->obj;
  lua_State *co = rill__wait_task(wt)->co;
  lua_pushnil(co);
  if (lc->c) {
    rill__connect_cancel(lc->c); /* its callback will not run */
    lua_pushstring(co, rill__errmsg(status));
  } else if (lc->tls) {
    rill_stream_t *s = lc->tls;
    lua_pushstring(co, rill__stream_errmsg(s, status));
    rill__stream_unbind(&lc->b);
    s->vt->abort(s);
  } else {
    lua_pushstring(co, rill__errmsg(status));
  }
  lconnect_free(lc);
  return 2;
}

/* Hands the connected stream to the waiting task. */
static void connect_ready(lconnect_t *lc, rill_stream_t *s) {
  rill_wait_t *wt = lc->waits.head;
  rill__lstream_push(rill__wait_task(wt)->co, s, 1, -1);
  rill__wait_done(wt, 1); /* the wait is in lc: free it after */
  lconnect_free(lc);
}

static void connect_tls_step(lconnect_t *lc) {
  int r = rill__tls_handshake(lc->tls);
  if (r == RILL_EAGAIN) return;
  if (r != 0) {
    rill__wait_cancel(lc->waits.head, r);
    return;
  }
  rill_stream_t *s = lc->tls;
  rill__stream_unbind(&lc->b);
  lc->tls = NULL;
  connect_ready(lc, s);
}

static void connect_tls_readable(rill_binding_t *b, int status) {
  connect_tls_step(rill__container_of(b, lconnect_t, b));
}

static void connect_tls_gone(rill_binding_t *b) {
  lconnect_t *lc = rill__container_of(b, lconnect_t, b);
  lc->tls = NULL;
  rill__wait_cancel(lc->waits.head, RILL_ECLOSED);
}

static const rill_binding_ops_t connect_tls_ops = {.readable = connect_tls_readable,
                                                   .gone = connect_tls_gone};

static void connect_done(void *data, int status, rill_uvstream_t *u) {
  lconnect_t *lc = data;
  lc->c = NULL;
  if (status < 0) {
    rill__wait_cancel(lc->waits.head, status);
    return;
  }
  rill_stream_t *s = rill__uvstream_stream(u);
  if (lc->conf == NULL) {
    connect_ready(lc, s);
    return;
  }
  s = rill__tls_new(lc->conf, s, lc->server_name);
  if (s == NULL) {
    rill__wait_cancel(lc->waits.head, UV_ENOMEM);
    return;
  }
  lc->tls = s;
  rill__stream_bind(s, &lc->b, &connect_tls_ops);
  connect_tls_step(lc);
}

/* rill.connect(host, port [, {timeout = ms, tls = true | {...}} | timeout_ms]) */
static int l_connect(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  lua_Number ms = -1;
  rill_tls_conf_t *conf = NULL;
  const char *name = host;
  luaL_argcheck(L, port > 0 && port < 65536, 2, "port out of range");
  rill_task_t *t = rill__task_check(w, L);
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "timeout");
    ms = luaL_optnumber(L, -1, -1);
    lua_getfield(L, 3, "tls");
    if (lua_toboolean(L, -1)) {
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "server_name");
        if (lua_isstring(L, -1)) name = lua_tostring(L, -1);
        lua_pop(L, 1);
      }
      char err[256];
      conf = rill__ltls_conf(L, w, -1, 0, NULL, err, sizeof(err));
      if (conf == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
      }
    }
    lua_pop(L, 2);
  } else {
    ms = luaL_optnumber(L, 3, -1);
  }
  lconnect_t *lc = calloc(1, sizeof(*lc));
  if (lc == NULL) {
    rill__tls_conf_unref(conf);
    return luaL_error(L, "out of memory");
  }
  lc->conf = conf;
  lc->server_name = strdup(name);
  int r = lc->server_name ? rill__connect(w, host, (int)port, connect_done, lc, &lc->c)
                          : UV_ENOMEM;
  if (r) {
    lconnect_free(lc);
    lua_pushnil(L);
    lua_pushstring(L, rill__errmsg(r));
    return 2;
  }
  return rill__task_wait(L, t, &lc->waits, 0, lc, ms < 0 ? -1 : (int)ms, connect_cancel);
}

/* ---- logging and the loop ---- */

static int l_log(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
  int level = luaL_checkoption(L, 1, NULL, levels);
  const char *msg = luaL_checkstring(L, 2);
  rill__log(w, level, "%s", msg);
  return 0;
}

static int l_set_log_level(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
  w->log_level = luaL_checkoption(L, 1, NULL, levels);
  return 0;
}

/* core.log_write(text): whole log lines (ending in "\n"), written as
 * rill__log writes its lines: to stderr, or kept by the log capture. */
static int l_log_write(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  rill__log_write(rill__upworker(L), text, len);
  return 0;
}

/* core.log_capture(on) → the lines captured since the last call, and how
 * many were dropped past the limit; on (boolean) turns the capture of this
 * worker's log on or off (see rill__log_capture). */
static int l_log_capture(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  size_t len;
  unsigned long dropped;
  const char *text = rill__log_captured(w, &len, &dropped);
  lua_pushlstring(L, text, len);
  lua_pushnumber(L, (lua_Number)dropped);
  rill__log_capture(w, lua_toboolean(L, 1));
  return 2;
}

static int l_exit(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  w->exit_code = (int)luaL_optinteger(L, 1, 0);
  rill__runtime_exit(w, w->exit_code);
  uv_stop(w->loop);
  rill_task_t *t = rill__task_current(w);
  if (t && t->co == L) /* parked: the loop is ending */
    return rill__task_wait(L, t, NULL, 0, NULL, -1, NULL);
  return 0;
}

/* core.watch(dir): reload when a .lua file in dir changes */
static int l_watch(lua_State *L) {
  int r = rill__runtime_watch(rill__upworker(L), luaL_checkstring(L, 1));
  if (r == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, rill__errmsg(r));
  return 2;
}

/* rill.reload(): every worker loads the app again */
static int l_reload(lua_State *L) {
  rill__runtime_reload(rill__upworker(L));
  return 0;
}

/* rill.stats() → {worker =, requests =, connections =, websockets =} */
static int l_stats(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  int conns = 0, wss = 0;
  for (rill_obj_t *o = w->objs.next; o != &w->objs; o = o->next) {
    if (o->kind == RILL_OBJ_CONN) conns++;
    if (o->kind == RILL_OBJ_WS) wss++;
  }
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, w->id);
  lua_setfield(L, -2, "worker");
  lua_pushnumber(L, (lua_Number)w->requests);
  lua_setfield(L, -2, "requests");
  lua_pushinteger(L, conns);
  lua_setfield(L, -2, "connections");
  lua_pushinteger(L, wss);
  lua_setfield(L, -2, "websockets");
  return 1;
}

/* core.metrics() → {{requests =, responses = {[1] = 1xx, ..., [5] = 5xx,
 * [0] = other}, bytes_in =, ...}, ...}: one table per worker, in order. */
static int l_metrics(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  rill_metrics_t m[256];
  int n = rill__runtime_metrics(w, m, 256);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 10);
#define F(name)                                                                          \
  lua_pushnumber(L, (lua_Number)m[i].name);                                              \
  lua_setfield(L, -2, #name)
    F(requests);
    F(bytes_in);
    F(bytes_out);
    F(connections);
    F(websockets);
    F(reloads);
    F(lua_bytes);
    F(buffers_pooled);
#undef F
    lua_createtable(L, 5, 1);
    for (int k = 0; k < 6; k++) {
      lua_pushnumber(L, (lua_Number)m[i].responses[k]);
      lua_rawseti(L, -2, k);
    }
    lua_setfield(L, -2, "responses");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_worker_id(lua_State *L) {
  lua_pushinteger(L, rill__upworker(L)->id);
  return 1;
}

static int l_collect_handles(lua_State *L) {
  /* For tests: how many handles keep the loop alive. */
  lua_pushinteger(L, (lua_Integer)rill__upworker(L)->loop->active_handles);
  return 1;
}

/* ---- message authentication ---- */

/* core.hmac_sha256(key, msg) → the 32 raw bytes of HMAC-SHA256(key, msg)
 * (RFC 2104 with SHA-256, mbedTLS's). rill.cookie signs cookies with it. */
static int l_hmac_sha256(lua_State *L) {
  size_t klen, mlen;
  const char *key = luaL_checklstring(L, 1, &klen);
  const char *msg = luaL_checklstring(L, 2, &mlen);
  const mbedtls_md_info_t *md = mbedtls_md_info_from_type(MBEDTLS_MD_SHA256);
  unsigned char mac[32];
  if (md == NULL) return luaL_error(L, "hmac_sha256: this mbedTLS has no SHA-256");
  int r = mbedtls_md_hmac(md, (const unsigned char *)key, klen,
                          (const unsigned char *)msg, mlen, mac);
  if (r != 0) return luaL_error(L, "hmac_sha256: mbedTLS error %d", r);
  lua_pushlstring(L, (const char *)mac, sizeof(mac));
  return 1;
}

static const luaL_Reg core_funcs[] = {
    {"now", l_now},       {"time", l_time},
    {"sleep", l_sleep},   {"spawn", l_spawn},
    {"wait", l_wait},     {"timer", l_timer},
    {"listen", l_listen}, {"connect", l_connect},
    {"_close_fd", l_close_fd},
    {"log", l_log},       {"set_log_level", l_set_log_level},
    {"log_write", l_log_write}, {"log_capture", l_log_capture},
    {"on_shutdown", l_on_shutdown}, {"stopping", l_stopping},
    {"metrics", l_metrics},
    {"current_task", l_current_task}, {"interrupt", l_interrupt},
    {"exit", l_exit},     {"worker_id", l_worker_id},
    {"watch", l_watch},   {"reload", l_reload},
    {"stats", l_stats},   {"active_handles", l_collect_handles},
    {"hmac_sha256", l_hmac_sha256}, {"waitq", l_waitq},
    {"on_signal", l_on_signal},
    {NULL, NULL},
};

void rill__new_class(lua_State *L, const char *name, const luaL_Reg *m, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__name");
  if (gc) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_newtable(L);
  luaL_register(L, NULL, m);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

void rill__register(lua_State *L, rill_worker_t *w, const luaL_Reg *funcs) {
  for (; funcs->name; funcs++) {
    lua_pushlightuserdata(L, w);
    lua_pushcclosure(L, funcs->func, 1);
    lua_setfield(L, -2, funcs->name);
  }
}

int rill__open_core(lua_State *L) {
  rill_worker_t *w = lua_touserdata(L, lua_upvalueindex(1));
  static const luaL_Reg thread_m[] = {
      {"status", thread_status}, {"cancel", thread_cancel}, {NULL, NULL}};
  static const luaL_Reg waitq_m[] = {{"wait", waitq_wait},
                                     {"signal", waitq_signal},
                                     {"waiting", waitq_waiting},
                                     {NULL, NULL}};
  static const luaL_Reg timer_m[] = {
      {"cancel", timer_cancel}, {"unref", timer_unref}, {NULL, NULL}};
  static const luaL_Reg listener_m[] = {{"close", listener_close},
                                        {"port", listener_port},
                                        {"address", listener_addr},
                                        {"connections", listener_connections},
                                        {"set_handler", listener_set_handler},
                                        {"_adopt", listener_adopt},
                                        {NULL, NULL}};
  rill__new_class(L, THREAD_MT, thread_m, thread_gc);
  rill__new_class(L, TIMER_MT, timer_m, timer_gc);
  rill__new_class(L, WAITQ_MT, waitq_m, waitq_gc);
  rill__new_class(L, LISTENER_MT, listener_m, listener_gc);
  rill__lstream_open(L);

  lua_newtable(L);
  rill__register(L, w, core_funcs);
  rill__open_http(L, w);
  rill__open_process(L, w);
  rill__open_tls(L, w);
  rill__open_ws(L, w);
  rill__open_h2_client(L, w);
  rill__open_multipart(L, w);
  rill__open_fs(L, w);
  rill__open_shared(L, w);
  rill__open_crypto(L, w);
  luaL_getmetatable(L, RILL_STREAM_MT);
  lua_getfield(L, -1, "__index");
  lua_setfield(L, -3, "stream_methods");
  lua_setfield(L, -2, "stream_mt");
  /* The fast paths, for lua/rill/ffi.lua (the same functions for every
   * worker: they find the worker through the object). */
  static const rill_ffi_api_t api = {
      sizeof(rill_ffi_api_t),  rill__ffi_stream_peek, rill__ffi_stream_consume,
      rill__ffi_stream_write,  rill__ffi_ws_next,     rill__ffi_ws_send,
      rill__ffi_ws_streaming,  rill__ffi_ws_msg_length, rill__ffi_http_write,
      rill__ffi_http_reqline,  rill__ffi_http_respond,  rill__ffi_h2_write,
      rill__ffi_h2_reqline,    rill__ffi_h2_respond};
  lua_pushlightuserdata(L, (void *)&api);
  lua_setfield(L, -2, "ffi_api");
  lua_pushliteral(L, RILL_FFI_CDEF);
  lua_setfield(L, -2, "ffi_cdef");
  lua_pushstring(L, RILL_VERSION_STRING);
  lua_setfield(L, -2, "version");
  return 1;
}
