/* HTTP/1.1 message bodies as streams. See http_body.h. */
#include <stdlib.h>
#include <string.h>

#include "http_body.h"

#define B(s) rill__container_of((s), rill_body_t, base)

static int fail(rill_body_t *b, int err) {
  if (b->err == 0) b->err = err;
  return b->err;
}

/* The body has ended: a heap body lets go of the transport at once. */
static int ended(rill_body_t *b) {
  b->done = 1;
  if (b->own) rill__body_release(b);
  if (b->on_end) {
    void (*f)(rill_body_t *) = b->on_end;
    b->on_end = NULL;
    f(b);
  }
  return RILL_EOF;
}

/* The minimum rate, checked with the bytes brought so far (taken, plus
 * those waiting in the transport). */
static int too_slow(rill_body_t *b, size_t waiting) {
  if (b->min_rate == 0) return 0;
  uint64_t brought = b->read + waiting;
  if (b->waited_ms <= b->grace_ms + brought * 1000 / b->min_rate) return 0;
  rill__log(b->base.w, RILL_LOG_DEBUG,
            "http: request body too slow: %llu bytes in %llu ms of waiting",
            (unsigned long long)brought, (unsigned long long)b->waited_ms);
  fail(b, UV_ETIMEDOUT);
  return 1;
}

int rill__body_peek(rill_body_t *b, const char **p, size_t *n) {
  *p = NULL;
  *n = 0;
  if (b->err) return b->err;
  if (b->mode == RILL_BODY_NONE || b->done) return RILL_EOF;
  if (b->t == NULL) return fail(b, RILL_ECLOSED);
  if (b->before_read) b->before_read(b);
  const char *tp;
  size_t tn;
  int r = b->t->vt->peek(b->t, &tp, &tn);
  if (r < 0) {
    if (r == RILL_EOF && b->mode == RILL_BODY_EOF) return ended(b);
    return fail(b, r == RILL_EOF ? RILL_ECLOSED : r);
  }
  if (b->mode == RILL_BODY_EOF) {
    /* No length to check ahead: the limit is met as the bytes come. */
    if (b->max && b->read >= b->max && tn > 0) return fail(b, RILL_EBODY);
    *p = tp;
    *n = b->max && tn > b->max - b->read ? (size_t)(b->max - b->read) : tn;
    return 0;
  }
  if (b->mode == RILL_BODY_LENGTH) {
    if (b->max && b->read + b->left > b->max) return fail(b, RILL_EBODY);
    *p = tp;
    *n = tn < b->left ? tn : (size_t)b->left;
    return 0;
  }
  while (b->chunk.state != RILL_CHUNK_DATA) {
    if (tn == 0) return 0;
    ssize_t k = rill__chunked_frame(&b->chunk, tp, tn);
    if (k < 0) {
      rill__log(b->base.w, RILL_LOG_DEBUG, "http: bad chunked body: %s", b->chunk.error);
      return fail(b, RILL_EPROTO);
    }
    b->t->vt->consume(b->t, (size_t)k);
    tp += k;
    tn -= (size_t)k;
    if (b->chunk.state == RILL_CHUNK_DONE) return ended(b);
    if (b->chunk.state == RILL_CHUNK_DATA && b->max &&
        b->read + b->chunk.remaining > b->max)
      return fail(b, RILL_EBODY);
  }
  *p = tp;
  *n = tn < b->chunk.remaining ? tn : (size_t)b->chunk.remaining;
  return 0;
}

void rill__body_consume(rill_body_t *b, size_t n) {
  if (b->t == NULL || n == 0) return;
  b->t->vt->consume(b->t, n);
  b->read += n;
  if (b->mode == RILL_BODY_LENGTH) {
    b->left -= n;
    if (b->left == 0) ended(b);
  } else if (b->mode == RILL_BODY_CHUNKED) {
    rill__chunked_took(&b->chunk, n);
  }
}

static int vt_peek(rill_stream_t *s, const char **p, size_t *n) {
  return rill__body_peek(B(s), p, n);
}

static void vt_consume(rill_stream_t *s, size_t n) {
  rill__body_consume(B(s), n);
}

static int vt_fill(rill_stream_t *s) {
  rill_body_t *b = B(s);
  if (b->err) return b->err;
  if (b->done || b->mode == RILL_BODY_NONE) return RILL_EOF;
  if (b->t == NULL) return fail(b, RILL_ECLOSED);
  if (!b->waiting) {
    b->waiting = 1;
    b->wait_since = uv_now(b->base.w->loop);
    if (b->on_wait) b->on_wait(b, 1);
  }
  int r = rill__stream_fill(b->t);
  if (r < 0) {
    if (r == RILL_EOF && b->mode == RILL_BODY_EOF) return ended(b);
    return fail(b, r == RILL_EOF ? RILL_ECLOSED : r);
  }
  return 0;
}

static void vt_close(rill_stream_t *s) {
  rill_body_t *b = B(s);
  if (!b->own) return; /* a request body is its connection's */
  rill__body_retire(b);
  rill__body_free_state(b);
  free(b);
}

static const char *vt_strerror(rill_stream_t *s, int err) {
  rill_body_t *b = B(s);
  if (err == RILL_EPROTO && b->mode == RILL_BODY_CHUNKED && b->chunk.error)
    return b->chunk.error;
  return NULL;
}

static int vt_addr(rill_stream_t *s, int peer, char *host, size_t hostlen) {
  rill_body_t *b = B(s);
  return b->t ? rill__stream_addr(b->t, peer, host, hostlen) : RILL_ECLOSED;
}

static const rill_stream_vt body_vt = {
    .name = "body",
    .peek = vt_peek,
    .consume = vt_consume,
    .fill = vt_fill,
    .close = vt_close,
    .strerror = vt_strerror,
    .addr = vt_addr,
};

/* The transport has bytes for us (or ended): tell our reader. */
static void transport_readable(rill_binding_t *tb, int status) {
  rill_body_t *b = rill__container_of(tb, rill_body_t, tb);
  if (b->waiting) {
    b->waiting = 0;
    b->waited_ms += uv_now(b->base.w->loop) - b->wait_since;
    if (b->on_wait) b->on_wait(b, 0);
  }
  if (status == 0 && b->t && !b->err && !b->done) {
    const char *p;
    size_t n;
    if (b->t->vt->peek(b->t, &p, &n) == 0) too_slow(b, n);
  }
  rill__stream_readable(&b->base, b->err ? b->err : status);
}

/* The transport is closing under us. */
static void transport_gone(rill_binding_t *tb) {
  rill_body_t *b = rill__container_of(tb, rill_body_t, tb);
  b->t = NULL;
  if (!b->done) fail(b, RILL_ECLOSED);
  rill__stream_readable(&b->base, RILL_ECLOSED);
}

static const rill_binding_ops_t transport_ops = {
    .readable = transport_readable,
    .gone = transport_gone,
};

void rill__body_init(rill_body_t *b, rill_worker_t *w) {
  memset(b, 0, sizeof(*b));
  rill__stream_init(&b->base, &body_vt, w);
}

void rill__body_start(rill_body_t *b, rill_stream_t *t, int mode, uint64_t length,
                      uint64_t max, size_t max_trailer) {
  assert(b->base.top == NULL && b->tb.s == NULL && "a body is retired before reuse");
  rill__chunked_free(&b->chunk);
  rill__chunked_init(&b->chunk, max_trailer);
  b->mode = length == 0 && mode == RILL_BODY_LENGTH ? RILL_BODY_NONE : mode;
  b->left = length;
  b->read = 0;
  b->max = max;
  b->err = 0;
  b->done = 0;
  b->min_rate = 0;
  b->waited_ms = 0;
  b->waiting = 0;
  b->on_wait = NULL;
  b->before_read = NULL;
  b->on_end = NULL;
  b->t = NULL;
  if (b->mode == RILL_BODY_NONE) {
    b->done = 1;
    return;
  }
  b->t = t;
  rill__stream_bind(t, &b->tb, &transport_ops);
}

rill_body_t *rill__body_new(rill_worker_t *w, rill_stream_t *t, int mode, uint64_t length,
                            uint64_t max) {
  rill_body_t *b = malloc(sizeof(*b));
  if (b == NULL) return NULL;
  rill__body_init(b, w);
  rill__body_start(b, t, mode, length, max, 16384);
  b->own = 1;
  return b;
}

uint64_t rill__body_wait_limit(const rill_body_t *b, uint64_t timeout_ms) {
  if (b->min_rate == 0 || b->t == NULL) return timeout_ms;
  const char *p;
  size_t n = 0;
  if (b->t->vt->peek(b->t, &p, &n) < 0) n = 0;
  uint64_t allowed = b->grace_ms + (b->read + n) * 1000 / b->min_rate;
  uint64_t left = allowed > b->waited_ms ? allowed - b->waited_ms : 0;
  return left < timeout_ms ? left : timeout_ms;
}

void rill__body_timeout(rill_body_t *b) {
  b->waiting = 0;
  fail(b, UV_ETIMEDOUT);
  rill__stream_readable(&b->base, b->err);
}

void rill__body_release(rill_body_t *b) {
  rill__stream_unbind(&b->tb);
  b->t = NULL;
}

void rill__body_retire(rill_body_t *b) {
  rill__body_release(b);
  rill__stream_gone(&b->base);
}

void rill__body_free_state(rill_body_t *b) {
  rill__chunked_free(&b->chunk);
}

const rill_chunked_t *rill__body_trailers(const rill_body_t *b) {
  return b->mode == RILL_BODY_CHUNKED && b->done ? &b->chunk : NULL;
}
