/* Wait records. See wait.h. */
#include "wait.h"

static void unlink_wait(rill_wait_t *wt) {
  assert(wt->pending && "a wait ends once");
  wt->pending = 0;
  rill_waitq_t *q = wt->q;
  if (q == NULL) return;
  if (wt->prev)
    wt->prev->next = wt->next;
  else
    q->head = wt->next;
  if (wt->next)
    wt->next->prev = wt->prev;
  else
    q->tail = wt->prev;
  wt->prev = wt->next = NULL;
  wt->q = NULL;
}

void rill__wait_start(rill_wait_t *wt, rill_waitq_t *q) {
  assert(!wt->pending && "a task waits for one thing at a time");
  wt->pending = 1;
  wt->q = q;
  wt->prev = NULL;
  wt->next = NULL;
  if (q == NULL) return;
  wt->next = q->head;
  if (q->head)
    q->head->prev = wt;
  else
    q->tail = wt;
  q->head = wt;
}

void rill__wait_done(rill_wait_t *wt, int nres) {
  unlink_wait(wt);
  wt->resume(wt, nres);
}

void rill__wait_cancel(rill_wait_t *wt, int status) {
  unlink_wait(wt);
  int n = wt->cancel ? wt->cancel(wt, status) : 0;
  wt->resume(wt, n);
}

rill_wait_t *rill__waitq_find(rill_waitq_t *q, int kind) {
  for (rill_wait_t *wt = q->head; wt; wt = wt->next)
    if (wt->kind == kind) return wt;
  return NULL;
}

void rill__waitq_cancel_all(rill_waitq_t *q, int status) {
  rill_wait_t *wt;
  while ((wt = q->head) != NULL)
    rill__wait_cancel(wt, status);
}
