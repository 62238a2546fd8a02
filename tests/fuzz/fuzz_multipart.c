/* Fuzzes the multipart layer (rill__mp_next and the part streams of
 * core/multipart.c) over an in-memory body, read as an application reads
 * it (tests/c/mpdrive.h): each part's header fields, its data, the close
 * delimiter or the error, and the bytes left after the close delimiter.
 *
 * Input: one byte of settings, then the body.
 *   bits 0-1  the boundary: "b", "boundary", "----x=y", "AaB03x"
 *   bits 2-3  max_parts: 1000, 1, 2, 3
 *   bits 4-5  max_header_bytes: 16384, 2, 20, 100
 *   bit 6     read only the first 2 bytes of each part (the rest is dropped)
 *   bit 7     take one byte per consume
 *
 * Split check: the body fed whole, then in pieces (callbacks delivered after
 * each); the records must be equal. Invariants: no callback from inside a
 * call, the reader finishes at the end of its input, the layer lets go of
 * the body, no part's data holds the delimiter, and after the close
 * delimiter the bytes left are exactly the input's tail. */
#include "fuzz_common.h"
#include "mpdrive.h"

#define T "fuzz_multipart"

static rill_worker_t *W;

static const char *const boundaries[] = {"b", "boundary", "----x=y", "AaB03x"};
static const unsigned max_parts[] = {1000, 1, 2, 3};
static const size_t max_header[] = {16384, 2, 20, 100};

static void settle(void) {
  for (int i = 0; memstream_run() > 0; i++)
    FZ_ASSERT(T, i < 1000000, "callbacks without end");
}

static void run(fz_rec_t *rec, const uint8_t *data, size_t n, uint8_t cfg, int split) {
  fz_rng_t g;
  fz_rng_init(&g, data, n);
  const char *boundary = boundaries[cfg & 3];
  memstream_t *ms = memstream_new(W);
  if (ms == NULL) abort();
  rill_binding_t owner = {0}; /* the body's owner, under the layer */
  static const rill_binding_ops_t owner_ops = {0};
  rill__stream_bind(&ms->base, &owner, &owner_ops);
  mpd_t d;
  if (mpd_start(&d, W, ms, boundary, max_parts[(cfg >> 2) & 3],
                max_header[(cfg >> 4) & 3]))
    abort();
  d.keep = (cfg & 0x40) ? 2 : 0;
  d.take = (cfg & 0x80) ? 1 : 0;
  d.check = 1;
  size_t at = 0;
  while (at < n) {
    size_t k = split ? fz_piece(&g, n - at) : n - at;
    uint8_t *copy = fz_dup(data + at, k);
    memstream_feed(ms, copy, k); /* the memstream keeps its own copy */
    free(copy);
    at += k;
    settle();
  }
  memstream_eof(ms);
  settle();
  FZ_ASSERT(T, !d.broken, "a callback came from inside a call of the reader");
  FZ_ASSERT(T, d.state == MPD_DONE, "the reader did not finish at the end of its input");
  fz_put_bytes(rec, d.rec.p, d.rec.len);
  if (d.end == RILL_EOF) {
    /* What is left is the input's tail after the close delimiter. */
    const char *p;
    size_t left = 0;
    if (ms->base.vt->peek(&ms->base, &p, &left) != 0) left = 0;
    char close[16];
    int cl = snprintf(close, sizeof(close), "--%s--", boundary);
    FZ_ASSERT(T,
              left <= n && (size_t)cl <= n - left &&
                  memcmp(data + n - left - (size_t)cl, close, (size_t)cl) == 0 &&
                  memcmp(data + n - left, p, left) == 0,
              "%zu bytes left do not follow a close delimiter", left);
    fz_put_tag(rec, 'r');
    fz_put_bytes(rec, p, left);
  }
  FZ_ASSERT(T, !d.delim_in_data, "a part's data holds the delimiter");
  mpd_free(&d);
  FZ_ASSERT(T, ms->base.top == &owner, "the layer left a binding on the body");
  rill__stream_unbind(&owner);
  memstream_free(ms);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (W == NULL) {
    W = rill__worker_new(NULL);
    if (W == NULL) abort();
    W->log_level = RILL_LOG_ERROR;
  }
  return fz_whole_and_split(T, run, data, size);
}
