/* Fuzzes a whole HTTP/1.1 server connection (http_conn.c, http_body.c,
 * http_parse.c) over an in-memory transport, with small C handlers in place
 * of Lua ones.
 *
 * Input: one byte of settings, then the bytes of the client:
 *   bit 0      the server: default limits, or small ones (256-byte heads,
 *              6 fields, 100-byte bodies, 64 bytes drained)
 *   bits 1-2   the transport's write limit above which writes say "wait"
 *              (none, none, 100 bytes, 3000 bytes)
 *   bit 3      once all input is in: ask the server to make room (it closes
 *              an idle or head-pending connection)
 *   bit 4      once all input is in: a graceful stop (conn_shutdown)
 *   bit 5      the input ends with a reset (ECONNRESET) rather than an end
 *   bit 6      from the middle of the input on, writes fail (the client
 *              stopped reading and the socket broke)
 *   bit 7      the connection lives on a worker of its own, which is torn
 *              down (rill__worker_free) once all input is in, instead of the
 *              input's end: whatever runs is destroyed, nothing leaks
 *
 * The handler is chosen by the first letter of the request target's path
 * (after the '/'); see handler_kind(). Handlers run as the Lua layer runs
 * tasks: started from on_request, queued and run one at a time (never
 * inside another), resumed by the body's readable(), the connection's
 * drained(), or a yield to the next round; while one waits, the connection's
 * gathered output is flushed (as lua_http.c's yield callback does).
 *
 * One run: feed the input, deliver callbacks until nothing is due, then the
 * end of the input, again, then turn the loop so that closed connections are
 * freed. The result is the bytes written (the Date line's value blanked) and
 * whether the transport was closed or reset. Checked after every run: the
 * transport was closed, the connection freed, no handler left.
 *
 * Split check: once with the input fed whole, once in pieces (settling after
 * each); the results must be the same. */
#include <stdio.h>

#include "fuzz_common.h"
#include "http_conn.h"
#include "memstream.h"

#define T "fuzz_http_conn"

static rill_worker_t *W;
static rill_http_server_t S[2];

static const size_t out_limit_of[] = {0, 0, 100, 3000};

/* ---- the scheduler: one handler runs at a time ---- */

enum { W_NONE, W_BODY, W_DRAIN, W_DEFER, W_UP };

typedef struct handler_s handler_t;
struct handler_s {
  handler_t *next;
  handler_t *lprev, *lnext; /* in the list of live handlers */
  rill_http_conn_t *c;
  int kind;
  int step;
  int queued;
  int wait;
  int closed;        /* the connection closed under the handler */
  rill_binding_t bb; /* bound to the body while reading it */
  int body_gone;
  uint64_t limit, got, sum;
  int rend;          /* how reading ended: 1 the end, < 0 an error, 0 not yet */
  int w;             /* writes done */
  rill_stream_t *up; /* the transport after an upgrade */
  rill_binding_t ub;
  uint64_t echoed;
  char method[16];
  char target[64];
  size_t tlen;
  int minor;
};

static handler_t *ready_head, *ready_tail, *defer_head, *live_head;
static int draining, live;
static rill_worker_t *cur_w; /* the worker of the current run */
static uint8_t pattern[6000];

static void step(handler_t *hd);

static void drain(void) {
  if (draining) return;
  draining = 1;
  while (ready_head) {
    handler_t *hd = ready_head;
    ready_head = hd->next;
    if (ready_head == NULL) ready_tail = NULL;
    hd->queued = 0;
    step(hd);
  }
  draining = 0;
}

static void wake(handler_t *hd) {
  /* A worker's teardown resumes nothing: tasks die with it. */
  if (hd->queued || cur_w->stopping) return;
  hd->wait = W_NONE;
  hd->queued = 1;
  hd->next = NULL;
  if (ready_tail)
    ready_tail->next = hd;
  else
    ready_head = hd;
  ready_tail = hd;
  drain();
}

/* Handlers that yielded run again once the callbacks due have run. */
static int run_deferred(void) {
  handler_t *hd = defer_head;
  int n = 0;
  defer_head = NULL;
  while (hd) {
    handler_t *next = hd->next;
    hd->wait = W_NONE;
    wake(hd);
    hd = next;
    n++;
  }
  return n;
}

/* The handler waits for why: what it wrote so far goes out. */
static void wait_for(handler_t *hd, int why) {
  hd->wait = why;
  if (why == W_DEFER) {
    hd->next = defer_head;
    defer_head = hd;
  }
  if (!hd->closed && hd->c) rill__http_conn_flush(hd->c);
}

/* The handler ends; ok 0 as if it raised. */
static void finish(handler_t *hd, int ok) {
  rill__stream_unbind(&hd->bb);
  rill_http_conn_t *c = hd->c; /* NULL once released (a tunnel) */
  if (c) c->data = NULL;
  if (hd->lprev)
    hd->lprev->lnext = hd->lnext;
  else
    live_head = hd->lnext;
  if (hd->lnext) hd->lnext->lprev = hd->lprev;
  free(hd);
  live--;
  if (c) rill__http_conn_handler_done(c, ok);
}

/* ---- what the connection and the body tell the handler ---- */

static void body_readable(rill_binding_t *b, int status) {
  handler_t *hd = rill__container_of(b, handler_t, bb);
  if (hd->wait == W_BODY) wake(hd);
}

static void body_gone(rill_binding_t *b) {
  handler_t *hd = rill__container_of(b, handler_t, bb);
  hd->body_gone = 1;
  if (hd->wait == W_BODY) wake(hd);
}

static const rill_binding_ops_t body_ops = {.readable = body_readable, .gone = body_gone};

static void on_drained(rill_http_conn_t *c, int status) {
  handler_t *hd = c->data;
  if (hd && hd->wait == W_DRAIN) wake(hd);
}

static void on_close(rill_http_conn_t *c) {
  handler_t *hd = c->data;
  if (hd == NULL) return;
  hd->closed = 1;
  if (hd->wait == W_BODY || hd->wait == W_DRAIN) wake(hd);
}

static void up_readable(rill_binding_t *b, int status) {
  handler_t *hd = rill__container_of(b, handler_t, ub);
  if (hd->wait == W_UP) wake(hd);
}

static void up_drained(rill_binding_t *b, int status) {
  handler_t *hd = rill__container_of(b, handler_t, ub);
  if (hd->wait == W_DRAIN) wake(hd);
}

static void up_gone(rill_binding_t *b) {
  handler_t *hd = rill__container_of(b, handler_t, ub);
  hd->up = NULL;
  if (hd->wait == W_UP || hd->wait == W_DRAIN) wake(hd);
}

static const rill_binding_ops_t up_ops = {
    .readable = up_readable, .drained = up_drained, .gone = up_gone};

/* ---- the handlers' pieces ---- */

/* Reads the body until limit bytes, its end or an error. Returns 1 when
 * done (hd->rend says how), 0 when it waits. */
static int read_body(handler_t *hd) {
  rill_http_conn_t *c = hd->c;
  for (;;) {
    if (hd->rend) return 1;
    if (hd->got >= hd->limit) return 1;
    if (hd->closed || hd->body_gone) {
      hd->rend = RILL_ECLOSED;
      return 1;
    }
    rill_body_t *b = c->body;
    if (hd->bb.s == NULL) rill__stream_bind(&b->base, &hd->bb, &body_ops);
    const char *p;
    size_t n;
    int r = rill__body_peek(b, &p, &n);
    if (r == RILL_EOF) {
      hd->rend = 1;
      continue;
    }
    if (r < 0) {
      hd->rend = r;
      continue;
    }
    if (n > 0) {
      size_t k = n < hd->limit - hd->got ? n : (size_t)(hd->limit - hd->got);
      for (size_t i = 0; i < k; i++)
        hd->sum = (hd->sum ^ (uint8_t)p[i]) * 1099511628211ull;
      hd->got += k;
      rill__body_consume(b, k);
      continue;
    }
    r = b->base.vt->fill(&b->base);
    if (r == RILL_EOF) {
      hd->rend = 1;
      continue;
    }
    if (r < 0) {
      hd->rend = r;
      continue;
    }
    r = rill__body_peek(b, &p, &n);
    if (r == 0 && n == 0) {
      wait_for(hd, W_BODY);
      return 0;
    }
  }
}

/* A write's verdict: 1 to go on now, 0 when the handler waits for the drain. */
static int wrote(handler_t *hd, int r) {
  if (r == RILL_EAGAIN && !hd->closed) {
    wait_for(hd, W_DRAIN);
    return 0;
  }
  return 1;
}

/* The connection's methods, refused once it closed (as the Lua face refuses
 * them: its pointer to the connection is gone). */
static int h_respond(handler_t *hd, int status, const rill_hdr_t *h, size_t nh,
                     const char *body, size_t len) {
  return hd->closed ? RILL_ECLOSED : rill__http_respond(hd->c, status, h, nh, body, len);
}

static int h_write(handler_t *hd, int status, const rill_hdr_t *h, size_t nh,
                   const char *data, size_t len) {
  return hd->closed ? RILL_ECLOSED : rill__http_write(hd->c, status, h, nh, data, len);
}

static int h_finish(handler_t *hd) {
  return hd->closed ? RILL_ECLOSED : rill__http_finish(hd->c, 200, NULL, 0);
}

static rill_stream_t *h_upgrade(handler_t *hd, const rill_hdr_t *h, size_t nh) {
  return hd->closed ? NULL : rill__http_conn_upgrade(hd->c, 101, h, nh);
}

static int respond_text(handler_t *hd, int status, const char *extra_name,
                        const char *extra_value, const char *body, size_t len) {
  rill_hdr_t h[2] = {{"Content-Type", 12, "text/plain", 10}};
  size_t nh = 1;
  if (extra_name) {
    h[1] = (rill_hdr_t){extra_name, strlen(extra_name), extra_value, strlen(extra_value)};
    nh = 2;
  }
  return h_respond(hd, status, h, nh, body, len);
}

/* Answers with what was read: length, checksum, how it ended. */
static int respond_read(handler_t *hd, const char *what) {
  char sum[32], body[160];
  snprintf(sum, sizeof(sum), "%016llx", (unsigned long long)hd->sum);
  int n =
      snprintf(body, sizeof(body), "%s %s %.*s: %llu bytes, end %d\n", what, hd->method,
               (int)hd->tlen, hd->target, (unsigned long long)hd->got, hd->rend);
  return respond_text(hd, 200, "X-Sum", sum, body, (size_t)n);
}

/* ---- the handlers ---- */

enum {
  H_ECHO,     /* answers at once with the request line; reads nothing */
  H_READ,     /* reads the whole body, answers with its length and checksum */
  H_PARTIAL,  /* reads up to 5*digit+1 bytes, gives up, answers: the rest is drained */
  H_STREAM,   /* a chunked (or close-delimited) answer in several writes */
  H_LENGTH,   /* a streamed answer under its own Content-Length, exact */
  H_OVER,     /* ... writing past its Content-Length, then short of another */
  H_UPGRADE,  /* takes the connection over with 101, closes it */
  H_TUNNEL,   /* takes it over (the connection is released) and echoes what
                 follows until the end */
  H_ERROR,    /* raises before answering: 500 */
  H_FAIL,     /* raises in the middle of a streamed answer: a reset */
  H_BROKEN,   /* reads the body; raises if reading failed */
  H_DEFER,    /* yields once, reads the body, yields again, answers */
  H_CLOSE,    /* answers with Connection: close */
  H_BAD,      /* an invalid header first (refused), then a good answer */
  H_NOBODY,   /* 204 with bytes that must not go out */
  H_LARGE,    /* a 5000-byte answer (passed by reference) */
  H_TRAILERS, /* reads the body, answers with its trailers */
  H_TWICE,    /* answers, then tries to answer and write again */
};

static int handler_kind(const char *t, size_t n) {
  char ch = n > 1 && t[0] == '/' ? t[1] : n > 0 ? t[0] : 0;
  switch (ch | 0x20) {
  case 'r':
    return H_READ;
  case 'p':
    return H_PARTIAL;
  case 's':
    return H_STREAM;
  case 'l':
    return H_LENGTH;
  case 'o':
    return H_OVER;
  case 'u':
    return H_UPGRADE;
  case 'w':
    return H_TUNNEL;
  case 'e':
    return H_ERROR;
  case 'f':
    return H_FAIL;
  case 'b':
    return H_BROKEN;
  case 'd':
    return H_DEFER;
  case 'c':
    return H_CLOSE;
  case 'x':
    return H_BAD;
  case 'n':
    return H_NOBODY;
  case 'g':
    return H_LARGE;
  case 't':
    return H_TRAILERS;
  case 'k':
    return H_TWICE;
  default:
    return H_ECHO;
  }
}

/* Streams pieces of 1, 100, 5000 and 7 bytes, waiting for the drain when
 * asked, then finishes. Returns 1 when done, 0 when it waits. */
static int stream_out(handler_t *hd, const rill_hdr_t *h, size_t nh) {
  static const size_t sizes[] = {1, 100, 5000, 7};
  while (hd->w < 4) {
    int i = hd->w++;
    int r = h_write(hd, 200, h, nh, (const char *)pattern + i, sizes[i]);
    if (r < 0 && r != RILL_EAGAIN) break;
    if (!wrote(hd, r)) return 0;
  }
  hd->w = 4;
  h_finish(hd);
  return 1;
}

static void step(handler_t *hd) {
  rill_http_conn_t *c = hd->c;
  switch (hd->kind) {
  case H_ECHO: {
    if (hd->step++ == 0) {
      char body[160];
      int n = snprintf(body, sizeof(body), "%s %.*s HTTP/1.%d\n", hd->method,
                       (int)hd->tlen, hd->target, hd->minor);
      if (!wrote(hd, respond_text(hd, 200, NULL, NULL, body, (size_t)n))) return;
    }
    break;
  }
  case H_READ:
  case H_PARTIAL:
  case H_BROKEN:
    if (!read_body(hd)) return;
    if (hd->step++ == 0) {
      if (hd->kind == H_BROKEN && hd->rend < 0) {
        finish(hd, 0);
        return;
      }
      if (!wrote(hd, respond_read(hd, hd->kind == H_PARTIAL ? "partial" : "read")))
        return;
    }
    break;
  case H_STREAM:
    if (!stream_out(hd, NULL, 0)) return;
    break;
  case H_LENGTH: {
    static const rill_hdr_t h[] = {{"Content-Length", 14, "5108", 4}};
    if (!stream_out(hd, h, 1)) return;
    break;
  }
  case H_OVER: {
    static const rill_hdr_t h[] = {{"content-length", 14, "50", 2}};
    /* 1 byte, then 100 (past 50: refused), 5000 (refused), 7: 8 of 50. */
    if (!stream_out(hd, h, 1)) return;
    break;
  }
  case H_UPGRADE: {
    static const rill_hdr_t h[] = {{"Upgrade", 7, "websocket", 9},
                                   {"Connection", 10, "Upgrade", 7}};
    rill_stream_t *t = h_upgrade(hd, h, 2);
    if (t)
      t->vt->close(t);
    else
      respond_text(hd, 400, NULL, NULL, "no upgrade\n", 11);
    break;
  }
  case H_TUNNEL:
    if (hd->step == 0) {
      hd->step = 1;
      static const rill_hdr_t h[] = {{"Upgrade", 7, "echo", 4}};
      hd->up = h_upgrade(hd, h, 1);
      if (hd->up == NULL) {
        respond_text(hd, 400, NULL, NULL, "no tunnel\n", 10);
        break;
      }
      rill__stream_bind(hd->up, &hd->ub, &up_ops);
      /* As the Lua face does: the connection's work is done, so it is
       * freed now, not when this (long) handler ends. */
      c->data = NULL;
      hd->c = NULL;
      rill__http_conn_release(c);
    }
    for (;;) {
      rill_stream_t *t = hd->up;
      if (t == NULL) break;
      const char *p;
      size_t n;
      int r = t->vt->peek(t, &p, &n);
      if (r < 0) {
        rill__stream_unbind(&hd->ub);
        hd->up = NULL;
        t->vt->close(t);
        break;
      }
      if (n > 0) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        r = t->vt->write(t, &b, 1);
        t->vt->consume(t, n);
        hd->echoed += n;
        if (r == RILL_EAGAIN) {
          hd->wait = W_DRAIN;
          return;
        }
        continue;
      }
      r = rill__stream_fill(t);
      if (r < 0) continue; /* peek says how it ended */
      r = t->vt->peek(t, &p, &n);
      if (r == 0 && n == 0) {
        hd->wait = W_UP;
        return;
      }
    }
    break;
  case H_ERROR:
    finish(hd, 0);
    return;
  case H_FAIL:
    if (hd->step++ == 0) {
      h_write(hd, 200, NULL, 0, "partial answer", 14);
      wait_for(hd, W_DEFER);
      return;
    }
    finish(hd, 0);
    return;
  case H_DEFER:
    if (hd->step == 0) {
      hd->step = 1;
      wait_for(hd, W_DEFER);
      return;
    }
    if (!read_body(hd)) return;
    if (hd->step == 1) {
      hd->step = 2;
      wait_for(hd, W_DEFER);
      return;
    }
    if (hd->step++ == 2 && !wrote(hd, respond_read(hd, "deferred"))) return;
    break;
  case H_CLOSE:
    if (hd->step++ == 0 &&
        !wrote(hd, respond_text(hd, 200, "Connection", "close", "bye\n", 4)))
      return;
    break;
  case H_BAD:
    if (hd->step++ == 0) {
      int r = respond_text(hd, 200, "X-Bad", "a\r\nInjected: 1", "x", 1);
      FZ_ASSERT(T, r == UV_EINVAL || hd->closed,
                "a header value with CR LF was taken: %d", r);
      r = respond_text(hd, 200, "Bad Name", "v", "x", 1);
      FZ_ASSERT(T, r == UV_EINVAL || hd->closed,
                "a header name with a space was taken: %d", r);
      if (!wrote(hd, respond_text(hd, 200, "X-Good", "yes", "fine\n", 5))) return;
    }
    break;
  case H_NOBODY:
    if (hd->step++ == 0 && !wrote(hd, respond_text(hd, 204, NULL, NULL, "nope", 4)))
      return;
    break;
  case H_LARGE:
    if (hd->step++ == 0 &&
        !wrote(hd, h_respond(hd, 200, NULL, 0, (const char *)pattern, 5000)))
      return;
    break;
  case H_TRAILERS: {
    if (!read_body(hd)) return;
    if (hd->step++ == 0) {
      char body[512];
      size_t n = 0;
      const rill_chunked_t *ch = rill__http_conn_chunk(c);
      if (ch) {
        rill_http_field_t f[8];
        int k = rill__chunked_trailers(ch, f, 8);
        n += (size_t)snprintf(body, sizeof(body), "%d trailers:", k);
        for (int i = 0; i < k && n < sizeof(body) - 40; i++) {
          FZ_ASSERT(T, (uint64_t)f[i].name_off + f[i].name_len <= ch->tlen,
                    "trailer %d past the section", i);
          n += (size_t)snprintf(body + n, sizeof(body) - n, " %.*s",
                                (int)(f[i].name_len > 30 ? 30 : f[i].name_len),
                                ch->trailers + f[i].name_off);
        }
      } else {
        n += (size_t)snprintf(body, sizeof(body), "no trailers, end %d", hd->rend);
      }
      body[n++] = '\n';
      if (!wrote(hd, respond_text(hd, 200, NULL, NULL, body, n))) return;
    }
    break;
  }
  case H_TWICE:
    if (hd->step++ == 0) {
      int r = respond_text(hd, 201, NULL, NULL, "one\n", 4);
      int r2 = respond_text(hd, 202, NULL, NULL, "two\n", 4);
      FZ_ASSERT(T, r2 == UV_EBUSY || hd->closed, "a second answer was taken: %d", r2);
      r2 = h_write(hd, 200, NULL, 0, "three", 5);
      FZ_ASSERT(T, r2 == UV_EBUSY || hd->closed, "a write after the answer was taken: %d",
                r2);
      if (!wrote(hd, r)) return;
    }
    break;
  }
  finish(hd, 1);
}

static void on_request(rill_http_conn_t *c) {
  FZ_ASSERT(T, c->state == RILL_CONN_HANDLER && c->head && c->body,
            "on_request in state %d", c->state);
  FZ_ASSERT(T, c->data == NULL, "a request while a handler runs");
  handler_t *hd = calloc(1, sizeof(*hd));
  if (hd == NULL) abort();
  live++;
  hd->lnext = live_head;
  if (live_head) live_head->lprev = hd;
  live_head = hd;
  hd->c = c;
  c->data = hd;
  const rill_http_head_t *h = c->head;
  FZ_ASSERT(T, (size_t)h->url_off + h->url_len <= c->hlen, "the target past the head");
  hd->tlen = h->url_len < sizeof(hd->target) ? h->url_len : sizeof(hd->target);
  memcpy(hd->target, c->hbuf + h->url_off, hd->tlen);
  snprintf(hd->method, sizeof(hd->method), "%s", llhttp_method_name(h->method));
  hd->minor = h->minor;
  hd->kind = handler_kind(hd->target, hd->tlen);
  hd->limit = UINT64_MAX;
  if (hd->kind == H_PARTIAL) {
    char d = hd->tlen > 2 ? hd->target[2] : '0';
    hd->limit = d >= '0' && d <= '9' ? 5 * (uint64_t)(d - '0') + 1 : 3;
  }
  wake(hd);
}

/* ---- one run ---- */

static size_t take_output(fz_rec_t *out, memstream_t *m) {
  size_t n = m->out_len;
  if (n == 0) return 0;
  fz_put(out, m->out, n);
  memstream_take(m, NULL, 0);
  return n;
}

static void settle(fz_rec_t *out, memstream_t *m) {
  for (int i = 0;; i++) {
    FZ_ASSERT(T, i < 100000, "callbacks without end");
    int did = memstream_run();
    did += run_deferred();
    size_t k = take_output(out, m);
    if (!did && !k) break;
  }
}

/* Blanks the values of "Date: <IMF-fixdate>" lines: the clock may tick
 * between the two runs. */
static void blank_dates(fz_rec_t *r) {
  static const char key[] = "\r\nDate: ";
  const size_t kl = sizeof(key) - 1, vl = 29; /* "Sun, 06 Nov 1994 08:49:37 GMT" */
  for (size_t i = 0; i + kl + vl + 2 <= r->len; i++) {
    if (memcmp(r->p + i, key, kl) != 0) continue;
    uint8_t *v = r->p + i + kl;
    if (memcmp(v + vl - 3, "GMT\r\n", 5) == 0) memset(v, 'D', vl - 4);
  }
}

/* ---- a worker to tear down ----
 * As in the runtime, a listener (here a stand-in object linked into the
 * worker) holds a reference to the server, each connection one more; the
 * last one to go frees the server. */

typedef struct {
  rill_obj_t obj;
  rill_http_server_t *srv;
} holder_t;

static void server_free(rill_http_server_t *s) {
  rill__http_server_close(s);
  free(s);
}

static void holder_destroy(rill_obj_t *o) {
  holder_t *h = rill__container_of(o, holder_t, obj);
  rill_http_server_t *s = h->srv;
  free(h);
  if (--s->refs == 0) s->on_free(s);
}

static rill_http_server_t *teardown_server(const rill_http_limits_t *lim) {
  rill_worker_t *w = rill__worker_new(NULL);
  rill_http_server_t *s = calloc(1, sizeof(*s));
  holder_t *h = calloc(1, sizeof(*h));
  if (w == NULL || s == NULL || h == NULL || rill__http_server_init(s, w) != 0) abort();
  w->log_level = RILL_LOG_ERROR;
  s->limits = *lim;
  s->on_request = on_request;
  s->on_drained = on_drained;
  s->on_close = on_close;
  s->on_free = server_free;
  s->refs = 1;
  h->srv = s;
  rill__obj_link(w, &h->obj, holder_destroy);
  return s;
}

/* Tears w down with whatever runs on it; the handlers' tasks die with it
 * (their records are freed here, as a task's memory is). */
static void teardown(rill_worker_t *w, memstream_t *m) {
  rill__worker_free(w);
  ready_head = ready_tail = defer_head = NULL;
  while (live_head) {
    handler_t *hd = live_head;
    live_head = hd->lnext;
    /* A tunnel's transport was the task's own (a stream object of the
     * worker in the runtime): it goes with it. */
    if (hd->up) {
      rill__stream_unbind(&hd->ub);
      hd->up->vt->abort(hd->up);
    }
    free(hd);
    live--;
  }
  if (!m->closed) m->base.vt->abort(&m->base);
}

static void run(fz_rec_t *rec, const uint8_t *data, size_t n, uint8_t cfg, int split) {
  fz_rng_t g;
  fz_rng_init(&g, data, n);
  rill_http_server_t *srv = &S[cfg & 1];
  if (cfg & 128) srv = teardown_server(&S[cfg & 1].limits);
  rill_worker_t *w = cur_w = srv->w;
  memstream_t *m = memstream_new(w);
  if (m == NULL) abort();
  m->out_limit = out_limit_of[(cfg >> 1) & 3];
  fz_rec_t out = {0};
  rill_http_conn_t *c = rill__http_conn_new(srv, &m->base);
  FZ_ASSERT(T, c != NULL, "no connection");
  settle(&out, m);
  /* The input, whole or in pieces; with bit 6, up to its middle, then the
   * rest with writes failing. */
  size_t half = (cfg & 64) ? n / 2 : n;
  int open_at_half = 0;
  for (size_t pos = 0; pos < n;) {
    size_t end = pos < half ? half : n;
    size_t k = split ? fz_piece(&g, end - pos) : end - pos;
    memstream_feed(m, data + pos, k);
    pos += k;
    settle(&out, m);
    if (pos == half && half < n) {
      m->shut = 1; /* writes say RILL_ECLOSED */
      open_at_half = !m->closed;
    }
  }
  if (cfg & 8) {
    rill__http_server_make_room(srv);
    settle(&out, m);
  }
  if ((cfg & 16) && srv->refs > 1) {
    /* The connection is alive (it holds a reference): a graceful stop. */
    for (rill_obj_t *o = w->objs.next; o != &w->objs; o = o->next)
      if (o->kind == RILL_OBJ_CONN && o->shutdown) {
        o->shutdown(o);
        break;
      }
    settle(&out, m);
  }
  if (cfg & 128) {
    teardown(w, m); /* frees srv too */
    take_output(&out, m);
  } else {
    if (cfg & 32) m->read_err = UV_ECONNRESET;
    memstream_eof(m);
    settle(&out, m);
    FZ_ASSERT(T, m->closed,
              "the connection is still open after the end of its input "
              "(nothing can come any more)");
    for (int i = 0; i < 4 && srv->refs > 1; i++)
      uv_run(w->loop, UV_RUN_NOWAIT);
    FZ_ASSERT(T, srv->refs == 1, "the closed connection was not freed");
  }
  FZ_ASSERT(T, live == 0 && ready_head == NULL && defer_head == NULL,
            "%d handlers left after the connection closed", live);
  FZ_ASSERT(T, m->base.top == NULL, "a binding left on the closed transport");
  blank_dates(&out);
  fz_put_tag(rec, 'o');
  fz_put_bytes(rec, out.p, out.len);
  fz_put_tag(rec, 'c');
  fz_put_u64(rec, (uint64_t)m->closed);
  /* Once writes fail, whether the connection then closes or resets its
   * transport depends on when the failure is found (between requests it
   * resets, at the end of a request it closes), so on the cut; and nothing
   * the client could see tells them apart. */
  if (!open_at_half) fz_put_u64(rec, (uint64_t)m->aborted);
  fz_rec_free(&out);
  memstream_free(m);
}

static void init(void) {
  W = rill__worker_new(NULL);
  if (W == NULL) abort();
  W->log_level = RILL_LOG_ERROR;
  for (int i = 0; i < 2; i++) {
    rill_http_server_t *s = &S[i];
    if (rill__http_server_init(s, W) != 0) abort();
    rill__http_limits_default(&s->limits);
    s->on_request = on_request;
    s->on_drained = on_drained;
    s->on_close = on_close;
    s->refs = 1; /* ours: the servers live as long as the process */
  }
  S[1].limits.max_header_bytes = 256;
  S[1].limits.max_headers = 6;
  S[1].limits.max_body_bytes = 100;
  S[1].limits.drain_bytes = 64;
  for (size_t i = 0; i < sizeof(pattern); i++)
    pattern[i] = (uint8_t)('a' + i % 26);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (W == NULL) init();
  return fz_whole_and_split(T, run, data, size);
}
