/* The scheduler: tasks are coroutines that rill resumes. A C function that
 * must wait calls rill__task_wait() and returns lua_yield(L, 0); whoever ends
 * the wait pushes the results onto the task's coroutine and calls
 * rill__task_wake(). All resumes go through one loop (drain), never nested. */
#ifndef RILL_RILL_SCHED_H
#define RILL_RILL_SCHED_H

#include <lua.h>

#include "rill_int.h"

enum { RILL_TASK_IDLE, RILL_TASK_RUNNING, RILL_TASK_WAITING, RILL_TASK_READY };

/* Called when the task's function returned (status 0: its results are on the
 * coroutine's stack) or raised (status LUA_ERR*: the error value is on top). */
typedef void (*rill_task_done_cb)(rill_task_t *t, int status);
/* Called when a wait's deadline passed: forget the wait, push the results
 * onto t->co and return how many. */
typedef int (*rill_task_cancel_cb)(rill_task_t *t);

struct rill_task_s {
  rill_obj_t obj;
  rill_worker_t *w;
  lua_State *co;
  int ref; /* registry reference that keeps the coroutine alive */
  int state;
  int nres;
  uv_timer_t timer; /* the deadline of the current wait, or a sleep */
  rill_task_cancel_cb cancel;
  void *wait_obj;
  rill_task_done_cb done;
  void *done_data;
  void (*yield_cb)(rill_task_t *t); /* run each time the task waits */
  const char *kind;                 /* for log lines: "handler", "thread" */
  rill_task_t *next;
};

int rill__sched_init(rill_worker_t *w);
void rill__sched_close(rill_worker_t *w);
void rill__sched_free(rill_worker_t *w);

/* Returns a task with an empty coroutine (reused from the pool when one is
 * free), or NULL when out of memory. Push the function and its arguments onto
 * t->co, then call rill__task_start(). */
rill_task_t *rill__task_new(rill_worker_t *w, const char *kind);
void rill__task_start(rill_task_t *t, int nargs);

/* The running task, if L is its coroutine; raises a Lua error otherwise. */
rill_task_t *rill__task_check(rill_worker_t *w, lua_State *L);

/* Marks t as waiting; with timeout_ms >= 0, cancel runs when it passes. The
 * caller then returns lua_yield(L, 0). */
void rill__task_wait(rill_task_t *t, int timeout_ms, rill_task_cancel_cb cancel,
                     void *obj);
/* Ends t's wait: nres results are already pushed onto t->co. */
void rill__task_wake(rill_task_t *t, int nres);

/* Pushes the error on top of t->co, with a traceback, onto t->w->L. */
void rill__task_traceback(rill_task_t *t);

/* The worker of a C function: its first upvalue. */
#define rill__upworker(L) ((rill_worker_t *)lua_touserdata((L), lua_upvalueindex(1)))

#endif
