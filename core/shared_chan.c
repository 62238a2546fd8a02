/* Shared channels: see shared_chan.h. */
#include <stdlib.h>
#include <string.h>

#include "shared_chan.h"
#include "worker.h"

struct rill_chan_s {
  rill_chan_t *next; /* in the registry */
  size_t refs;       /* under the registry's lock: openers and subscribers */
  uv_mutex_t lock;
  rill_chan_sub_t *subs; /* under lock */
  int nsubs;
  size_t nlen;
  char name[];
};

struct rill_chan_sub_s {
  /* under the channel's lock */
  rill_chan_sub_t *prev, *next; /* in the channel */
  rill_chan_t *chan;            /* NULL once off the channel */
  rill_chan_msg_t **ring;       /* the queue: cap slots, count from head */
  size_t cap, head, count, bytes;
  size_t max_msgs, max_bytes;
  int overflowed;
  /* under the hub's lock */
  rill_chan_sub_t *rprev, *rnext; /* in the hub's list to notify */
  int listed;
  /* on the hub's thread */
  rill_chan_hub_t *hub; /* NULL once the hub closed */
  rill_chan_sub_t *hprev, *hnext;
  void (*notify)(void *data);
  void *data;
};

struct rill_chan_hub_s {
  rill_service_t svc; /* when it is a worker's */
  uv_async_t async;
  uv_mutex_t lock;
  rill_chan_sub_t *rhead, *rtail; /* to notify, under lock */
  size_t nready;
  int closed;
  rill_chan_sub_t *subs; /* every subscriber, on its thread */
};

const char *rill__chan_errmsg(int err) {
  if (err == RILL_CHAN_EOVERFLOW) return "overflow";
  if (err == RILL_CHAN_ETOOLARGE) return "too large";
  return rill__errmsg(err);
}

/* ---- messages ---- */

static rill_chan_msg_t *msg_ref(rill_chan_msg_t *m) {
  __atomic_fetch_add(&m->refs, 1, __ATOMIC_RELAXED);
  return m;
}

void rill__chan_msg_unref(rill_chan_msg_t *m) {
  if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0) free(m);
}

/* ---- the registry ---- */

static uv_once_t registry_once = UV_ONCE_INIT;
static uv_mutex_t registry_lock;
static rill_chan_t *registry;
static size_t nchannels;

static void registry_init(void) {
  uv_mutex_init(&registry_lock);
}

rill_chan_t *rill__chan_open(const char *name, size_t nlen) {
  uv_once(&registry_once, registry_init);
  uv_mutex_lock(&registry_lock);
  rill_chan_t *c = registry;
  while (c && !(c->nlen == nlen && memcmp(c->name, name, nlen) == 0))
    c = c->next;
  if (c == NULL && (c = calloc(1, sizeof(*c) + nlen + 1)) != NULL) {
    uv_mutex_init(&c->lock);
    c->nlen = nlen;
    memcpy(c->name, name, nlen);
    c->next = registry;
    registry = c;
    nchannels++;
  }
  if (c) c->refs++;
  uv_mutex_unlock(&registry_lock);
  return c;
}

static void chan_ref(rill_chan_t *c) {
  uv_mutex_lock(&registry_lock);
  c->refs++;
  uv_mutex_unlock(&registry_lock);
}

void rill__chan_release(rill_chan_t *c) {
  uv_mutex_lock(&registry_lock);
  int last = --c->refs == 0;
  if (last) {
    rill_chan_t **p = &registry;
    while (*p != c)
      p = &(*p)->next;
    *p = c->next;
    nchannels--;
  }
  uv_mutex_unlock(&registry_lock);
  if (!last) return;
  assert(c->subs == NULL);
  uv_mutex_destroy(&c->lock);
  free(c);
}

size_t rill__chan_count(void) {
  uv_once(&registry_once, registry_init);
  uv_mutex_lock(&registry_lock);
  size_t n = nchannels;
  uv_mutex_unlock(&registry_lock);
  return n;
}

int rill__chan_subscribers(rill_chan_t *c) {
  uv_mutex_lock(&c->lock);
  int n = c->nsubs;
  uv_mutex_unlock(&c->lock);
  return n;
}

/* ---- hubs ---- */

/* Lists s to be notified (any thread; the caller holds s's channel lock). */
static void hub_wake(rill_chan_hub_t *h, rill_chan_sub_t *s) {
  uv_mutex_lock(&h->lock);
  if (!h->closed && !s->listed) {
    s->listed = 1;
    s->rnext = NULL;
    s->rprev = h->rtail;
    if (h->rtail)
      h->rtail->rnext = s;
    else
      h->rhead = s;
    h->rtail = s;
    if (h->nready++ == 0) uv_async_send(&h->async);
  }
  uv_mutex_unlock(&h->lock);
}

static void hub_unlist(rill_chan_hub_t *h, rill_chan_sub_t *s) {
  if (!s->listed) return;
  s->listed = 0;
  if (s->rprev)
    s->rprev->rnext = s->rnext;
  else
    h->rhead = s->rnext;
  if (s->rnext)
    s->rnext->rprev = s->rprev;
  else
    h->rtail = s->rprev;
  s->rprev = s->rnext = NULL;
  h->nready--;
}

/* On the hub's loop: notifies the subscribers listed, one at a time, since
 * a callback may unsubscribe others (a task it wakes runs at once). Those
 * listed meanwhile wait for the next turn, so a ping-pong between two tasks
 * cannot keep the loop from its I/O. */
static void hub_async_cb(uv_async_t *a) {
  rill_chan_hub_t *h = a->data;
  uv_mutex_lock(&h->lock);
  size_t n = h->nready;
  uv_mutex_unlock(&h->lock);
  for (; n > 0; n--) {
    uv_mutex_lock(&h->lock);
    rill_chan_sub_t *s = h->rhead;
    if (s) hub_unlist(h, s);
    uv_mutex_unlock(&h->lock);
    if (s == NULL) return;
    s->notify(s->data);
    if (h->closed) return; /* closed by the callback (only this thread closes it) */
  }
  uv_mutex_lock(&h->lock);
  int more = h->nready > 0;
  uv_mutex_unlock(&h->lock);
  if (more) uv_async_send(&h->async); /* the rest next turn */
}

rill_chan_hub_t *rill__chan_hub_new(uv_loop_t *loop) {
  rill_chan_hub_t *h = calloc(1, sizeof(*h));
  if (h == NULL) return NULL;
  if (uv_async_init(loop, &h->async, hub_async_cb) != 0) {
    free(h);
    return NULL;
  }
  uv_mutex_init(&h->lock);
  h->async.data = h;
  uv_unref((uv_handle_t *)&h->async);
  return h;
}

static void sub_off_channel(rill_chan_sub_t *s);

void rill__chan_hub_close(rill_chan_hub_t *h) {
  /* Off their channels first: no publisher reaches the hub after this. */
  for (rill_chan_sub_t *s = h->subs; s; s = s->hnext)
    sub_off_channel(s);
  uv_mutex_lock(&h->lock);
  h->closed = 1;
  while (h->rhead)
    hub_unlist(h, h->rhead);
  uv_mutex_unlock(&h->lock);
  for (rill_chan_sub_t *s = h->subs; s; s = s->hnext)
    s->hub = NULL;
  h->subs = NULL;
  uv_close((uv_handle_t *)&h->async, NULL);
}

void rill__chan_hub_free(rill_chan_hub_t *h) {
  uv_mutex_destroy(&h->lock);
  free(h);
}

static void hub_svc_close(rill_service_t *svc, rill_worker_t *w) {
  rill__chan_hub_close(rill__container_of(svc, rill_chan_hub_t, svc));
}

static void hub_svc_free(rill_service_t *svc, rill_worker_t *w) {
  rill__chan_hub_free(rill__container_of(svc, rill_chan_hub_t, svc));
}

rill_chan_hub_t *rill__chan_hub(rill_worker_t *w) {
  /* Found among the worker's services: the worker needs no field for it. */
  for (rill_service_t *svc = w->services; svc; svc = svc->next)
    if (svc->close == hub_svc_close) return rill__container_of(svc, rill_chan_hub_t, svc);
  if (w->stopping) return NULL;
  rill_chan_hub_t *h = rill__chan_hub_new(w->loop);
  if (h == NULL) return NULL;
  h->svc.close = hub_svc_close;
  h->svc.free = hub_svc_free;
  rill__worker_add_service(w, &h->svc);
  return h;
}

/* ---- publishing ---- */

/* Drops s's queue (under the channel's lock). */
static void drop_queue(rill_chan_sub_t *s) {
  for (size_t i = 0; i < s->count; i++)
    rill__chan_msg_unref(s->ring[(s->head + i) % s->cap]);
  s->head = s->count = s->bytes = 0;
}

/* Appends m to s's queue (under the channel's lock); returns whether it was
 * queued. */
static int push(rill_chan_sub_t *s, rill_chan_msg_t *m) {
  int was_idle = s->count == 0 && !s->overflowed;
  if (s->count + 1 > s->max_msgs || s->bytes + m->len > s->max_bytes) {
    drop_queue(s);
    s->overflowed = 1;
  }
  int queued = 0;
  if (m->len <= s->max_bytes) {
    if (s->count == s->cap) {
      /* Grow the ring (rarely: it doubles up to max_msgs). */
      size_t ncap = s->cap * 2 < s->max_msgs ? s->cap * 2 : s->max_msgs;
      rill_chan_msg_t **r = malloc(ncap * sizeof(*r));
      if (r == NULL) {
        drop_queue(s);
        s->overflowed = 1;
      } else {
        for (size_t i = 0; i < s->count; i++)
          r[i] = s->ring[(s->head + i) % s->cap];
        free(s->ring);
        s->ring = r;
        s->cap = ncap;
        s->head = 0;
      }
    }
    if (s->count < s->cap) {
      s->ring[(s->head + s->count) % s->cap] = msg_ref(m);
      s->count++;
      s->bytes += m->len;
      queued = 1;
    }
  }
  if (was_idle && (s->count > 0 || s->overflowed) && s->hub) hub_wake(s->hub, s);
  return queued;
}

int rill__chan_publish(rill_chan_t *c, const void *p, size_t len) {
  if (len > RILL_CHAN_MSG_MAX) return RILL_CHAN_ETOOLARGE;
  /* Copied before the lock, once for every subscriber. */
  rill_chan_msg_t *m = malloc(sizeof(*m) + (len ? len : 1));
  if (m == NULL) return UV_ENOMEM;
  m->refs = 1; /* ours, until the end */
  m->len = len;
  if (len) memcpy(m->data, p, len);
  int reached = 0;
  uv_mutex_lock(&c->lock);
  for (rill_chan_sub_t *s = c->subs; s; s = s->next)
    reached += push(s, m);
  uv_mutex_unlock(&c->lock);
  rill__chan_msg_unref(m);
  return reached;
}

/* ---- subscribers ---- */

rill_chan_sub_t *rill__chan_subscribe(rill_chan_t *c, rill_chan_hub_t *h, size_t max_msgs,
                                      size_t max_bytes, void (*notify)(void *data),
                                      void *data) {
  if (h->closed) return NULL;
  if (max_msgs == 0) max_msgs = RILL_CHAN_QUEUE_DEFAULT;
  if (max_msgs > RILL_CHAN_QUEUE_MAX) max_msgs = RILL_CHAN_QUEUE_MAX;
  if (max_bytes == 0) max_bytes = RILL_CHAN_BYTES_DEFAULT;
  rill_chan_sub_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->cap = max_msgs < 16 ? max_msgs : 16;
  s->ring = malloc(s->cap * sizeof(*s->ring));
  if (s->ring == NULL) {
    free(s);
    return NULL;
  }
  s->max_msgs = max_msgs;
  s->max_bytes = max_bytes;
  s->notify = notify;
  s->data = data;
  s->hub = h;
  chan_ref(c); /* the subscriber's, given back when it leaves the channel */
  s->hnext = h->subs;
  if (h->subs) h->subs->hprev = s;
  h->subs = s;
  s->chan = c;
  uv_mutex_lock(&c->lock);
  s->next = c->subs;
  if (c->subs) c->subs->prev = s;
  c->subs = s;
  c->nsubs++;
  uv_mutex_unlock(&c->lock);
  return s;
}

int rill__chan_next(rill_chan_sub_t *s, rill_chan_msg_t **m) {
  *m = NULL;
  rill_chan_t *c = s->chan;
  if (c == NULL) return 0;
  int r = 0;
  uv_mutex_lock(&c->lock);
  if (s->overflowed) {
    s->overflowed = 0;
    r = RILL_CHAN_EOVERFLOW;
  } else if (s->count > 0) {
    *m = s->ring[s->head];
    s->head = (s->head + 1) % s->cap;
    s->count--;
    s->bytes -= (*m)->len;
    r = 1;
  }
  uv_mutex_unlock(&c->lock);
  return r;
}

size_t rill__chan_queued(rill_chan_sub_t *s) {
  rill_chan_t *c = s->chan;
  if (c == NULL) return 0;
  uv_mutex_lock(&c->lock);
  size_t n = s->count;
  uv_mutex_unlock(&c->lock);
  return n;
}

/* Takes s off its channel and drops its queue. */
static void sub_off_channel(rill_chan_sub_t *s) {
  rill_chan_t *c = s->chan;
  if (c == NULL) return;
  uv_mutex_lock(&c->lock);
  if (s->prev)
    s->prev->next = s->next;
  else
    c->subs = s->next;
  if (s->next) s->next->prev = s->prev;
  c->nsubs--;
  s->chan = NULL;
  drop_queue(s);
  uv_mutex_unlock(&c->lock);
  rill__chan_release(c);
}

void rill__chan_unsubscribe(rill_chan_sub_t *s) {
  sub_off_channel(s);
  rill_chan_hub_t *h = s->hub;
  if (h) {
    uv_mutex_lock(&h->lock);
    hub_unlist(h, s);
    uv_mutex_unlock(&h->lock);
    if (s->hprev)
      s->hprev->hnext = s->hnext;
    else
      h->subs = s->hnext;
    if (s->hnext) s->hnext->hprev = s->hprev;
  }
  free(s->ring);
  free(s);
}
