/* Tasks and the scheduler. See sched.h. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "rill_sched.h"

#define POOL_MAX 1024

static void drain(rill_worker_t *w);

static void push_ready(rill_worker_t *w, rill_task_t *t) {
  t->next = NULL;
  if (w->ready_tail)
    w->ready_tail->next = t;
  else
    w->ready_head = t;
  w->ready_tail = t;
}

/* Tasks that yielded with a bare coroutine.yield() run again on the next turn
 * of the loop, after I/O: the idle handle keeps the poll from blocking. */
static void defer_check_cb(uv_check_t *h) {
  rill_worker_t *w = h->data;
  rill_task_t *t = w->defer_head;
  w->defer_head = w->defer_tail = NULL;
  uv_idle_stop(&w->defer_idle);
  uv_check_stop(&w->defer_check);
  while (t) {
    rill_task_t *next = t->next;
    push_ready(w, t);
    t = next;
  }
  drain(w);
}

static void defer_idle_cb(uv_idle_t *h) {}

int rill__sched_init(rill_worker_t *w) {
  uv_idle_init(w->loop, &w->defer_idle);
  uv_check_init(w->loop, &w->defer_check);
  w->defer_idle.data = w->defer_check.data = w;
  uv_unref((uv_handle_t *)&w->defer_idle);
  uv_unref((uv_handle_t *)&w->defer_check);
  return 0;
}

static void sched_handle_closed(uv_handle_t *h) {}

void rill__sched_close(rill_worker_t *w) {
  uv_close((uv_handle_t *)&w->defer_idle, sched_handle_closed);
  uv_close((uv_handle_t *)&w->defer_check, sched_handle_closed);
}

void rill__sched_free(rill_worker_t *w) {}

static void task_timer_closed(uv_handle_t *h) {
  free(h->data);
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
  uv_close((uv_handle_t *)&t->timer, task_timer_closed);
}

rill_task_t *rill__task_new(rill_worker_t *w, const char *kind) {
  rill_task_t *t = w->pool;
  if (t) {
    w->pool = t->next;
    w->npool--;
  } else {
    t = calloc(1, sizeof(*t));
    if (t == NULL) return NULL;
    t->w = w;
    t->co = lua_newthread(w->L);
    t->ref = luaL_ref(w->L, LUA_REGISTRYINDEX);
    uv_timer_init(w->loop, &t->timer);
    t->timer.data = t;
    rill__obj_link(w, &t->obj, task_destroy);
  }
  t->state = RILL_TASK_IDLE;
  t->next = NULL;
  t->done = NULL;
  t->done_data = NULL;
  t->yield_cb = NULL;
  t->cancel = NULL;
  t->kind = kind;
  return t;
}

void rill__task_start(rill_task_t *t, int nargs) {
  rill_worker_t *w = t->w;
  if (w->stopping) return;
  t->state = RILL_TASK_READY;
  t->nres = nargs;
  push_ready(w, t);
  drain(w);
}

rill_task_t *rill__task_check(rill_worker_t *w, lua_State *L) {
  rill_task_t *t = w->current;
  if (t == NULL || t->co != L)
    luaL_error(L, "this call waits, so it must run in a rill thread (a handler or "
                  "rill.spawn), not in a plain coroutine");
  return t;
}

static void task_timeout_cb(uv_timer_t *h) {
  rill_task_t *t = h->data;
  if (t->state != RILL_TASK_WAITING || t->w->stopping) return;
  rill_task_cancel_cb cancel = t->cancel;
  t->cancel = NULL;
  int n = cancel ? cancel(t) : 0;
  rill__task_wake(t, n);
}

void rill__task_wait(rill_task_t *t, int timeout_ms, rill_task_cancel_cb cancel,
                     void *obj) {
  t->state = RILL_TASK_WAITING;
  t->cancel = cancel;
  t->wait_obj = obj;
  if (timeout_ms >= 0) {
    /* The loop's clock is read once per turn; a long turn would shorten the
     * deadline. */
    uv_update_time(t->w->loop);
    uv_timer_start(&t->timer, task_timeout_cb, (uint64_t)timeout_ms, 0);
  }
}

void rill__task_wake(rill_task_t *t, int nres) {
  rill_worker_t *w = t->w;
  if (w->stopping || t->state != RILL_TASK_WAITING) return;
  uv_timer_stop(&t->timer);
  t->cancel = NULL;
  t->wait_obj = NULL;
  t->state = RILL_TASK_READY;
  t->nres = nres;
  push_ready(w, t);
  drain(w);
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
static void task_run(rill_task_t *t) {
  rill_worker_t *w = t->w;
  w->current = t;
  t->state = RILL_TASK_RUNNING;
  int r = lua_resume(t->co, t->nres);
  w->current = NULL;
  if (r == LUA_YIELD) {
    if (t->state == RILL_TASK_RUNNING) {
      /* A bare coroutine.yield(): run again on the next turn of the loop. */
      lua_settop(t->co, 0);
      t->state = RILL_TASK_READY;
      t->nres = 0;
      t->next = NULL;
      if (w->defer_tail)
        w->defer_tail->next = t;
      else
        w->defer_head = t;
      w->defer_tail = t;
      uv_idle_start(&w->defer_idle, defer_idle_cb);
      uv_check_start(&w->defer_check, defer_check_cb);
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
  t->state = RILL_TASK_IDLE;
  if (t->done) t->done(t, r);
  if (r == 0 && w->npool < POOL_MAX && !w->stopping) {
    lua_settop(t->co, 0);
    t->next = w->pool;
    w->pool = t;
    w->npool++;
  } else {
    task_free(t);
  }
}

static void drain(rill_worker_t *w) {
  if (w->draining) return;
  w->draining = 1;
  while (w->ready_head && !w->stopping) {
    rill_task_t *t = w->ready_head;
    w->ready_head = t->next;
    if (w->ready_head == NULL) w->ready_tail = NULL;
    task_run(t);
  }
  w->draining = 0;
}
