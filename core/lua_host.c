/* Host calls that wait: rill_suspend() and rill_resume() (rill.h).
 *
 * A C function called from a rill task suspends it with rill_suspend(); the
 * host's own async work (a uv_work_t, a database callback, an RPC on another
 * thread) later calls rill_resume() from any thread, exactly once. The
 * resume goes to the task's worker through the worker's hub: a locked list
 * and one uv_async_t, whose callback (on the worker's thread) runs the
 * host's push function onto the task's coroutine and ends the wait.
 *
 * Who frees what. A waiter has two owners: the task's wait (ended by a
 * resume, or cancelled when the worker tears down) and the host (which
 * holds it until rill_resume). It is freed when both are done with it, under
 * the hub's lock. push is called exactly once: with the task's state, or
 * with NULL when there is no task to resume. The hub has the worker and every waiter as owners, so a
 * rill_resume() that comes after its worker has gone finds the hub still
 * there, marked gone, and only frees. */

#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_core.h"
#include "lua_sched.h"
#include "rill.h"
#include "rill_int.h"

#define REG_WORKER "rill.worker"

typedef struct hub_s hub_t;

struct rill_waiter_s {
  rill_waiter_t *next; /* in the hub's list of resumed waiters */
  hub_t *hub;
  rill_waitq_t waits;  /* the task's wait, while it waits */
  int (*push)(lua_State *L, void *ud);
  void *ud;
  int resumed; /* rill_resume has been called (under the lock) */
  int ended;   /* the wait ended: resumed into the task, cancelled, or the worker
                  stopped (set under the lock, on the worker's thread) */
};

struct hub_s {
  rill_service_t svc;
  rill_worker_t *w;
  uv_async_t async;
  uv_mutex_t lock;
  rill_waiter_t *head, *tail; /* resumed, for the worker to run */
  int refs;                   /* the worker (until its teardown) + live waiters */
  int gone;                   /* the worker tore down: resumes only free */
};

/* Drops one owner of h (with h->lock held); frees h with the last. */
static void hub_unref_locked(hub_t *h) {
  int last = --h->refs == 0;
  uv_mutex_unlock(&h->lock);
  if (last) {
    uv_mutex_destroy(&h->lock);
    free(h);
  }
}

/* Frees wt if both its owners are done (h->lock held). */
static void waiter_release_locked(rill_waiter_t *wt) {
  if (wt->resumed && wt->ended) {
    hub_t *h = wt->hub;
    free(wt);
    h->refs--; /* never the last: the caller holds a reference or the worker does */
  }
}

/* Runs on the worker's thread: the waiters rill_resume() queued. */
static void hub_async_cb(uv_async_t *a) {
  hub_t *h = a->data;
  uv_mutex_lock(&h->lock);
  rill_waiter_t *list = h->head;
  h->head = h->tail = NULL;
  uv_mutex_unlock(&h->lock);
  while (list) {
    rill_waiter_t *wt = list;
    list = wt->next;
    rill_wait_t *wait = wt->waits.head;
    int n = -1;
    if (wait && !wt->ended && !h->w->stopping) {
      lua_State *co = rill__wait_task(wait)->co;
      int top = lua_gettop(co);
      n = wt->push ? wt->push(co, wt->ud) : 0;
      if (n < 0 || lua_gettop(co) - top < n) { /* a push that broke its contract */
        lua_settop(co, top);
        lua_pushnil(co);
        lua_pushliteral(co, "rill_resume: push returned a bad count");
        n = 2;
      }
    }
    /* A stopping worker resumes nobody (the task goes with the Lua state):
     * push hears it with no state, to free what it holds. */
    if (n < 0 && wt->push) wt->push(NULL, wt->ud);
    uv_mutex_lock(&h->lock);
    wt->ended = 1;
    uv_mutex_unlock(&h->lock);
    if (n >= 0) rill__wait_done(wait, n);
    uv_mutex_lock(&h->lock);
    waiter_release_locked(wt);
    uv_mutex_unlock(&h->lock);
  }
}

static void hub_close(rill_service_t *svc, rill_worker_t *w) {
  (void)w;
  hub_t *h = rill__container_of(svc, hub_t, svc);
  uv_close((uv_handle_t *)&h->async, NULL);
}

/* The worker is gone: waiters not yet resumed free themselves on resume;
 * those queued are freed here (their tasks are gone with the Lua state). */
static void hub_free(rill_service_t *svc, rill_worker_t *w) {
  (void)w;
  hub_t *h = rill__container_of(svc, hub_t, svc);
  uv_mutex_lock(&h->lock);
  h->gone = 1;
  w->host_hub = NULL;
  rill_waiter_t *list = h->head;
  h->head = h->tail = NULL;
  uv_mutex_unlock(&h->lock);
  while (list) {
    rill_waiter_t *wt = list;
    list = wt->next;
    if (wt->push) wt->push(NULL, wt->ud);
    uv_mutex_lock(&h->lock);
    wt->ended = 1;
    waiter_release_locked(wt);
    uv_mutex_unlock(&h->lock);
  }
  uv_mutex_lock(&h->lock);
  hub_unref_locked(h);
}

static hub_t *hub_of(rill_worker_t *w) {
  if (w->host_hub) return w->host_hub;
  hub_t *h = calloc(1, sizeof(*h));
  if (h == NULL) return NULL;
  if (uv_mutex_init(&h->lock) != 0) {
    free(h);
    return NULL;
  }
  if (uv_async_init(w->loop, &h->async, hub_async_cb) != 0) {
    uv_mutex_destroy(&h->lock);
    free(h);
    return NULL;
  }
  h->async.data = h;
  uv_unref((uv_handle_t *)&h->async); /* a waiting task keeps the loop busy, not this */
  h->w = w;
  h->refs = 1;
  h->svc.close = hub_close;
  h->svc.free = hub_free;
  rill__worker_add_service(w, &h->svc);
  w->host_hub = h;
  return h;
}

/* The wait was cancelled (the worker tears down, or the task is ended):
 * the host still owns the waiter until it calls rill_resume. */
static int waiter_cancel(rill_wait_t *wait, int status) {
  rill_waiter_t *wt = wait->obj;
  hub_t *h = wt->hub;
  lua_State *co = rill__wait_task(wait)->co;
  lua_pushnil(co);
  lua_pushstring(co, rill_strerror(status));
  uv_mutex_lock(&h->lock);
  wt->ended = 1;
  waiter_release_locked(wt);
  uv_mutex_unlock(&h->lock);
  return 2;
}

void rill__host_bind(lua_State *L, rill_worker_t *w) {
  lua_pushlightuserdata(L, w);
  lua_setfield(L, LUA_REGISTRYINDEX, REG_WORKER);
}

static rill_worker_t *worker_of(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, REG_WORKER);
  rill_worker_t *w = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return w;
}

int rill_suspend(lua_State *L, rill_waiter_t **out) {
  rill_worker_t *w = worker_of(L);
  if (w == NULL) return luaL_error(L, "rill_suspend: not a rill Lua state");
  if (out == NULL) return luaL_error(L, "rill_suspend: no place for the waiter");
  rill_task_t *t = rill__task_check(w, L);
  hub_t *h = hub_of(w);
  rill_waiter_t *wt = h ? calloc(1, sizeof(*wt)) : NULL;
  if (wt == NULL) return luaL_error(L, "rill_suspend: out of memory");
  wt->hub = h;
  uv_mutex_lock(&h->lock);
  h->refs++;
  uv_mutex_unlock(&h->lock);
  *out = wt;
  return rill__task_wait(L, t, &wt->waits, 0, wt, -1, waiter_cancel);
}

int rill_resume(rill_waiter_t *wt, int (*push)(lua_State *L, void *ud), void *ud) {
  if (wt == NULL) return UV_EINVAL;
  hub_t *h = wt->hub;
  uv_mutex_lock(&h->lock);
  if (wt->resumed) { /* a second resume: the host broke "exactly once" */
    uv_mutex_unlock(&h->lock);
    return RILL_ESTATE;
  }
  wt->resumed = 1;
  if (h->gone || wt->ended) {
    /* Nobody to resume: the worker or the task went first. */
    wt->ended = 1;
    h->refs++; /* keep h through the release */
    waiter_release_locked(wt);
    hub_unref_locked(h);
    if (push) push(NULL, ud);
    return 0;
  }
  wt->push = push;
  wt->ud = ud;
  wt->next = NULL;
  if (h->tail)
    h->tail->next = wt;
  else
    h->head = wt;
  h->tail = wt;
  uv_async_send(&h->async);
  uv_mutex_unlock(&h->lock);
  return 0;
}

int rill_worker_index(lua_State *L) {
  rill_worker_t *w = worker_of(L);
  return w ? w->id : -1;
}

uv_loop_t *rill_loop(lua_State *L) {
  rill_worker_t *w = worker_of(L);
  return w ? w->loop : NULL;
}

rill_t *rill_runtime(lua_State *L) {
  rill_worker_t *w = worker_of(L);
  return w ? (rill_t *)w->rt : NULL;
}

void *rill_context(lua_State *L) {
  /* rill.c's add_host gives each registered function its ctx as its first
   * upvalue (NULL for rill_register). */
  return lua_touserdata(L, lua_upvalueindex(1));
}
