/* The zlib layer (core/deflate.c) and the decoded-body stream
 * (core/inflate_stream.c), linked without LuaJIT: what the compressor
 * writes inflates to what it was given, in any pieces and flushes; a sync
 * flush makes everything so far decodable; the decompressor stops at its
 * limit without producing more, refuses corrupt and truncated data, and
 * reads several gzip members; a decoded body read through a stream in
 * pieces gives the same bytes, and fails on a bomb. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "deflate.h"
#include "inflate_stream.h"
#include "memstream.h"

static rill_worker_t *W;

typedef struct {
  char *p;
  size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *p, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->p = realloc(b->p, b->cap);
  }
  if (n) memcpy(b->p + b->len, p, n);
  b->len += n;
}

static int emit(void *arg, const char *p, size_t n) {
  put(arg, p, n);
  return 0;
}

/* Inflates all of in; returns the verdict and the bytes in *out. */
static int inflate_all(int format, const char *in, size_t n, uint64_t max, size_t cap,
                       buf_t *out) {
  rill_inflate_t z;
  if (rill__inflate_init(&z, format, max) != 0) abort();
  char *o = malloc(cap);
  int r;
  for (;;) {
    size_t made;
    r = rill__inflate(&z, &in, &n, o, cap, &made);
    put(out, o, made);
    if (r != 0) break;
    if (n == 0 && made == 0) {
      r = 1; /* wants more input: truncated */
      break;
    }
  }
  free(o);
  rill__inflate_end(&z);
  return r;
}

static char *text(size_t n) {
  char *t = malloc(n);
  uint64_t g = 42;
  static const char *words[] = {"alpha ", "beta ", "gamma ", "delta\n", "{\"k\":1} "};
  size_t i = 0;
  while (i < n) {
    g ^= g << 13, g ^= g >> 7, g ^= g << 17;
    const char *w = words[g % 5];
    for (size_t j = 0; w[j] && i < n; j++) t[i++] = w[j];
  }
  return t;
}

static void roundtrip(void) {
  size_t n = 300000;
  char *t = text(n);
  for (int format = RILL_Z_GZIP; format <= RILL_Z_DEFLATE; format++)
    for (int level = 1; level <= 9; level += 4) {
      rill_deflate_t *d = malloc(sizeof(*d));
      CHECK(rill__deflate_init(d, format, level, 15, 8) == 0, "init");
      buf_t z = {0};
      uint64_t g = (uint64_t)level * 7919 + 1;
      size_t at = 0;
      while (at < n) {
        g ^= g << 13, g ^= g >> 7, g ^= g << 17;
        size_t k = 1 + g % 20000;
        if (k > n - at) k = n - at;
        int flush = g & 0x100 ? Z_SYNC_FLUSH : Z_NO_FLUSH;
        CHECK(rill__deflate_put(d, t + at, k, flush, emit, &z) == 0, "put");
        at += k;
        if (flush == Z_SYNC_FLUSH) {
          /* Everything so far decodes now, before the end. */
          CHECK(!d->pending, "nothing pending after a sync flush");
          buf_t so_far = {0};
          int r = inflate_all(format, z.p, z.len, 0, 4096, &so_far);
          CHECK(r == 1 && so_far.len == at && memcmp(so_far.p, t, at) == 0,
                "a sync flush at %zu decodes to %zu bytes (r %d)", at, so_far.len, r);
          free(so_far.p);
        }
      }
      CHECK(rill__deflate_put(d, NULL, 0, Z_FINISH, emit, &z) == 0, "finish");
      CHECK(d->in == n && d->out == z.len, "totals");
      CHECK(z.len < n / 3, "compresses (%zu of %zu)", z.len, n);
      buf_t back = {0};
      int r = inflate_all(format, z.p, z.len, 0, 1000, &back);
      CHECK(r == RILL_EOF, "the end is seen (%d)", r);
      CHECK(back.len == n && memcmp(back.p, t, n) == 0, "round trip, format %d level %d",
            format, level);
      /* Reused after a reset, at another level. */
      CHECK(rill__deflate_reset(d, 1) == 0, "reset");
      buf_t z2 = {0}, back2 = {0};
      rill__deflate_put(d, t, 5000, Z_FINISH, emit, &z2);
      CHECK(inflate_all(format, z2.p, z2.len, 0, 512, &back2) == RILL_EOF &&
                back2.len == 5000 && memcmp(back2.p, t, 5000) == 0,
            "round trip after a reset");
      rill__deflate_end(d);
      free(d);
      free(z.p);
      free(back.p);
      free(z2.p);
      free(back2.p);
    }
  free(t);
}

/* A compressed body of n zero bytes. */
static buf_t zeros(int format, size_t n) {
  rill_deflate_t *d = malloc(sizeof(*d));
  rill__deflate_init(d, format, 9, 15, 8);
  buf_t z = {0};
  char *block = calloc(1, 65536);
  for (size_t at = 0; at < n; at += 65536)
    rill__deflate_put(d, block, n - at < 65536 ? n - at : 65536, Z_NO_FLUSH, emit, &z);
  rill__deflate_put(d, NULL, 0, Z_FINISH, emit, &z);
  rill__deflate_end(d);
  free(d);
  free(block);
  return z;
}

static void limits_and_errors(void) {
  /* A bomb: 64 MiB of zeros in about 64 KiB; a limit of 1 MiB stops it,
   * with nothing past the limit produced. */
  buf_t bomb = zeros(RILL_Z_GZIP, 64u << 20);
  CHECK(bomb.len < 100000, "the bomb is small (%zu)", bomb.len);
  buf_t out = {0};
  int r = inflate_all(RILL_Z_GZIP, bomb.p, bomb.len, 1u << 20, 16384, &out);
  CHECK(r == RILL_EBODY, "the limit stops a bomb (%d)", r);
  CHECK(out.len <= (1u << 20), "no more than the limit came out (%zu)", out.len);
  free(out.p);
  /* Exactly at the limit is fine. */
  buf_t exact = zeros(RILL_Z_DEFLATE, 100000);
  out = (buf_t){0};
  r = inflate_all(RILL_Z_DEFLATE, exact.p, exact.len, 100000, 7, &out);
  CHECK(r == RILL_EOF && out.len == 100000, "a body of exactly the limit (%d, %zu)", r,
        out.len);
  free(out.p);
  /* Corrupt: a byte changed in the middle (the data, or the check value
   * fails). (Text: in a run of zeros a changed byte may code the same.) */
  char *t = text(100000);
  rill_deflate_t *d = malloc(sizeof(*d));
  rill__deflate_init(d, RILL_Z_DEFLATE, 6, 15, 8);
  buf_t tz = {0};
  rill__deflate_put(d, t, 100000, Z_FINISH, emit, &tz);
  rill__deflate_end(d);
  free(d);
  free(t);
  for (size_t at = 12; at < tz.len; at += tz.len / 7) {
    char *bad = malloc(tz.len);
    memcpy(bad, tz.p, tz.len);
    bad[at] ^= 0x55;
    out = (buf_t){0};
    r = inflate_all(RILL_Z_DEFLATE, bad, tz.len, 0, 4096, &out);
    CHECK(r == RILL_EPROTO || r == 1, "a corrupt byte at %zu is refused (%d)", at, r);
    free(out.p);
    free(bad);
  }
  /* Not compressed at all. */
  out = (buf_t){0};
  CHECK(inflate_all(RILL_Z_GZIP, "hello, world", 12, 0, 64, &out) == RILL_EPROTO,
        "plain text is not gzip");
  free(out.p);
  /* Truncated: never the end. */
  out = (buf_t){0};
  r = inflate_all(RILL_Z_GZIP, bomb.p, bomb.len / 2, 0, 65536, &out);
  CHECK(r == 1, "a truncated stream wants more (%d)", r);
  free(out.p);
  /* Two gzip members are one body (as gunzip reads them); garbage after a
   * zlib stream is refused. */
  buf_t a = zeros(RILL_Z_GZIP, 1000), two = {0};
  put(&two, a.p, a.len);
  put(&two, a.p, a.len);
  out = (buf_t){0};
  r = inflate_all(RILL_Z_GZIP, two.p, two.len, 0, 300, &out);
  CHECK(r == RILL_EOF && out.len == 2000, "two members (%d, %zu)", r, out.len);
  free(out.p);
  buf_t zl = zeros(RILL_Z_DEFLATE, 1000);
  put(&zl, "junk", 4);
  out = (buf_t){0};
  CHECK(inflate_all(RILL_Z_DEFLATE, zl.p, zl.len, 0, 4096, &out) == RILL_EPROTO,
        "data after a zlib stream");
  free(out.p);
  CHECK(rill__z_format("GZip", 4) == RILL_Z_GZIP && rill__z_format("x-gzip", 6) == RILL_Z_GZIP &&
            rill__z_format("deflate", 7) == RILL_Z_DEFLATE &&
            rill__z_format("identity", 8) == RILL_Z_NONE && rill__z_format("br", 2) == -1,
        "coding names");
  int mem, wb = rill__deflate_wbits(0, &mem);
  CHECK(wb == 15 && mem == 8, "an unknown length gets the full window");
  wb = rill__deflate_wbits(1000, &mem);
  CHECK(wb == 10 && mem == 3, "a 1000-byte body gets a 1 KiB window (%d, %d)", wb, mem);
  free(bomb.p);
  free(exact.p);
  free(a.p);
  free(two.p);
  free(zl.p);
  free(tz.p);
}

/* The decoded-body stream over a memory stream, read as a Lua face would:
 * peek, consume, fill and wait for readable. */
typedef struct {
  rill_binding_t b;
  int readable;
} reader_t;

static void on_readable(rill_binding_t *b, int status) {
  (void)status;
  ((reader_t *)b)->readable++;
}

static const rill_binding_ops_t reader_ops = {.readable = on_readable};

static int stream_read(const buf_t *z, int format, uint64_t max, unsigned seed, buf_t *out) {
  memstream_t *ms = memstream_new(W);
  rill_binding_t owner = {0};
  static const rill_binding_ops_t owner_ops = {0};
  rill__stream_bind(&ms->base, &owner, &owner_ops);
  rill_inflate_stream_t *s = rill__inflate_stream_new(W, &ms->base, format, max);
  reader_t rd = {0};
  rill__stream_bind(&s->base, &rd.b, &reader_ops);
  uint64_t g = seed * 0x9e3779b97f4a7c15ull + 1;
  size_t at = 0;
  int r;
  for (;;) {
    const char *p;
    size_t n;
    r = s->base.vt->peek(&s->base, &p, &n);
    if (r < 0) break;
    if (n > 0) {
      size_t take = n > 1000 ? n / 2 : n;
      put(out, p, take);
      s->base.vt->consume(&s->base, take);
      continue;
    }
    r = rill__stream_fill(&s->base);
    if (r < 0) break;
    /* The peer sends its next piece. */
    if (at < z->len) {
      g ^= g << 13, g ^= g >> 7, g ^= g << 17;
      size_t k = seed == 0 ? z->len : 1 + g % 3000;
      if (k > z->len - at) k = z->len - at;
      memstream_feed(ms, z->p + at, k);
      at += k;
    } else {
      memstream_eof(ms);
    }
    while (memstream_run() > 0) {}
  }
  s->base.vt->close(&s->base);
  rill__stream_unbind(&owner);
  memstream_free(ms);
  return r;
}

static void decoded_stream(void) {
  size_t n = 200000;
  char *t = text(n);
  rill_deflate_t *d = malloc(sizeof(*d));
  rill__deflate_init(d, RILL_Z_GZIP, 6, 15, 8);
  buf_t z = {0};
  rill__deflate_put(d, t, n, Z_FINISH, emit, &z);
  rill__deflate_end(d);
  free(d);
  for (unsigned seed = 0; seed < 4; seed++) {
    buf_t out = {0};
    int r = stream_read(&z, RILL_Z_GZIP, 0, seed, &out);
    CHECK(r == RILL_EOF, "the decoded body ends (%d, seed %u)", r, seed);
    CHECK(out.len == n && memcmp(out.p, t, n) == 0, "the decoded body (seed %u)", seed);
    free(out.p);
  }
  /* Truncated: an error at the body's end, not a short body taken as whole. */
  buf_t half = {z.p, z.len / 2, 0};
  buf_t out = {0};
  CHECK(stream_read(&half, RILL_Z_GZIP, 0, 2, &out) == RILL_EPROTO, "truncated body");
  free(out.p);
  /* A bomb, with a limit. */
  buf_t bomb = zeros(RILL_Z_GZIP, 32u << 20);
  out = (buf_t){0};
  CHECK(stream_read(&bomb, RILL_Z_GZIP, 1u << 20, 3, &out) == RILL_EBODY, "bomb");
  CHECK(out.len <= (1u << 20), "no more than the limit was read (%zu)", out.len);
  free(out.p);
  free(bomb.p);
  free(z.p);
  free(t);
}

int main(void) {
  W = rill__worker_new(NULL);
  roundtrip();
  limits_and_errors();
  decoded_stream();
  rill__worker_free(W);
  printf("deflate: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
