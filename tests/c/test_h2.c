/* The HTTP/2 server layer (h2_conn.c, h2_stream.c) without Lua, over the
 * in-memory transport, with nghttp2 itself as the client: concurrent
 * streams, a body nobody reads stalling only its stream, windows granted as
 * the reader reads, response writes waiting on a closed window, the rapid
 * reset budget, a head too large, a graceful stop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "h2_conn.h"
#include "memstream.h"

#include "check.h"

static rill_worker_t *W;

/* ---- the server side: C handlers picked by the path ---- */

typedef struct {
  rill_binding_t b;
  rill_h2_stream_t *st;
  char path[64];
  size_t got;         /* body bytes read */
  size_t read_budget; /* /slow: bytes it may read now */
  size_t to_write, written;
  int drained, eagain, done, ended;
} hreq_t;

static hreq_t *reqs[256];
static int nreqs;
static int conn_closed;

static void finish(hreq_t *h) {
  if (h->done) return;
  h->done = 1;
  rill__stream_unbind(&h->b);
  rill__h2_stream_handler_done(h->st, 1);
}

/* Reads what the budget allows; at the end answers with the count. */
static void read_body(hreq_t *h) {
  rill_stream_t *s = &h->st->body;
  for (;;) {
    const char *p;
    size_t n;
    int r = s->vt->peek(s, &p, &n);
    if (r == RILL_EOF) {
      char num[32];
      int len = snprintf(num, sizeof(num), "%zu", h->got);
      h->ended = 1;
      rill__h2_respond(h->st, 200, NULL, 0, num, (size_t)len);
      finish(h);
      return;
    }
    if (r < 0) {
      finish(h);
      return;
    }
    if (n > h->read_budget) n = h->read_budget;
    if (n == 0) break;
    s->vt->consume(s, n);
    h->got += n;
    h->read_budget -= n;
  }
  if (h->read_budget > 0 && s->vt->fill(s) < 0) finish(h);
}

static void h_readable(rill_binding_t *b, int status) {
  read_body(rill__container_of(b, hreq_t, b));
}

static const rill_binding_ops_t h_ops = {.readable = h_readable};

static void write_more(hreq_t *h) {
  static char block[16384];
  while (h->written < h->to_write) {
    size_t n = h->to_write - h->written < sizeof(block) ? h->to_write - h->written
                                                        : sizeof(block);
    int r = rill__h2_write(h->st, 200, NULL, 0, block, n);
    if (r < 0 && r != RILL_EAGAIN) {
      finish(h);
      return;
    }
    h->written += n;
    if (r == RILL_EAGAIN) {
      h->eagain++;
      return;
    }
  }
  rill__h2_finish(h->st, 200, NULL, 0, NULL, 0);
  finish(h);
}

static void on_request(rill_h2_stream_t *st) {
  hreq_t *h = calloc(1, sizeof(*h));
  h->st = st;
  st->data = h;
  snprintf(h->path, sizeof(h->path), "%.*s", (int)st->head.path_len, st->head.path);
  reqs[nreqs++] = h;
  if (strcmp(h->path, "/hello") == 0) {
    rill_hdr_t hd = {"X-Test", 6, "yes", 3};
    rill__h2_respond(st, 200, &hd, 1, "hello", 5);
    finish(h);
  } else if (strcmp(h->path, "/echo") == 0) {
    h->read_budget = SIZE_MAX;
    rill__stream_bind(&st->body, &h->b, &h_ops);
    read_body(h);
  } else if (strcmp(h->path, "/slow") == 0) {
    rill__stream_bind(&st->body, &h->b, &h_ops); /* reads only when told */
  } else if (strncmp(h->path, "/big", 4) == 0) {
    h->to_write = (size_t)atol(h->path + 5);
    write_more(h);
  } else if (strcmp(h->path, "/trailers") == 0) {
    rill_hdr_t t = {"grpc-status", 11, "0", 1};
    rill__h2_write(st, 200, NULL, 0, "abc", 3);
    rill__h2_finish(st, 200, NULL, 0, &t, 1);
    finish(h);
  }
  /* "/hang": no answer until the test gives one */
}

static void on_drained(rill_h2_stream_t *st, int status) {
  hreq_t *h = st->data;
  h->drained++;
  if (status < 0) {
    finish(h);
    return;
  }
  write_more(h);
}

static void on_close(rill_h2_conn_t *c) {
  conn_closed = 1;
}

/* ---- the client: nghttp2 over the memstream ---- */

typedef struct {
  int32_t id;
  int status;
  size_t got;
  char body[256];
  int closed;
  uint32_t error;
  int trailer_seen;
  /* a request body to send */
  size_t body_left;
} cstream_t;

typedef struct {
  nghttp2_session *s;
  memstream_t *m;
  cstream_t st[256];
  int n;
  int goaway;
  uint32_t goaway_error;
  int32_t goaway_last;
  uint8_t *out;
  size_t olen, ocap;
} client_t;

static cstream_t *cfind(client_t *cl, int32_t id) {
  for (int i = 0; i < cl->n; i++)
    if (cl->st[i].id == id) return &cl->st[i];
  return NULL;
}

static ssize_t c_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
                      void *user) {
  client_t *cl = user;
  memstream_feed(cl->m, data, len);
  return (ssize_t)len;
}

static int c_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                    size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                    void *user) {
  cstream_t *cs = cfind(user, frame->hd.stream_id);
  if (cs == NULL) return 0;
  if (namelen == 7 && memcmp(name, ":status", 7) == 0)
    cs->status = atoi((const char *)value);
  if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) cs->trailer_seen = 1;
  return 0;
}

static int c_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                  size_t len, void *user) {
  cstream_t *cs = cfind(user, id);
  if (cs == NULL) return 0;
  if (cs->got < sizeof(cs->body) - 1) {
    size_t k =
        len < sizeof(cs->body) - 1 - cs->got ? len : sizeof(cs->body) - 1 - cs->got;
    memcpy(cs->body + cs->got, data, k);
  }
  cs->got += len;
  return 0;
}

static int c_close(nghttp2_session *s, int32_t id, uint32_t err, void *user) {
  cstream_t *cs = cfind(user, id);
  if (cs) {
    cs->closed = 1;
    cs->error = err;
  }
  return 0;
}

static int c_frame(nghttp2_session *s, const nghttp2_frame *frame, void *user) {
  client_t *cl = user;
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    cl->goaway++;
    cl->goaway_error = frame->goaway.error_code;
    cl->goaway_last = frame->goaway.last_stream_id;
  }
  return 0;
}

static ssize_t c_body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                           uint32_t *flags, nghttp2_data_source *src, void *user) {
  cstream_t *cs = src->ptr;
  size_t n = len < cs->body_left ? len : cs->body_left;
  memset(buf, 'x', n);
  cs->body_left -= n;
  if (cs->body_left == 0) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

static void client_init(client_t *cl, memstream_t *m, int auto_window) {
  memset(cl, 0, sizeof(*cl));
  cl->m = m;
  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, c_send);
  nghttp2_session_callbacks_set_on_header_callback(cbs, c_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, c_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, c_frame);
  nghttp2_option *opt;
  nghttp2_option_new(&opt);
  if (!auto_window) nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_session_client_new2(&cl->s, cbs, cl, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(cl->s, NGHTTP2_FLAG_NONE, NULL, 0);
}

static cstream_t *request(client_t *cl, const char *method, const char *path, size_t body,
                          const nghttp2_nv *extra, size_t nextra) {
  nghttp2_nv nv[16] = {
      {(uint8_t *)":method", (uint8_t *)method, 7, strlen(method), 0},
      {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
      {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
      {(uint8_t *)":authority", (uint8_t *)"example.org", 10, 11, 0},
  };
  for (size_t i = 0; i < nextra; i++)
    nv[4 + i] = extra[i];
  cstream_t *cs = &cl->st[cl->n++];
  cs->body_left = body;
  nghttp2_data_provider prd = {.source.ptr = cs, .read_callback = c_body_read};
  cs->id = nghttp2_submit_request(cl->s, NULL, nv, 4 + nextra, body ? &prd : NULL, cs);
  return cs;
}

/* Runs both sides until nothing moves. */
static void pump(client_t *cl) {
  for (int i = 0; i < 1000; i++) {
    int moved = 0;
    if (nghttp2_session_want_write(cl->s)) {
      size_t before = cl->m->in_len;
      nghttp2_session_send(cl->s);
      moved |= cl->m->in_len != before;
    }
    moved |= memstream_run() > 0;
    rill__worker_flush(W);
    uv_run(W->loop, UV_RUN_NOWAIT);
    if (cl->m->out_len > 0) {
      char buf[65536];
      size_t n;
      while ((n = memstream_take(cl->m, buf, sizeof(buf))) > 0)
        nghttp2_session_mem_recv(cl->s, (const uint8_t *)buf, n);
      moved = 1;
    }
    if (!moved && !nghttp2_session_want_write(cl->s)) break;
  }
}

static rill_h2_server_t srv;

static rill_h2_conn_t *setup(client_t *cl, memstream_t **mp, int auto_window) {
  nreqs = 0;
  conn_closed = 0;
  memstream_t *m = memstream_new(W);
  *mp = m;
  client_init(cl, m, auto_window);
  return rill__h2_conn_new(&srv, &m->base);
}

static void teardown(client_t *cl, memstream_t *m) {
  if (!m->closed) m->base.vt->close(&m->base);
  pump(cl);
  for (int i = 0; i < nreqs; i++) {
    if (!reqs[i]->done) finish(reqs[i]);
  }
  pump(cl);
  for (int i = 0; i < nreqs; i++)
    free(reqs[i]);
  nreqs = 0;
  nghttp2_session_del(cl->s);
  memstream_free(m);
  uv_run(W->loop, UV_RUN_NOWAIT);
}

/* ---- cases ---- */

static void test_concurrent(void) {
  client_t cl;
  memstream_t *m;
  rill_h2_conn_t *c = setup(&cl, &m, 1);
  pump(&cl);
  uint64_t writes0 = c->writes;
  cstream_t *s[10];
  for (int i = 0; i < 10; i++)
    s[i] = request(&cl, "GET", "/hello", 0, NULL, 0);
  pump(&cl);
  for (int i = 0; i < 10; i++) {
    CHECK(s[i]->status == 200 && s[i]->closed && strcmp(s[i]->body, "hello") == 0,
          "stream %d: %d %s", i, s[i]->status, s[i]->body);
  }
  /* Ten answers, one burst: they left in one write (the gathered-write rule). */
  CHECK(c->writes - writes0 <= 2, "writes for 10 streams: %llu",
        (unsigned long long)(c->writes - writes0));
  CHECK(nreqs == 10 && strcmp(reqs[0]->path, "/hello") == 0, "requests: %d", nreqs);
  cstream_t *t = request(&cl, "GET", "/trailers", 0, NULL, 0);
  cstream_t *e = request(&cl, "POST", "/echo", 100000, NULL, 0);
  pump(&cl);
  CHECK(t->status == 200 && t->got == 3 && t->trailer_seen && t->closed && t->error == 0,
        "trailers: %d %zu %d", t->status, t->got, t->trailer_seen);
  CHECK(e->status == 200 && strcmp(e->body, "100000") == 0, "echo: %d %s", e->status,
        e->body);
  teardown(&cl, m);
}

/* A body nobody reads fills its stream's window only; another stream on
 * the connection completes; the window opens as far as the reader reads. */
static void test_noread(void) {
  client_t cl;
  memstream_t *m;
  setup(&cl, &m, 1);
  cstream_t *big = request(&cl, "POST", "/slow", 1 << 20, NULL, 0);
  pump(&cl);
  cstream_t *small = request(&cl, "GET", "/hello", 0, NULL, 0);
  pump(&cl);
  CHECK(small->status == 200 && small->closed, "the other stream: %d", small->status);
  hreq_t *h = reqs[0];
  CHECK(strcmp(h->path, "/slow") == 0, "first: %s", h->path);
  rill_h2_stream_t *st = h->st;
  size_t buffered = st->in_len - st->in_r;
  CHECK(buffered == 65535, "buffered unread: %zu", buffered);
  CHECK(big->body_left == (1 << 20) - 65535, "client left to send: %zu", big->body_left);
  /* The reader takes 10000 bytes: nghttp2 holds a WINDOW_UPDATE back
   * until half the window is consumed, so nothing more comes yet. */
  h->read_budget = 10000;
  read_body(h);
  pump(&cl);
  CHECK(h->got == 10000, "read: %zu", h->got);
  CHECK(big->body_left == (1 << 20) - 65535, "after a small read, left: %zu",
        big->body_left);
  /* 40000 bytes: exactly that much more may come. */
  h->read_budget = 30000;
  read_body(h);
  pump(&cl);
  CHECK(h->got == 40000, "read: %zu", h->got);
  CHECK(big->body_left == (1 << 20) - 65535 - 40000, "after a read, left: %zu",
        big->body_left);
  /* Now all of it. */
  h->read_budget = SIZE_MAX;
  read_body(h);
  pump(&cl);
  CHECK(h->got == (1 << 20) && big->status == 200 && strcmp(big->body, "1048576") == 0,
        "whole body: %zu, %d %s", h->got, big->status, big->body);
  teardown(&cl, m);
}

/* Response writes wait while the client's window is closed, and go on as
 * it opens it. */
static void test_write_window(void) {
  client_t cl;
  memstream_t *m;
  setup(&cl, &m, 0);
  cstream_t *s = request(&cl, "GET", "/big/1000000", 0, NULL, 0);
  pump(&cl);
  hreq_t *h = reqs[0];
  CHECK(s->got == 65535, "received with the first window: %zu", s->got);
  CHECK(h->eagain == 1 && h->written < 1000000, "writer waits: eagain %d written %zu",
        h->eagain, h->written);
  size_t queued = h->st->queued;
  CHECK(queued <= srv.limits.write_high + 16384, "queued: %zu", queued);
  int rounds = 0;
  size_t consumed = 0;
  while (!s->closed && rounds++ < 200) {
    nghttp2_session_consume(cl.s, s->id, s->got - consumed);
    consumed = s->got;
    pump(&cl);
  }
  CHECK(s->closed && s->got == 1000000 && s->error == 0, "whole: %zu (closed %d)", s->got,
        s->closed);
  CHECK(h->drained > 0, "drained: %d", h->drained);
  teardown(&cl, m);
}

/* Streams reset before their answer count; past the budget: GOAWAY
 * ENHANCE_YOUR_CALM and the connection closes. */
static void test_rapid_reset(void) {
  client_t cl;
  memstream_t *m;
  srv.limits.reset_budget = 20;
  setup(&cl, &m, 1);
  pump(&cl);
  cstream_t *s[30];
  for (int i = 0; i < 30; i++)
    s[i] = request(&cl, "GET", "/hang", 0, NULL, 0);
  nghttp2_session_send(cl.s); /* the HEADERS go, then the resets */
  for (int i = 0; i < 30; i++)
    nghttp2_submit_rst_stream(cl.s, NGHTTP2_FLAG_NONE, s[i]->id, NGHTTP2_CANCEL);
  pump(&cl);
  CHECK(cl.goaway == 1 && cl.goaway_error == NGHTTP2_ENHANCE_YOUR_CALM,
        "goaway %d error %u", cl.goaway, cl.goaway_error);
  CHECK(conn_closed && m->closed, "closed: %d %d", conn_closed, m->closed);
  srv.limits.reset_budget = 256;
  teardown(&cl, m);

  /* Under the budget, answered streams reset after their answer: fine. */
  setup(&cl, &m, 1);
  for (int i = 0; i < 30; i++)
    request(&cl, "GET", "/hello", 0, NULL, 0);
  pump(&cl);
  CHECK(cl.goaway == 0 && !conn_closed, "no goaway: %d", cl.goaway);
  teardown(&cl, m);
}

/* A head past max_header_bytes: 431, and the connection goes on. */
static void test_big_head(void) {
  client_t cl;
  memstream_t *m;
  setup(&cl, &m, 1);
  static char v[20000];
  memset(v, 'a', sizeof(v) - 1);
  nghttp2_nv x = {(uint8_t *)"x-big", (uint8_t *)v, 5, sizeof(v) - 1, 0};
  cstream_t *s = request(&cl, "GET", "/hello", 0, &x, 1);
  cstream_t *ok = request(&cl, "GET", "/hello", 0, NULL, 0);
  pump(&cl);
  CHECK(s->status == 431, "big head: %d", s->status);
  CHECK(ok->status == 200, "next: %d", ok->status);
  CHECK(nreqs == 1, "handlers: %d", nreqs);
  teardown(&cl, m);
}

/* GOAWAY with the last stream, the stream in flight finishes, then the
 * connection closes. */
static void test_graceful(void) {
  client_t cl;
  memstream_t *m;
  rill_h2_conn_t *c = setup(&cl, &m, 1);
  cstream_t *s = request(&cl, "GET", "/hang", 0, NULL, 0);
  pump(&cl);
  rill__h2_conn_shutdown(c);
  pump(&cl);
  CHECK(cl.goaway == 1 && cl.goaway_error == 0 && cl.goaway_last == s->id,
        "goaway %d error %u last %d", cl.goaway, cl.goaway_error, cl.goaway_last);
  CHECK(!m->closed, "still open while a stream runs");
  hreq_t *h = reqs[0];
  rill__h2_respond(h->st, 200, NULL, 0, "bye", 3);
  finish(h);
  pump(&cl);
  CHECK(s->status == 200 && strcmp(s->body, "bye") == 0, "last answer: %d %s", s->status,
        s->body);
  CHECK(m->closed && conn_closed, "closed after: %d", m->closed);
  teardown(&cl, m);
}

/* A body past max_body_bytes: 413, by its Content-Length before any
 * handler, or as it comes (the reader is told "too large"). */
static void test_body_limit(void) {
  client_t cl;
  memstream_t *m;
  srv.limits.max_body_bytes = 100000;
  setup(&cl, &m, 1);
  nghttp2_nv cl_hdr = {(uint8_t *)"content-length", (uint8_t *)"200000", 14, 6, 0};
  cstream_t *a = request(&cl, "POST", "/echo", 200000, &cl_hdr, 1);
  pump(&cl);
  CHECK(a->status == 413 && nreqs == 0, "by length: %d, %d handlers", a->status, nreqs);
  cstream_t *b = request(&cl, "POST", "/echo", 200000, NULL, 0);
  pump(&cl);
  CHECK(b->status == 413 && nreqs == 1 && reqs[0]->got <= 100000,
        "as it comes: %d, read %zu", b->status, nreqs ? reqs[0]->got : 0);
  cstream_t *c = request(&cl, "POST", "/echo", 1000, NULL, 0);
  pump(&cl);
  CHECK(c->status == 200 && strcmp(c->body, "1000") == 0, "under it: %d %s", c->status,
        c->body);
  srv.limits.max_body_bytes = 1 << 30;
  teardown(&cl, m);
}

/* Past max_concurrent_streams a stream is refused (never opened: it must
 * not count), and a graceful stop still ends once the open ones have. */
static void test_refused(void) {
  client_t cl;
  memstream_t *m;
  srv.limits.max_concurrent_streams = 2;
  rill_h2_conn_t *c = setup(&cl, &m, 1);
  cstream_t *s[5];
  for (int i = 0; i < 5; i++) /* sent before the client knows the limit */
    s[i] = request(&cl, "GET", "/hang", 0, NULL, 0);
  pump(&cl);
  CHECK(nreqs == 2 && c->nstreams == 2, "handlers %d, open %u", nreqs, c->nstreams);
  int refused = 0;
  for (int i = 0; i < 5; i++)
    refused += s[i]->closed && s[i]->error == NGHTTP2_REFUSED_STREAM;
  CHECK(refused == 3, "refused: %d", refused);
  rill__h2_conn_shutdown(c);
  pump(&cl);
  for (int i = 0; i < nreqs; i++) {
    rill__h2_respond(reqs[i]->st, 200, NULL, 0, "ok", 2);
    finish(reqs[i]);
  }
  pump(&cl);
  CHECK(m->closed && conn_closed, "closed after the open streams: %d", m->closed);
  srv.limits.max_concurrent_streams = 128;
  teardown(&cl, m);
}

/* The connection goes while a handler runs, and the handler never ends
 * (its worker is torn down: tasks end unreported). The stream stays until
 * the worker's teardown frees it, telling the layer above (abandon); the
 * leak check of the ASan build sees the rest. */
static int abandoned;
static void on_abandon(rill_h2_stream_t *st) {
  abandoned++;
}

static void test_abandoned(void) {
  client_t cl;
  memstream_t *m;
  setup(&cl, &m, 1);
  request(&cl, "GET", "/hang", 0, NULL, 0);
  pump(&cl);
  CHECK(nreqs == 1, "handlers: %d", nreqs);
  reqs[0]->st->abandon = on_abandon;
  reqs[0]->done = 1; /* the test's teardown must not end it */
  teardown(&cl, m);
  CHECK(abandoned == 0, "abandoned early");
}

/* Idle: GOAWAY and close after idle_timeout_ms with no stream. */
static void test_idle(void) {
  client_t cl;
  memstream_t *m;
  srv.limits.idle_timeout_ms = 5;
  setup(&cl, &m, 1);
  request(&cl, "GET", "/hello", 0, NULL, 0);
  pump(&cl);
  /* The client sends nothing more: the server's own end of the stream
   * arms the idle timer. */
  for (int i = 0; i < 100 && !m->closed; i++)
    uv_run(W->loop, UV_RUN_ONCE);
  pump(&cl);
  CHECK(m->closed && cl.goaway == 1, "idle close: %d goaway %d", m->closed, cl.goaway);
  srv.limits.idle_timeout_ms = 60000;
  teardown(&cl, m);
}

/* Not HTTP/2 at all: the connection closes. */
static void test_garbage(void) {
  client_t cl;
  memstream_t *m;
  setup(&cl, &m, 1);
  memstream_feed(m, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
  rill__worker_flush(W);
  memstream_run();
  rill__worker_flush(W);
  CHECK(m->closed && conn_closed, "closed: %d", m->closed);
  m->out_len = 0;
  teardown(&cl, m);
}

/* ---- raw frames, for what nghttp2 as a client would not send ---- */

static void raw_frame(memstream_t *m, int type, int flags, uint32_t id, const void *p,
                      size_t n) {
  uint8_t hd[9] = {(uint8_t)(n >> 16),  (uint8_t)(n >> 8),  (uint8_t)n,
                   (uint8_t)type,       (uint8_t)flags,     (uint8_t)(id >> 24),
                   (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id};
  memstream_feed(m, hd, 9);
  if (n) memstream_feed(m, p, n);
}

/* Runs the server alone, then reads what it wrote: returns the GOAWAY's
 * error code, or -1 if none came. */
static long raw_rst; /* the last RST_STREAM's error code */

static long raw_settle(memstream_t *m) {
  for (int i = 0; i < 16; i++) {
    memstream_run();
    rill__worker_flush(W);
    uv_run(W->loop, UV_RUN_NOWAIT);
  }
  long goaway = -1;
  size_t at = 0;
  while (at + 9 <= m->out_len) {
    const uint8_t *f = (const uint8_t *)m->out + at;
    size_t len = (size_t)f[0] << 16 | (size_t)f[1] << 8 | f[2];
    if (getenv("H2_DEBUG"))
      fprintf(stderr, "frame type %d len %zu flags %d\n", f[3], len, f[4]);
    if (f[3] == NGHTTP2_RST_STREAM && at + 9 + 4 <= m->out_len)
      raw_rst = (long)((uint32_t)f[9] << 24 | (uint32_t)f[10] << 16 |
                       (uint32_t)f[11] << 8 | f[12]);
    if (f[3] == NGHTTP2_GOAWAY && at + 9 + 8 <= m->out_len)
      goaway = (long)((uint32_t)f[13] << 24 | (uint32_t)f[14] << 16 |
                      (uint32_t)f[15] << 8 | f[16]);
    at += 9 + len;
  }
  return goaway;
}

static memstream_t *raw_setup(void) {
  nreqs = 0;
  conn_closed = 0;
  memstream_t *m = memstream_new(W);
  rill__h2_conn_new(&srv, &m->base);
  memstream_feed(m, NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN);
  raw_frame(m, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
  return m;
}

static void raw_teardown(memstream_t *m) {
  if (!m->closed) m->base.vt->close(&m->base);
  raw_settle(m);
  for (int i = 0; i < nreqs; i++) {
    if (!reqs[i]->done) finish(reqs[i]);
    free(reqs[i]);
  }
  nreqs = 0;
  raw_settle(m);
  memstream_free(m);
  uv_run(W->loop, UV_RUN_NOWAIT);
}

/* A HEADERS frame and CONTINUATION frames past the limit (CVE-2024-27316):
 * the connection goes before the block ends. */
static void test_continuation_flood(void) {
  memstream_t *m = raw_setup();
  static const uint8_t first[] = {0x82, 0x84, 0x86, 0x01,
                                  0x03, 'a',  '.',  'b'}; /* GET / http a.b */
  static const uint8_t more[] = {0x90}; /* accept-encoding: gzip, deflate */
  raw_frame(m, NGHTTP2_HEADERS, 0, 1, first, sizeof(first));
  for (int i = 0; i < 50; i++)
    raw_frame(m, NGHTTP2_CONTINUATION, 0, 1, more, sizeof(more));
  long g = raw_settle(m);
  CHECK(g == NGHTTP2_ENHANCE_YOUR_CALM && m->closed && nreqs == 0,
        "continuations: goaway %ld closed %d", g, m->closed);
  raw_teardown(m);
  /* Within the limit, the head is whole. */
  m = raw_setup();
  raw_frame(m, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 1, first, sizeof(first));
  for (int i = 0; i < 3; i++)
    raw_frame(m, NGHTTP2_CONTINUATION, i == 2 ? NGHTTP2_FLAG_END_HEADERS : 0, 1, more,
              sizeof(more));
  g = raw_settle(m);
  CHECK(g == -1 && !m->closed && nreqs == 1, "three continuations: goaway %ld reqs %d", g,
        nreqs);
  raw_teardown(m);
}

/* PINGs (or SETTINGS) faster than their ACKs can go: nghttp2's bound on
 * queued ACKs closes the connection with ENHANCE_YOUR_CALM. */
static void test_ping_flood(void) {
  memstream_t *m = raw_setup();
  static const uint8_t opaque[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (int i = 0; i < 3000; i++)
    raw_frame(m, NGHTTP2_PING, 0, 0, opaque, 8);
  long g = raw_settle(m);
  CHECK(g == NGHTTP2_ENHANCE_YOUR_CALM && m->closed, "ping flood: goaway %ld closed %d",
        g, m->closed);
  raw_teardown(m);
  m = raw_setup();
  for (int i = 0; i < 3000; i++)
    raw_frame(m, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
  g = raw_settle(m);
  CHECK(g == NGHTTP2_ENHANCE_YOUR_CALM && m->closed, "settings flood: goaway %ld", g);
  raw_teardown(m);
}

/* A WINDOW_UPDATE past 2^31-1, on the connection and on a stream; DATA
 * past the window we gave. */
static void test_window_overflow(void) {
  memstream_t *m = raw_setup();
  static const uint8_t inc[4] = {0x7f, 0xff, 0xff, 0xff};
  raw_frame(m, NGHTTP2_WINDOW_UPDATE, 0, 0, inc, 4);
  long g = raw_settle(m);
  CHECK(g == NGHTTP2_FLOW_CONTROL_ERROR && m->closed, "connection window: goaway %ld", g);
  raw_teardown(m);

  m = raw_setup();
  static const uint8_t head[] = {0x83, 0x84, 0x86, 0x01, 0x03, 'a', '.', 'b'}; /* POST */
  raw_frame(m, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, head, sizeof(head));
  raw_frame(m, NGHTTP2_WINDOW_UPDATE, 0, 1, inc, 4);
  raw_frame(m, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 3,
            (const uint8_t[]){0x82, 0x84, 0x86, 0x01, 0x03, 'a', '.', 'b'}, 8);
  g = raw_settle(m);
  /* A stream's overflow resets that stream only. */
  CHECK(g == -1 && !m->closed && nreqs == 2, "stream window: goaway %ld reqs %d", g,
        nreqs);
  raw_teardown(m);

  m = raw_setup();
  raw_frame(m, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, head, sizeof(head));
  static uint8_t data[16384];
  for (int i = 0; i < 5; i++) /* 80 KiB into a 64 KiB window */
    raw_frame(m, NGHTTP2_DATA, 0, 1, data, sizeof(data));
  raw_rst = -1;
  g = raw_settle(m);
  /* The connection's window is granted as DATA comes (each stream's own
   * bounds what waits unread): the stream's overflow resets that stream. */
  CHECK(g == -1 && raw_rst == NGHTTP2_FLOW_CONTROL_ERROR && !m->closed,
        "data past the window: goaway %ld rst %ld", g, raw_rst);
  raw_teardown(m);
}

/* A head begun and not ended: closed after header_timeout_ms. */
static void test_header_timeout(void) {
  srv.limits.header_timeout_ms = 5;
  memstream_t *m = raw_setup();
  static const uint8_t first[] = {0x82, 0x84, 0x86, 0x01, 0x03, 'a', '.', 'b'};
  raw_frame(m, NGHTTP2_HEADERS, 0, 1, first, sizeof(first));
  raw_settle(m);
  CHECK(!m->closed, "open while the head comes");
  for (int i = 0; i < 100 && !m->closed; i++)
    uv_run(W->loop, UV_RUN_ONCE);
  CHECK(m->closed, "header timeout");
  srv.limits.header_timeout_ms = 30000;
  raw_teardown(m);
}

/* ---- Extended CONNECT (RFC 8441): the head's :protocol, and the stream as
 * a duplex byte stream (rill__h2_tunnel) that outlives its handler ---- */

typedef struct {
  rill_binding_t b;
  rill_stream_t *t;
  size_t got, to_write, written;
  int eof, drained, eagain, closed;
} tun_t;

static void tun_write(tun_t *u) {
  static char block[16384];
  while (u->written < u->to_write) {
    size_t n = u->to_write - u->written < sizeof(block) ? u->to_write - u->written
                                                        : sizeof(block);
    uv_buf_t b = uv_buf_init(block, (unsigned)n);
    int r = u->t->vt->write(u->t, &b, 1);
    if (r < 0 && r != RILL_EAGAIN) return;
    u->written += n;
    if (r == RILL_EAGAIN) {
      u->eagain++;
      return;
    }
  }
  if (u->eof && !u->closed) { /* both ways done: the owner closes */
    u->closed = 1;
    rill__stream_unbind(&u->b);
    u->t->vt->close(u->t);
  }
}

static void tun_read(tun_t *u) {
  for (;;) {
    const char *p;
    size_t n;
    int r = u->t->vt->peek(u->t, &p, &n);
    if (r == RILL_EOF) {
      u->eof = 1;
      tun_write(u);
      return;
    }
    if (r < 0 || n == 0) break;
    u->t->vt->consume(u->t, n);
    u->got += n;
  }
  u->t->vt->fill(u->t);
}

static void tun_readable(rill_binding_t *b, int status) {
  tun_read(rill__container_of(b, tun_t, b));
}

static void tun_drained(rill_binding_t *b, int status) {
  tun_t *u = rill__container_of(b, tun_t, b);
  u->drained++;
  if (status == 0) tun_write(u);
}

static const rill_binding_ops_t tun_ops = {.readable = tun_readable,
                                           .drained = tun_drained};

static void test_tunnel(void) {
  client_t cl;
  memstream_t *m;
  setup(&cl, &m, 1);
  pump(&cl); /* the SETTINGS: ENABLE_CONNECT_PROTOCOL */
  CHECK(nghttp2_session_get_remote_settings(
            cl.s, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) == 1,
        "ENABLE_CONNECT_PROTOCOL advertised");
  nghttp2_nv proto = {(uint8_t *)":protocol", (uint8_t *)"websocket", 9, 9, 0};
  cstream_t *ws = request(&cl, "CONNECT", "/tunnel", 200000, &proto, 1);
  cstream_t *get = request(&cl, "GET", "/hang", 0, NULL, 0);
  pump(&cl);
  CHECK(nreqs == 2, "requests: %d", nreqs);
  hreq_t *h = reqs[0], *g = reqs[1];
  const rill_h2_head_t *hd = &h->st->head;
  CHECK(strcmp(hd->method, "CONNECT") == 0 && strcmp(hd->path, "/tunnel") == 0 &&
            strcmp(hd->protocol, "websocket") == 0 && hd->protocol_len == 9 &&
            strcmp(hd->scheme, "http") == 0,
        "head: %s %s %s", hd->method, hd->path, hd->protocol);
  CHECK(g->st->head.protocol_len == 0 && strcmp(g->st->head.protocol, "") == 0,
        "no :protocol on a GET");
  CHECK(rill__h2_tunnel(g->st, 200, NULL, 0) == NULL, "a GET is no tunnel");
  CHECK(rill__h2_tunnel(h->st, 101, NULL, 0) == NULL, "a 2xx only");
  rill_hdr_t x = {"sec-websocket-protocol", 22, "chat", 4};
  rill_stream_t *t = rill__h2_tunnel(h->st, 200, &x, 1);
  CHECK(t != NULL && rill__h2_tunnel(h->st, 200, NULL, 0) == NULL, "one tunnel");
  finish(h); /* the handler ends; the tunnel's owner goes on */
  tun_t u = {.t = t, .to_write = 300000};
  rill__stream_bind(t, &u.b, &tun_ops);
  tun_write(&u);
  tun_read(&u);
  pump(&cl);
  rill__h2_respond(g->st, 200, NULL, 0, "ok", 2);
  finish(g);
  pump(&cl);
  CHECK(u.got == 200000 && u.eof, "read %zu of the client's bytes", u.got);
  CHECK(u.eagain > 0 && u.drained > 0, "writes waited on the window: %d %d", u.eagain,
        u.drained);
  CHECK(ws->status == 200 && ws->got == 300000, "client got %d, %zu bytes", ws->status,
        ws->got);
  CHECK(ws->closed && ws->error == NGHTTP2_NO_ERROR && u.closed, "ended: %d %u",
        ws->closed, ws->error);
  CHECK(get->status == 200 && get->closed, "the GET beside it");

  /* A plain CONNECT (no :protocol) is no tunnel; an aborted tunnel resets. */
  nghttp2_nv plain[] = {
      {(uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7, 0},
      {(uint8_t *)":authority", (uint8_t *)"example.org:443", 10, 15, 0},
  };
  cstream_t *pc = &cl.st[cl.n++];
  pc->id = nghttp2_submit_request(cl.s, NULL, plain, 2, NULL, pc);
  cstream_t *ab = request(&cl, "CONNECT", "/tunnel", 0, &proto, 1);
  pump(&cl);
  CHECK(nreqs == 4, "requests: %d", nreqs);
  CHECK(reqs[2]->st->head.protocol_len == 0 &&
            rill__h2_tunnel(reqs[2]->st, 200, NULL, 0) == NULL,
        "a plain CONNECT is no tunnel");
  rill__h2_respond(reqs[2]->st, 405, NULL, 0, "", 0);
  finish(reqs[2]);
  t = rill__h2_tunnel(reqs[3]->st, 200, NULL, 0);
  CHECK(t != NULL, "tunnel");
  pump(&cl); /* the 200 goes */
  t->vt->abort(t);
  finish(reqs[3]);
  pump(&cl);
  CHECK(pc->status == 405, "plain CONNECT: %d", pc->status);
  CHECK(ab->status == 200 && ab->closed && ab->error == NGHTTP2_CANCEL, "abort: %d %u",
        ab->status, ab->error);
  teardown(&cl, m);
}

/* A tunnel closed with bytes queued behind a window the peer keeps shut:
 * reset (CANCEL) after tunnel_linger_ms, not held for ever. */
static void test_tunnel_linger(void) {
  client_t cl;
  memstream_t *m;
  srv.limits.tunnel_linger_ms = 50;
  setup(&cl, &m, 0); /* the client grants no window */
  pump(&cl);
  nghttp2_nv proto = {(uint8_t *)":protocol", (uint8_t *)"websocket", 9, 9, 0};
  cstream_t *ws = request(&cl, "CONNECT", "/tunnel", 0, &proto, 1);
  pump(&cl);
  CHECK(nreqs == 1, "requests: %d", nreqs);
  rill_stream_t *t = rill__h2_tunnel(reqs[0]->st, 200, NULL, 0);
  CHECK(t != NULL, "tunnel");
  finish(reqs[0]);
  static char block[100000];
  uv_buf_t b = uv_buf_init(block, sizeof(block));
  int r = t->vt->write(t, &b, 1);
  CHECK(r == RILL_EAGAIN || r == 0, "write: %d", r);
  pump(&cl);
  CHECK(ws->status == 200 && ws->got == 65535 && !ws->closed, "window's worth: %zu",
        ws->got);
  t->vt->close(t);
  pump(&cl);
  CHECK(!ws->closed, "lingering");
  for (int i = 0; i < 200 && !ws->closed; i++) {
    uv_run(W->loop, UV_RUN_ONCE);
    pump(&cl);
  }
  CHECK(ws->closed && ws->error == NGHTTP2_CANCEL, "reset after lingering: %d %u",
        ws->closed, ws->error);
  srv.limits.tunnel_linger_ms = 5000;
  teardown(&cl, m);
}

/* The HTTP/1.1 Upgrade (RFC 7540 3.2): HTTP2-Settings decoded and checked;
 * a connection started with stream 1 as the upgraded request (our SETTINGS
 * first), then more streams on it; a bad payload closes it. */
static void test_upgrade(void) {
  uint8_t p[64];
  CHECK(rill__h2_upgrade_settings("AAMAAABk", 8, p, sizeof(p)) == 6 && p[1] == 3 &&
            p[5] == 100,
        "AAMAAABk");
  CHECK(rill__h2_upgrade_settings("AAMAAABk==", 10, p, sizeof(p)) == 6, "padded");
  CHECK(rill__h2_upgrade_settings("", 0, p, sizeof(p)) == 0, "empty");
  CHECK(rill__h2_upgrade_settings("AAMA+/8A", 8, p, sizeof(p)) == UV_EINVAL, "base64");
  CHECK(rill__h2_upgrade_settings("AAMAAAA", 7, p, sizeof(p)) == UV_EINVAL, "5 bytes");
  CHECK(rill__h2_upgrade_settings("AAMAAABkA", 9, p, sizeof(p)) == UV_EINVAL,
        "a stray char");
  CHECK(rill__h2_upgrade_settings("AAIAAAAC", 8, p, sizeof(p)) == UV_EINVAL,
        "ENABLE_PUSH 2");
  CHECK(rill__h2_upgrade_settings("AAUAAAAA", 8, p, sizeof(p)) == UV_EINVAL,
        "MAX_FRAME 0");
  CHECK(rill__h2_upgrade_settings("AAMAAABk", 8, p, 5) == UV_EINVAL, "past cap");
  char many[33 * 8 + 1] = "";
  uint8_t big[33 * 6];
  for (int i = 0; i < 33; i++)
    strcat(many, "AAMAAABk");
  CHECK(rill__h2_upgrade_settings(many, 32 * 8, big, sizeof(big)) == 32 * 6,
        "32 settings");
  CHECK(rill__h2_upgrade_settings(many, 33 * 8, big, sizeof(big)) == UV_EINVAL,
        "33 settings (nghttp2 takes 32)");

  client_t cl;
  nreqs = 0;
  conn_closed = 0;
  memstream_t *m = memstream_new(W);
  client_init(&cl, m, 1);
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
  uint8_t payload[16];
  ssize_t plen = nghttp2_pack_settings_payload(payload, sizeof(payload), iv, 1);
  cstream_t *s1 = &cl.st[cl.n++];
  s1->id = 1;
  CHECK(nghttp2_session_upgrade2(cl.s, payload, (size_t)plen, 0, s1) == 0,
        "client upgrade");
  rill_hdr_t f[] = {{"X-Mixed-Case", 12, "v", 1}, {"accept", 6, "*/*", 3}};
  rill_h2_head_t head = {.method = "GET",
                         .method_len = 3,
                         .path = "/hang",
                         .path_len = 5,
                         .scheme = "http",
                         .scheme_len = 4,
                         .authority = "example.org",
                         .authority_len = 11,
                         .hdrs = f,
                         .nhdrs = 2,
                         .content_length = -1};
  rill_h2_conn_t *c =
      rill__h2_conn_new_upgraded(&srv, &m->base, payload, (size_t)plen, &head);
  CHECK(c != NULL, "upgraded conn");
  rill__worker_flush(W);
  uv_run(W->loop, UV_RUN_NOWAIT);
  CHECK(m->out_len >= 9 && m->out[3] == NGHTTP2_SETTINGS, "our SETTINGS first: %zu",
        m->out_len);
  pump(&cl);
  CHECK(nreqs == 1 && strcmp(reqs[0]->path, "/hang") == 0, "stream 1 dispatched: %d",
        nreqs);
  if (nreqs == 1) {
    /* (the handler has not answered: the stream object lives) */
    rill_h2_stream_t *st = reqs[0]->st;
    const rill_h2_head_t *h = &st->head;
    CHECK(st->id == 1 && h->authority_len == 11 && h->nhdrs == 2 &&
              strcmp(h->hdrs[0].name, "x-mixed-case") == 0 &&
              strcmp(h->scheme, "http") == 0 && st->in_eof,
          "stream 1's head");
    rill__h2_respond(st, 200, NULL, 0, "hello", 5);
    finish(reqs[0]);
    pump(&cl);
  }
  CHECK(s1->status == 200 && s1->closed && strcmp(s1->body, "hello") == 0,
        "stream 1: %d %s", s1->status, s1->body);
  cstream_t *e = request(&cl, "POST", "/echo", 1000, NULL, 0);
  pump(&cl);
  CHECK(e->id == 3 && e->status == 200 && strcmp(e->body, "1000") == 0, "stream 3: %d %s",
        e->status, e->body);
  teardown(&cl, m);

  /* A payload nghttp2 refuses: the connection goes (PROTOCOL_ERROR). */
  m = memstream_new(W);
  client_init(&cl, m, 1);
  conn_closed = 0;
  c = rill__h2_conn_new_upgraded(&srv, &m->base, payload, 5, &head);
  CHECK(c != NULL, "conn");
  pump(&cl);
  CHECK(conn_closed && nreqs == 0 && cl.goaway_error == NGHTTP2_PROTOCOL_ERROR,
        "bad payload: closed %d, requests %d, goaway %u", conn_closed, nreqs,
        cl.goaway_error);
  teardown(&cl, m);
}

/* A request body that stops coming while its reader waits: the reader is
 * told "timeout" after body_timeout_ms and, with no answer of its own, the
 * request gets a 408; the connection goes on. */
static void test_body_timeout(void) {
  srv.limits.body_timeout_ms = 5;
  memstream_t *m = raw_setup();
  /* POST, :path /echo (literal, indexed name), :scheme http, :authority a.b */
  static const uint8_t head[] = {0x83, 0x04, 0x05, '/',  'e', 'c', 'h',
                                 'o',  0x86, 0x01, 0x03, 'a', '.', 'b'};
  raw_frame(m, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, 1, head, sizeof(head));
  raw_frame(m, NGHTTP2_DATA, 0, 1, "abc", 3);
  raw_settle(m);
  CHECK(nreqs == 1 && !reqs[0]->done, "reading the body");
  for (int i = 0; i < 100 && nreqs == 1 && !reqs[0]->done; i++)
    uv_run(W->loop, UV_RUN_ONCE);
  long g = raw_settle(m);
  CHECK(nreqs == 1 && reqs[0]->done && reqs[0]->got == 3, "body timeout: got %zu",
        nreqs ? reqs[0]->got : 0);
  CHECK(memmem(m->out, m->out_len, "408", 3) != NULL, "a 408");
  CHECK(g == -1 && !m->closed, "the connection lives: goaway %ld", g);
  srv.limits.body_timeout_ms = 60000;
  raw_teardown(m);
}

/* A handler ended, its answer waits for a window the peer never opens: the
 * stream is reset (CANCEL) after send_timeout_ms, the connection lives. */
static void test_send_timeout(void) {
  srv.limits.send_timeout_ms = 5;
  memstream_t *m = raw_setup();
  static const uint8_t win0[6] = {0, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 0, 0, 0, 0};
  raw_frame(m, NGHTTP2_SETTINGS, 0, 0, win0, 6);
  /* GET /hello (literal path) */
  static const uint8_t head[] = {0x82, 0x04, 0x06, '/',  'h', 'e', 'l', 'l',
                                 'o',  0x86, 0x01, 0x03, 'a', '.', 'b'};
  raw_frame(m, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1,
            head, sizeof(head));
  raw_rst = -1;
  raw_settle(m);
  CHECK(nreqs == 1 && reqs[0]->done && !m->closed && raw_rst == -1,
        "answered, waiting for the window");
  uint64_t t0 = uv_now(W->loop);
  long g = -1;
  while (raw_rst == -1 && !m->closed && uv_now(W->loop) - t0 < 2000) {
    uv_run(W->loop, UV_RUN_ONCE);
    g = raw_settle(m);
  }
  CHECK(raw_rst == NGHTTP2_CANCEL && !m->closed && g == -1,
        "send timeout: reset %ld, closed %d, goaway %ld", raw_rst, m->closed, g);
  srv.limits.send_timeout_ms = 60000;
  raw_teardown(m);
}

/* Streams nghttp2 resets for the peer's errors while their handlers run
 * count against the reset budget like the peer's own (CVE-2025-8671). */
static void test_made_you_reset(void) {
  srv.limits.reset_budget = 20;
  memstream_t *m = raw_setup();
  static const uint8_t head[] = {0x83, 0x84, 0x86, 0x01,
                                 0x03, 'a',  '.',  'b'}; /* POST / */
  static const uint8_t inc[4] = {0x7f, 0xff, 0xff, 0xff};
  for (uint32_t id = 1; id < 2 * 30; id += 2) {
    raw_frame(m, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, id, head, sizeof(head));
    raw_frame(m, NGHTTP2_WINDOW_UPDATE, 0, id, inc, 4);
  }
  long g = raw_settle(m);
  CHECK(g == NGHTTP2_ENHANCE_YOUR_CALM && m->closed, "made you reset: goaway %ld", g);
  srv.limits.reset_budget = 256;
  raw_teardown(m);
}

/* The peer reads nothing at all (the transport says "wait"): once the
 * handler ended, the send timeout resets the connection rather than wait
 * for a drain that never comes. */
static void test_send_timeout_blocked(void) {
  srv.limits.send_timeout_ms = 5;
  memstream_t *m = raw_setup();
  m->out_limit = 1;
  static const uint8_t head[] = {0x82, 0x04, 0x06, '/',  'h', 'e', 'l', 'l',
                                 'o',  0x86, 0x01, 0x03, 'a', '.', 'b'};
  raw_frame(m, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1,
            head, sizeof(head));
  for (int i = 0; i < 16; i++) {
    memstream_run();
    rill__worker_flush(W);
    uv_run(W->loop, UV_RUN_NOWAIT);
  }
  CHECK(nreqs == 1 && reqs[0]->done && !m->closed, "answered, nothing taken");
  for (int i = 0; i < 100 && !m->closed; i++)
    uv_run(W->loop, UV_RUN_ONCE);
  CHECK(m->closed && m->aborted, "blocked: closed %d aborted %d", m->closed, m->aborted);
  srv.limits.send_timeout_ms = 60000;
  m->out_limit = 0;
  raw_teardown(m);
}

int main(void) {
  W = rill__worker_new(NULL);
  if (getenv("H2_DEBUG")) W->log_level = RILL_LOG_DEBUG;
  rill_http_limits_t hl;
  rill__http_limits_default(&hl);
  srv.w = W;
  rill__h2_limits_default(&srv.limits, &hl);
  srv.on_request = on_request;
  srv.on_drained = on_drained;
  srv.on_close = on_close;
  test_concurrent();
  test_noread();
  test_write_window();
  test_rapid_reset();
  test_big_head();
  test_graceful();
  test_body_limit();
  test_refused();
  test_abandoned();
  test_idle();
  test_garbage();
  test_continuation_flood();
  test_ping_flood();
  test_window_overflow();
  test_header_timeout();
  test_tunnel();
  test_tunnel_linger();
  test_upgrade();
  test_body_timeout();
  test_send_timeout();
  test_made_you_reset();
  test_send_timeout_blocked();
  rill__worker_free(W);
  CHECK(abandoned == 1, "abandoned at the worker's teardown: %d", abandoned);
  printf("h2: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
