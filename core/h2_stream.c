/* An HTTP/2 request stream: its body as a rill stream, its response as a
 * head, queued DATA, trailers and an end. See h2_conn.h. */
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "deflate.h"
#include "h2_conn.h"

#define ST(s) rill__container_of((s), rill_h2_stream_t, body)

static int usable(const rill_h2_stream_t *st) {
  return !st->closed && st->c->session != NULL && !st->c->closing;
}

/* ---- the request body ---- */

int rill__h2_stream_in(rill_h2_stream_t *st, const uint8_t *p, size_t n) {
  if (st->in_r > 0) { /* keep the unread bytes at the front */
    memmove(st->in, st->in + st->in_r, st->in_len - st->in_r);
    st->in_len -= st->in_r;
    st->in_r = 0;
  }
  if (st->in_len + n > st->in_cap) {
    size_t cap = st->in_cap ? st->in_cap : 4096;
    while (cap < st->in_len + n)
      cap *= 2;
    char *b = realloc(st->in, cap);
    if (b == NULL) return UV_ENOMEM;
    st->in = b;
    st->in_cap = cap;
  }
  memcpy(st->in + st->in_len, p, n);
  st->in_len += n;
  return 0;
}

static int body_peek(rill_stream_t *s, const char **p, size_t *n) {
  rill_h2_stream_t *st = ST(s);
  if (st->in_err == RILL_EBODY) { /* past the limit: what came is not given */
    *p = "";
    *n = 0;
    return st->in_err;
  }
  *n = st->in_len - st->in_r;
  *p = *n > 0 ? st->in + st->in_r : "";
  if (*n > 0) return 0;
  if (st->in_err) return st->in_err;
  return st->in_eof ? RILL_EOF : 0;
}

/* Taking bytes opens the stream's window by as much: WINDOW_UPDATE goes
 * with the next burst. */
static void body_consume(rill_stream_t *s, size_t n) {
  rill_h2_stream_t *st = ST(s);
  assert(n <= st->in_len - st->in_r);
  st->in_r += n;
  st->in_read += n;
  if (st->in_r == st->in_len) st->in_r = st->in_len = 0;
  if (n > 0 && usable(st)) {
    nghttp2_session_consume_stream(st->c->session, st->id, n);
    rill__h2_want_send(st->c);
  }
}

/* Expect: 100-continue is answered when the reader first waits for the
 * body (as HTTP/1.1's), with a non-final HEADERS frame, unless the
 * response has begun. */
static void send_continue(rill_h2_stream_t *st) {
  st->continue_sent = 1;
  if (st->resp != RILL_H2_RESP_NONE || !usable(st)) return;
  static const nghttp2_nv nv[] = {
      {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE}};
  if (nghttp2_submit_headers(st->c->session, NGHTTP2_FLAG_NONE, st->id, NULL, nv, 1,
                             NULL) >= 0)
    rill__h2_want_send(st->c);
}

/* The peer sent no body bytes for body_timeout while the reader waited, or
 * sent them slower than min_body_rate: the reader is told "timeout" (as on
 * HTTP/1.1), later bytes are dropped, and a handler that gives no answer of
 * its own ends with a 408. */
static void body_timeout_cb(uv_timer_t *h) {
  rill_h2_stream_t *st = h->data;
  if (!st->in_want) return;
  st->in_want = 0;
  st->in_waited += uv_now(st->c->w->loop) - st->in_wait_since;
  if (st->in_err == 0 && !st->in_eof) {
    rill__log(st->c->w, RILL_LOG_DEBUG, "h2: stream %d: request body timeout",
              (int)st->id);
    st->in_err = UV_ETIMEDOUT;
  }
  rill__stream_readable(&st->body, st->in_err);
}

static void in_timer_close_cb(uv_handle_t *h) {
  free(h);
}

static int body_fill(rill_stream_t *s) {
  rill_h2_stream_t *st = ST(s);
  if (st->in_err) return st->in_err;
  if (st->in_eof) return RILL_EOF;
  if (st->expect_continue && !st->continue_sent) send_continue(st);
  st->in_want = 1;
  st->in_wait_since = uv_now(st->c->w->loop);
  if (!usable(st)) return 0;
  /* The wait's deadline: body_timeout, cut to what the rate leaves (past
   * the grace, each byte brought buys 1000 / min_body_rate ms of waiting:
   * HTTP/1.1's rule, rill__body_wait_limit). */
  const rill_h2_limits_t *l = &st->c->srv->limits;
  uint64_t ms = l->body_timeout_ms;
  if (l->min_body_rate > 0) {
    uint64_t allowed = l->body_rate_grace_ms + st->in_total * 1000 / l->min_body_rate;
    uint64_t left = allowed > st->in_waited ? allowed - st->in_waited : 0;
    if (ms == 0 || left < ms) ms = left ? left : 1;
  }
  if (ms > 0) {
    if (st->in_timer == NULL) {
      st->in_timer = malloc(sizeof(*st->in_timer));
      if (st->in_timer == NULL) return 0; /* no deadline: the stream still ends */
      uv_timer_init(st->c->w->loop, st->in_timer);
      st->in_timer->data = st;
    }
    uv_timer_start(st->in_timer, body_timeout_cb, ms, 0);
  }
  return 0;
}

static void body_close(rill_stream_t *s) {}

static int body_addr(rill_stream_t *s, int peer, char *host, size_t hostlen) {
  rill_h2_stream_t *st = ST(s);
  return st->c->t ? rill__stream_addr(st->c->t, peer, host, hostlen) : RILL_ECLOSED;
}

/* Client role: a response cut short says how (a server's handler sees
 * "closed" alone, as over HTTP/1.1). */
static const char *body_strerror(rill_stream_t *s, int err) {
  rill_h2_stream_t *st = ST(s);
  if (err != RILL_ECLOSED || !st->c->srv->client) return NULL;
  if (st->reset_by_peer) return "closed: the server reset the stream";
  if (st->c->goaway_received) return "closed: the server ended the connection (GOAWAY)";
  return "closed: the connection was closed";
}

static const rill_stream_vt body_vt = {
    .name = "h2 body",
    .peek = body_peek,
    .consume = body_consume,
    .fill = body_fill,
    .close = body_close,
    .strerror = body_strerror,
    .addr = body_addr,
};

void rill__h2_stream_init(rill_h2_stream_t *st, rill_h2_conn_t *c, int32_t id) {
  rill__stream_init(&st->body, &body_vt, c->w);
  st->c = c;
  st->id = id;
  st->next = c->streams;
  if (c->streams) c->streams->prev = st;
  c->streams = st;
  c->refs++;
}

void rill__h2_chunks_free(h2_chunk_t *ch) {
  while (ch) {
    h2_chunk_t *next = ch->next;
    if (ch->ext) rill__buf_put(ch->w, ch->ext);
    free(ch);
    ch = next;
  }
}

static void linger_closed(uv_handle_t *h) {
  free(h);
}

void rill__h2_stream_free(rill_h2_stream_t *st) {
  rill_h2_conn_t *c = st->c;
  rill__stream_gone(&st->body);
  if (st->prev)
    st->prev->next = st->next;
  else
    c->streams = st->next;
  if (st->next) st->next->prev = st->prev;
  rill__h2_chunks_free(st->q_head);
  free(st->arena);
  free(st->hoff);
  free((void *)st->head.hdrs);
  free(st->in);
  free(st->tr);
  free(st->trailers);
  if (st->linger) {
    uv_timer_stop(st->linger);
    uv_close((uv_handle_t *)st->linger, linger_closed);
  }
  if (st->in_timer) uv_close((uv_handle_t *)st->in_timer, in_timer_close_cb);
  if (st->zip) {
    rill__deflate_end(st->zip);
    free(st->zip);
  }
  free(st);
  if (c->session == NULL && c->tearing) rill__h2_conn_maybe_unlink(c);
  if (--c->refs == 0) { /* the connection went before its last stream */
    free(c->out);
    free(c->segs);
    rill__h2_chunks_free(c->sent);
    free(c);
  }
}

void rill__h2_stream_maybe_free(rill_h2_stream_t *st) {
  if (st->closed && !st->handler_running && st->tunnel != RILL_H2_TUNNEL_OPEN &&
      st->pend == 0)
    rill__h2_stream_free(st);
}

/* ---- the response ---- */

static ssize_t data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *source, void *user);

/* Packs fields for nghttp2 (names in lower case): an array of nghttp2_nv
 * followed by their bytes, in buf if they fit in buflen bytes, else in one
 * allocation (*out != buf: the caller frees it). status > 0 adds :status,
 * and with_date the Date; clen >= 0 adds content-length unless one is
 * given. */
static int pack(rill_h2_stream_t *st, int status, const rill_hdr_t *h, size_t nh,
                int with_date, int64_t clen, void *buf, size_t buflen, nghttp2_nv **out,
                size_t *nout) {
  size_t bytes = 64, n = 3;
  for (size_t i = 0; i < nh; i++) {
    if (h[i].nlen == 0) return UV_EINVAL;
    for (size_t j = 0; j < h[i].nlen; j++)
      if (!rill__http_tchar((unsigned char)h[i].name[j])) return UV_EINVAL;
    for (size_t j = 0; j < h[i].vlen; j++) {
      unsigned char ch = (unsigned char)h[i].value[j];
      if (ch == '\r' || ch == '\n' || ch == 0) return UV_EINVAL;
    }
    bytes += h[i].nlen + h[i].vlen;
    n++;
  }
  size_t dl = 0;
  const char *date = with_date ? rill__date_line(st->c->w, &dl) : NULL;
  bytes += dl;
  nghttp2_nv *nv =
      n * sizeof(*nv) + bytes <= buflen ? buf : malloc(n * sizeof(*nv) + bytes);
  if (nv == NULL) return UV_ENOMEM;
  char *b = (char *)(nv + n);
  size_t k = 0;
  if (status > 0) {
    size_t len = rill__http_u64(b, (uint64_t)status);
    nv[k++] =
        (nghttp2_nv){(uint8_t *)":status", (uint8_t *)b, 7, len, NGHTTP2_NV_FLAG_NONE};
    b += len + 1;
  }
  int has_len = 0, has_date = 0;
  for (size_t i = 0; i < nh; i++) {
    const rill_hdr_t *x = &h[i];
    if (rill__http_name_is(x->name, x->nlen, "connection") ||
        rill__http_name_is(x->name, x->nlen, "keep-alive") ||
        rill__http_name_is(x->name, x->nlen, "transfer-encoding") ||
        rill__http_name_is(x->name, x->nlen, "upgrade") ||
        rill__http_name_is(x->name, x->nlen, "proxy-connection"))
      continue;
    if (rill__http_name_is(x->name, x->nlen, "content-length")) has_len = 1;
    if (rill__http_name_is(x->name, x->nlen, "date")) has_date = 1;
    char *nm = b;
    for (size_t j = 0; j < x->nlen; j++) {
      char ch = x->name[j];
      nm[j] = ch >= 'A' && ch <= 'Z' ? (char)(ch | 0x20) : ch;
    }
    b += x->nlen;
    memcpy(b, x->value, x->vlen);
    nv[k++] =
        (nghttp2_nv){(uint8_t *)nm, (uint8_t *)b, x->nlen, x->vlen, NGHTTP2_NV_FLAG_NONE};
    b += x->vlen;
  }
  if (date && !has_date && dl > 8) { /* "Date: <value>\r\n" */
    memcpy(b, date + 6, dl - 8);
    nv[k++] =
        (nghttp2_nv){(uint8_t *)"date", (uint8_t *)b, 4, dl - 8, NGHTTP2_NV_FLAG_NONE};
    b += dl - 8;
  }
  if (clen >= 0 && !has_len) {
    size_t len = rill__http_u64(b, (uint64_t)clen);
    nv[k++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)b, 14, len,
                           NGHTTP2_NV_FLAG_NONE};
  }
  *out = nv;
  *nout = k;
  return 0;
}

static int submit_head(rill_h2_stream_t *st, int status, const rill_hdr_t *h, size_t nh,
                       int64_t clen, int with_body) {
  if (status < 200 || status > 999) return UV_EINVAL;
  /* A 2xx to an Extended CONNECT says its tunnel is open (RFC 8441 5):
   * only rill__h2_tunnel may send one. */
  if (st->head.protocol_len > 0 && !st->tunnel && status < 300) return RILL_EPROTO;
  nghttp2_nv *nv;
  size_t n;
  uint64_t buf[128]; /* a head of a few fields needs no allocation */
  int r = pack(st, status, h, nh, 1, clen, buf, sizeof(buf), &nv, &n);
  if (r) return r;
  nghttp2_data_provider prd = {.source.ptr = st, .read_callback = data_read};
  r = nghttp2_submit_response(st->c->session, st->id, nv, n, with_body ? &prd : NULL);
  if ((void *)nv != buf) free(nv);
  if (r) return r == NGHTTP2_ERR_NOMEM ? UV_ENOMEM : RILL_ECLOSED;
  st->status = status;
  RILL_COUNT(st->c->w->m->responses[status < 600 ? status / 100 : 0],
             1); /* rill.metrics */
  st->nobody = st->head.is_head || status == 204 || status == 304;
  rill__h2_want_send(st->c);
  return 0;
}

int32_t rill__h2_submit_request(rill_h2_stream_t *st, const void *nv, size_t n,
                                int with_body) {
  nghttp2_data_provider prd = {.source.ptr = st, .read_callback = data_read};
  return nghttp2_submit_request(st->c->session, NULL, nv, n, with_body ? &prd : NULL, st);
}

static void resume(rill_h2_stream_t *st);

/* After queueing: the data provider goes on; RILL_EAGAIN above the
 * high-water mark (on_drained tells when it may go on). */
static int queued(rill_h2_stream_t *st) {
  resume(st);
  if (st->queued > st->c->srv->limits.write_high) {
    st->write_waiting = 1;
    return RILL_EAGAIN;
  }
  return 0;
}

/* A chunk of len bytes of its own (data), or NULL. */
static h2_chunk_t *chunk_new(size_t len) {
  h2_chunk_t *ch = malloc(sizeof(*ch) + len);
  if (ch) *ch = (h2_chunk_t){.len = len};
  return ch;
}

/* Puts ch at the end of the stream's queue. */
static void queue(rill_h2_stream_t *st, h2_chunk_t *ch) {
  if (st->q_tail)
    st->q_tail->next = ch;
  else
    st->q_head = ch;
  st->q_tail = ch;
  st->queued += ch->len;
}

static int enqueue(rill_h2_stream_t *st, const char *p, size_t len) {
  h2_chunk_t *ch = chunk_new(len);
  if (ch == NULL) return UV_ENOMEM;
  memcpy(ch->data, p, len);
  queue(st, ch);
  return 0;
}

/* The data provider may go on: more bytes, or the end. */
static void resume(rill_h2_stream_t *st) {
  if (st->data_deferred) {
    st->data_deferred = 0;
    nghttp2_session_resume_data(st->c->session, st->id);
  }
  rill__h2_want_send(st->c);
}

/* The data provider: the head of the queue by reference (NO_COPY: the
 * connection's send_data_cb takes the bytes), the end with the last of it,
 * trailers if any; DEFERRED while the queue is empty and not ended. */
static ssize_t data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *source, void *user) {
  rill_h2_stream_t *st = source->ptr;
  h2_chunk_t *ch = st->q_head;
  if (ch == NULL && !st->q_eof) {
    st->data_deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  size_t n = 0;
  if (ch) {
    n = ch->len - ch->off;
    if (n > len) n = len;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  }
  if (st->q_eof && n == st->queued) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->trailers) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      if (nghttp2_submit_trailer(s, id, (nghttp2_nv *)st->trailers, st->ntrailers) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
  }
  return (ssize_t)n;
}

int rill__h2_compress(rill_h2_stream_t *st, int format, int level) {
  if (st->resp != RILL_H2_RESP_NONE) return UV_EBUSY;
  if ((format != RILL_Z_GZIP && format != RILL_Z_DEFLATE) || level < 1 || level > 9)
    return UV_EINVAL;
  st->zformat = format;
  st->zlevel = level;
  return 0;
}

static int zip_emit(void *arg, const char *p, size_t n) {
  return enqueue(arg, p, n);
}

/* len bytes through the compressor (started for a body of total bytes, 0:
 * unknown), flushed as flush says, its output queued. */
static int zip_put(rill_h2_stream_t *st, const char *p, size_t len, int flush,
                   uint64_t total) {
  if (st->zip == NULL) {
    int mem, wbits = rill__deflate_wbits(total, &mem);
    if ((st->zip = malloc(sizeof(*st->zip))) == NULL) return UV_ENOMEM;
    int r = rill__deflate_init(st->zip, st->zformat, st->zlevel, wbits, mem);
    if (r) {
      free(st->zip);
      st->zip = NULL;
      return r;
    }
  }
  return rill__deflate_put(st->zip, p, len, flush, zip_emit, st);
}

/* A body its reader found past its limit, or too slow, is answered 413 or
 * 408 whatever the handler meant to send (as HTTP/1.1's). Returns whether
 * it was. */
static int body_broken(rill_h2_stream_t *st) {
  if ((st->in_err != RILL_EBODY && st->in_err != UV_ETIMEDOUT) ||
      st->resp != RILL_H2_RESP_NONE)
    return 0;
  if (submit_head(st, st->in_err == RILL_EBODY ? 413 : 408, NULL, 0, 0, 0) == 0)
    st->resp = RILL_H2_RESP_DONE;
  return 1;
}

int rill__h2_write(rill_h2_stream_t *st, int status, const rill_hdr_t *h, size_t nh,
                   const char *data, size_t len) {
  if (st->resp == RILL_H2_RESP_DONE) return UV_EBUSY;
  if (!usable(st)) return RILL_ECLOSED;
  if (body_broken(st)) return RILL_ECLOSED;
  if (st->resp == RILL_H2_RESP_NONE) {
    int r = submit_head(st, status, h, nh, -1, 1);
    if (r) return r;
    st->resp = RILL_H2_RESP_STREAMING;
  }
  if (st->nobody) return len > 0 ? RILL_HTTP_NOBODY : 0;
  if (len == 0) return 0;
  int r;
  if (st->zformat) { /* flushed with the burst (rill__h2_zip_flush) */
    r = zip_put(st, data, len, Z_NO_FLUSH, 0);
    if (r == 0 && !st->zip_dirty) {
      st->zip_dirty = 1;
      st->c->zip_dirty++;
    }
  } else {
    r = enqueue(st, data, len);
  }
  if (r) return r;
  return queued(st);
}

void rill__h2_zip_flush(rill_h2_conn_t *c) {
  if (c->zip_dirty == 0) return;
  c->zip_dirty = 0;
  for (rill_h2_stream_t *st = c->streams; st; st = st->next) {
    if (!st->zip_dirty) continue;
    st->zip_dirty = 0;
    if (st->zip == NULL || !usable(st) || st->resp != RILL_H2_RESP_STREAMING) continue;
    if (zip_put(st, NULL, 0, Z_SYNC_FLUSH, 0) == 0)
      resume(st);
    else
      rill__h2_reset(st, NGHTTP2_INTERNAL_ERROR);
  }
}

int rill__h2_write_buf(rill_h2_stream_t *st, char *buf, size_t len) {
  rill_worker_t *w = st->c->w;
  int r = st->resp == RILL_H2_RESP_DONE                                     ? UV_EBUSY
          : !usable(st)                                                     ? RILL_ECLOSED
          : st->resp != RILL_H2_RESP_STREAMING || st->nobody || st->zformat ? UV_EINVAL
          : len == 0 || len > RILL_BUF_SIZE                                 ? UV_EINVAL
                                                                            : 0;
  h2_chunk_t *ch = r ? NULL : malloc(sizeof(*ch));
  if (ch == NULL) {
    rill__buf_put(w, buf);
    return r ? r : UV_ENOMEM;
  }
  *ch = (h2_chunk_t){.len = len, .ext = buf, .w = w};
  queue(st, ch);
  return queued(st);
}

int rill__h2_finish(rill_h2_stream_t *st, int status, const rill_hdr_t *h, size_t nh,
                    const rill_hdr_t *trailers, size_t nt) {
  if (st->resp == RILL_H2_RESP_DONE) return 0;
  if (!usable(st)) return RILL_ECLOSED;
  if (st->resp == RILL_H2_RESP_NONE) {
    /* Nothing sent and the body broke (too large, too slow): as on
     * HTTP/1.1, the answer says so. */
    if (st->in_err == RILL_EBODY || st->in_err == UV_ETIMEDOUT)
      return rill__h2_respond(st, st->in_err == RILL_EBODY ? 413 : 408, NULL, 0, "", 0);
    if (nt == 0) return rill__h2_respond(st, status, h, nh, "", 0);
    int r = submit_head(st, status, h, nh, -1, 1);
    if (r) return r;
    st->resp = RILL_H2_RESP_STREAMING;
  }
  if (nt > 0) {
    nghttp2_nv *nv;
    int r = pack(st, 0, trailers, nt, 0, -1, NULL, 0, &nv, &st->ntrailers);
    if (r) return r;
    st->trailers = (char *)nv;
  }
  if (st->zformat && !st->nobody) {
    int r = zip_put(st, NULL, 0, Z_FINISH, 0);
    if (r) {
      rill__h2_reset(st, NGHTTP2_INTERNAL_ERROR);
      return r;
    }
  }
  st->q_eof = 1;
  st->resp = RILL_H2_RESP_DONE;
  resume(st);
  return 0;
}

int rill__h2_respond(rill_h2_stream_t *st, int status, const rill_hdr_t *h, size_t nh,
                     const char *body, size_t len) {
  if (st->resp != RILL_H2_RESP_NONE) return UV_EBUSY;
  if (!usable(st)) return RILL_ECLOSED;
  if (body_broken(st)) return 0;
  int nobody = st->head.is_head || status == 204 || status == 304;
  if (st->zformat && !nobody && len > 0) {
    /* The whole body through the compressor, as a streamed one. */
    int r = submit_head(st, status, h, nh, -1, 1);
    if (r) return r;
    st->resp = RILL_H2_RESP_STREAMING;
    if ((r = zip_put(st, body, len, Z_FINISH, len)) != 0) {
      rill__h2_reset(st, NGHTTP2_INTERNAL_ERROR);
      return r;
    }
    st->q_eof = 1;
    st->resp = RILL_H2_RESP_DONE;
    resume(st);
    return 0;
  }
  int r = submit_head(st, status, h, nh, nobody ? -1 : (int64_t)len, len > 0 && !nobody);
  if (r) return r;
  st->resp = RILL_H2_RESP_DONE;
  st->q_eof = 1;
  if (len > 0 && !nobody && (r = enqueue(st, body, len)) != 0) {
    rill__h2_reset(st, NGHTTP2_INTERNAL_ERROR);
    return r;
  }
  return 0;
}

/* ---- a tunnel: the body as a duplex stream (Extended CONNECT) ---- */

static int tunnel_write(rill_stream_t *s, const uv_buf_t *bufs, unsigned nbufs) {
  rill_h2_stream_t *st = ST(s);
  if (!usable(st)) return RILL_ECLOSED;
  if (st->resp == RILL_H2_RESP_DONE) return UV_EPIPE; /* after shutdown() */
  size_t len = 0;
  for (unsigned i = 0; i < nbufs; i++)
    len += bufs[i].len;
  if (len == 0) return 0;
  /* One chunk for the write (a frame's header and payload together). */
  h2_chunk_t *ch = chunk_new(len);
  if (ch == NULL) return UV_ENOMEM;
  for (size_t i = 0, at = 0; i < nbufs; at += bufs[i].len, i++)
    memcpy(ch->data + at, bufs[i].base, bufs[i].len);
  queue(st, ch);
  return queued(st);
}

static int tunnel_flush(rill_stream_t *s) {
  rill_h2_stream_t *st = ST(s);
  if (usable(st)) rill__h2_conn_flush(st->c);
  return 0;
}

/* END_STREAM after what is queued; the peer may go on sending. */
static int tunnel_shutdown(rill_stream_t *s) {
  rill_h2_stream_t *st = ST(s);
  if (!usable(st)) return RILL_ECLOSED;
  if (st->resp != RILL_H2_RESP_DONE) {
    st->q_eof = 1;
    st->resp = RILL_H2_RESP_DONE;
    resume(st);
  }
  return 0;
}

/* A closed tunnel's bytes did not leave in time (the peer keeps its window
 * shut): the stream is reset, as a socket's close stops lingering. */
static void linger_cb(uv_timer_t *t) {
  rill_h2_stream_t *st = t->data;
  rill__log(st->c->w, RILL_LOG_DEBUG,
            "h2: stream %d: %zu bytes of a closed tunnel unsent", st->id, st->queued);
  rill__h2_reset(st, NGHTTP2_CANCEL);
}

/* The owner lets go: the bindings are told, the stream ends (reset when
 * aborted, or when what is queued does not leave within tunnel_linger_ms);
 * the object goes once nghttp2 closed the stream. */
static void tunnel_end(rill_stream_t *s, int abort) {
  rill_h2_stream_t *st = ST(s);
  if (st->tunnel != RILL_H2_TUNNEL_OPEN) return;
  st->tunnel = RILL_H2_TUNNEL_CLOSED;
  st->write_waiting = 0;
  rill__stream_gone(&st->body);
  if (usable(st)) {
    if (abort) {
      rill__h2_reset(st, NGHTTP2_CANCEL);
    } else {
      if (!st->in_eof && st->in_err == 0) st->in_err = RILL_ECLOSED; /* nobody reads */
      tunnel_shutdown(s);
      /* The peer's side still open once our end went: frame_send_cb resets
       * it (NO_ERROR), or here if it went already. */
      if (st->end_sent && !st->in_eof)
        nghttp2_submit_rst_stream(st->c->session, NGHTTP2_FLAG_NONE, st->id,
                                  NGHTTP2_NO_ERROR);
      /* What is queued waits for the peer's window: not for ever. */
      if (st->queued > 0 && (st->linger = malloc(sizeof(*st->linger))) != NULL) {
        uv_timer_init(st->c->w->loop, st->linger);
        st->linger->data = st;
        uv_timer_start(st->linger, linger_cb, st->c->srv->limits.tunnel_linger_ms, 0);
      }
    }
  }
  rill__h2_stream_maybe_free(st);
}

static void tunnel_close(rill_stream_t *s) {
  tunnel_end(s, 0);
}

static void tunnel_abort(rill_stream_t *s) {
  tunnel_end(s, 1);
}

static const rill_stream_vt tunnel_vt = {
    .name = "h2 tunnel",
    .peek = body_peek,
    .consume = body_consume,
    .fill = body_fill,
    .write = tunnel_write,
    .flush = tunnel_flush,
    .shutdown = tunnel_shutdown,
    .close = tunnel_close,
    .abort = tunnel_abort,
    .addr = body_addr,
};

rill_stream_t *rill__h2_tunnel(rill_h2_stream_t *st, int status, const rill_hdr_t *h,
                               size_t nh) {
  if (st->head.protocol_len == 0 || st->resp != RILL_H2_RESP_NONE ||
      st->body.top != NULL || st->in_read > 0 || st->in_err || st->tunnel || !usable(st))
    return NULL;
  if (status < 200 || status > 299) return NULL;
  st->tunnel = RILL_H2_TUNNEL_OPEN;
  if (submit_head(st, status, h, nh, -1, 1)) {
    st->tunnel = 0;
    return NULL;
  }
  st->resp = RILL_H2_RESP_STREAMING;
  st->body.vt = &tunnel_vt;
  return &st->body;
}

void rill__h2_reset(rill_h2_stream_t *st, uint32_t error_code) {
  if (!usable(st)) return;
  nghttp2_submit_rst_stream(st->c->session, NGHTTP2_FLAG_NONE, st->id, error_code);
  if (st->in_err == 0 && !st->in_eof) st->in_err = RILL_ECLOSED;
  st->resp = RILL_H2_RESP_DONE;
  rill__h2_want_send(st->c);
}

/* The bytes the peer lets the stream send now: the smaller of its window
 * and the connection's. */
static size_t window(rill_h2_stream_t *st) {
  nghttp2_session *s = st->c->session;
  int32_t w = nghttp2_session_get_stream_remote_window_size(s, st->id);
  int32_t cw = nghttp2_session_get_remote_window_size(s);
  if (cw < w) w = cw;
  return w > 0 ? (size_t)w : 0;
}

/* The response of an ended handler did not move for send_timeout_ms (the
 * peer keeps the stream's window shut): the stream is reset, its bytes
 * dropped. */
static void stuck_cb(uv_timer_t *t) {
  rill_h2_stream_t *st = t->data;
  uv_timer_stop(t);
  rill__log(st->c->w, RILL_LOG_DEBUG,
            "h2: stream %d: %zu bytes of a response unsent for send_timeout", st->id,
            st->queued);
  rill__h2_reset(st, NGHTTP2_CANCEL);
}

void rill__h2_stream_handler_done(rill_h2_stream_t *st, int ok) {
  assert(st->handler_running);
  st->handler_running = 0;
  if (st->tunnel == RILL_H2_TUNNEL_OPEN) return; /* its stream's owner ends it */
  if (usable(st)) {
    if (st->resp == RILL_H2_RESP_NONE) /* (no tunnel: 501 to an Extended CONNECT) */
      rill__h2_respond(st,
                       st->in_err == RILL_EBODY     ? 413
                       : st->in_err == UV_ETIMEDOUT ? 408
                       : !ok                        ? 500
                       : st->head.protocol_len > 0  ? 501
                                                    : 200,
                       NULL, 0, "", 0);
    else if (st->resp == RILL_H2_RESP_STREAMING && ok)
      rill__h2_finish(st, 200, NULL, 0, NULL, 0);
    else if (st->resp == RILL_H2_RESP_STREAMING)
      rill__h2_reset(st,
                     NGHTTP2_INTERNAL_ERROR); /* cut short: not to be taken as whole */
    /* Our end went while the handler ran and the request is still open:
     * the peer need not send the rest (else frame_send_cb does this). */
    if (usable(st) && st->end_sent && !st->in_eof)
      nghttp2_submit_rst_stream(st->c->session, NGHTTP2_FLAG_NONE, st->id,
                                NGHTTP2_NO_ERROR);
    /* What is queued past the windows the peer gave waits for more window,
     * as a write would: each byte within send_timeout_ms (send_data_cb
     * restarts the timer). What the windows let go leaves with this burst
     * (no timer for the common answer); the connection's send timer covers
     * a peer that takes nothing at all. */
    unsigned ms = st->c->srv->limits.send_timeout_ms;
    if (usable(st) && st->queued > window(st) && ms > 0 && st->linger == NULL &&
        (st->linger = malloc(sizeof(*st->linger))) != NULL) {
      uv_timer_init(st->c->w->loop, st->linger);
      st->linger->data = st;
      uv_timer_start(st->linger, stuck_cb, ms, ms);
    }
    /* Through conn_send: the connection's timer sees that this handler
     * ended (the send timeout may start). */
    rill__h2_want_send(st->c);
  }
  rill__h2_stream_maybe_free(st);
}
