/* HTTP/1.1 message bodies as streams. See body.h. */
#include <stdlib.h>
#include <string.h>

#include "body.h"

#define B(s) rill__container_of((s), rill_body_t, base)

static int fail(rill_body_t *b, int err) {
  if (b->err == 0) b->err = err;
  return b->err;
}

/* The body has ended: a heap body lets go of the transport at once. */
static int ended(rill_body_t *b) {
  b->done = 1;
  if (b->own) rill_body_release(b);
  return RILL_EOF;
}

int rill_body_peek(rill_body_t *b, const char **p, size_t *n) {
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
    *p = tp;
    *n = tn;
    return 0;
  }
  if (b->mode == RILL_BODY_LENGTH) {
    *p = tp;
    *n = tn < b->left ? tn : (size_t)b->left;
    return 0;
  }
  while (b->chunk.state != RILL_CHUNK_DATA) {
    if (tn == 0) return 0;
    ssize_t k = rill_chunked_frame(&b->chunk, tp, tn);
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

void rill_body_consume(rill_body_t *b, size_t n) {
  if (b->t == NULL) return;
  b->t->vt->consume(b->t, n);
  b->read += n;
  if (b->mode == RILL_BODY_LENGTH) {
    b->left -= n;
    if (b->left == 0) ended(b);
  } else if (b->mode == RILL_BODY_CHUNKED) {
    rill_chunked_took(&b->chunk, n);
  }
}

static int vt_peek(rill_stream_t *s, const char **p, size_t *n) {
  return rill_body_peek(B(s), p, n);
}

static void vt_consume(rill_stream_t *s, size_t n) {
  rill_body_consume(B(s), n);
}

/* The transport has bytes for us: give it back its callback, tell our
 * reader. */
static void transport_cb(rill_stream_t *t, int status) {
  rill_body_t *b = t->data;
  t->fill_cb = b->saved_fill_cb;
  t->data = b->saved_data;
  b->waiting = 0;
  if (b->base.fill_cb) b->base.fill_cb(&b->base, status);
}

static int vt_fill(rill_stream_t *s) {
  rill_body_t *b = B(s);
  if (b->err) return b->err;
  if (b->done || b->mode == RILL_BODY_NONE) return RILL_EOF;
  if (b->t == NULL) return fail(b, RILL_ECLOSED);
  rill_stream_t *t = b->t;
  if (!b->waiting) {
    b->saved_fill_cb = t->fill_cb;
    b->saved_data = t->data;
    t->fill_cb = transport_cb;
    t->data = b;
    b->waiting = 1;
  }
  int r = t->vt->fill(t);
  if (r < 0) {
    t->fill_cb = b->saved_fill_cb;
    t->data = b->saved_data;
    b->waiting = 0;
    if (r == RILL_EOF && b->mode == RILL_BODY_EOF) return ended(b);
    return fail(b, r == RILL_EOF ? RILL_ECLOSED : r);
  }
  return 0;
}

static void vt_close(rill_stream_t *s) {
  rill_body_t *b = B(s);
  if (!b->own) return;
  rill_body_release(b);
  rill_body_free_state(b);
  free(b->base.acc);
  if (b->base.sep != b->base.sep_small) free(b->base.sep);
  free(b);
}

static const char *vt_strerror(rill_stream_t *s, int err) {
  rill_body_t *b = B(s);
  if (err == RILL_EPROTO && b->mode == RILL_BODY_CHUNKED && b->chunk.error)
    return b->chunk.error;
  return NULL;
}

static const rill_stream_vt body_vt = {
    .name = "body",
    .peek = vt_peek,
    .consume = vt_consume,
    .fill = vt_fill,
    .close = vt_close,
    .strerror = vt_strerror,
};

static void transport_gone(void *arg) {
  rill_body_t *b = arg;
  b->t = NULL;
  b->waiting = 0;
  if (!b->done && !b->err) b->err = RILL_ECLOSED;
}

void rill_body_start(rill_body_t *b, rill_worker_t *w, rill_stream_t *t, int mode,
                     uint64_t length, uint64_t max, size_t max_trailer) {
  rill_chunked_free(&b->chunk);
  if (b->base.vt == NULL) rill__stream_init(&b->base, &body_vt, w);
  b->t = t;
  b->mode = length == 0 && mode == RILL_BODY_LENGTH ? RILL_BODY_NONE : mode;
  b->left = length;
  b->read = 0;
  b->max = max;
  b->err = 0;
  b->done = b->waiting = 0;
  b->before_read = NULL;
  rill_chunked_init(&b->chunk, max_trailer);
  b->base.reader = b->base.writer = NULL;
  b->base.rop = RILL_ROP_NONE;
  b->base.acclen = 0;
}

rill_body_t *rill_body_new(rill_worker_t *w, rill_stream_t *t, int mode, uint64_t length,
                           uint64_t max) {
  rill_body_t *b = calloc(1, sizeof(*b));
  if (b == NULL) return NULL;
  rill__stream_init(&b->base, &body_vt, w);
  rill_body_start(b, w, t, mode, length, max, 16384);
  b->own = 1;
  if (b->mode == RILL_BODY_NONE) {
    b->done = 1;
    b->t = NULL;
  } else {
    t->gone_cb = transport_gone;
    t->gone_arg = b;
  }
  return b;
}

void rill_body_release(rill_body_t *b) {
  rill_stream_t *t = b->t;
  if (t == NULL) return;
  if (b->waiting) {
    t->fill_cb = b->saved_fill_cb;
    t->data = b->saved_data;
    b->waiting = 0;
  }
  if (t->gone_arg == b) {
    t->gone_cb = NULL;
    t->gone_arg = NULL;
  }
  b->t = NULL;
}

void rill_body_free_state(rill_body_t *b) {
  rill_chunked_free(&b->chunk);
}

int rill_body_check_buffered(rill_body_t *b) {
  if (b->mode != RILL_BODY_CHUNKED || b->done || b->err || b->t == NULL) return b->err;
  const char *p;
  size_t n;
  if (b->t->vt->peek(b->t, &p, &n) != 0) return 0;
  rill_chunked_t scan = b->chunk;
  scan.trailers = NULL;
  scan.tlen = scan.tcap = 0;
  while (n > 0 && scan.state != RILL_CHUNK_DONE) {
    if (scan.state == RILL_CHUNK_DATA) {
      size_t k = n < scan.remaining ? n : (size_t)scan.remaining;
      rill_chunked_took(&scan, k);
      p += k;
      n -= k;
      continue;
    }
    ssize_t k = rill_chunked_frame(&scan, p, n);
    if (k < 0) {
      rill__log(b->base.w, RILL_LOG_DEBUG, "http: bad chunked body: %s", scan.error);
      fail(b, RILL_EPROTO);
      break;
    }
    p += k;
    n -= (size_t)k;
  }
  rill_chunked_free(&scan);
  return b->err;
}

const rill_chunked_t *rill_body_trailers(const rill_body_t *b) {
  return b->mode == RILL_BODY_CHUNKED && b->done ? &b->chunk : NULL;
}
