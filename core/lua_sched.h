/* The scheduler: tasks are coroutines that rill resumes. A C function that
 * must wait calls rill__task_wait(), which records the wait on the object's
 * queue and yields; the object ends the wait (wait.h), and the task is put
 * on the ready queue. All resumes go through one loop (drain), never nested.
 * This is the Lua layer: the C layers below see only wait records. */
#ifndef RILL_LUA_SCHED_H
#define RILL_LUA_SCHED_H

#include <lua.h>

#include "wait.h"
#include "worker.h"

typedef struct rill_task_s rill_task_t;

enum { RILL_TASK_IDLE, RILL_TASK_RUNNING, RILL_TASK_WAITING, RILL_TASK_READY };

/* Called when the task's function returned (status 0: its results are on the
 * coroutine's stack) or raised (status LUA_ERR*: the error value is on top). */
typedef void (*rill_task_done_cb)(rill_task_t *t, int status);

struct rill_task_s {
  rill_obj_t obj;
  rill_worker_t *w;
  lua_State *co;
  int ref; /* registry reference that keeps the coroutine alive */
  int state;
  int nres;
  uv_timer_t timer; /* the deadline of the current wait, or a sleep */
  rill_wait_t wait; /* what it waits on */
  rill_task_done_cb done;
  void *done_data;
  void (*yield_cb)(rill_task_t *t); /* run each time the task waits */
  const char *kind;                 /* for log lines: "handler", "thread" */
  int busy; /* serves a peer: a graceful stop waits for it to end */
  rill_task_t *next;
  rill_task_t *turn_next; /* in the list of waits that end next turn */
  unsigned on_turn : 1, turn_armed : 1;
  unsigned canceled : 1; /* th:cancel(): each wait from now on ends "canceled" */
};

/* Cancels t: the wait it is in now, and every wait it starts later, ends
 * with UV_ECANCELED (Lua sees nil, "canceled"). A task never runs past a
 * point it did not choose: it is only its waits that fail. */
void rill__task_cancel(rill_task_t *t);

/* ---- calls from compiled Lua (the FFI) ----
 * The hot methods (stream reads and writes, websocket receives and sends)
 * have a fast path that Lua calls through the FFI, so that a loop finding
 * data waiting runs as a compiled trace; the fast path returns at once (data,
 * done, or "take the slow path") and Lua does the waiting. A C function called
 * so must not touch the Lua state, whose values may sit in registers the
 * collector cannot see. It runs between rill__ffi_enter() and
 * rill__ffi_leave(); a Lua face called back meanwhile (a stream turned
 * readable or went, a websocket closed) does what it must to its own C state
 * at once, and whatever would push results onto a waiting task goes into a
 * rill_defer_t, which the scheduler runs as soon as the running task stops
 * (before it resumes any other). Only a face with a waiter defers: the
 * waiting task's stack keeps the face alive until then. */
typedef struct rill_defer_s rill_defer_t;
struct rill_defer_s {
  rill_defer_t *next;
  void (*run)(rill_defer_t *d);
  int queued;
};

typedef struct rill_sched_s {
  rill_service_t svc; /* with the worker: closes the handles, then the Lua state */
  rill_worker_t *w;
  rill_task_t *current;                 /* the task running now, or NULL */
  rill_task_t *ready_head, *ready_tail; /* woken, to resume in this turn */
  rill_task_t *defer_head, *defer_tail; /* yielded, to resume next turn */
  rill_task_t *turn_head, *turn_tail;   /* waits of 0 ms, to end next turn */
  int draining;
  rill_task_t *pool; /* finished tasks whose coroutines can be reused */
  unsigned npool;
  uv_idle_t defer_idle;
  uv_check_t defer_check;
  int ffi;                    /* inside a fast path called through the FFI */
  rill_defer_t *later, *later_tail; /* faces' work deferred out of a fast path */
} rill_sched_t;

/* Whether a Lua face called back now must defer what touches Lua. */
static inline int rill__ffi_active(rill_worker_t *w) {
  return w->sched != NULL && w->sched->ffi;
}
/* The fast path may run: a task runs (so the scheduler runs the deferred work
 * when it stops). Returns 0 if not (take the slow path), else enters. */
static inline int rill__ffi_enter(rill_worker_t *w) {
  if (w->sched == NULL || w->sched->current == NULL || w->stopping) return 0;
  w->sched->ffi++;
  return 1;
}
static inline void rill__ffi_leave(rill_worker_t *w) {
  w->sched->ffi--;
}
/* Queues d (nothing if queued already). */
void rill__defer(rill_worker_t *w, rill_defer_t *d);
/* Takes d off the queue (its face is going). */
void rill__defer_drop(rill_worker_t *w, rill_defer_t *d);

/* Makes w's scheduler, for w->L; the worker closes both at its end. */
int rill__sched_init(rill_worker_t *w);

/* Returns a task with an empty coroutine (reused from the pool when one is
 * free), or NULL when out of memory. Push the function and its arguments onto
 * t->co, then call rill__task_start(). */
rill_task_t *rill__task_new(rill_worker_t *w, const char *kind);
void rill__task_start(rill_task_t *t, int nargs);

/* The running task, or NULL. */
rill_task_t *rill__task_current(rill_worker_t *w);
/* The running task, if L is its coroutine; raises a Lua error otherwise. */
rill_task_t *rill__task_check(rill_worker_t *w, lua_State *L);

/* Makes t wait on obj: the wait (kind, obj, cancel) goes into the object's
 * queue q (NULL: a wait on nothing but time); with timeout_ms >= 0 it is
 * cancelled with UV_ETIMEDOUT when that passes (0: on the loop's next turn,
 * after its I/O, as a bare coroutine.yield() runs again). cancel pushes the
 * results for a status. Returns lua_yield(L, 0): `return rill__task_wait(...)`. */
int rill__task_wait(lua_State *L, rill_task_t *t, rill_waitq_t *q, int kind, void *obj,
                    int timeout_ms, int (*cancel)(rill_wait_t *wt, int status));

/* Ends wt, a write waiting for its transport to drain: true if it may go on
 * (status 0), else cancelled with status. Nothing if wt is NULL. */
void rill__task_drained(rill_wait_t *wt, int status);

/* The task a wait belongs to. */
#define rill__wait_task(wt) rill__container_of((wt), rill_task_t, wait)

/* Pushes the error on top of t->co, with a traceback, onto t->w->L. */
void rill__task_traceback(rill_task_t *t);

/* The worker of a C function: its first upvalue. */
#define rill__upworker(L) ((rill_worker_t *)lua_touserdata((L), lua_upvalueindex(1)))

#endif
