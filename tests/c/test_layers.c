/* The C layers, linked without LuaJIT and driven through the in-memory
 * transport (memstream.c): the binding stack and wait records, an HTTP/1.1
 * connection with a small C handler, a WebSocket connection, and TLS between
 * a client and a server in one process. Each HTTP case is also fed in pieces
 * of every size, and must give the same bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_conn.h"
#include "memstream.h"
#include "tls.h"
#include "wait.h"
#include "ws_conn.h"

#include "check.h"

static rill_worker_t *W;

/* Turns the loop until nothing is due (http_conn frees closed connections
 * on its timer's next turn). */
static void settle(void) {
  for (int i = 0; i < 8; i++) {
    memstream_run();
    uv_run(W->loop, UV_RUN_NOWAIT);
  }
}

/* ---- bindings ---- */

typedef struct {
  rill_binding_t b;
  char name;
  char *log; /* appended to on each callback */
} tb_t;

static void tb_note(tb_t *t, char what) {
  size_t n = strlen(t->log);
  t->log[n] = t->name;
  t->log[n + 1] = what;
  t->log[n + 2] = 0;
}
static void tb_readable(rill_binding_t *b, int status) { tb_note((tb_t *)b, 'r'); }
static void tb_drained(rill_binding_t *b, int status) { tb_note((tb_t *)b, 'd'); }
static void tb_gone(rill_binding_t *b) { tb_note((tb_t *)b, 'g'); }

static const rill_binding_ops_t all_ops = {tb_readable, tb_drained, tb_gone};
static const rill_binding_ops_t read_ops = {tb_readable, NULL, tb_gone};

static void test_bindings(void) {
  char log[64] = "";
  memstream_t *m = memstream_new(W);
  tb_t a = {.name = 'a', .log = log}, b = {.name = 'b', .log = log},
       c = {.name = 'c', .log = log};
  rill__stream_bind(&m->base, &a.b, &all_ops);
  rill__stream_bind(&m->base, &b.b, &read_ops);
  /* readable goes to the top; drained to the topmost that has it */
  rill__stream_readable(&m->base, 0);
  rill__stream_drained(&m->base, 0);
  CHECK(strcmp(log, "brad") == 0, "events: %s", log);
  /* b leaves: a hears readable again */
  rill__stream_unbind(&b.b);
  rill__stream_unbind(&b.b); /* unbinding twice is harmless */
  log[0] = 0;
  rill__stream_readable(&m->base, 0);
  CHECK(strcmp(log, "ar") == 0, "after unbind: %s", log);
  /* unbinding from the middle of the stack keeps the rest */
  rill__stream_bind(&m->base, &b.b, &read_ops);
  rill__stream_bind(&m->base, &c.b, &read_ops);
  rill__stream_unbind(&b.b);
  log[0] = 0;
  /* closing: every binding is told, top down, and taken off */
  m->base.vt->close(&m->base);
  CHECK(strcmp(log, "cgag") == 0, "gone order: %s", log);
  CHECK(m->base.top == NULL && a.b.s == NULL && c.b.s == NULL, "bindings left");
  memstream_free(m);
}

/* ---- wait records ---- */

static int resumed, cancelled_with;
static void w_resume(rill_wait_t *wt, int nres) { resumed += nres + 1; }
static int w_cancel(rill_wait_t *wt, int status) {
  cancelled_with = status;
  return 2;
}

static void test_waits(void) {
  rill_waitq_t q = {NULL};
  rill_wait_t a = {.kind = 1, .cancel = w_cancel, .resume = w_resume};
  rill_wait_t b = {.kind = 2, .cancel = w_cancel, .resume = w_resume};
  rill__wait_start(&a, &q);
  rill__wait_start(&b, &q);
  CHECK(rill__waitq_find(&q, 2) == &b && rill__waitq_find(&q, 1) == &a, "find");
  rill__wait_done(&a, 1); /* the object pushed one result */
  CHECK(resumed == 2 && !a.pending && rill__waitq_find(&q, 1) == NULL, "done");
  rill__waitq_cancel_all(&q, RILL_ECLOSED); /* the object closed */
  CHECK(cancelled_with == RILL_ECLOSED && resumed == 5 && q.head == NULL, "cancel all");
  rill_wait_t t = {.cancel = w_cancel, .resume = w_resume};
  rill__wait_start(&t, NULL); /* a wait on time alone */
  rill__wait_cancel(&t, UV_ETIMEDOUT);
  CHECK(cancelled_with == UV_ETIMEDOUT && !t.pending, "timeout");
}

/* ---- HTTP/1.1 with a C handler ---- */

enum { APP_READ, APP_IGNORE, APP_GIVE_UP, APP_STREAM };

typedef struct {
  rill_binding_t b; /* on the body while reading it */
  rill_http_conn_t *c;
  int mode;
  size_t got;
  unsigned sum;
  int err;
} app_t;

static app_t app;
static rill_http_server_t srv;

static void app_answer(app_t *a) {
  rill__stream_unbind(&a->b);
  rill_http_conn_t *c = a->c;
  char body[96];
  int trailers = 0;
  const rill_chunked_t *ch = rill__http_conn_chunk(c);
  if (ch) {
    rill_http_field_t f[8];
    trailers = rill__chunked_trailers(ch, f, 8);
  }
  int n = snprintf(body, sizeof(body), "%.*s len=%zu sum=%u trailers=%d\n",
                   (int)c->head->url_len, c->hbuf + c->head->url_off, a->got, a->sum,
                   trailers);
  if (a->mode == APP_STREAM) {
    for (int i = 0; i < 3; i++)
      rill__http_write(c, 200, NULL, 0, body, (size_t)n);
    rill__http_finish(c, 200, NULL, 0);
  } else {
    rill_hdr_t h = {"X-App", 5, "c", 1};
    rill__http_respond(c, 200, &h, 1, body, (size_t)n);
  }
  a->c = NULL;
  rill__http_conn_handler_done(c, 1);
}

static void app_fail(app_t *a, int err) {
  rill__stream_unbind(&a->b);
  a->err = err;
  rill_http_conn_t *c = a->c;
  a->c = NULL;
  rill__http_conn_handler_done(c, 0); /* as a handler that raised */
}

static void app_pump(app_t *a) {
  rill_stream_t *s = &a->c->body->base;
  for (;;) {
    const char *p;
    size_t n;
    int r = s->vt->peek(s, &p, &n);
    if (r == RILL_EOF) return app_answer(a);
    if (r < 0) return app_fail(a, r);
    if (n > 0) {
      if (a->mode == APP_GIVE_UP) return app_answer(a); /* as after a read timeout */
      for (size_t i = 0; i < n; i++)
        a->sum = a->sum * 31 + (unsigned char)p[i];
      a->got += n;
      s->vt->consume(s, n);
      continue;
    }
    r = rill__stream_fill(s);
    if (r == RILL_EOF) continue;
    if (r < 0) return app_fail(a, r);
    if (s->vt->peek(s, &p, &n) != 0 || n > 0) continue;
    return; /* readable() follows */
  }
}

static void app_readable(rill_binding_t *b, int status) {
  app_pump(rill__container_of(b, app_t, b));
}

static const rill_binding_ops_t app_ops = {.readable = app_readable};

static int next_mode = APP_READ;

static void on_request(rill_http_conn_t *c) {
  memset(&app, 0, sizeof(app));
  app.c = c;
  app.mode = next_mode;
  if (app.mode == APP_IGNORE) return app_answer(&app);
  rill__stream_bind(&c->body->base, &app.b, &app_ops);
  app_pump(&app);
}

/* Feeds in to a new connection in pieces of step bytes (0: whole), then
 * ends the input; returns the output with Date lines blanked, and whether
 * the connection closed. */
static char *run_http(const char *in, size_t len, size_t step, int *closed) {
  memstream_t *m = memstream_new(W);
  rill__http_conn_new(&srv, &m->base);
  settle();
  for (size_t off = 0; off < len;) {
    size_t k = step && len - off > step ? step : len - off;
    memstream_feed(m, in + off, k);
    off += k;
    settle();
  }
  memstream_eof(m);
  settle();
  *closed = m->closed;
  char *out = malloc(m->out_len + 1);
  size_t n = memstream_take(m, out, 0);
  out[n] = 0;
  for (char *d = out; (d = strstr(d, "Date: ")) != NULL; d += 6)
    memset(d + 6, 'x', 29);
  settle();
  memstream_free(m);
  return out;
}

/* Checks that in gives the same output whole and in pieces of every size. */
static char *http_same(const char *name, const char *in) {
  size_t len = strlen(in);
  int closed;
  char *whole = run_http(in, len, 0, &closed);
  CHECK(closed, "%s: the connection did not close at the end of the input", name);
  for (size_t step = 1; step < len; step += step < 8 ? 1 : 7) {
    char *part = run_http(in, len, step, &closed);
    CHECK(strcmp(part, whole) == 0, "%s (step %zu): %s\n-- whole: %s", name, step, part,
          whole);
    free(part);
  }
  return whole;
}

static int count(const char *s, const char *sub) {
  int n = 0;
  for (; (s = strstr(s, sub)) != NULL; s += strlen(sub))
    n++;
  return n;
}

static void test_http(void) {
  CHECK(rill__http_server_init(&srv, W) == 0, "server");
  rill__http_limits_default(&srv.limits);
  srv.on_request = on_request;
  srv.refs = 1;

  next_mode = APP_READ;
  char *out = http_same("pipelined", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                                     "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
                                     "GET /c HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(count(out, "HTTP/1.1 200 OK") == 3, "pipelined: %s", out);
  CHECK(strstr(out, "/a len=0") < strstr(out, "/b len=0") &&
            strstr(out, "/b len=0") < strstr(out, "/c len=0"),
        "pipelined order: %s", out);
  free(out);

  out = http_same("content-length", "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
                                    "hello world");
  CHECK(strstr(out, "/p len=11 sum=") != NULL, "body: %s", out);
  free(out);

  /* RFC 9112 7.1 example shape, with a trailer section */
  out = http_same("chunked", "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "4\r\nWiki\r\n5\r\npedia\r\n0\r\nX-Sum: 9\r\nY: z\r\n\r\n"
                             "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(strstr(out, "/c len=9") && strstr(out, "trailers=2") && strstr(out, "/next len=0"),
        "chunked: %s", out);
  free(out);

  /* A handler that gives up on a chunked body (a read timeout) and answers:
   * the rest, trailers split anywhere, is drained, and the connection goes
   * on (this crashed the worker when the trailers were split). */
  next_mode = APP_GIVE_UP;
  out = http_same("abandoned chunked body",
                  "POST /g HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "3\r\nabc\r\n0\r\nX: y\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(count(out, "HTTP/1.1 200") == 2 && strstr(out, "/after"), "abandoned: %s", out);
  free(out);

  /* Broken framing found by the handler's read: 400, whatever it answers. */
  next_mode = APP_READ;
  out = http_same("broken chunk read",
                  "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "zz\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(strncmp(out, "HTTP/1.1 400", 12) == 0 && !strstr(out, "smuggled"), "broken: %s", out);
  free(out);

  /* Not read by the handler: its answer stands (it does not depend on when
   * the bytes came), the drain meets the break and closes. */
  next_mode = APP_IGNORE;
  out = http_same("broken chunk unread",
                  "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "zz\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(count(out, "HTTP/1.1 ") == 1 && !strstr(out, "smuggled"), "unread: %s", out);
  free(out);

  next_mode = APP_READ;
  out = http_same("bare CR", "GET / HTTP/1.1\r\nHost: x\r\n\rX-A: b\r\n\r\n");
  CHECK(strncmp(out, "HTTP/1.1 400", 12) == 0, "bare CR: %s", out);
  free(out);

  next_mode = APP_STREAM;
  out = http_same("streamed answer", "GET /s HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(strstr(out, "Transfer-Encoding: chunked") && strstr(out, "\r\n0\r\n\r\n") &&
            count(out, "/s len=0") == 3,
        "stream: %s", out);
  free(out);

  /* The transport closes under a handler waiting for body bytes: the wait
   * ends with "closed", the connection goes, nothing leaks. */
  next_mode = APP_READ;
  memstream_t *m = memstream_new(W);
  rill__http_conn_new(&srv, &m->base);
  const char *partial = "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc";
  memstream_feed(m, partial, strlen(partial));
  settle();
  CHECK(app.c != NULL && app.got == 3, "waiting for the body: got %zu", app.got);
  m->base.vt->abort(&m->base);
  settle();
  CHECK(app.c == NULL && app.err == RILL_ECLOSED, "reader after the close: %d", app.err);
  memstream_free(m);

  /* At the connection limit, the longest waiting connection makes room. */
  memstream_t *ms[3];
  for (int i = 0; i < 3; i++) {
    ms[i] = memstream_new(W);
    rill__http_conn_new(&srv, &ms[i]->base);
    settle();
  }
  memstream_feed(ms[1], "GET", 3); /* a head begun: still waiting */
  settle();
  CHECK(rill__http_server_make_room(&srv) == 1 && ms[0]->aborted, "the oldest goes first");
  CHECK(rill__http_server_make_room(&srv) == 1 && ms[1]->aborted, "then the next");
  settle();
  for (int i = 0; i < 3; i++) {
    if (!ms[i]->closed) ms[i]->base.vt->abort(&ms[i]->base);
    settle();
    memstream_free(ms[i]);
  }
  rill__http_server_close(&srv);
  settle();
}

/* ---- WebSocket ---- */

static int ws_nexts, ws_closed, ws_last;
/* As an owner does: a next() that waited goes on. */
static void ws_next(rill_websocket_t *ws) {
  ws_nexts++;
  ws_last = rill__ws_next(ws);
}
static void ws_closed_cb(rill_websocket_t *ws) { ws_closed++; }
static const rill_ws_ops_t ws_ops = {.next = ws_next, .closed = ws_closed_cb};

static rill_websocket_t *ws_open(memstream_t **mp) {
  *mp = memstream_new(W);
  rill_ws_opts_t o = {.server = 1, .max_frame = 1 << 20, .max_message = 1 << 20};
  return rill__ws_new(W, &(*mp)->base, &o, &ws_ops, NULL);
}

/* A masked client frame of a payload under 126 bytes (mask 0: XOR nothing). */
static size_t frame(char *out, int opcode, const char *p, size_t n) {
  out[0] = (char)(0x80 | opcode);
  out[1] = (char)(0x80 | n);
  memset(out + 2, 0, 4);
  memcpy(out + 6, p, n);
  return n + 6;
}

static void test_ws(void) {
  memstream_t *m;
  rill_websocket_t *ws = ws_open(&m);
  char f[256];
  /* An empty ping is answered at once, with nothing after it yet. */
  CHECK(rill__ws_next(ws) == RILL_EAGAIN, "no message yet");
  memstream_feed(m, f, frame(f, RILL_WS_PING, "", 0));
  settle();
  char out[64];
  size_t n = memstream_take(m, out, sizeof(out));
  CHECK(n == 2 && (unsigned char)out[0] == 0x8A && out[1] == 0, "empty pong: %zu", n);
  /* An empty close is answered at once, and the connection ends. */
  memstream_feed(m, f, frame(f, RILL_WS_CLOSE, "", 0));
  settle();
  n = memstream_take(m, out, sizeof(out));
  CHECK(n == 2 && (unsigned char)out[0] == 0x88 && out[1] == 0, "empty close: %zu", n);
  CHECK(m->closed && ws->state == RILL_WS_CLOSED && ws_last == RILL_ECLOSED,
        "closed after close");
  CHECK(ws->close_code == 1005, "close code %u", ws->close_code);
  rill__ws_free(ws);
  settle();
  memstream_free(m);

  /* Pings from a peer that does not read: pongs wait under the high-water
   * mark, and the reader stops until the transport drains. */
  ws = ws_open(&m);
  m->out_limit = 4096;
  char ping[125];
  memset(ping, 'p', sizeof(ping));
  size_t fl = frame(f, RILL_WS_PING, ping, sizeof(ping));
  for (int i = 0; i < 1000; i++)
    memstream_feed(m, f, fl);
  CHECK(rill__ws_next(ws) == RILL_EAGAIN, "waiting");
  settle();
  size_t unread = m->in_len - m->in_r;
  CHECK(m->out_len <= 4096 + 131 && unread > 100000,
        "while nobody reads: %zu bytes of pongs out, %zu of pings unread", m->out_len,
        unread);
  size_t pongs = 0;
  for (int rounds = 0; rounds < 10000 && pongs < 1000 * 127; rounds++) {
    pongs += memstream_take(m, NULL, 0);
    settle();
  }
  CHECK(pongs == 1000 * 127 && m->in_len == m->in_r, "all answered: %zu bytes", pongs);
  rill__ws_free(ws);
  settle();
  memstream_free(m);

  /* A frame of declared length sent in parts, by a client (each part
   * masked at its offset) to a server: nothing else goes between its bytes;
   * a pong due meanwhile follows it. */
  memstream_t *a = memstream_new(W), *b = memstream_new(W);
  memstream_join(a, b);
  rill_ws_opts_t co = {.server = 0, .max_frame = 1 << 20, .max_message = 1 << 20};
  rill_ws_opts_t so = {.server = 1, .max_frame = 1 << 20, .max_message = 1 << 20};
  rill_websocket_t *cw = rill__ws_new(W, &a->base, &co, &ws_ops, NULL);
  rill_websocket_t *sw = rill__ws_new(W, &b->base, &so, &ws_ops, NULL);
  static char big[300000];
  for (size_t i = 0; i < sizeof(big); i++)
    big[i] = (char)(i * 7 + i / 251);
  CHECK(rill__ws_send_begin(cw, RILL_WS_BINARY, 1, sizeof(big)) == 0, "frame begun");
  CHECK(rill__ws_send_part(cw, big, 100000) == 0, "first part");
  CHECK(rill__ws_send(cw, RILL_WS_TEXT, 1, "x", 1) == RILL_ESTATE, "no frame between");
  CHECK(rill__ws_send(sw, RILL_WS_PING, 1, "hi", 2) == 0, "server pings");
  settle();
  CHECK(rill__ws_next(cw) == RILL_EAGAIN && cw->pend_pong_set, "the client's pong waits");
  CHECK(rill__ws_send_part(cw, big + 100000, 199999) == 0, "second part");
  CHECK(cw->pend_pong_set, "still waiting: one byte to go");
  CHECK(rill__ws_send_part(cw, big, 2) == UV_EINVAL, "no more than declared");
  CHECK(rill__ws_send_part(cw, big + 299999, 1) == 0 && !cw->pend_pong_set,
        "the last byte, then the pong");
  CHECK(rill__ws_send_part(cw, big, 1) == UV_EINVAL, "no frame open");
  settle();
  CHECK(rill__ws_next(sw) == RILL_WS_MESSAGE && sw->msg_len == (int64_t)sizeof(big),
        "one frame of %zu bytes: %lld", sizeof(big), (long long)sw->msg_len);
  size_t got = 0;
  int same = 1;
  for (int rounds = 0; rounds < 1000; rounds++) {
    const char *p;
    size_t k;
    int r = sw->msg.vt->peek(&sw->msg, &p, &k);
    if (r == RILL_EOF) break;
    if (k == 0) {
      sw->msg.vt->fill(&sw->msg);
      settle();
      continue;
    }
    if (got + k > sizeof(big) || memcmp(p, big + got, k) != 0) same = 0;
    got += k;
    sw->msg.vt->consume(&sw->msg, k);
  }
  CHECK(got == sizeof(big) && same, "the payload arrived whole: %zu bytes, same %d", got, same);
  rill__ws_free(cw);
  rill__ws_free(sw);
  settle();
  memstream_free(a);
  memstream_free(b);
}

/* ---- TLS between two memory streams ---- */

typedef struct {
  rill_binding_t b;
  int result; /* RILL_EAGAIN until the handshake ends */
} hs_t;

static void hs_step(hs_t *h) {
  if (h->result == RILL_EAGAIN) h->result = rill__tls_handshake(h->b.s);
}
static void hs_readable(rill_binding_t *b, int status) { hs_step((hs_t *)b); }
static void hs_gone(rill_binding_t *b) { ((hs_t *)b)->result = RILL_ECLOSED; }
static const rill_binding_ops_t hs_ops = {.readable = hs_readable, .gone = hs_gone};

static char path_buf[512];
static const char *data_path(const char *name) {
  const char *dir = getenv("RILL_TEST_DATA");
  snprintf(path_buf, sizeof(path_buf), "%s/%s", dir ? dir : "tests/data", name);
  return path_buf;
}

/* A handshake between a server and a client that trusts ca (verify on or
 * off); returns the client's result. */
static int tls_pair(rill_tls_conf_t *sc, const char *ca, int verify, int close_mid) {
  char err[256], capath[512];
  snprintf(capath, sizeof(capath), "%s", data_path(ca));
  rill_tls_conf_t *cc;
  if (rill__tls_client_conf(W, capath, verify, NULL, 0, &cc, err, sizeof(err)) != 0) {
    fprintf(stderr, "client conf: %s\n", err);
    return -1;
  }
  memstream_t *a = memstream_new(W), *b = memstream_new(W);
  memstream_join(a, b);
  rill_stream_t *cs = rill__tls_new(cc, &a->base, "localhost");
  rill_stream_t *ss = rill__tls_new(sc, &b->base, NULL);
  rill__tls_conf_unref(cc);
  hs_t ch = {.result = RILL_EAGAIN}, sh = {.result = RILL_EAGAIN};
  rill__stream_bind(cs, &ch.b, &hs_ops);
  rill__stream_bind(ss, &sh.b, &hs_ops);
  hs_step(&ch);
  hs_step(&sh);
  if (close_mid) {
    memstream_run();
    cs->vt->close(cs); /* the stream closes in the client's handshake */
  }
  for (int i = 0; i < 100 && (ch.result == RILL_EAGAIN || sh.result == RILL_EAGAIN); i++)
    settle();
  int r = ch.result;
  if (r == 0 && sh.result == 0) {
    /* Data both ways once open; a resumed session sent no certificate. */
    /* Two writes in one burst: gathered, then sealed into one record when
     * the worker flushes (as the scheduler does when its tasks stop). */
    settle();
    uv_buf_t m1 = uv_buf_init("pi", 2), m2 = uv_buf_init("ng", 2);
    size_t before = b->in_len - b->in_r;
    CHECK(cs->vt->write(cs, &m1, 1) == 0 && cs->vt->write(cs, &m2, 1) == 0, "client write");
    CHECK(b->in_len - b->in_r == before, "the writes wait for the flush");
    rill__worker_flush(W);
    size_t rec = b->in_len - b->in_r - before;
    const unsigned char *h = (const unsigned char *)b->in + b->in_r + before;
    CHECK(rec > 5 && h[0] == 23 && (size_t)(h[3] << 8 | h[4]) == rec - 5,
          "one application-data record for both writes (%zu bytes)", rec);
    settle();
    const char *p;
    size_t n = 0;
    for (int i = 0; i < 10 && n == 0; i++) {
      ss->vt->peek(ss, &p, &n);
      if (n == 0) ss->vt->fill(ss);
      settle();
    }
    CHECK(n == 4 && memcmp(p, "ping", 4) == 0, "server read %zu", n);
  }
  if (!close_mid) cs->vt->close(cs);
  ss->vt->close(ss);
  settle();
  memstream_free(a);
  memstream_free(b);
  return r;
}

static void test_tls(void) {
  rill_tls_pair_t pair;
  char cert[512], key[512], err[256];
  snprintf(cert, sizeof(cert), "%s", data_path("server.pem"));
  snprintf(key, sizeof(key), "%s", data_path("server.key"));
  pair.cert = cert;
  pair.key = key;
  rill_tls_conf_t *sc;
  CHECK(rill__tls_server_conf(W, &pair, 1, NULL, 0, &sc, err, sizeof(err)) == 0,
        "server conf: %s", err);
  CHECK(tls_pair(sc, "ca.pem", 1, 0) == 0, "verified against its CA");
  CHECK(tls_pair(sc, "other_ca.pem", 1, 0) == RILL_EPROTO,
        "another CA refuses the certificate");
  CHECK(tls_pair(sc, "other_ca.pem", 0, 0) == 0, "verify off accepts it");
  /* After a session made with verify off, a verifying client must still
   * check the certificate (it used to resume the unverified session). */
  CHECK(tls_pair(sc, "other_ca.pem", 1, 0) == RILL_EPROTO,
        "a session made without verification is not offered to a verifying client");
  /* Closing the stream in its handshake tells whoever waits on it. */
  CHECK(tls_pair(sc, "ca.pem", 1, 1) == RILL_ECLOSED, "closed mid-handshake");
  rill__tls_conf_unref(sc);
}

int main(void) {
  W = rill__worker_new(NULL);
  test_bindings();
  test_waits();
  test_http();
  test_ws();
  test_tls();
  rill__worker_free(W);
  printf("layers: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
