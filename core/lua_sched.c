/* Tasks and the scheduler. See lua_sched.h. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_sched.h"

#define POOL_MAX 1024

static void drain(rill_sched_t *sc);

static rill_sched_t *SC(rill_worker_t *w) {
  return w->sched;
}

static void push_ready(rill_sched_t *sc, rill_task_t *t) {
  t->next = NULL;
  if (sc->ready_tail)
    sc->ready_tail->next = t;
  else
    sc->ready_head = t;
  sc->ready_tail = t;
}

static void defer_idle_cb(uv_idle_t *h) {}

/* Tasks that yielded with a bare coroutine.yield() run again on the next turn
 * of the loop, after I/O: the idle handle keeps the poll from blocking. */
static void defer_check_cb(uv_check_t *h) {
  rill_sched_t *sc = h->data;
  rill_task_t *t = sc->defer_head, *turn = sc->turn_head;
  sc->defer_head = sc->defer_tail = NULL;
  sc->turn_head = sc->turn_tail = NULL;
  uv_idle_stop(&sc->defer_idle);
  uv_check_stop(&sc->defer_check);
  while (t) {
    rill_task_t *next = t->next;
    push_ready(sc, t);
    t = next;
  }
  /* Waits of 0 ms end now (a wait ended some other way meanwhile is not
   * armed any more); one that waits again joins the next turn's list. */
  while (turn) {
    rill_task_t *next = turn->turn_next;
    turn->on_turn = 0;
    if (turn->turn_armed && turn->state == RILL_TASK_WAITING) {
      turn->turn_armed = 0;
      rill__wait_cancel(&turn->wait, turn->canceled ? UV_ECANCELED : UV_ETIMEDOUT);
    }
    turn = next;
  }
  drain(sc);
}

static void defer_start(rill_sched_t *sc) {
  uv_idle_start(&sc->defer_idle, defer_idle_cb);
  uv_check_start(&sc->defer_check, defer_check_cb);
}

static void handle_closed(uv_handle_t *h) {}

static void sched_close(rill_service_t *svc, rill_worker_t *w) {
  rill_sched_t *sc = rill__container_of(svc, rill_sched_t, svc);
  uv_close((uv_handle_t *)&sc->defer_idle, handle_closed);
  uv_close((uv_handle_t *)&sc->defer_check, handle_closed);
}

/* After the loop has closed every handle: the Lua state goes (its __gc
 * metamethods find every C object gone), then the scheduler. */
static void sched_free(rill_service_t *svc, rill_worker_t *w) {
  rill_sched_t *sc = rill__container_of(svc, rill_sched_t, svc);
  if (w->L) {
    lua_close(w->L);
    w->L = NULL;
  }
  w->sched = NULL;
  w->release = NULL;
  free(sc);
}

/* The worker's last hold went (rill__worker_release): run what waited. */
static void release(rill_worker_t *w) {
  drain(SC(w));
}

int rill__sched_init(rill_worker_t *w) {
  rill_sched_t *sc = calloc(1, sizeof(*sc));
  if (sc == NULL) return UV_ENOMEM;
  uv_idle_init(w->loop, &sc->defer_idle);
  uv_check_init(w->loop, &sc->defer_check);
  sc->defer_idle.data = sc->defer_check.data = sc;
  uv_unref((uv_handle_t *)&sc->defer_idle);
  uv_unref((uv_handle_t *)&sc->defer_check);
  sc->w = w;
  sc->svc.close = sched_close;
  sc->svc.free = sched_free;
  w->sched = sc;
  w->release = release;
  rill__worker_add_service(w, &sc->svc);
  return 0;
}

static void task_timer_closed(uv_handle_t *h) {
  free(h->data);
}

static void busy_end(rill_task_t *t) {
  if (!t->busy) return;
  t->busy = 0;
  t->w->busy--;
}

/* Frees the task: its coroutine goes to the garbage collector, its memory is
 * freed once the timer handle is closed. */
static void task_free(rill_task_t *t) {
  rill__obj_unlink(&t->obj);
  if (t->w->L && !t->w->stopping) luaL_unref(t->w->L, LUA_REGISTRYINDEX, t->ref);
  uv_close((uv_handle_t *)&t->timer, task_timer_closed);
}

static void task_destroy(rill_obj_t *o) {
  rill_task_t *t = rill__container_of(o, rill_task_t, obj);
  busy_end(t);
  uv_close((uv_handle_t *)&t->timer, task_timer_closed);
}

static void task_resume(rill_wait_t *wt, int nres);

rill_task_t *rill__task_new(rill_worker_t *w, const char *kind) {
  rill_sched_t *sc = SC(w);
  rill_task_t *t = sc->pool;
  if (t) {
    sc->pool = t->next;
    sc->npool--;
  } else {
    t = calloc(1, sizeof(*t));
    if (t == NULL) return NULL;
    t->w = w;
    t->co = lua_newthread(w->L);
    t->ref = luaL_ref(w->L, LUA_REGISTRYINDEX);
    uv_timer_init(w->loop, &t->timer);
    t->timer.data = t;
    t->wait.resume = task_resume;
    rill__obj_link(w, &t->obj, task_destroy);
  }
  t->state = RILL_TASK_IDLE;
  t->next = NULL;
  t->done = NULL;
  t->done_data = NULL;
  t->yield_cb = NULL;
  t->kind = kind;
  t->busy = 0;
  t->canceled = 0;
  return t;
}

void rill__task_cancel(rill_task_t *t) {
  t->canceled = 1;
  if (t->state == RILL_TASK_WAITING && !t->w->stopping)
    rill__wait_cancel(&t->wait, UV_ECANCELED);
}

void rill__task_start(rill_task_t *t, int nargs) {
  rill_worker_t *w = t->w;
  if (w->stopping) return;
  if (t->busy) w->busy++;
  t->state = RILL_TASK_READY;
  t->nres = nargs;
  push_ready(SC(w), t);
  drain(SC(w));
}

rill_task_t *rill__task_current(rill_worker_t *w) {
  return w->sched ? SC(w)->current : NULL;
}

rill_task_t *rill__task_check(rill_worker_t *w, lua_State *L) {
  rill_task_t *t = SC(w)->current;
  if (t == NULL || t->co != L)
    luaL_error(L, "this call waits, so it must run in a rill thread (a handler or "
                  "rill.spawn), not in a plain coroutine");
  return t;
}

/* The wait's deadline passed: the object's face pushes "timeout". */
static void task_timeout_cb(uv_timer_t *h) {
  rill_task_t *t = h->data;
  if (t->state != RILL_TASK_WAITING || t->w->stopping) return;
  rill__wait_cancel(&t->wait, t->canceled ? UV_ECANCELED : UV_ETIMEDOUT);
}

/* A wait ended (wait.c): the task runs again, in this turn. */
static void task_resume(rill_wait_t *wt, int nres) {
  rill_task_t *t = rill__wait_task(wt);
  rill_worker_t *w = t->w;
  /* Its results were pushed onto its stack: never from inside a fast path
   * (lua_sched.h), where the Lua state must not be touched. */
  assert(SC(w)->ffi == 0);
  uv_timer_stop(&t->timer);
  t->turn_armed = 0;
  if (w->stopping || t->state != RILL_TASK_WAITING) return;
  t->state = RILL_TASK_READY;
  t->nres = nres;
  push_ready(SC(w), t);
  drain(SC(w));
}

int rill__task_wait(lua_State *L, rill_task_t *t, rill_waitq_t *q, int kind, void *obj,
                    int timeout_ms, int (*cancel)(rill_wait_t *wt, int status)) {
  assert(t->state == RILL_TASK_RUNNING && t->co == L);
  t->state = RILL_TASK_WAITING;
  t->wait.kind = kind;
  t->wait.obj = obj;
  t->wait.cancel = cancel;
  rill__wait_start(&t->wait, q);
  if (t->canceled) {
    /* Ends "canceled" on the next turn; the timer keeps the loop running
     * until then (the turn's handles do not). */
    uv_timer_start(&t->timer, task_timeout_cb, 1, 0);
    timeout_ms = 0;
  }
  if (timeout_ms == 0) {
    /* Not a 0 ms timer: libuv runs one started from a timer callback in the
     * same pass, so a loop of such waits would never let I/O in. */
    rill_sched_t *sc = SC(t->w);
    t->turn_armed = 1;
    if (!t->on_turn) {
      t->on_turn = 1;
      t->turn_next = NULL;
      if (sc->turn_tail)
        sc->turn_tail->turn_next = t;
      else
        sc->turn_head = t;
      sc->turn_tail = t;
    }
    defer_start(sc);
  } else if (timeout_ms > 0) {
    /* The loop's clock is read once per turn; a long turn would shorten the
     * deadline. */
    uv_update_time(t->w->loop);
    uv_timer_start(&t->timer, task_timeout_cb, (uint64_t)timeout_ms, 0);
  }
  return lua_yield(L, 0);
}

void rill__task_drained(rill_wait_t *wt, int status) {
  if (wt == NULL) return;
  if (status < 0) {
    rill__wait_cancel(wt, status);
    return;
  }
  lua_pushboolean(rill__wait_task(wt)->co, 1);
  rill__wait_done(wt, 1);
}

void rill__task_traceback(rill_task_t *t) {
  lua_State *L = t->w->L;
  const char *msg = lua_tostring(t->co, -1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(t->co, -1));
  else
    lua_pushnil(L);
  luaL_traceback(L, t->co, msg, 0);
  lua_remove(L, -2);
}

/* Resumes t once; what happens next depends on how it stopped. */
static void task_run(rill_sched_t *sc, rill_task_t *t) {
  rill_worker_t *w = t->w;
  sc->current = t;
  t->state = RILL_TASK_RUNNING;
  int r = lua_resume(t->co, t->nres);
  sc->current = NULL;
  if (r == LUA_YIELD) {
    if (t->state == RILL_TASK_RUNNING) {
      /* A bare coroutine.yield(): run again on the next turn of the loop. */
      lua_settop(t->co, 0);
      t->state = RILL_TASK_READY;
      t->nres = 0;
      t->next = NULL;
      if (sc->defer_tail)
        sc->defer_tail->next = t;
      else
        sc->defer_head = t;
      sc->defer_tail = t;
      defer_start(sc);
    } else if (t->yield_cb) {
      t->yield_cb(t);
    }
    return;
  }
  if (r != 0) {
    rill__task_traceback(t);
    rill__log(w, RILL_LOG_ERROR, "error in %s: %s", t->kind, lua_tostring(w->L, -1));
    lua_pop(w->L, 1);
  }
  assert(!t->wait.pending);
  t->state = RILL_TASK_IDLE;
  busy_end(t);
  if (t->done) t->done(t, r);
  if (r == 0 && sc->npool < POOL_MAX && !w->stopping) {
    lua_settop(t->co, 0);
    t->next = sc->pool;
    sc->pool = t;
    sc->npool++;
  } else {
    task_free(t);
  }
}

void rill__defer(rill_worker_t *w, rill_defer_t *d) {
  rill_sched_t *sc = SC(w);
  if (d->queued) return;
  d->queued = 1;
  d->next = NULL;
  if (sc->later_tail)
    sc->later_tail->next = d;
  else
    sc->later = d;
  sc->later_tail = d;
}

void rill__defer_drop(rill_worker_t *w, rill_defer_t *d) {
  rill_sched_t *sc = SC(w);
  if (sc == NULL || !d->queued) return;
  rill_defer_t **pp = &sc->later, *prev = NULL;
  while (*pp && *pp != d) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  if (*pp == NULL) return;
  *pp = d->next;
  if (sc->later_tail == d) sc->later_tail = prev;
  d->queued = 0;
}

/* Runs the work faces deferred while a fast path ran. */
static void run_deferred(rill_sched_t *sc) {
  while (sc->later) {
    rill_defer_t *d = sc->later;
    sc->later = d->next;
    if (sc->later == NULL) sc->later_tail = NULL;
    d->queued = 0;
    d->run(d);
  }
}

static void drain(rill_sched_t *sc) {
  if (sc->draining || sc->w->hold) return;
  sc->draining = 1;
  run_deferred(sc);
  while (sc->ready_head) {
    rill_task_t *t = sc->ready_head;
    if (t->w->stopping) break;
    sc->ready_head = t->next;
    if (sc->ready_head == NULL) sc->ready_tail = NULL;
    task_run(sc, t);
    assert(sc->ffi == 0);
    run_deferred(sc);
  }
  sc->draining = 0;
  /* The tasks stopped running: what they wrote leaves now, together. */
  if (!sc->w->stopping) rill__worker_flush(sc->w);
  /* The Lua state's size, for a scrape on any worker (rill.metrics). */
  lua_State *L = sc->w->L;
  if (L && !sc->w->stopping)
    RILL_GAUGE(sc->w->m->lua_bytes, (uint64_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 +
                                        (uint64_t)lua_gc(L, LUA_GCCOUNTB, 0));
}
