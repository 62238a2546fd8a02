/* HTTP/2's client role (h2_client.c) against rill's own server role, both
 * over joined in-memory transports, no Lua: concurrent requests on one
 * connection, a request body under the server's window, a response body
 * read as the reader reads, a stream reset by the server, a request given
 * up by the client (CANCEL), GOAWAY, and the connection lost. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "h2_conn.h"
#include "memstream.h"

#include "check.h"

static rill_worker_t *W;

/* ---- the server: C handlers picked by the path ---- */

typedef struct {
  rill_binding_t b;
  rill_h2_stream_t *st;
  char path[64];
  size_t got, to_write, written;
  int done;
} sreq_t;

static sreq_t *sreqs[256];
static int nsreqs;

static void s_finish(sreq_t *h) {
  if (h->done) return;
  h->done = 1;
  rill__stream_unbind(&h->b);
  rill__h2_stream_handler_done(h->st, 1);
}

static void s_read(sreq_t *h) {
  rill_stream_t *s = &h->st->body;
  for (;;) {
    const char *p;
    size_t n;
    int r = s->vt->peek(s, &p, &n);
    if (r == RILL_EOF) {
      char num[32];
      int len = snprintf(num, sizeof(num), "%zu", h->got);
      rill__h2_respond(h->st, 200, NULL, 0, num, (size_t)len);
      s_finish(h);
      return;
    }
    if (r < 0) {
      s_finish(h);
      return;
    }
    if (n == 0) break;
    s->vt->consume(s, n);
    h->got += n;
  }
  if (s->vt->fill(s) < 0) s_finish(h);
}

static void s_readable(rill_binding_t *b, int status) {
  s_read(rill__container_of(b, sreq_t, b));
}

static const rill_binding_ops_t s_ops = {.readable = s_readable};

static void s_write_more(sreq_t *h) {
  static char block[16384];
  while (h->written < h->to_write) {
    size_t n = h->to_write - h->written < sizeof(block) ? h->to_write - h->written
                                                        : sizeof(block);
    int r = rill__h2_write(h->st, 200, NULL, 0, block, n);
    if (r < 0 && r != RILL_EAGAIN) {
      s_finish(h);
      return;
    }
    h->written += n;
    if (r == RILL_EAGAIN) return;
  }
  rill__h2_finish(h->st, 200, NULL, 0, NULL, 0);
  s_finish(h);
}

static void s_on_request(rill_h2_stream_t *st) {
  sreq_t *h = calloc(1, sizeof(*h));
  h->st = st;
  st->data = h;
  snprintf(h->path, sizeof(h->path), "%.*s", (int)st->head.path_len, st->head.path);
  sreqs[nsreqs++] = h;
  if (strcmp(h->path, "/hello") == 0) {
    rill_hdr_t hd[2] = {{"X-Test", 6, "yes", 3}, {"X-Test", 6, "again", 5}};
    rill__h2_respond(st, 200, hd, 2, "hello", 5);
    s_finish(h);
  } else if (strcmp(h->path, "/count") == 0) {
    rill__stream_bind(&st->body, &h->b, &s_ops);
    s_read(h);
  } else if (strncmp(h->path, "/big/", 5) == 0) {
    h->to_write = (size_t)atol(h->path + 5);
    s_write_more(h);
  } else if (strcmp(h->path, "/reset") == 0) {
    rill__h2_write(st, 200, NULL, 0, "part", 4);
    rill__h2_reset(st, NGHTTP2_INTERNAL_ERROR);
    s_finish(h);
  }
  /* "/hang": no answer */
}

static void s_on_drained(rill_h2_stream_t *st, int status) {
  sreq_t *h = st->data;
  if (status < 0)
    s_finish(h);
  else
    s_write_more(h);
}

/* ---- the client: requests through rill__h2_request ---- */

typedef struct {
  rill_binding_t b;
  rill_h2_stream_t *st;
  int heads; /* on_request calls */
  int status;
  size_t got, budget; /* bytes read; bytes it may read now */
  int eof, err;
  size_t to_send, sent;
  int drained;
} creq_t;

static int client_closed;

static void c_read(creq_t *q) {
  rill_stream_t *s = &q->st->body;
  for (;;) {
    const char *p;
    size_t n;
    int r = s->vt->peek(s, &p, &n);
    if (r == RILL_EOF) {
      q->eof = 1;
      return;
    }
    if (r < 0) {
      q->err = r;
      return;
    }
    if (n > q->budget) n = q->budget;
    if (n == 0) break;
    s->vt->consume(s, n);
    q->got += n;
    q->budget -= n;
  }
  if (q->budget > 0) {
    int r = s->vt->fill(s);
    if (r == RILL_EOF)
      q->eof = 1;
    else if (r < 0)
      q->err = r;
  }
}

static void c_readable(rill_binding_t *b, int status) {
  c_read(rill__container_of(b, creq_t, b));
}

static const rill_binding_ops_t c_ops = {.readable = c_readable};

static void c_on_head(rill_h2_stream_t *st) {
  creq_t *q = st->data;
  q->heads++;
  q->status = st->got_head ? st->status : -1;
  rill__stream_bind(&st->body, &q->b, &c_ops);
  c_read(q);
}

static void c_send_more(creq_t *q) {
  static char block[10000];
  memset(block, 'u', sizeof(block));
  while (q->sent < q->to_send) {
    size_t n =
        q->to_send - q->sent < sizeof(block) ? q->to_send - q->sent : sizeof(block);
    int r = rill__h2_write(q->st, 0, NULL, 0, block, n);
    if (r < 0 && r != RILL_EAGAIN) return;
    q->sent += n;
    if (r == RILL_EAGAIN) return;
  }
  rill__h2_finish(q->st, 0, NULL, 0, NULL, 0);
}

static void c_on_drained(rill_h2_stream_t *st, int status) {
  creq_t *q = st->data;
  q->drained++;
  if (status == 0) c_send_more(q);
}

static void c_on_close(rill_h2_conn_t *c) {
  client_closed = 1;
}

static rill_h2_server_t srv, cli;

static creq_t *creq(rill_h2_conn_t *c, const char *method, const char *path,
                    size_t body) {
  creq_t *q = calloc(1, sizeof(*q));
  rill_hdr_t hd = {"User-Agent", 10, "test", 4};
  rill_h2_head_t h = {.method = method,
                      .method_len = strlen(method),
                      .path = path,
                      .path_len = strlen(path),
                      .scheme = "http",
                      .scheme_len = 4,
                      .authority = "example.org",
                      .authority_len = 11,
                      .hdrs = &hd,
                      .nhdrs = 1,
                      .content_length = body ? (int64_t)body : -1};
  q->budget = SIZE_MAX;
  q->to_send = body;
  int r = rill__h2_request(c, &h, body > 0, &q->st);
  if (r) {
    free(q);
    return NULL;
  }
  q->st->data = q;
  if (body) c_send_more(q);
  return q;
}

static void c_done(creq_t *q) {
  if (q->b.s) rill__stream_unbind(&q->b);
  rill__h2_request_done(q->st);
  free(q);
}

static void pump(void) {
  for (int i = 0; i < 10000; i++) {
    int moved = memstream_run() > 0;
    rill__worker_flush(W);
    uv_run(W->loop, UV_RUN_NOWAIT);
    moved |= memstream_run() > 0;
    if (!moved) break;
  }
}

typedef struct {
  memstream_t *sm, *cm;
  rill_h2_conn_t *s, *c;
} pair_t;

static void setup(pair_t *p) {
  nsreqs = 0;
  client_closed = 0;
  p->sm = memstream_new(W);
  p->cm = memstream_new(W);
  memstream_join(p->sm, p->cm);
  p->s = rill__h2_conn_new(&srv, &p->sm->base);
  p->c = rill__h2_conn_new(&cli, &p->cm->base);
  pump();
}

static void teardown(pair_t *p) {
  if (!p->cm->closed) p->cm->base.vt->close(&p->cm->base);
  pump();
  for (int i = 0; i < nsreqs; i++) {
    if (!sreqs[i]->done) s_finish(sreqs[i]);
    free(sreqs[i]);
  }
  nsreqs = 0;
  pump();
  memstream_free(p->sm);
  memstream_free(p->cm);
  uv_run(W->loop, UV_RUN_NOWAIT);
}

/* ---- cases ---- */

static void test_concurrent(void) {
  pair_t p;
  setup(&p);
  CHECK(rill__h2_capacity(p.c) == 128, "capacity: %u", rill__h2_capacity(p.c));
  creq_t *q[20];
  for (int i = 0; i < 20; i++)
    q[i] = creq(p.c, "GET", "/hello", 0);
  CHECK(p.c->nstreams == 20, "streams open: %u", p.c->nstreams);
  pump();
  for (int i = 0; i < 20; i++) {
    CHECK(q[i]->heads == 1 && q[i]->status == 200 && q[i]->eof && q[i]->got == 5,
          "request %d: heads %d status %d eof %d got %zu", i, q[i]->heads, q[i]->status,
          q[i]->eof, q[i]->got);
  }
  const rill_h2_head_t *h = &q[0]->st->head;
  CHECK(h->nhdrs >= 2 && h->hdrs[0].nlen == 6 &&
            memcmp(h->hdrs[0].name, "x-test", 6) == 0 && h->content_length == 5,
        "response head: %zu fields, content-length %lld", h->nhdrs,
        (long long)h->content_length);
  CHECK(nsreqs == 20, "the server saw %d requests on one connection", nsreqs);
  for (int i = 0; i < 20; i++)
    c_done(q[i]);
  pump();
  CHECK(p.c->nstreams == 0 && p.c->streams == NULL, "streams left: %u", p.c->nstreams);
  teardown(&p);
}

/* A 1 MB request body goes under the server's 64 KiB window (the writer
 * waits); a 3 MB response comes as the reader reads, no faster. */
static void test_bodies(void) {
  pair_t p;
  setup(&p);
  creq_t *up = creq(p.c, "POST", "/count", 1000000);
  pump();
  CHECK(up->drained > 0, "the writer waited for the window: %d", up->drained);
  CHECK(up->status == 200 && up->eof && up->got == 7, "upload: %d %zu", up->status,
        up->got);
  CHECK(strcmp(sreqs[0]->path, "/count") == 0 && sreqs[0]->got == 1000000,
        "server got %zu", sreqs[0]->got);
  c_done(up);
  creq_t *down = creq(p.c, "GET", "/big/3000000", 0);
  down->budget = 0;
  pump();
  CHECK(down->status == 200 && down->got == 0, "head: %d", down->status);
  /* Nothing read: the stream's window (65535) bounds what came. */
  CHECK(down->st->in_len - down->st->in_r <= 65535, "buffered unread: %zu",
        down->st->in_len - down->st->in_r);
  down->budget = SIZE_MAX;
  c_read(down);
  pump();
  CHECK(down->eof && down->got == 3000000, "download: eof %d got %zu", down->eof,
        down->got);
  c_done(down);
  teardown(&p);
}

/* The server resets one stream: that request fails, the others go on. */
static void test_reset(void) {
  pair_t p;
  setup(&p);
  creq_t *a = creq(p.c, "GET", "/reset", 0);
  creq_t *b = creq(p.c, "GET", "/hello", 0);
  pump();
  CHECK(a->heads == 1 && a->st->closed && a->st->reset_by_peer &&
            a->st->close_error == NGHTTP2_INTERNAL_ERROR && !a->eof &&
            (a->status == -1 || a->err == RILL_ECLOSED),
        "reset: status %d err %d closed %d", a->status, a->err, a->st->closed);
  CHECK(b->status == 200 && b->eof, "other: %d", b->status);
  c_done(a);
  c_done(b);
  teardown(&p);
}

/* The client gives up a request: RST_STREAM CANCEL reaches the server. */
static void test_cancel(void) {
  pair_t p;
  setup(&p);
  creq_t *a = creq(p.c, "GET", "/hang", 0);
  pump();
  CHECK(nsreqs == 1 && !sreqs[0]->st->closed, "hanging");
  c_done(a);
  pump();
  CHECK(sreqs[0]->st->closed && sreqs[0]->st->reset_by_peer &&
            sreqs[0]->st->close_error == NGHTTP2_CANCEL,
        "server side: closed %d error %u", sreqs[0]->st->closed,
        sreqs[0]->st->close_error);
  CHECK(p.c->nstreams == 0, "client streams: %u", p.c->nstreams);
  teardown(&p);
}

/* GOAWAY (the server stops gracefully): the request in flight finishes, no
 * new one goes, and the client leaves once it is done. */
static void test_goaway(void) {
  pair_t p;
  setup(&p);
  creq_t *a = creq(p.c, "GET", "/hang", 0);
  pump();
  rill__h2_conn_shutdown(p.s);
  pump();
  CHECK(p.c->goaway_received && rill__h2_capacity(p.c) == 0, "goaway: %d",
        p.c->goaway_received);
  rill_h2_stream_t *st;
  rill_h2_head_t h = {.method = "GET",
                      .method_len = 3,
                      .path = "/",
                      .path_len = 1,
                      .scheme = "http",
                      .scheme_len = 4,
                      .content_length = -1};
  CHECK(rill__h2_request(p.c, &h, 0, &st) == RILL_ECLOSED, "no request after GOAWAY");
  rill__h2_respond(sreqs[0]->st, 200, NULL, 0, "bye", 3);
  s_finish(sreqs[0]);
  pump();
  CHECK(a->status == 200 && a->eof && a->got == 3, "in flight: %d %zu", a->status,
        a->got);
  c_done(a);
  pump();
  CHECK(client_closed, "the client left: %d", client_closed);
  teardown(&p);
}

/* The connection goes: requests in flight are told (no head), and a new
 * request is refused. */
static void test_lost(void) {
  pair_t p;
  setup(&p);
  creq_t *a = creq(p.c, "GET", "/hang", 0);
  creq_t *b = creq(p.c, "GET", "/hang", 0);
  pump();
  p.sm->base.vt->close(&p.sm->base);
  pump();
  CHECK(a->heads == 1 && a->status == -1 && b->heads == 1 && b->status == -1,
        "told: %d %d", a->heads, b->heads);
  CHECK(client_closed, "client connection closed");
  c_done(a);
  c_done(b);
  teardown(&p);
}

int main(void) {
  W = rill__worker_new(NULL);
  if (getenv("H2_DEBUG")) W->log_level = RILL_LOG_DEBUG;
  rill_http_limits_t hl;
  rill__http_limits_default(&hl);
  srv.w = W;
  rill__h2_limits_default(&srv.limits, &hl);
  srv.on_request = s_on_request;
  srv.on_drained = s_on_drained;
  cli.w = W;
  cli.client = 1;
  rill__h2_limits_default(&cli.limits, &hl);
  cli.limits.max_body_bytes = 0;
  cli.on_request = c_on_head;
  cli.on_drained = c_on_drained;
  cli.on_close = c_on_close;
  test_concurrent();
  test_bodies();
  test_reset();
  test_cancel();
  test_goaway();
  test_lost();
  rill__worker_free(W);
  printf("h2 client: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
