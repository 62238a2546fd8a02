/* A server-side HTTP/1.1 connection. See http_conn.h.
 *
 * States: HEAD (reading a request head; no coroutine), HANDLER (a handler
 * runs; the transport is read only when it reads the body), DRAIN (the
 * handler left body bytes unread: they are read and dropped, up to a limit,
 * so the connection can carry the next request), CLOSED.
 *
 * Small responses are gathered in c->out and written when the handler waits,
 * when no complete request follows in the input buffer, or when out grows
 * past a bound, so pipelined responses leave in one write. */
#include <stdlib.h>
#include <string.h>

#include "deflate.h"
#include "http_conn.h"

enum { R_NONE, R_STREAMING, R_DONE };
enum { FR_LENGTH, FR_CHUNKED, FR_CLOSE, FR_NOBODY };
/* Timeouts: between requests, in a head, draining a body, and each wait of
 * the handler's for body bytes (the server's body_timeout; a handler may set
 * a shorter one of its own on the Lua stream). */
enum { T_NONE, T_KEEPALIVE, T_HEADER, T_DRAIN, T_BODY, T_KINDS = T_BODY };

#define OUT_FLUSH 16384 /* write out once this much is gathered */
#define SMALL_BODY 4096 /* bodies up to this are copied into out */

void rill__http_limits_default(rill_http_limits_t *l) {
  l->max_header_bytes = 16384;
  l->max_headers = 100;
  l->max_body_bytes = (uint64_t)1 << 30;
  l->header_timeout_ms = 30000;
  l->body_timeout_ms = 60000;
  l->keepalive_timeout_ms = 60000;
  l->send_timeout_ms = 60000;
  l->drain_bytes = 256 * 1024;
  l->min_body_rate = 500;
  l->body_rate_grace_ms = 20000;
}

/* The compressor of a response, listed to be flushed while it holds input
 * the client has not been sent (above TLS: its output joins the burst). */
typedef struct rill_http_zip_s {
  rill_flush_t fl;
  rill_http_conn_t *c;
  rill_deflate_t d;
} zip_t;

static void conn_process(rill_http_conn_t *c);
static void conn_drain(rill_http_conn_t *c);
static void conn_close(rill_http_conn_t *c, int abort);
static int body_broken(rill_http_conn_t *c);
static void conn_free_later(rill_http_conn_t *c);
static void zip_free(rill_http_conn_t *c);
static int zip_put(rill_http_conn_t *c, const char *p, size_t len, int flush);

/* ---- output ---- */

static int out_reserve(rill_http_conn_t *c, size_t n) {
  if (c->olen + n <= c->ocap) return 0;
  size_t cap = c->ocap ? c->ocap : 512;
  while (cap < c->olen + n)
    cap *= 2;
  char *o = realloc(c->out, cap);
  if (o == NULL) return UV_ENOMEM;
  c->out = o;
  c->ocap = cap;
  return 0;
}

static void out_put(rill_http_conn_t *c, const char *p, size_t n) {
  memcpy(c->out + c->olen, p, n);
  c->olen += n;
}

#define OUT_LIT(c, s) out_put((c), (s), sizeof(s) - 1)

/* Writes out and bufs together; returns the transport's verdict. */
static int out_write(rill_http_conn_t *c, const uv_buf_t *extra, unsigned nextra) {
  uv_buf_t bufs[4];
  unsigned n = 0;
  if (c->olen) bufs[n++] = uv_buf_init(c->out, (unsigned)c->olen);
  for (unsigned i = 0; i < nextra; i++)
    if (extra[i].len) bufs[n++] = extra[i];
  c->olen = 0;
  if (n == 0) return c->werr;
  if (c->werr) return c->werr;
  if (c->t == NULL) return c->werr = RILL_ECLOSED;
  int r = c->t->vt->write(c->t, bufs, n);
  if (r < 0 && r != RILL_EAGAIN) c->werr = r;
  return r;
}

void rill__http_conn_flush(rill_http_conn_t *c) {
  if (c->zip && c->t && c->state != RILL_CONN_CLOSED) zip_put(c, NULL, 0, Z_SYNC_FLUSH);
  if (c->olen && c->t && c->state != RILL_CONN_CLOSED) out_write(c, NULL, 0);
}

/* ---- timers ---- */

static void server_timer_cb(uv_timer_t *h);
static void conn_freed(rill_http_conn_t *c);

static void server_arm(rill_http_server_t *s, uint64_t at) {
  s->armed_at = at;
  uint64_t now = uv_now(s->timer->loop);
  uv_timer_start(s->timer, server_timer_cb, at > now ? at - now : 0, 0);
}

static void due_unlink(rill_http_conn_t *c) {
  rill_http_server_t *s = c->srv;
  int k = c->timer_kind - 1;
  if (c->due_prev)
    c->due_prev->due_next = c->due_next;
  else
    s->due_head[k] = c->due_next;
  if (c->due_next)
    c->due_next->due_prev = c->due_prev;
  else
    s->due_tail[k] = c->due_prev;
  c->due_prev = c->due_next = NULL;
}

static void timer_fire(rill_http_conn_t *c) {
  int kind = c->timer_kind;
  due_unlink(c);
  c->timer_kind = T_NONE;
  if (kind == T_BODY) {
    /* The handler's reader is told "timeout"; the request gets 408. */
    rill__log(c->w, RILL_LOG_DEBUG, "http: request body timeout");
    rill__body_timeout(c->body);
    return;
  }
  if (kind == T_HEADER && c->head && c->head->fed > 0) {
    static const char msg[] =
        "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if (out_reserve(c, sizeof(msg)) == 0) OUT_LIT(c, msg);
  }
  rill__log(c->w, RILL_LOG_DEBUG, "http: closing a connection: %s timeout",
            kind == T_HEADER  ? "header"
            : kind == T_DRAIN ? "body"
                              : "keep-alive");
  conn_close(c, 0);
}

/* Times out every connection whose deadline passed, frees the closed ones,
 * and sets the timer for the next deadline. */
static void server_timer_cb(uv_timer_t *h) {
  rill_http_server_t *s = h->data;
  uint64_t now = uv_now(h->loop);
  for (int k = 0; k < T_KINDS; k++) {
    rill_http_conn_t *c;
    while ((c = s->due_head[k]) != NULL && c->due <= now)
      timer_fire(c);
  }
  uint64_t next = UINT64_MAX;
  for (int k = 0; k < T_KINDS; k++)
    if (s->due_head[k] && s->due_head[k]->due < next) next = s->due_head[k]->due;
  if (next != UINT64_MAX) {
    server_arm(s, next);
  } else {
    s->armed_at = UINT64_MAX;
    uv_timer_stop(h);
  }
  /* Last: freeing the last connection may free s. */
  rill_http_conn_t *dead = s->dead;
  s->dead = NULL;
  while (dead) {
    rill_http_conn_t *c = dead;
    dead = c->next_dead;
    conn_freed(c);
  }
}

/* Queues c's deadline, ms from now, in its kind's queue, which stays in
 * deadline order: a kind with one delay only ever appends; the handler's
 * body wait (which a minimum rate may shorten) walks back from the tail. */
static void timer_set(rill_http_conn_t *c, int kind, uint64_t ms) {
  if (c->timer_kind == kind) return;
  if (c->timer_kind != T_NONE) due_unlink(c);
  rill_http_server_t *s = c->srv;
  int k = kind - 1;
  c->timer_kind = kind;
  c->due = uv_now(c->w->loop) + ms;
  rill_http_conn_t *after = s->due_tail[k];
  while (after && after->due > c->due)
    after = after->due_prev;
  c->due_prev = after;
  c->due_next = after ? after->due_next : s->due_head[k];
  if (c->due_next)
    c->due_next->due_prev = c;
  else
    s->due_tail[k] = c;
  if (after)
    after->due_next = c;
  else
    s->due_head[k] = c;
  if (c->due < s->armed_at) server_arm(s, c->due);
}

/* The timer stays set: if it fires for nothing, it sets itself again. */
static void timer_clear(rill_http_conn_t *c) {
  if (c->timer_kind == T_NONE) return;
  due_unlink(c);
  c->timer_kind = T_NONE;
}

static void close_timer_cb(uv_handle_t *h) { free(h); }

static unsigned kind_delay(const rill_http_server_t *s, int kind) {
  return kind == T_HEADER ? s->limits.header_timeout_ms
         : kind == T_KEEPALIVE ? s->limits.keepalive_timeout_ms
                               : s->limits.body_timeout_ms;
}

int rill__http_server_make_room(rill_http_server_t *s) {
  /* The head of each queue is the oldest of its kind; of the two, the one
   * whose wait began first. */
  rill_http_conn_t *victim = NULL;
  uint64_t since = UINT64_MAX;
  /* Draining an unread body: answered already, kept only for a next request. */
  static const int kinds[] = {T_KEEPALIVE, T_HEADER, T_DRAIN};
  for (int i = 0; i < 3; i++) {
    rill_http_conn_t *c = s->due_head[kinds[i] - 1];
    if (c && c->due - kind_delay(s, kinds[i]) < since) {
      since = c->due - kind_delay(s, kinds[i]);
      victim = c;
    }
  }
  if (victim == NULL) return 0;
  rill__log(s->w, RILL_LOG_DEBUG, "http: at the connection limit: closing %s connection",
            victim->timer_kind == T_KEEPALIVE ? "an idle"
            : victim->timer_kind == T_DRAIN   ? "a draining"
                                              : "a slow");
  conn_close(victim, 1);
  return 1;
}

int rill__http_server_init(rill_http_server_t *s, rill_worker_t *w) {
  s->w = w;
  s->armed_at = UINT64_MAX;
  s->timer = malloc(sizeof(*s->timer));
  if (s->timer == NULL) return UV_ENOMEM;
  uv_timer_init(w->loop, s->timer);
  s->timer->data = s;
  return 0;
}

void rill__http_server_close(rill_http_server_t *s) {
  if (s->zip_spare) {
    rill__deflate_end(&s->zip_spare->d);
    free(s->zip_spare);
    s->zip_spare = NULL;
  }
  if (s->timer) uv_close((uv_handle_t *)s->timer, close_timer_cb);
  s->timer = NULL;
}

/* ---- errors ---- */

/* Counts a response by its status class (rill.metrics). */
static void count_status(rill_http_conn_t *c, int status) {
  int k = status >= 100 && status < 600 ? status / 100 : 0;
  RILL_COUNT(c->w->m->responses[k], 1);
}

/* Answers a bad request with status and closes the connection. */
static void conn_error(rill_http_conn_t *c, int status, const char *why) {
  rill__log(c->w, RILL_LOG_DEBUG, "http: %d: %s", status, why);
  char line[64], num[20];
  size_t ll = rill__http_status_line(line, status), dl;
  const char *date = rill__date_line(c->w, &dl);
  size_t wl = strlen(why);
  size_t nl = rill__http_u64(num, wl + 1);
  count_status(c, status);
  if (out_reserve(c, ll + dl + nl + wl + 128) == 0) {
    out_put(c, line, ll);
    out_put(c, date, dl);
    OUT_LIT(c, "Content-Type: text/plain\r\nConnection: close\r\nContent-Length: ");
    out_put(c, num, nl);
    OUT_LIT(c, "\r\n\r\n");
    out_put(c, why, wl);
    OUT_LIT(c, "\n");
  }
  c->resp = R_DONE;
  conn_close(c, 0);
}

/* ---- the request body ---- */

/* Answers Expect: 100-continue when the handler first reads the body. */
static void send_continue(rill_body_t *b) {
  static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
  rill_http_conn_t *c = b->data;
  b->before_read = NULL;
  c->continue_sent = 1;
  if (out_reserve(c, sizeof(msg)) == 0) {
    OUT_LIT(c, msg);
    out_write(c, NULL, 0);
  }
}

/* ---- reading requests ---- */

/* The client went away while the handler runs: its socket goes now (and
 * the listener's slot with it); the handler's writes fail from here on. */
static void peer_left(rill_http_conn_t *c) {
  rill_stream_t *t = c->t;
  c->peer_gone = 1;
  c->watching = 0;
  if (c->werr == 0) c->werr = RILL_ECLOSED;
  if (c->body) rill__body_release(c->body);
  rill__stream_unbind(&c->tb);
  c->t = NULL;
  t->vt->abort(t);
  rill__log(c->w, RILL_LOG_DEBUG, "http: the client went away while its request was handled");
  if (c->srv->on_peer_gone) c->srv->on_peer_gone(c);
}

static void transport_readable(rill_binding_t *b, int status) {
  rill_http_conn_t *c = rill__container_of(b, rill_http_conn_t, tb);
  if (c->state == RILL_CONN_HEAD) {
    conn_process(c);
  } else if (c->state == RILL_CONN_HANDLER && c->watching) {
    c->watching = 0;
    const char *p;
    size_t n;
    if (c->t->vt->peek(c->t, &p, &n) < 0) peer_left(c);
  }
}

/* Starts watching for the client's end: what the transport already knows
 * (bytes of a next request, or an end that came with this one) is left
 * alone, and so is a request that asked to close the connection after its
 * answer (its client may half-close after sending it) and one that may hand
 * the transport over (an upgrade, a CONNECT: the read asked here would be
 * left pending for the new owner). Never calls back (it may run inside a
 * read of the body). */
static void watch_start(rill_http_conn_t *c) {
  const char *p;
  size_t n;
  if (c->watching || c->peer_gone || c->t == NULL || !c->keepalive ||
      (c->head->flags & RILL_HTTP_UPGRADE) || c->head->method == HTTP_CONNECT ||
      c->t->vt->peek(c->t, &p, &n) < 0 || n > 0)
    return;
  if (rill__stream_fill(c->t) == 0) c->watching = 1;
}

/* The handler read the body to its end: the connection watches from here. */
static void body_ended(rill_body_t *b) {
  rill_http_conn_t *c = b->data;
  if (c->state != RILL_CONN_HANDLER) return; /* drained after the handler */
  rill__body_release(b);
  watch_start(c);
}

void rill__http_conn_watch(rill_http_conn_t *c) {
  if (c->watching || c->peer_gone || c->state != RILL_CONN_HANDLER || c->t == NULL) return;
  if (c->body->mode != RILL_BODY_NONE) {
    if (!c->body->done) return; /* the body's reader reads the transport */
    rill__body_release(c->body);
  }
  const char *p;
  size_t n;
  int r = c->t->vt->peek(c->t, &p, &n);
  if (r < 0) {
    c->peer_gone = 1;
  } else if (n == 0) {
    if (rill__stream_fill(c->t) < 0)
      c->peer_gone = 1;
    else
      c->watching = 1;
  }
}

static void transport_drained(rill_binding_t *b, int status) {
  rill_http_conn_t *c = rill__container_of(b, rill_http_conn_t, tb);
  if (status < 0 && c->werr == 0) c->werr = status;
  if (c->state == RILL_CONN_HANDLER && rill__http_file_waiting(c)) {
    rill__http_file_drained(c, status);
  } else if (c->state == RILL_CONN_HANDLER) {
    if (c->srv->on_drained) c->srv->on_drained(c, status);
  } else if (c->werr && c->state != RILL_CONN_CLOSED) {
    conn_close(c, 1); /* between requests: nobody will write again */
  }
}

/* The transport closed under us (a worker's teardown). */
static void transport_gone(rill_binding_t *b) {
  rill_http_conn_t *c = rill__container_of(b, rill_http_conn_t, tb);
  c->t = NULL;
  if (c->werr == 0) c->werr = RILL_ECLOSED;
  conn_close(c, 1);
}

static const rill_binding_ops_t transport_ops = {
    .readable = transport_readable,
    .drained = transport_drained,
    .gone = transport_gone,
};

static void body_readable(rill_binding_t *b, int status) {
  conn_drain(rill__container_of(b, rill_http_conn_t, db));
}

static const rill_binding_ops_t drain_ops = {.readable = body_readable};

/* The handler's read of the body waits for the peer, or stops waiting. */
static void body_waits(rill_body_t *b, int waiting) {
  rill_http_conn_t *c = b->data;
  if (c->state != RILL_CONN_HANDLER) return;
  timer_clear(c);
  if (waiting) timer_set(c, T_BODY, rill__body_wait_limit(b, c->srv->limits.body_timeout_ms));
}

static void dispatch(rill_http_conn_t *c, const char *p, size_t hl) {
  const rill_http_limits_t *lim = &c->srv->limits;
  if (hl > c->hcap) {
    char *b = realloc(c->hbuf, hl);
    if (b == NULL) {
      conn_close(c, 1);
      return;
    }
    c->hbuf = b;
    c->hcap = hl;
  }
  memcpy(c->hbuf, p, hl);
  c->hlen = hl;
  c->t->vt->consume(c->t, hl);
  timer_clear(c);

  unsigned f = c->head->flags;
  int mode = RILL_BODY_NONE;
  if (f & RILL_HTTP_CHUNKED) {
    mode = RILL_BODY_CHUNKED;
  } else if ((f & RILL_HTTP_LENGTH) && c->head->content_length > 0) {
    if (lim->max_body_bytes && c->head->content_length > lim->max_body_bytes) {
      conn_error(c, 413, "request body too large");
      return;
    }
    mode = RILL_BODY_LENGTH;
  }
  if (c->body == NULL) {
    if ((c->body = malloc(sizeof(*c->body))) == NULL) {
      conn_close(c, 1);
      return;
    }
    rill__body_init(c->body, c->w);
  }
  rill__body_start(c->body, c->t, mode, c->head->content_length, lim->max_body_bytes,
                   lim->max_header_bytes);
  c->body->min_rate = lim->min_body_rate;
  c->body->grace_ms = lim->body_rate_grace_ms;
  c->body->on_wait = body_waits;
  c->body->on_end = body_ended;
  c->body->data = c;
  c->continue_sent = 0;
  c->continue_pending = (f & RILL_HTTP_CONTINUE) && mode != RILL_BODY_NONE;
  if (c->continue_pending) c->body->before_read = send_continue;
  c->keepalive = (f & RILL_HTTP_KEEPALIVE) != 0;
  c->is_head = c->head->method == HTTP_HEAD;
  /* Nothing after a CONNECT or an upgrade is HTTP; the WebSocket layer takes
   * the stream over itself. */
  c->close_after = c->head->method == HTTP_CONNECT;
  c->resp = R_NONE;
  c->resp_left = 0;
  c->zformat = 0;

  c->state = RILL_CONN_HANDLER;
  c->handler_running = 1;
  c->nreq++;
  if (mode == RILL_BODY_NONE) watch_start(c);
  c->srv->on_request(c);
}

static rill_http_head_t *head_new(rill_http_conn_t *c) {
  rill_http_head_t *h = malloc(sizeof(*h));
  if (h) rill__http_head_init(h, HTTP_REQUEST, c->srv->limits.max_headers);
  return h;
}

static void head_free(rill_http_conn_t *c) {
  if (c->head == NULL) return;
  rill__http_head_free(c->head);
  free(c->head);
  c->head = NULL;
}

static void body_free(rill_http_conn_t *c) {
  rill_body_t *b = c->body;
  if (b == NULL) return;
  rill__stream_unbind(&c->db);
  rill__body_retire(b);
  rill__body_free_state(b);
  free(b);
  c->body = NULL;
}

static void conn_process(rill_http_conn_t *c) {
  const rill_http_limits_t *lim = &c->srv->limits;
  rill_stream_t *t = c->t;
  const char *p;
  size_t n;
  int r = t->vt->peek(t, &p, &n);
  if (r < 0) {
    conn_close(c, 0); /* the peer closed between requests, or mid-head */
    return;
  }
  if (n > 0) {
    if (c->head == NULL && (c->head = head_new(c)) == NULL) {
      conn_close(c, 1);
      return;
    }
    ssize_t hl = rill__http_head_parse(c->head, p, n, lim->max_header_bytes);
    if (hl < 0) {
      conn_error(c, c->head->err_status, c->head->err_reason);
      return;
    }
    if (hl > 0) {
      dispatch(c, p, (size_t)hl);
      return;
    }
    timer_set(c, T_HEADER, lim->header_timeout_ms);
  } else if (c->timer_kind == T_NONE) {
    if (c->nreq == 0)
      timer_set(c, T_HEADER, lim->header_timeout_ms);
    else
      timer_set(c, T_KEEPALIVE, lim->keepalive_timeout_ms);
  }
  rill__http_conn_flush(c);
  if (c->werr) {
    /* The client cannot take our answers: nothing more for it. */
    conn_close(c, 1);
    return;
  }
  if (n == 0 && c->olen == 0) {
    /* Idle between requests: keep nothing a new request would not need. */
    free(c->out);
    c->out = NULL;
    c->ocap = 0;
    free(c->hbuf);
    c->hbuf = NULL;
    c->hcap = 0;
    head_free(c);
    body_free(c);
    if (c->nreq && c->srv->on_idle) c->srv->on_idle(c);
  }
  r = rill__stream_fill(t);
  if (r == UV_ENOBUFS)
    conn_error(c, 431, "header section too large"); /* more than a stream holds */
  else if (r < 0)
    conn_close(c, 0);
}

static void next_request(rill_http_conn_t *c) {
  c->state = RILL_CONN_HEAD;
  c->watching = 0; /* a read asked while watching now serves the next head */
  timer_clear(c);
  if (c->body) {
    rill__stream_unbind(&c->db);
    rill__body_release(c->body);
  }
  if (c->head) rill__http_head_reset(c->head);
  conn_process(c);
}

static void conn_drain(rill_http_conn_t *c) {
  for (;;) {
    const char *p;
    size_t n;
    int r = rill__body_peek(c->body, &p, &n);
    if (r == RILL_EOF) {
      next_request(c);
      return;
    }
    if (r < 0) {
      conn_close(c, 0);
      return;
    }
    if (n == 0) break;
    if (c->body->read + n > c->srv->limits.drain_bytes) {
      conn_close(c, 0);
      return;
    }
    rill__body_consume(c->body, n);
  }
  timer_set(c, T_DRAIN, c->srv->limits.body_timeout_ms);
  rill__http_conn_flush(c);
  if (c->werr) {
    conn_close(c, 1);
    return;
  }
  int r = c->body->base.vt->fill(&c->body->base);
  if (r == RILL_EOF)
    next_request(c);
  else if (r < 0)
    conn_close(c, 0);
}

/* The current request is over: go on to the next, drain, or close. */
static void end_request(rill_http_conn_t *c) {
  rill__http_file_free(c);
  c->piece_left = 0;
  zip_free(c);
  /* The request's body stream dies with it: its readers are told. */
  rill__stream_gone(&c->body->base);
  c->gen = ++c->srv->gen_seq;
  if (c->werr || c->close_after || c->body->err || !c->keepalive) {
    conn_close(c, 0);
    return;
  }
  if (c->body->mode != RILL_BODY_NONE && !c->body->done) {
    /* Read what the handler left, as any reader of the body would. */
    c->state = RILL_CONN_DRAIN;
    rill__stream_bind(&c->body->base, &c->db, &drain_ops);
    conn_drain(c);
    return;
  }
  next_request(c);
}

rill_stream_t *rill__http_conn_upgrade(rill_http_conn_t *c, int status,
                                      const rill_hdr_t *h, size_t nh) {
  if (c->state != RILL_CONN_HANDLER || c->resp != R_NONE ||
      c->body->mode != RILL_BODY_NONE)
    return NULL;
  size_t need = 0;
  for (size_t i = 0; i < nh; i++) {
    for (size_t j = 0; j < h[i].vlen; j++)
      if (h[i].value[j] == '\r' || h[i].value[j] == '\n' || h[i].value[j] == 0)
        return NULL;
    need += h[i].nlen + h[i].vlen + 4;
  }
  size_t dl;
  const char *date = rill__date_line(c->w, &dl);
  if (out_reserve(c, need + dl + 64)) return NULL;
  count_status(c, status);
  c->olen += rill__http_status_line(c->out + c->olen, status);
  out_put(c, date, dl);
  for (size_t i = 0; i < nh; i++) {
    out_put(c, h[i].name, h[i].nlen);
    OUT_LIT(c, ": ");
    out_put(c, h[i].value, h[i].vlen);
    OUT_LIT(c, "\r\n");
  }
  OUT_LIT(c, "\r\n");
  out_write(c, NULL, 0);
  c->resp = R_DONE;
  rill__body_retire(c->body);
  rill_stream_t *t = c->t;
  rill__stream_unbind(&c->tb);
  c->t = NULL;
  c->state = RILL_CONN_UPGRADED;
  return t;
}

void rill__http_conn_body_failed(rill_http_conn_t *c, int err) {
  if (c->body && c->body->err == 0) c->body->err = err;
}

void rill__http_conn_cut(rill_http_conn_t *c, int err) {
  if (c->werr == 0) c->werr = err;
}

void rill__http_conn_abort(rill_http_conn_t *c) {
  c->olen = 0;
  conn_close(c, 1);
}

void rill__http_conn_release(rill_http_conn_t *c) {
  if (c->state != RILL_CONN_UPGRADED) return;
  c->handler_running = 0;
  conn_close(c, 0);
}

void rill__http_conn_handler_done(rill_http_conn_t *c, int ok) {
  assert(c->handler_running);
  c->handler_running = 0;
  if (c->state == RILL_CONN_UPGRADED) {
    conn_close(c, 0); /* the transport is someone else's now */
    return;
  }
  if (c->state == RILL_CONN_CLOSED) {
    conn_free_later(c); /* closed under the handler: now it may go */
    return;
  }
  if (c->state != RILL_CONN_HANDLER) return;
  if (c->werr && c->resp != R_NONE) {
    /* The answer could not go out whole: cut, so it is not taken as whole. */
    c->olen = 0;
    conn_close(c, 1);
    return;
  }
  if (!ok) {
    if (c->resp == R_NONE && body_broken(c)) {
      conn_close(c, 0); /* the handler failed on a broken body: 400, not 500 */
    } else if (c->resp == R_NONE) {
      conn_error(c, 500, "internal server error");
    } else {
      c->olen = 0; /* a response cut short: the peer must not take it as whole */
      conn_close(c, 1);
    }
    return;
  }
  if (c->resp != R_DONE) rill__http_finish(c, 200, NULL, 0);
  end_request(c);
}

/* ---- responses ---- */

static int digits_only(const char *v, size_t n, uint64_t *out) {
  uint64_t x = 0;
  if (n == 0 || n > 19) return 0;
  for (size_t i = 0; i < n; i++) {
    if (v[i] < '0' || v[i] > '9') return 0;
    x = x * 10 + (uint64_t)(v[i] - '0');
  }
  *out = x;
  return 1;
}

/* Builds the head into out. length < 0: the body streams, framing from the
 * headers or chunked. */
static int build_head(rill_http_conn_t *c, int status, const rill_hdr_t *h, size_t nh,
                      int64_t length) {
  uint64_t user_len = 0;
  int has_len = 0, has_date = 0;
  size_t need = 0;
  for (size_t i = 0; i < nh; i++) {
    const rill_hdr_t *x = &h[i];
    if (x->nlen == 0) return UV_EINVAL;
    for (size_t j = 0; j < x->nlen; j++)
      if (!rill__http_tchar((unsigned char)x->name[j])) return UV_EINVAL;
    for (size_t j = 0; j < x->vlen; j++) {
      unsigned char ch = (unsigned char)x->value[j];
      if (ch == '\r' || ch == '\n' || ch == 0) return UV_EINVAL;
    }
    need += x->nlen + x->vlen + 4;
    switch (x->name[0] | 0x20) {
    case 'c':
      if (rill__http_name_is(x->name, x->nlen, "content-length")) {
        if (!digits_only(x->value, x->vlen, &user_len)) return UV_EINVAL;
        has_len = 1;
      } else if (rill__http_name_is(x->name, x->nlen, "connection")) {
        if (rill__http_name_is(x->value, x->vlen, "close")) c->close_after = 1;
      }
      break;
    case 'd':
      if (rill__http_name_is(x->name, x->nlen, "date")) has_date = 1;
      break;
    }
  }
  if (status < 100 || status > 999) return UV_EINVAL;
  int nobody = status < 200 || status == 204 || status == 304;
  if (nobody)
    c->framing = FR_NOBODY;
  else if (length >= 0 && !c->zformat && !(c->is_head && has_len)) {
    /* (A HEAD answer keeps the length its handler gave: that of the GET.) */
    c->framing = FR_LENGTH;
    c->resp_left = (uint64_t)length;
  } else if (has_len && !c->zformat) {
    c->framing = FR_LENGTH;
    c->resp_left = user_len;
  } else if (c->head->minor >= 1) {
    c->framing = FR_CHUNKED;
  } else {
    c->framing = FR_CLOSE;
    c->close_after = 1;
  }
  /* A body we cannot drain means no next request on this connection. */
  if (c->body && !c->body->done && c->body->mode != RILL_BODY_NONE &&
      ((c->continue_pending && !c->continue_sent) ||
       (c->body->mode == RILL_BODY_LENGTH && c->body->left > c->srv->limits.drain_bytes)))
    c->close_after = 1;
  int keep = c->keepalive && !c->close_after;

  size_t dl;
  const char *date = rill__date_line(c->w, &dl);
  if (out_reserve(c, need + dl + 160)) return UV_ENOMEM;
  count_status(c, status);
  c->olen += rill__http_status_line(c->out + c->olen, status);
  if (!has_date) out_put(c, date, dl);
  for (size_t i = 0; i < nh; i++) {
    const rill_hdr_t *x = &h[i];
    char first = (char)(x->name[0] | 0x20);
    if ((first == 'c' && (rill__http_name_is(x->name, x->nlen, "content-length") ||
                          rill__http_name_is(x->name, x->nlen, "connection"))) ||
        (first == 't' && rill__http_name_is(x->name, x->nlen, "transfer-encoding")))
      continue;
    out_put(c, x->name, x->nlen);
    OUT_LIT(c, ": ");
    out_put(c, x->value, x->vlen);
    OUT_LIT(c, "\r\n");
  }
  if (c->framing == FR_LENGTH) {
    OUT_LIT(c, "Content-Length: ");
    c->olen += rill__http_u64(c->out + c->olen, c->resp_left);
    OUT_LIT(c, "\r\n");
  } else if (c->framing == FR_CHUNKED) {
    OUT_LIT(c, "Transfer-Encoding: chunked\r\n");
  }
  if (!keep)
    OUT_LIT(c, "Connection: close\r\n");
  else if (c->head->minor == 0)
    OUT_LIT(c, "Connection: keep-alive\r\n");
  OUT_LIT(c, "\r\n");
  return 0;
}

/* A request whose body the handler found broken (bad framing, too large,
 * too slow) is answered with 400, 413 or 408 whatever the handler meant to
 * send: its framing cannot be trusted. Only what a read of the body found
 * counts, so the answer does not depend on how the bytes were split. */
static int body_broken(rill_http_conn_t *c) {
  if (c->body == NULL) return 0;
  int err = c->body->err, status;
  const char *why;
  if (err == RILL_EPROTO) {
    status = 400;
    why = "invalid request body (framing or encoding)";
  } else if (err == RILL_EBODY) {
    status = 413;
    why = "request body too large";
  } else if (err == UV_ETIMEDOUT) {
    status = 408;
    why = "request body too slow";
  } else {
    return 0;
  }
  rill__log(c->w, RILL_LOG_DEBUG, "http: %d: %s", status, why);
  char line[64];
  size_t ll = rill__http_status_line(line, status);
  count_status(c, status);
  if (out_reserve(c, ll + 80) == 0) {
    out_put(c, line, ll);
    OUT_LIT(c, "Content-Length: 0\r\nConnection: close\r\n\r\n");
  }
  c->resp = R_DONE;
  c->close_after = 1;
  out_write(c, NULL, 0);
  return 1;
}

/* ---- compressed responses ---- */

int rill__http_compress(rill_http_conn_t *c, int format, int level) {
  if (c->resp != R_NONE) return UV_EBUSY;
  if ((format != RILL_Z_GZIP && format != RILL_Z_DEFLATE) || level < 1 || level > 9)
    return UV_EINVAL;
  c->zformat = format;
  c->zlevel = level;
  return 0;
}

static void zip_listed(rill_flush_t *f) {
  zip_t *z = rill__container_of(f, zip_t, fl);
  rill_http_conn_t *c = z->c;
  if (c->t && c->state != RILL_CONN_CLOSED) zip_put(c, NULL, 0, Z_SYNC_FLUSH);
}

/* Starts the compressor of a body of len bytes (0: unknown). */
static int zip_start(rill_http_conn_t *c, uint64_t len) {
  int mem, wbits = rill__deflate_wbits(len, &mem);
  zip_t *z = c->srv->zip_spare;
  if (z && z->d.format == c->zformat && z->d.wbits == wbits && z->d.memlevel == mem &&
      rill__deflate_reset(&z->d, c->zlevel) == 0) {
    c->srv->zip_spare = NULL;
    z->c = c;
    c->zip = z;
    return 0;
  }
  z = malloc(sizeof(*z));
  if (z == NULL) return UV_ENOMEM;
  memset(&z->fl, 0, sizeof(z->fl));
  z->fl.flush = zip_listed;
  z->fl.level = RILL_FLUSH_HTTP;
  z->c = c;
  int r = rill__deflate_init(&z->d, c->zformat, c->zlevel, wbits, mem);
  if (r) {
    free(z);
    return r;
  }
  c->zip = z;
  return 0;
}

static void zip_free(rill_http_conn_t *c) {
  zip_t *z = c->zip;
  if (z == NULL) return;
  c->zip = NULL;
  rill__flush_remove(c->w, &z->fl);
  /* The last one of the full size is kept for the next response. */
  if (z->d.wbits == 15 && c->srv->zip_spare == NULL && c->srv->timer) {
    c->srv->zip_spare = z;
    return;
  }
  rill__deflate_end(&z->d);
  free(z);
}

/* n > 0 body bytes out, framed as the body is (a chunk's size line and
 * CRLF around them when chunked), by reference. */
static int write_framed(rill_http_conn_t *c, const char *p, size_t n) {
  uv_buf_t bufs[2];
  unsigned k = 0;
  bufs[k++] = uv_buf_init((char *)p, (unsigned)n);
  if (c->framing == FR_CHUNKED) {
    if (out_reserve(c, 20)) return UV_ENOMEM;
    c->olen += rill__http_hex(c->out + c->olen, n);
    OUT_LIT(c, "\r\n");
    bufs[k++] = uv_buf_init("\r\n", 2);
  }
  return out_write(c, bufs, k);
}

/* The compressor's output, framed as the body's. */
static int zip_emit(void *arg, const char *p, size_t n) {
  return write_framed(arg, p, n);
}

static int zip_put(rill_http_conn_t *c, const char *p, size_t len, int flush) {
  zip_t *z = c->zip;
  if (c->werr) return c->werr;
  int r = rill__deflate_put(&z->d, p, len, flush, zip_emit, c);
  if (z->d.pending)
    rill__flush_add(c->w, &z->fl);
  else
    rill__flush_remove(c->w, &z->fl);
  return r;
}

/* ---- responses, continued ---- */

int rill__http_respond(rill_http_conn_t *c, int status, const rill_hdr_t *h, size_t nh,
                      const char *body, size_t len) {
  if (c->resp != R_NONE) return UV_EBUSY;
  if (body_broken(c)) return 0;
  if (c->zformat) {
    /* The whole body through the compressor, as a streamed one. */
    int r = build_head(c, status, h, nh, -1);
    if (r) return r;
    c->resp = R_STREAMING;
    if (!c->is_head && c->framing != FR_NOBODY && len > 0) {
      if ((r = zip_start(c, len)) != 0) return r;
      r = zip_put(c, body, len, Z_FINISH);
      if (r < 0 && r != RILL_EAGAIN) return r;
    }
    int f = rill__http_finish(c, status, h, nh);
    return f ? f : r;
  }
  int r = build_head(c, status, h, nh, (int64_t)len);
  if (r) return r;
  c->resp = R_DONE;
  if (c->is_head || c->framing == FR_NOBODY || len == 0) {
    if (c->olen > OUT_FLUSH) return out_write(c, NULL, 0);
    return c->werr;
  }
  if (len <= SMALL_BODY) {
    if (out_reserve(c, len)) return UV_ENOMEM;
    out_put(c, body, len);
    if (c->olen > OUT_FLUSH) return out_write(c, NULL, 0);
    return c->werr;
  }
  uv_buf_t b = uv_buf_init((char *)body, (unsigned)len);
  return out_write(c, &b, 1);
}

int rill__http_write(rill_http_conn_t *c, int status, const rill_hdr_t *h, size_t nh,
                    const char *data, size_t len) {
  if (c->resp == R_DONE) return UV_EBUSY;
  if (c->resp == R_NONE) {
    if (body_broken(c)) return RILL_ECLOSED;
    int r = build_head(c, status, h, nh, -1);
    if (r) return r;
    c->resp = R_STREAMING;
    if (c->zformat && !c->is_head && c->framing != FR_NOBODY && (r = zip_start(c, 0)) != 0)
      return r;
  }
  if (c->is_head || c->framing == FR_NOBODY) {
    int r = out_write(c, NULL, 0);
    return r == 0 && len > 0 ? RILL_HTTP_NOBODY : r;
  }
  if (len == 0) return out_write(c, NULL, 0);
  if (c->zip) return zip_put(c, data, len, Z_NO_FLUSH);
  if (c->framing == FR_LENGTH) {
    if (len > c->resp_left) return RILL_EBODY;
    c->resp_left -= len;
  }
  return write_framed(c, data, len);
}

int rill__http_piece_begin(rill_http_conn_t *c, int status, const rill_hdr_t *h, size_t nh,
                           uint64_t len) {
  if (c->piece_left > 0) return len == c->piece_left ? 0 : UV_EINVAL;
  if (c->resp == R_DONE) return UV_EBUSY;
  if (c->resp == R_NONE) {
    if (body_broken(c)) return RILL_ECLOSED;
    int r = build_head(c, status, h, nh, -1);
    if (r) return r;
    c->resp = R_STREAMING;
  }
  if (c->is_head || c->framing == FR_NOBODY) {
    int r = out_write(c, NULL, 0);
    return r == 0 ? RILL_HTTP_NOBODY : r;
  }
  if (c->werr) return c->werr;
  if (c->framing == FR_LENGTH) {
    if (len > c->resp_left) return RILL_EBODY;
    c->resp_left -= len;
  } else if (c->framing == FR_CHUNKED) {
    if (out_reserve(c, 20)) return UV_ENOMEM;
    c->olen += rill__http_hex(c->out + c->olen, len);
    OUT_LIT(c, "\r\n");
  }
  c->piece_left = len;
  /* The head and framing go to the transport, which sends them first. */
  int r = out_write(c, NULL, 0);
  return r == RILL_EAGAIN ? 0 : r;
}

void rill__http_piece_sent(rill_http_conn_t *c, uint64_t n) {
  assert(n <= c->piece_left);
  c->piece_left -= n;
  if (c->piece_left == 0 && c->framing == FR_CHUNKED && out_reserve(c, 2) == 0)
    OUT_LIT(c, "\r\n");
}

int rill__http_finish(rill_http_conn_t *c, int status, const rill_hdr_t *h, size_t nh) {
  if (c->resp == R_DONE) return 0;
  if (c->resp == R_NONE) return rill__http_respond(c, status, h, nh, "", 0);
  c->resp = R_DONE;
  if (c->zip) {
    int r = zip_put(c, NULL, 0, Z_FINISH);
    zip_free(c);
    if (r < 0 && r != RILL_EAGAIN && c->werr == 0) c->werr = r;
  }
  if (c->piece_left > 0 && c->werr == 0) c->werr = RILL_ECLOSED; /* a file cut short */
  if (c->werr) return c->werr; /* cut: no last chunk */
  if (c->framing == FR_CHUNKED && !c->is_head) {
    if (out_reserve(c, 5)) return UV_ENOMEM;
    OUT_LIT(c, "0\r\n\r\n");
  } else if (c->framing == FR_LENGTH && c->resp_left > 0 && !c->is_head) {
    rill__log(c->w, RILL_LOG_WARN,
              "http: response ended %llu bytes short of its Content-Length; closing",
              (unsigned long long)c->resp_left);
    c->close_after = 1;
  }
  return c->werr;
}

/* ---- life and death ---- */

static void conn_freed(rill_http_conn_t *c) {
  rill_http_server_t *srv = c->srv;
  assert(c->state == RILL_CONN_CLOSED && !c->handler_running);
  head_free(c);
  body_free(c);
  free(c->hbuf);
  free(c->out);
  free(c->peer_host);
  free(c);
  if (--srv->refs == 0 && srv->on_free) srv->on_free(srv);
}

/* Freed on the loop's next turn: whoever called us may still use c. */
static void conn_free_later(rill_http_conn_t *c) {
  rill_http_server_t *s = c->srv;
  c->next_dead = s->dead;
  s->dead = c;
  if (s->armed_at != 0) server_arm(s, 0);
}

static void conn_close(rill_http_conn_t *c, int abort) {
  if (c->state == RILL_CONN_CLOSED) return;
  if (!abort) rill__http_conn_flush(c);
  c->state = RILL_CONN_CLOSED;
  zip_free(c);
  timer_clear(c);
  rill__http_file_free(c);
  if (c->body) {
    rill__stream_unbind(&c->db);
    rill__body_retire(c->body);
  }
  if (c->srv->on_close) c->srv->on_close(c);
  rill_stream_t *t = c->t;
  if (t) {
    rill__stream_unbind(&c->tb);
    c->t = NULL;
    if (abort)
      t->vt->abort(t);
    else
      t->vt->close(t);
  }
  rill__obj_unlink(&c->obj);
  /* A worker's teardown ends every task without its end being reported. */
  if (c->w->stopping) c->handler_running = 0;
  if (!c->handler_running) conn_free_later(c);
}

/* A graceful stop: an idle connection goes now, a busy one after its
 * response (which says Connection: close). */
static void conn_shutdown(rill_obj_t *o) {
  rill_http_conn_t *c = rill__container_of(o, rill_http_conn_t, obj);
  if (c->state == RILL_CONN_HANDLER || c->state == RILL_CONN_UPGRADED) {
    c->close_after = 1;
    return;
  }
  conn_close(c, 0);
}

static void conn_destroy(rill_obj_t *o) {
  rill_http_conn_t *c = rill__container_of(o, rill_http_conn_t, obj);
  conn_close(c, 1);
}

rill_http_conn_t *rill__http_conn_new(rill_http_server_t *srv, rill_stream_t *t) {
  rill_http_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->srv = srv;
  c->w = srv->w;
  c->t = t;
  c->ref = -1;
  c->gen = ++srv->gen_seq;
  srv->refs++;
  rill__stream_bind(t, &c->tb, &transport_ops);
  rill__obj_link(c->w, &c->obj, conn_destroy);
  c->obj.kind = RILL_OBJ_CONN;
  c->obj.shutdown = conn_shutdown;
  c->state = RILL_CONN_HEAD;
  conn_process(c);
  return c;
}

const rill_chunked_t *rill__http_conn_chunk(rill_http_conn_t *c) {
  return c->body ? rill__body_trailers(c->body) : NULL;
}
