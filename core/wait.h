/* Wait records: how a task waits on an object, and how the object ends the
 * wait. No Lua here: the scheduler (lua_sched.c) fills in resume(), the object's
 * Lua face fills in cancel(), and the object keeps the record in its queue.
 *
 * The rule, as libuv's for requests on a closed handle: every wait ends
 * exactly once. The object ends it with rill__wait_done() (it pushed the
 * results itself) or rill__wait_cancel() (cancel() pushes the results for a
 * status: a timeout, "closed", a transport error); an object that closes
 * cancels every wait still in its queue with rill__waitq_cancel_all(). */
#ifndef RILL_WAIT_H
#define RILL_WAIT_H

#include "rill_int.h"

typedef struct rill_wait_s rill_wait_t;

typedef struct {
  rill_wait_t *head; /* the newest wait */
  rill_wait_t *tail; /* the oldest */
} rill_waitq_t;

struct rill_wait_s {
  rill_wait_t *prev, *next;
  rill_waitq_t *q; /* the object's queue, while pending in one */
  int pending;
  int kind;  /* the object's own tag: a read, a write, a handshake... */
  void *obj; /* what is waited on (the face's object) */
  /* Pushes the results of a wait that ended with status; returns how many.
   * Set by the object's face. */
  int (*cancel)(rill_wait_t *wt, int status);
  /* Resumes the waiter with nres results. Set by the scheduler. */
  void (*resume)(rill_wait_t *wt, int nres);
};

/* Starts wt (set kind, obj, cancel and resume first); q may be NULL for a
 * wait on nothing but time. */
void rill__wait_start(rill_wait_t *wt, rill_waitq_t *q);
/* Ends wt: its results (nres) are pushed already. */
void rill__wait_done(rill_wait_t *wt, int nres);
/* Ends wt with status: cancel() pushes its results. */
void rill__wait_cancel(rill_wait_t *wt, int status);
/* The pending wait of this kind in q, or NULL. */
rill_wait_t *rill__waitq_find(rill_waitq_t *q, int kind);
/* Cancels every wait in q with status (the object closed). */
void rill__waitq_cancel_all(rill_waitq_t *q, int status);

#endif /* RILL_WAIT_H */
