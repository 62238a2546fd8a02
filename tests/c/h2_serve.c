/* A tiny HTTP/2 (h2c, prior knowledge) server made of the C layers alone,
 * for tests/c/h2_clients.sh: real clients (curl, nghttp, h2load) against
 * h2_conn.c over TCP, no Lua. Prints its port, then serves until killed.
 * Paths: "/" answers "hello from rill
 * h2\n"; "/echo" reads the request body and answers its length;
 * "/big" streams 4 MiB. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2_conn.h"
#include "tcp.h"

static rill_worker_t *W;

typedef struct {
  rill_binding_t b;
  rill_h2_stream_t *st;
  uint64_t got, left;
} req_t;

static void done(req_t *r) {
  rill__stream_unbind(&r->b);
  rill__h2_stream_handler_done(r->st, 1);
  free(r);
}

static void read_body(req_t *r) {
  rill_stream_t *s = &r->st->body;
  for (;;) {
    const char *p;
    size_t n;
    int e = s->vt->peek(s, &p, &n);
    if (e == RILL_EOF) {
      char num[32];
      int len = snprintf(num, sizeof(num), "%llu\n", (unsigned long long)r->got);
      rill__h2_respond(r->st, 200, NULL, 0, num, (size_t)len);
      done(r);
      return;
    }
    if (e < 0) {
      done(r);
      return;
    }
    if (n == 0) break;
    s->vt->consume(s, n);
    r->got += n;
  }
  if (s->vt->fill(s) < 0) done(r);
}

static void readable(rill_binding_t *b, int status) {
  read_body(rill__container_of(b, req_t, b));
}
static const rill_binding_ops_t ops = {.readable = readable};

static void write_more(req_t *r) {
  static char block[16384];
  while (r->left > 0) {
    size_t n = r->left < sizeof(block) ? (size_t)r->left : sizeof(block);
    int e = rill__h2_write(r->st, 200, NULL, 0, block, n);
    if (e < 0 && e != RILL_EAGAIN) {
      done(r);
      return;
    }
    r->left -= n;
    if (e == RILL_EAGAIN) return;
  }
  rill__h2_finish(r->st, 200, NULL, 0, NULL, 0);
  done(r);
}

static void on_request(rill_h2_stream_t *st) {
  req_t *r = calloc(1, sizeof(*r));
  r->st = st;
  st->data = r;
  const rill_h2_head_t *h = &st->head;
  if (h->path_len == 5 && memcmp(h->path, "/echo", 5) == 0) {
    rill__stream_bind(&st->body, &r->b, &ops);
    read_body(r);
  } else if (h->path_len == 4 && memcmp(h->path, "/big", 4) == 0) {
    r->left = 4 << 20;
    write_more(r);
  } else {
    rill_hdr_t hd = {"Content-Type", 12, "text/plain", 10};
    rill__h2_respond(st, 200, &hd, 1, "hello from rill h2\n", 19);
    done(r);
  }
}

static void on_drained(rill_h2_stream_t *st, int status) {
  req_t *r = st->data;
  if (status < 0)
    done(r);
  else
    write_more(r);
}

static rill_h2_server_t srv;

static void on_accept(rill_listener_t *l, rill_uvstream_t *u) {
  rill_stream_t *s = rill__uvstream_stream(u);
  if (rill__h2_conn_new(&srv, s) == NULL) s->vt->abort(s);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  W = rill__worker_new(NULL);
  if (getenv("H2_DEBUG")) W->log_level = RILL_LOG_DEBUG;
  rill_http_limits_t hl;
  rill__http_limits_default(&hl);
  rill__h2_limits_default(&srv.limits, &hl);
  srv.w = W;
  srv.on_request = on_request;
  srv.on_drained = on_drained;
  rill_listener_t *l;
  int r = rill__listen(W, "127.0.0.1", 0, 128, 1000, on_accept, NULL, &l);
  if (r) {
    fprintf(stderr, "listen: %s\n", uv_strerror(r));
    return 1;
  }
  char host[64];
  printf("%d\n", rill__listener_addr(l, host, sizeof(host)));
  fflush(stdout);
  uv_run(W->loop, UV_RUN_DEFAULT);
  return 0;
}
