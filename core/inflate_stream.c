/* A decoded message body as a stream. See inflate_stream.h. */
#include <stdlib.h>
#include <string.h>

#include "inflate_stream.h"

#define S(s) rill__container_of((s), rill_inflate_stream_t, base)

static int fail(rill_inflate_stream_t *s, int err) {
  if (s->err) return s->err;
  s->err = err;
  if (err == RILL_EPROTO)
    rill__log(s->base.w, RILL_LOG_DEBUG, "http: bad compressed body: %s",
              s->z.msg ? s->z.msg : "?");
  if (s->on_error && (err == RILL_EBODY || err == RILL_EPROTO)) s->on_error(s, err);
  return err;
}

/* Inflates what below holds until some bytes come out, below needs a fill,
 * or the end. */
static int vt_peek(rill_stream_t *base, const char **p, size_t *n) {
  rill_inflate_stream_t *s = S(base);
  *p = NULL;
  *n = 0;
  if (s->len > s->pos) {
    *p = s->buf + s->pos;
    *n = s->len - s->pos;
    return 0;
  }
  if (s->err) return s->err;
  if (s->below == NULL) return s->z.ended ? RILL_EOF : fail(s, RILL_ECLOSED);
  for (;;) {
    const char *in;
    size_t inlen;
    int r = s->below->vt->peek(s->below, &in, &inlen);
    if (r == RILL_EOF) {
      /* The body ended: whole only if the compressed stream ended too. */
      if (s->z.ended) return RILL_EOF;
      s->z.msg = "truncated compressed data";
      return fail(s, RILL_EPROTO);
    }
    if (r < 0) return fail(s, r);
    if (inlen == 0) return 0; /* fill */
    const char *start = in;
    size_t made;
    r = rill__inflate(&s->z, &in, &inlen, s->buf, sizeof(s->buf), &made);
    s->below->vt->consume(s->below, (size_t)(in - start));
    if (r < 0 && r != RILL_EOF) return fail(s, r);
    if (made > 0) {
      s->pos = 0;
      s->len = made;
      *p = s->buf;
      *n = made;
      return 0;
    }
    /* Nothing came out: the input was all header or framing, or the
     * stream's end: look at below again. zlib takes input whenever it has
     * room to write, so each turn makes progress. */
    if (in == start && r == 0) {
      s->z.msg = "compressed data makes no progress";
      return fail(s, RILL_EPROTO);
    }
  }
}

static void vt_consume(rill_stream_t *base, size_t n) {
  rill_inflate_stream_t *s = S(base);
  size_t left = s->len - s->pos;
  s->pos += n < left ? n : left;
}

static int vt_fill(rill_stream_t *base) {
  rill_inflate_stream_t *s = S(base);
  if (s->err) return s->err;
  if (s->below == NULL) return s->z.ended ? RILL_EOF : fail(s, RILL_ECLOSED);
  int r = rill__stream_fill(s->below);
  if (r < 0 && r != RILL_EOF) return fail(s, r);
  return r;
}

static void vt_close(rill_stream_t *base) {
  rill_inflate_stream_t *s = S(base);
  rill__stream_unbind(&s->bb);
  s->below = NULL;
  rill__stream_gone(&s->base);
  rill__inflate_end(&s->z);
  free(s);
}

static const char *vt_strerror(rill_stream_t *base, int err) {
  rill_inflate_stream_t *s = S(base);
  if (err == RILL_EPROTO && s->z.msg) return s->z.msg;
  return NULL;
}

static int vt_addr(rill_stream_t *base, int peer, char *host, size_t hostlen) {
  rill_inflate_stream_t *s = S(base);
  return s->below ? rill__stream_addr(s->below, peer, host, hostlen) : RILL_ECLOSED;
}

static const rill_stream_vt inflate_vt = {
    .name = "inflate",
    .peek = vt_peek,
    .consume = vt_consume,
    .fill = vt_fill,
    .close = vt_close,
    .strerror = vt_strerror,
    .addr = vt_addr,
};

static void below_readable(rill_binding_t *b, int status) {
  rill_inflate_stream_t *s = rill__container_of(b, rill_inflate_stream_t, bb);
  if (status < 0 && status != RILL_EOF) fail(s, status);
  rill__stream_readable(&s->base, status == RILL_EOF ? 0 : status);
}

/* The body below is retired (its request ended) or closing. Our reader
 * stays bound, and is told as a body tells its reader when its transport
 * goes: it owns us, and closes (frees) us when it is done. */
static void below_gone(rill_binding_t *b) {
  rill_inflate_stream_t *s = rill__container_of(b, rill_inflate_stream_t, bb);
  s->below = NULL;
  s->on_error = NULL; /* its owner (a request) is over */
  rill__stream_readable(&s->base, RILL_ECLOSED);
}

static const rill_binding_ops_t below_ops = {
    .readable = below_readable,
    .gone = below_gone,
};

rill_inflate_stream_t *rill__inflate_stream_new(rill_worker_t *w, rill_stream_t *below,
                                                int format, uint64_t max) {
  rill_inflate_stream_t *s = malloc(sizeof(*s));
  if (s == NULL) return NULL;
  memset(s, 0, offsetof(rill_inflate_stream_t, buf));
  if (rill__inflate_init(&s->z, format, max) != 0) {
    free(s);
    return NULL;
  }
  rill__stream_init(&s->base, &inflate_vt, w);
  s->below = below;
  rill__stream_bind(below, &s->bb, &below_ops);
  return s;
}
