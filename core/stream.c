/* The stream contract: bindings and events. See stream.h. */
#include <string.h>

#include "stream.h"

void rill__stream_init(rill_stream_t *s, const rill_stream_vt *vt, rill_worker_t *w) {
  s->vt = vt;
  s->w = w;
  s->top = NULL;
}

void rill__stream_bind(rill_stream_t *s, rill_binding_t *b, const rill_binding_ops_t *ops) {
  assert(b->s == NULL && "a binding is bound to one stream at a time");
  b->ops = ops;
  b->s = s;
  b->below = s->top;
  s->top = b;
}

void rill__stream_unbind(rill_binding_t *b) {
  rill_stream_t *s = b->s;
  if (s == NULL) return;
  rill_binding_t **p = &s->top;
  while (*p && *p != b)
    p = &(*p)->below;
  assert(*p == b);
  if (*p) *p = b->below;
  b->below = NULL;
  b->s = NULL;
}

void rill__stream_readable(rill_stream_t *s, int status) {
  for (rill_binding_t *b = s->top; b; b = b->below)
    if (b->ops->readable) {
      b->ops->readable(b, status);
      return;
    }
}

void rill__stream_drained(rill_stream_t *s, int status) {
  for (rill_binding_t *b = s->top; b; b = b->below)
    if (b->ops->drained) {
      b->ops->drained(b, status);
      return;
    }
}

void rill__stream_gone(rill_stream_t *s) {
  rill_binding_t *b;
  while ((b = s->top) != NULL) {
    s->top = b->below;
    b->below = NULL;
    b->s = NULL;
    if (b->ops->gone) b->ops->gone(b);
  }
}

const char *rill__stream_errmsg(rill_stream_t *s, int err) {
  const char *m = s->vt->strerror ? s->vt->strerror(s, err) : NULL;
  return m ? m : rill__errmsg(err);
}

int rill__stream_addr(rill_stream_t *s, int peer, char *host, size_t hostlen) {
  return s->vt->addr ? s->vt->addr(s, peer, host, hostlen) : UV_ENOTSUP;
}

int rill__stream_ref(rill_stream_t *s, int ref) {
  return s->vt->ref ? s->vt->ref(s, ref) : UV_ENOTSUP;
}
