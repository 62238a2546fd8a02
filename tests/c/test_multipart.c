/* The multipart layer (core/multipart.c) over an in-memory body, linked
 * without LuaJIT: parts, headers and data as an application reads them; the
 * same bytes fed whole, byte by byte and in random pieces, read a byte at a
 * time or all at once, or with parts left half read, must give the same
 * record; broken bodies and limits; nothing read past the close delimiter;
 * a large part passing through in bounded memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "mpdrive.h"

static rill_worker_t *W;

/* Feeds body to a fresh reader in pieces (sizes from a PRNG seeded with
 * seed; seed 0: whole, 1: byte by byte), then the end. Returns the record;
 * *left gets what the layer left in the body (after the close delimiter). */
static char *run(const char *boundary, const char *body, size_t len, unsigned seed,
                 size_t take, size_t keep, unsigned max_parts, size_t max_header,
                 char **left) {
  memstream_t *ms = memstream_new(W);
  rill_binding_t owner = {0}; /* the body's owner, under the layer */
  static const rill_binding_ops_t owner_ops = {0};
  rill__stream_bind(&ms->base, &owner, &owner_ops);
  mpd_t d;
  if (mpd_start(&d, W, ms, boundary, max_parts, max_header) != 0) abort();
  d.take = take;
  d.keep = keep;
  d.check = 1;
  uint64_t g = seed * 0x9e3779b97f4a7c15ull + 1;
  size_t at = 0;
  while (at < len) {
    size_t k = len - at;
    if (seed == 1) {
      k = 1;
    } else if (seed > 1) {
      g ^= g << 13, g ^= g >> 7, g ^= g << 17;
      size_t r = 1 + (size_t)(g % (g & 8 ? 300 : 7));
      if (r < k) k = r;
    }
    memstream_feed(ms, body + at, k);
    at += k;
    while (memstream_run() > 0) {}
  }
  memstream_eof(ms);
  while (memstream_run() > 0) {}
  CHECK(!d.broken, "a callback came from inside a call of the reader");
  CHECK(!d.delim_in_data, "a part's data held the delimiter (seed %u)", seed);
  CHECK(d.state == MPD_DONE, "the reader did not finish (seed %u): %s", seed, d.rec.p);
  const char *p;
  size_t n = 0;
  if (ms->base.vt->peek(&ms->base, &p, &n) != 0) n = 0;
  if (left) {
    *left = malloc(n + 1);
    memcpy(*left, p, n);
    (*left)[n] = 0;
  }
  char *rec = d.rec.p;
  d.rec.p = NULL;
  mpd_free(&d);
  CHECK(ms->base.top == &owner, "the layer left a binding on the body");
  rill__stream_unbind(&owner);
  memstream_free(ms);
  return rec;
}

/* Every way of feeding and reading body gives want. */
static void expect(const char *what, const char *boundary, const char *body,
                   unsigned max_parts, size_t max_header, const char *want) {
  size_t len = strlen(body);
  for (unsigned seed = 0; seed < 40; seed++) {
    for (int take = 0; take < 2; take++) {
      char *rec =
          run(boundary, body, len, seed, take ? 1 : 0, 0, max_parts, max_header, NULL);
      CHECK(strcmp(rec, want) == 0, "%s (seed %u, take %d):\n  got  %s\n  want %s", what,
            seed, take, rec, want);
      free(rec);
    }
  }
}

#define B "----rillBoundary7MA4YWxk"

static void test_parts(void) {
  const char *body =
      "This is the preamble: ignored.\r\n"
      "--" B "\r\n"
      "Content-Disposition: form-data; name=\"field1\"\r\n"
      "\r\n"
      "value1\r\n"
      "--" B "\r\n"
      "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
      "Content-Type: text/plain\r\n"
      "\r\n"
      "line one\r\nline two\r\n\r\n"
      "--" B "  \t\r\n" /* transport padding */
      "content-disposition:form-data; name=empty\r\n"
      "\r\n"
      "\r\n"
      "--" B "--\r\nthe epilogue, left unread";
  const char *want = "PContent-Disposition=form-data; name=\"field1\";{value1}"
                     "PContent-Disposition=form-data; name=\"file\"; filename=\"a.txt\";"
                     "Content-Type=text/plain;{line one\r\nline two\r\n}"
                     "Pcontent-disposition=form-data; name=empty;{}.";
  expect("three parts", B, body, 1000, 16384, want);
  char *left, *rec = run(B, body, strlen(body), 5, 0, 0, 1000, 16384, &left);
  CHECK(strcmp(left, "\r\nthe epilogue, left unread") == 0, "left after the close: %s",
        left);
  free(left);
  free(rec);
  /* Parts left half read: the rest is discarded by the next rill__mp_next. */
  for (unsigned seed = 0; seed < 20; seed++) {
    rec = run(B, body, strlen(body), seed, 0, 3, 1000, 16384, NULL);
    CHECK(strcmp(rec, "PContent-Disposition=form-data; name=\"field1\";{val}"
                      "PContent-Disposition=form-data; name=\"file\"; filename=\"a.txt\";"
                      "Content-Type=text/plain;{lin}"
                      "Pcontent-disposition=form-data; name=empty;{}.") == 0,
          "keep 3 (seed %u): %s", seed, rec);
    free(rec);
  }
  /* The first delimiter opens the body; no headers at all; no epilogue. */
  expect("bare", "b", "--b\r\n\r\nx\r\n--b--", 10, 100, "P{x}.");
}

/* Data that looks like a delimiter, in part or nearly. */
static void test_awkward(void) {
  const char *data[] = {
      "\r\n--boundar",        /* a delimiter cut short */
      "\r\n--boundarX\r\n",   /* one byte off */
      "\r\r\n--bound\r",      /* CRs before and after */
      "--boundary",           /* the boundary without its CRLF */
      "\n--boundary\r\n",     /* LF alone */
      "\r\n-\r\n--\r\n--b\r", /* prefixes, one after another */
      "\r",                   /* a CR at the very end of the data */
      "\r\n",                 /* a CRLF at the end */
      "\r\n--boundar\r\n--boundar",
  };
  for (size_t i = 0; i < sizeof(data) / sizeof(*data); i++) {
    char body[512], want[512];
    snprintf(
        body, sizeof(body),
        "--boundary\r\nA: 1\r\n\r\n%s\r\n--boundary\r\nB: 2\r\n\r\n%s%s\r\n--boundary--",
        data[i], data[i], data[i]);
    snprintf(want, sizeof(want), "PA=1;{%s}PB=2;{%s%s}.", data[i], data[i], data[i]);
    expect(data[i], "boundary", body, 10, 1000, want);
  }
}

/* Broken bodies are RILL_EPROTO, limits RILL_EBODY, whatever the cut. */
static void test_errors(void) {
  char want[64];
  struct {
    const char *what, *body;
    int err;
    unsigned max_parts;
    size_t max_header;
  } cases[] = {
      {"no close delimiter", "--b\r\n\r\nabc", RILL_EPROTO, 10, 100},
      {"no delimiter at all", "just bytes", RILL_EPROTO, 10, 100},
      {"ends in the headers", "--b\r\nA: 1\r\n", RILL_EPROTO, 10, 100},
      {"junk after a boundary", "--b\r\n\r\nx\r\n--bX\r\n\r\n--b--", RILL_EPROTO, 10,
       100},
      {"junk after padding", "--b \tx\r\n\r\n--b--", RILL_EPROTO, 10, 100},
      {"one dash", "--b\r\n\r\nx\r\n--b-\r\n", RILL_EPROTO, 10, 100},
      {"CR without LF", "--b\r\r\n\r\n--b--", RILL_EPROTO, 10, 100},
      {"no colon", "--b\r\nNoColon\r\n\r\n--b--", RILL_EPROTO, 10, 100},
      {"empty name", "--b\r\n: v\r\n\r\n--b--", RILL_EPROTO, 10, 100},
      {"space in the name", "--b\r\nA B: v\r\n\r\n--b--", RILL_EPROTO, 10, 100},
      {"obs-fold", "--b\r\nA: 1\r\n 2\r\n\r\n--b--", RILL_EPROTO, 10, 100},
      {"bare LF", "--b\r\nA: 1\n\r\n--b--", RILL_EPROTO, 10, 100},
      {"CR in a value", "--b\r\nA: 1\r2\r\n\r\n--b--", RILL_EPROTO, 10, 100},
      {"too many parts", "--b\r\n\r\n\r\n--b\r\n\r\n\r\n--b\r\n\r\n\r\n--b--", RILL_EBODY,
       2, 100},
      {"header too large", "--b\r\nA: 0123456789\r\n\r\n\r\n--b--", RILL_EBODY, 10, 12},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    size_t len = strlen(cases[i].body);
    for (unsigned seed = 0; seed < 30; seed++) {
      char *rec = run("b", cases[i].body, len, seed, seed & 1, 0, cases[i].max_parts,
                      cases[i].max_header, NULL);
      snprintf(want, sizeof(want), "E%d", cases[i].err);
      const char *e = strrchr(rec, 'E');
      CHECK(e && strcmp(e, want) == 0, "%s (seed %u): %s, want ...%s", cases[i].what,
            seed, rec, want);
      free(rec);
    }
  }
  /* Exactly at the limits is fine. */
  expect("two parts of two", "b", "--b\r\n\r\n\r\n--b\r\n\r\n\r\n--b--", 2, 100,
         "P{}P{}.");
  expect("header at its limit", "b", "--b\r\nA: 0123\r\n\r\n\r\n--b--", 10, 11,
         "PA=0123;{}.");
}

static void test_boundaries(void) {
  rill_multipart_t m;
  memstream_t *ms = memstream_new(W);
  const char *bad[] = {
      "",
      "a\rb",
      "a\nb",
      "trailing ",
      "x\"y",
      "semi;colon",
      "01234567890123456789012345678901234567890123456789012345678901234567890"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
    CHECK(rill__mp_init(&m, W, &ms->base, bad[i], strlen(bad[i]), 10, 100) == UV_EINVAL,
          "boundary \"%s\" taken", bad[i]);
  CHECK(ms->base.top == NULL, "a refused boundary bound the layer");
  const char *good =
      "'()+_,-./:=? 01234567890123456789012345678901234567890123456789012345z";
  CHECK(strlen(good) == 70, "70");
  CHECK(rill__mp_init(&m, W, &ms->base, good, strlen(good), 10, 100) == 0,
        "boundary refused");
  rill__mp_release(&m);
  memstream_free(ms);
}

/* A 64 MiB part, fed 64 KiB at a time with delimiter-like bytes at the
 * pieces' edges, passes through with nothing held but the pieces. */
static void test_large(void) {
  memstream_t *ms = memstream_new(W);
  rill_binding_t owner = {0};
  static const rill_binding_ops_t owner_ops = {0};
  rill__stream_bind(&ms->base, &owner, &owner_ops);
  mpd_t d;
  mpd_start(&d, W, ms, "b", 10, 100);
  d.keep = 1; /* read one byte, skip the rest: the discarding path */
  const char *head = "--b\r\nContent-Disposition: form-data; name=\"big\"\r\n\r\n";
  memstream_feed(ms, head, strlen(head));
  memstream_run();
  static char piece[65536];
  memset(piece, 'x', sizeof(piece));
  memcpy(piece + sizeof(piece) - 4, "\r\n--", 4); /* a delimiter cut at the edge */
  size_t max_in = 0;
  for (int i = 0; i < 1024; i++) {
    memstream_feed(ms, piece, sizeof(piece));
    if (ms->in_cap > max_in) max_in = ms->in_cap;
    while (memstream_run() > 0) {}
  }
  memstream_feed(ms, "\r\n--b--", 7);
  memstream_eof(ms);
  while (memstream_run() > 0) {}
  CHECK(d.end == RILL_EOF, "the large part did not end well: %d", d.end);
  CHECK(d.data == 1, "bytes read: %llu", (unsigned long long)d.data);
  CHECK(max_in <= 2 * sizeof(piece), "the body's buffer grew to %zu", max_in);
  CHECK(d.m.hcap <= 256, "the header buffer grew to %zu", d.m.hcap);
  mpd_free(&d);
  rill__stream_unbind(&owner);
  memstream_free(ms);
  /* The same read whole: every byte comes out, the held-back ones too. */
  ms = memstream_new(W);
  rill__stream_bind(&ms->base, &owner, &owner_ops);
  mpd_start(&d, W, ms, "b", 10, 100);
  memstream_feed(ms, head, strlen(head));
  memstream_run();
  for (int i = 0; i < 64; i++) {
    memstream_feed(ms, piece, sizeof(piece));
    while (memstream_run() > 0) {}
  }
  memstream_feed(ms, "\r\n--b--", 7);
  memstream_eof(ms);
  while (memstream_run() > 0) {}
  CHECK(d.end == RILL_EOF && d.data == 64 * sizeof(piece), "read whole: %d, %llu bytes",
        d.end, (unsigned long long)d.data);
  mpd_free(&d);
  rill__stream_unbind(&owner);
  memstream_free(ms);
}

/* readable() goes to whoever asked for it: next(), the part's reader, or a
 * reader of the body under the layer (a handler that left the parts). */
static int heard_owner, heard_part, heard_next;
static void owner_readable(rill_binding_t *b, int status) {
  heard_owner++;
}
static void part_readable(rill_binding_t *b, int status) {
  heard_part++;
}
static void count_next(rill_multipart_t *m) {
  heard_next++;
}

static void test_who_is_told(void) {
  memstream_t *ms = memstream_new(W);
  rill_binding_t owner = {0}, reader = {0};
  static const rill_binding_ops_t owner_ops = {.readable = owner_readable};
  static const rill_binding_ops_t part_ops = {.readable = part_readable};
  rill__stream_bind(&ms->base, &owner, &owner_ops);
  rill_multipart_t m;
  CHECK(rill__mp_init(&m, W, &ms->base, "b", 1, 10, 100) == 0, "init");
  m.on_next = count_next;
  CHECK(rill__mp_next(&m) == RILL_EAGAIN, "next waits");
  memstream_feed(ms, "--b\r\n\r\nab", 9);
  memstream_run();
  CHECK(heard_next == 1 && heard_owner == 0, "next told %d, owner %d", heard_next,
        heard_owner);
  CHECK(rill__mp_next(&m) == 0, "a part");
  rill__stream_bind(&m.base, &reader, &part_ops);
  const char *p;
  size_t n;
  CHECK(m.base.vt->peek(&m.base, &p, &n) == 0 && n == 2, "peek: %zu", n);
  m.base.vt->consume(&m.base, 2);
  CHECK(m.base.vt->peek(&m.base, &p, &n) == 0 && n == 0, "nothing more yet");
  CHECK(m.base.vt->fill(&m.base) == 0, "the part's fill");
  memstream_feed(ms, "c\r", 2);
  memstream_run();
  CHECK(heard_part == 1 && heard_owner == 0, "part told %d, owner %d", heard_part,
        heard_owner);
  CHECK(m.base.vt->peek(&m.base, &p, &n) == 0 && n == 1 && p[0] == 'c', "c");
  m.base.vt->consume(&m.base, 1);
  /* The body's own reader asks: the layer is not reading, it passes. */
  CHECK(rill__stream_fill(&ms->base) == 0, "the owner's fill");
  memstream_feed(ms, "\n", 1);
  memstream_run();
  CHECK(heard_owner == 1 && heard_part == 1, "owner told %d, part %d", heard_owner,
        heard_part);
  rill__stream_unbind(&reader);
  rill__mp_release(&m);
  rill__stream_unbind(&owner);
  memstream_free(ms);
}

int main(void) {
  W = rill__worker_new(NULL);
  test_parts();
  test_awkward();
  test_errors();
  test_boundaries();
  test_large();
  test_who_is_told();
  rill__worker_free(W);
  printf("multipart: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
