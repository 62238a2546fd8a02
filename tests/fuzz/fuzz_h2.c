/* Fuzzes a whole HTTP/2 server connection (h2_conn.c, h2_stream.c over
 * nghttp2) over an in-memory transport, with C handlers in place of Lua
 * ones.
 *
 * Input: a settings byte, then the client's bytes. The settings byte:
 *   bit 0      the client connection preface is put in front of the input
 *              (else the input must bring it)
 *   bit 1      small limits: 4 concurrent streams, 300 header bytes, 8
 *              fields, 1 CONTINUATION, a reset budget of 3, a 4 KiB stream
 *              window and a 1 KiB write high-water mark
 *   bit 2      a graceful stop (GOAWAY) once half the input is in
 *   bit 3      the transport's write limit (200 bytes): writes say "wait"
 *   bit 4      the input ends with a reset (ECONNRESET) rather than an end
 *   bit 5      eager: readers read as bytes arrive (so WINDOW_UPDATE goes
 *              between pieces) and 'b' streams 100000 bytes, waiting on the
 *              window and on drained. What happens then depends on the cut
 *              by design (a peer that overruns a window it was not yet
 *              granted fails only if the grant had not been made), so the
 *              records are not compared: sanitizers and invariants only.
 *              Without it, readers read once the input has ended, and 'b'
 *              answers at once.
 *   bit 6      upgraded (rill__h2_conn_new_upgraded, as after an HTTP/1.1
 *              Upgrade: h2c): stream 1 is a GET of /e, half-closed
 *              (remote), before the client's preface
 * Handlers by the path's second byte: 'h' answers "hello", 'e' reads the
 * body and answers its length, 'b' streams a body (see bit 5), 't' answers with trailers,
 * 'r' resets its stream, 'x' raises (a 500, or a reset once started); anything else hangs
 * until the input ends.
 *
 * The result, compared fed whole and in pieces: the request heads the
 * connection received (taken when it closes). Not the GOAWAY code: after a
 * connection error nghttp2 ignores the rest of the bytes it was given in
 * the same call, but finds the next error in bytes given later. Whether a handler
 * starts for a stream reset in the same read as its head, and so whether a
 * reset counts against the budget, depends on the cut by design: the
 * compared runs have no reset budget, and what handlers saw is not
 * recorded. The bytes the server wrote are not recorded either (when
 * WINDOW_UPDATE and SETTINGS ACK leave depends on the cut). After each run
 * the connection is closed, every handler ended and nothing of it left
 * (LeakSanitizer). */
#include <nghttp2/nghttp2.h>

#include "deflate.h"
#include "fuzz_common.h"
#include "h2_conn.h"
#include "memstream.h"

#define T "fuzz_h2"

static rill_worker_t *W;

typedef struct {
  rill_binding_t b;
  rill_h2_stream_t *st;
  int32_t id;
  uint64_t got;
  uint64_t to_write, written;
  int done;
  int idx;
} req_t;

#define MAXREQ 512
static req_t *reqs[MAXREQ];
static int nreqs;
static fz_rec_t *rec;
static int eager;

static void finish(req_t *r, int ok) {
  if (r->done) return;
  r->done = 1;
  rill__stream_unbind(&r->b);
  rill__h2_stream_handler_done(r->st, ok);
}

static void read_body(req_t *r) {
  rill_stream_t *s = &r->st->body;
  for (;;) {
    const char *p;
    size_t n;
    int e = s->vt->peek(s, &p, &n);
    if (e == RILL_EOF) {
      char num[32];
      int len = snprintf(num, sizeof(num), "%llu", (unsigned long long)r->got);
      rill__h2_respond(r->st, 200, NULL, 0, num, (size_t)len);
      finish(r, 1);
      return;
    }
    if (e < 0) {
      finish(r, 1);
      return;
    }
    if (n == 0) break;
    FZ_ASSERT(T, n <= 16u << 20, "a body slice of %zu bytes", n);
    s->vt->consume(s, n);
    r->got += n;
  }
  if (s->vt->fill(s) < 0) finish(r, 1);
}

static void r_readable(rill_binding_t *b, int status) {
  read_body(rill__container_of(b, req_t, b));
}
static const rill_binding_ops_t r_ops = {.readable = r_readable};

static void write_more(req_t *r) {
  static char block[7000];
  while (r->written < r->to_write) {
    size_t n = sizeof(block);
    if (n > r->to_write - r->written) n = (size_t)(r->to_write - r->written);
    int e = rill__h2_write(r->st, 200, NULL, 0, block, n);
    if (e < 0 && e != RILL_EAGAIN) {
      finish(r, 1);
      return;
    }
    r->written += n;
    if (e == RILL_EAGAIN) return;
  }
  rill__h2_finish(r->st, 200, NULL, 0, NULL, 0);
  finish(r, 1);
}

static void on_request(rill_h2_stream_t *st) {
  const rill_h2_head_t *h = &st->head;
  FZ_ASSERT(T, h->method != NULL && h->path != NULL, "a head");
  for (size_t i = 0; i < h->nhdrs; i++)
    FZ_ASSERT(T, h->hdrs[i].name[h->hdrs[i].nlen] == 0, "names are NUL-terminated");
  req_t *r = calloc(1, sizeof(*r));
  if (r == NULL) abort();
  r->st = st;
  r->id = st->id;
  st->data = r;
  if (nreqs == MAXREQ) {
    finish(r, 1);
    free(r);
    return;
  }
  r->idx = nreqs;
  reqs[nreqs++] = r;
  char k = h->path_len > 1 ? h->path[1] : 0;
  if (k == 'h') {
    rill_hdr_t hd = {"Content-Type", 12, "text/plain", 10};
    rill__h2_respond(st, 200, &hd, 1, "hello", 5);
    finish(r, 1);
  } else if (k == 'e') {
    rill__stream_bind(&st->body, &r->b, &r_ops);
    if (eager) read_body(r);
  } else if (k == 'b') {
    r->to_write = eager ? 100000 : 10;
    write_more(r);
  } else if (k == 't') {
    rill_hdr_t t = {"grpc-status", 11, "0", 1};
    rill__h2_write(st, 200, NULL, 0, "abc", 3);
    rill__h2_finish(st, 200, NULL, 0, &t, 1);
    finish(r, 1);
  } else if (k == 'z') {
    static const char text[] = "compressible compressible compressible text";
    rill__h2_compress(st, h->path_len > 2 && h->path[2] == 'd' ? RILL_Z_DEFLATE : RILL_Z_GZIP,
                      1);
    rill__h2_write(st, 200, NULL, 0, text, sizeof(text) - 1);
    if (h->path_len > 3)
      rill__h2_respond(st, 200, NULL, 0, text, sizeof(text) - 1); /* EBUSY: started */
    rill__h2_finish(st, 200, NULL, 0, NULL, 0);
    finish(r, 1);
  } else if (k == 'r') {
    rill__h2_reset(st, NGHTTP2_CANCEL);
    finish(r, 1);
  } else if (k == 'x') {
    finish(r, 0);
  }
}

static void on_drained(rill_h2_stream_t *st, int status) {
  req_t *r = st->data;
  if (r == NULL || r->done) return;
  if (status < 0) {
    finish(r, 1);
    return;
  }
  write_more(r);
}

static int closed;
static void on_close(rill_h2_conn_t *c) {
  closed++;
  fz_put_tag(rec, 'C');
  fz_put_u64(rec, c->heads);
}

static void settle(memstream_t *m) {
  for (int i = 0; i < 64; i++) {
    int moved = memstream_run();
    rill__worker_flush(W);
    if (m->out_len) {
      memstream_take(m, NULL, 0);
      moved = 1;
    }
    if (!moved) break;
  }
}

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void run(fz_rec_t *out, const uint8_t *data, size_t n, uint8_t cfg, int split) {
  static rill_h2_server_t srv;
  static fz_rec_t scratch;
  eager = (cfg & 32) != 0;
  if (getenv("FZ_LOG")) fprintf(stderr, "run: split %d\n", split);
  rec = eager ? &scratch : out;
  nreqs = 0;
  closed = 0;
  rill__h2_limits_default(&srv.limits, NULL);
  if (!eager) srv.limits.reset_budget = UINT32_MAX;
  if (cfg & 2) {
    srv.limits.max_concurrent_streams = 4;
    srv.limits.max_header_bytes = 300;
    srv.limits.max_headers = 8;
    srv.limits.max_continuations = 1;
    srv.limits.reset_budget = eager ? 3 : UINT32_MAX;
    srv.limits.stream_window = 4096;
    srv.limits.write_high = 1024;
  }
  srv.w = W;
  srv.on_request = on_request;
  srv.on_drained = on_drained;
  srv.on_close = on_close;
  memstream_t *m = memstream_new(W);
  if (cfg & 8) m->out_limit = 200;
  rill_h2_conn_t *c;
  if (cfg & 64) {
    static const uint8_t settings[] = {0, 3, 0, 0, 0, 100}; /* MAX_CONCURRENT_STREAMS */
    rill_hdr_t f = {"Accept", 6, "*/*", 3};
    rill_h2_head_t h = {.method = "GET",
                        .method_len = 3,
                        .path = "/e",
                        .path_len = 2,
                        .scheme = "http",
                        .scheme_len = 4,
                        .authority = "a",
                        .authority_len = 1,
                        .hdrs = &f,
                        .nhdrs = 1,
                        .content_length = -1};
    c = rill__h2_conn_new_upgraded(&srv, &m->base, settings, sizeof(settings), &h);
  } else {
    c = rill__h2_conn_new(&srv, &m->base);
  }
  FZ_ASSERT(T, c != NULL, "a connection");
  settle(m);
  if (cfg & 1) {
    memstream_feed(m, preface, sizeof(preface) - 1);
    settle(m);
  }
  fz_rng_t g;
  fz_rng_init(&g, data, n);
  size_t at = 0, half = n / 2;
  int stopped = 0;
  while (at < n) {
    size_t k = split ? fz_piece(&g, n - at) : n - at;
    if (!split && (cfg & 4) && at < half) k = half - at;
    if (split && (cfg & 4) && at < half && at + k > half) k = half - at;
    memstream_feed(m, data + at, k);
    at += k;
    settle(m);
    if ((cfg & 4) && !stopped && at >= half) {
      stopped = 1;
      if (!m->closed) rill__h2_conn_shutdown(c);
      settle(m);
    }
  }
  /* The readers that waited for the end read now. */
  for (int i = 0; i < nreqs; i++)
    if (!eager && !reqs[i]->done && reqs[i]->b.s) read_body(reqs[i]);
  settle(m);
  if (cfg & 16) m->read_err = UV_ECONNRESET;
  memstream_eof(m);
  settle(m);
  if (!m->closed) m->base.vt->close(&m->base);
  settle(m);
  FZ_ASSERT(T, closed == 1, "the connection closed once (%d)", closed);
  for (int i = 0; i < nreqs; i++)
    finish(reqs[i], 1);
  settle(m);
  for (int i = 0; i < nreqs; i++)
    free(reqs[i]);
  memstream_free(m);
  fz_rec_free(&scratch);
  uv_run(W->loop, UV_RUN_NOWAIT);
}

/* The input as an HTTP2-Settings value: a payload the decoder takes is one
 * nghttp2 takes (the upgrade is decided on it before the 101 goes). */
static void upgrade_settings(const uint8_t *data, size_t size) {
  uint8_t p[40 * 6];
  int n = rill__h2_upgrade_settings((const char *)data, size, p, sizeof(p));
  if (n < 0) return;
  FZ_ASSERT(T, n % 6 == 0 && n <= 32 * 6, "a payload of %d bytes", n);
  nghttp2_session_callbacks *cbs;
  nghttp2_session *s;
  if (nghttp2_session_callbacks_new(&cbs)) abort();
  if (nghttp2_session_server_new(&s, cbs, NULL)) abort();
  int rv = nghttp2_session_upgrade2(s, p, (size_t)n, 0, NULL);
  FZ_ASSERT(T, rv == 0, "nghttp2 refused a payload the decoder took: %s",
            nghttp2_strerror(rv));
  nghttp2_session_del(s);
  nghttp2_session_callbacks_del(cbs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (W == NULL) {
    W = rill__worker_new(NULL);
    if (getenv("FZ_LOG")) W->log_level = RILL_LOG_DEBUG;
  }
  upgrade_settings(data, size);
  return fz_whole_and_split(T, run, data, size);
}
