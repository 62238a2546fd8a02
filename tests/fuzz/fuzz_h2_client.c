/* Fuzzes HTTP/2's client role (h2_client.c with h2_conn.c, h2_stream.c over
 * nghttp2) over an in-memory transport: the input is what a server sends.
 * Four requests go before any input: GET /a (stream 1), GET /b (3), HEAD /c
 * (5) and POST /d (7) with a body.
 *
 * Input: a settings byte, then the server's bytes. The settings byte:
 *   bit 0      an empty SETTINGS frame is put in front of the input
 *   bit 1      small limits: 300 header bytes, 8 fields, a 4 KiB stream
 *              window, a 1 KiB write high-water mark
 *   bit 2      POST /d sends 100000 bytes (waiting on the window and on
 *              drained). When our side of a stream ends then depends on the
 *              cut (and so whether a later frame on it is a connection
 *              error) by design: the records are not compared, sanitizers
 *              and invariants only.
 *   bit 3      the transport's write limit (200 bytes): writes say "wait"
 *   bit 4      the input ends with a reset (ECONNRESET) rather than an end
 *
 * Readers read once the input is in (so no window is granted meanwhile).
 * The result, compared fed whole and in pieces: for each request, whether
 * and which head came (status, fields), whether its body ended and then
 * its bytes (see run()), whether the server reset it. After each run the connection is
 * closed, every request done and nothing of it left (LeakSanitizer). */
#include <nghttp2/nghttp2.h>

#include "fuzz_common.h"
#include "h2_conn.h"
#include "memstream.h"

#define T "fuzz_h2_client"

static rill_worker_t *W;

typedef struct {
  rill_binding_t b;
  rill_h2_stream_t *st;
  int heads, status;
  size_t nhdrs;
  uint64_t got;
  int eof, err;
  size_t to_send, sent;
} creq_t;

enum { NREQ = 4 };
static creq_t reqs[NREQ];
static int closed;

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
      q->err = 1;
      return;
    }
    if (n == 0) break;
    s->vt->consume(s, n);
    q->got += n;
  }
  int r = s->vt->fill(s);
  if (r == RILL_EOF)
    q->eof = 1;
  else if (r < 0)
    q->err = 1;
}

static void c_readable(rill_binding_t *b, int status) {
  c_read(rill__container_of(b, creq_t, b));
}
static const rill_binding_ops_t c_ops = {.readable = c_readable};

static void on_head(rill_h2_stream_t *st) {
  creq_t *q = st->data;
  FZ_ASSERT(T, q != NULL && q->heads == 0, "one head per request");
  q->heads++;
  q->status = st->got_head ? st->status : -1;
  if (st->got_head) {
    FZ_ASSERT(T, st->status >= 200 && st->status <= 999, "a final status (%d)",
              st->status);
    for (size_t i = 0; i < st->head.nhdrs; i++)
      FZ_ASSERT(T, st->head.hdrs[i].name[st->head.hdrs[i].nlen] == 0,
                "names are NUL-terminated");
    q->nhdrs = st->head.nhdrs;
  }
}

static void send_more(creq_t *q) {
  static char block[7000];
  while (q->sent < q->to_send) {
    size_t n = sizeof(block);
    if (n > q->to_send - q->sent) n = q->to_send - q->sent;
    int r = rill__h2_write(q->st, 0, NULL, 0, block, n);
    if (r < 0 && r != RILL_EAGAIN) return;
    q->sent += n;
    if (r == RILL_EAGAIN) return;
  }
  rill__h2_finish(q->st, 0, NULL, 0, NULL, 0);
}

static void on_drained(rill_h2_stream_t *st, int status) {
  creq_t *q = st->data;
  if (q && status == 0) send_more(q);
}

static void on_close(rill_h2_conn_t *c) {
  closed++;
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

static void request(rill_h2_conn_t *c, creq_t *q, const char *method, const char *path,
                    size_t body) {
  rill_hdr_t hd = {"user-agent", 10, "fuzz", 4};
  rill_h2_head_t h = {.method = method,
                      .method_len = strlen(method),
                      .path = path,
                      .path_len = strlen(path),
                      .scheme = "https",
                      .scheme_len = 5,
                      .authority = "example.org",
                      .authority_len = 11,
                      .hdrs = &hd,
                      .nhdrs = 1,
                      .content_length = body ? (int64_t)body : -1};
  memset(q, 0, sizeof(*q));
  q->to_send = body;
  int r = rill__h2_request(c, &h, body > 0, &q->st);
  FZ_ASSERT(T, r == 0, "a request (%d)", r);
  q->st->data = q;
  if (body) send_more(q);
}

static const char settings[] = {0, 0, 0, 4, 0, 0, 0, 0, 0};

static void run(fz_rec_t *rec, const uint8_t *data, size_t n, uint8_t cfg, int split) {
  static rill_h2_server_t cli;
  static fz_rec_t scratch;
  fz_rec_t *out = cfg & 4 ? &scratch : rec;
  closed = 0;
  rill__h2_limits_default(&cli.limits, NULL);
  cli.client = 1;
  cli.limits.max_body_bytes = 0;
  cli.limits.max_concurrent_streams = 0;
  if (cfg & 2) {
    cli.limits.max_header_bytes = 300;
    cli.limits.max_headers = 8;
    cli.limits.stream_window = 4096;
    cli.limits.write_high = 1024;
  }
  cli.w = W;
  cli.on_request = on_head;
  cli.on_drained = on_drained;
  cli.on_close = on_close;
  memstream_t *m = memstream_new(W);
  if (cfg & 8) m->out_limit = 200;
  rill_h2_conn_t *c = rill__h2_conn_new(&cli, &m->base);
  FZ_ASSERT(T, c != NULL, "a connection");
  request(c, &reqs[0], "GET", "/a", 0);
  request(c, &reqs[1], "GET", "/b", 0);
  request(c, &reqs[2], "HEAD", "/c", 0);
  request(c, &reqs[3], "POST", "/d", cfg & 4 ? 100000 : 10);
  settle(m);
  if (cfg & 1) {
    memstream_feed(m, settings, sizeof(settings));
    settle(m);
  }
  fz_rng_t g;
  fz_rng_init(&g, data, n);
  size_t at = 0;
  while (at < n) {
    size_t k = split ? fz_piece(&g, n - at) : n - at;
    memstream_feed(m, data + at, k);
    at += k;
    settle(m);
  }
  /* The readers read now, and the result is taken. */
  for (int i = 0; i < NREQ; i++) {
    creq_t *q = &reqs[i];
    if (q->heads && !q->b.s) {
      rill__stream_bind(&q->st->body, &q->b, &c_ops);
      c_read(q);
    }
  }
  settle(m);
  for (int i = 0; i < NREQ; i++) {
    creq_t *q = &reqs[i];
    if (getenv("FZ_LOG"))
      fprintf(stderr, "split %d stream %d: heads %d got %llu eof %d closed %d error %u\n",
              split, q->st->id, q->heads, (unsigned long long)q->got, q->eof,
              q->st->closed, q->st->close_error);
    fz_put_tag(out, 'R');
    fz_put_u64(out, (uint64_t)q->heads);
    fz_put_u64(out, (uint64_t)(int64_t)q->status);
    fz_put_u64(out, q->nhdrs);
    /* The bytes of a body that ended: a server that overran a window gets
     * a reset or a GOAWAY after as many bytes as nghttp2 had counted, which
     * depends on the cut by design. */
    fz_put_u64(out, (uint64_t)q->eof);
    if (q->eof) fz_put_u64(out, q->got);
    fz_put_u64(out, (uint64_t)q->st->reset_by_peer);
  }
  if (cfg & 16) m->read_err = UV_ECONNRESET;
  memstream_eof(m);
  settle(m);
  for (int i = 0; i < NREQ; i++)
    FZ_ASSERT(T, reqs[i].heads == 1 || !reqs[i].st->closed,
              "a request ended without a word (stream %d)", reqs[i].st->id);
  for (int i = 0; i < NREQ; i++) {
    if (reqs[i].b.s) rill__stream_unbind(&reqs[i].b);
    rill__h2_request_done(reqs[i].st);
  }
  settle(m);
  if (!m->closed) m->base.vt->close(&m->base);
  settle(m);
  FZ_ASSERT(T, closed == 1, "the connection closed once (%d)", closed);
  memstream_free(m);
  fz_rec_free(&scratch);
  uv_run(W->loop, UV_RUN_NOWAIT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (W == NULL) {
    W = rill__worker_new(NULL);
    if (getenv("FZ_LOG")) W->log_level = RILL_LOG_DEBUG;
  }
  return fz_whole_and_split(T, run, data, size);
}
