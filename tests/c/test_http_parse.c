/* Unit tests of the HTTP/1.1 syntax layer (core/http_parse.c): request heads and
 * the chunked coding, with RFC 9112 shapes as vectors. Each case is fed whole
 * and also split at every byte, since the parsers are incremental. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

#include "check.h"

/* ---- chunked ---- */

/* Decodes all of in, fed in pieces of at most step bytes. Returns 0 and the
 * payload in out, or -1 with the decoder's error. Bytes after the body are
 * left: *rest says how many. */
static int dechunk(const char *in, size_t n, size_t step, char *out, size_t *outlen,
                   size_t *rest, const char **err, rill_chunked_t *c) {
  rill__chunked_init(c, 1024);
  size_t pos = 0, o = 0, avail = 0;
  *outlen = 0;
  while (c->state != RILL_CHUNK_DONE) {
    if (avail == pos) {
      if (avail == n) break;
      avail = avail + step < n ? avail + step : n;
    }
    if (c->state == RILL_CHUNK_DATA) {
      size_t take = avail - pos < c->remaining ? avail - pos : (size_t)c->remaining;
      memcpy(out + o, in + pos, take);
      o += take;
      pos += take;
      rill__chunked_took(c, take);
      continue;
    }
    ssize_t k = rill__chunked_frame(c, in + pos, avail - pos);
    if (k < 0) {
      *err = c->error;
      return -1;
    }
    pos += (size_t)k;
  }
  *outlen = o;
  *rest = n - pos;
  return c->state == RILL_CHUNK_DONE ? 0 : 1;
}

static void chunk_ok(const char *name, const char *in, const char *want,
                     const char *trailers, size_t want_rest) {
  size_t n = strlen(in);
  for (size_t step = 1; step <= n; step++) {
    char out[1024];
    size_t ol, rest;
    const char *err = NULL;
    rill_chunked_t c;
    int r = dechunk(in, n, step, out, &ol, &rest, &err, &c);
    CHECK(r == 0, "%s (step %zu): not decoded: %s", name, step, err ? err : "incomplete");
    if (r == 0) {
      CHECK(ol == strlen(want) && memcmp(out, want, ol) == 0,
            "%s (step %zu): payload %.*s", name, step, (int)ol, out);
      CHECK(rest == want_rest, "%s (step %zu): %zu bytes left, want %zu", name, step,
            rest, want_rest);
      size_t tl = trailers ? strlen(trailers) : 0;
      CHECK(c.tlen == tl && (tl == 0 || memcmp(c.trailers, trailers, tl) == 0),
            "%s (step %zu): trailers %.*s", name, step, (int)c.tlen, c.trailers);
    }
    rill__chunked_free(&c);
  }
}

static void chunk_bad(const char *name, const char *in) {
  size_t n = strlen(in);
  for (size_t step = 1; step <= n; step++) {
    char out[1024];
    size_t ol, rest;
    const char *err = NULL;
    rill_chunked_t c;
    int r = dechunk(in, n, step, out, &ol, &rest, &err, &c);
    CHECK(r == -1, "%s (step %zu): accepted", name, step);
    rill__chunked_free(&c);
  }
}

static void test_chunked(void) {
  /* RFC 9112 §7.1: chunks, the last chunk, the trailer section, CRLF. */
  chunk_ok("basic", "4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n",
           "Wikipedia in\r\n\r\nchunks.", NULL, 0);
  chunk_ok("upper hex, leading zeros", "000A\r\n0123456789\r\n00\r\n\r\n", "0123456789",
           NULL, 0);
  chunk_ok("extensions", "5;name=value;q=\"a b\"\r\nhello\r\n0;last\r\n\r\n", "hello",
           NULL, 0);
  chunk_ok("whitespace before an extension", "5 ;x\r\nhello\r\n0\r\n\r\n", "hello", NULL,
           0);
  chunk_ok("trailers", "3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum: 7\r\n\r\n", "abc",
           "Expires: never\r\nX-Sum: 7\r\n", 0);
  chunk_ok("empty body", "0\r\n\r\n", "", NULL, 0);
  chunk_ok("next message stays", "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "x", NULL, 16);

  chunk_bad("no size", "\r\nabc\r\n0\r\n\r\n");
  chunk_bad("negative size", "-5\r\nhello\r\n0\r\n\r\n");
  chunk_bad("0x prefix", "0x5\r\nhello\r\n0\r\n\r\n");
  chunk_bad("leading space", " 5\r\nhello\r\n0\r\n\r\n");
  chunk_bad("trailing space", "5 \r\nhello\r\n0\r\n\r\n");
  chunk_bad("bare LF after size", "5\nhello\r\n0\r\n\r\n");
  chunk_bad("bare LF after data", "5\r\nhello\n0\r\n\r\n");
  chunk_bad("data longer than size", "3\r\nhello\r\n0\r\n\r\n");
  chunk_bad("overflow", "fffffffffffffffff\r\n");
  chunk_bad("control byte in extension", "5;a\x01\r\nhello\r\n0\r\n\r\n");
  chunk_bad("bare LF ends trailers", "0\r\nX: y\n\n");
  chunk_bad("bare CR in trailers", "0\r\nX: y\rZ: w\r\n\r\n");
  chunk_bad("bare CR before the end", "0\r\nX: y\r\n\r\r\n");
  chunk_bad("obs-fold in trailers", "0\r\nA: 1\r\n  more\r\n\r\n");
  chunk_bad("control byte in trailers", "0\r\nA: \x01\r\n\r\n");
  chunk_bad("space before a trailer's colon", "0\r\nA : 1\r\n\r\n");
  chunk_bad("a trailer line without a colon", "0\r\nA\r\n\r\n");
  chunk_bad("an empty trailer field name", "0\r\n: v\r\n\r\n");
  {
    char many[4096] = "0\r\n";
    for (int i = 0; i <= RILL_CHUNK_TRAILERS_MAX; i++)
      snprintf(many + strlen(many), sizeof(many) - strlen(many), "T%d: v\r\n", i);
    strcat(many, "\r\n");
    rill_chunked_t c;
    size_t ol, rest;
    const char *err = NULL;
    char out[16];
    rill__chunked_init(&c, 8192);
    CHECK(dechunk(many, strlen(many), strlen(many), out, &ol, &rest, &err, &c) == -1,
          "more than %d trailer fields accepted", RILL_CHUNK_TRAILERS_MAX);
    rill__chunked_free(&c);
  }
  chunk_bad("plus sign", "+5\r\nhello\r\n0\r\n\r\n");

  /* Trailer lines are checked when split into fields. */
  rill_chunked_t c;
  rill_http_field_t f[8];
  size_t ol, rest;
  const char *err;
  char out[64];
  const char *good = "0\r\nA: 1\r\nB-C:two  \r\n\r\n";
  dechunk(good, strlen(good), strlen(good), out, &ol, &rest, &err, &c);
  int nf = rill__chunked_trailers(&c, f, 8);
  CHECK(nf == 2, "trailers: %d fields", nf);
  if (nf == 2) {
    CHECK(f[1].name_len == 3 && memcmp(c.trailers + f[1].name_off, "B-C", 3) == 0,
          "name");
    CHECK(f[1].value_len == 3 && memcmp(c.trailers + f[1].value_off, "two", 3) == 0,
          "value trimmed");
  }
  rill__chunked_free(&c);
}

/* ---- request heads ---- */

/* Parses in, fed step bytes at a time. Returns the head length or -1. */
static ssize_t parse_n(rill_http_head_t *h, const char *in, size_t n, size_t step,
                       size_t max) {
  rill__http_head_init(h, HTTP_REQUEST, 100);
  for (size_t avail = step < n ? step : n;; avail = avail + step < n ? avail + step : n) {
    ssize_t r = rill__http_head_parse(h, in, avail, max);
    if (r != 0 || avail == n) return r;
  }
}

static ssize_t parse(rill_http_head_t *h, const char *in, size_t step, size_t max) {
  return parse_n(h, in, strlen(in), step, max);
}

static void head_ok(const char *name, const char *in, unsigned flags) {
  size_t n = strlen(in);
  for (size_t step = 1; step <= n; step++) {
    rill_http_head_t h;
    ssize_t r = parse(&h, in, step, 16384);
    CHECK(r > 0, "%s (step %zu): rejected: %d %s", name, step, h.err_status,
          h.err_reason ? h.err_reason : "incomplete");
    if (r > 0) {
      CHECK((h.flags & flags) == flags, "%s: flags %x, want %x", name, h.flags, flags);
      CHECK(memcmp(in + r - 4, "\r\n\r\n", 4) == 0, "%s: head length %zd", name, r);
    }
    rill__http_head_free(&h);
  }
}

static void head_bad_n(const char *name, const char *in, size_t n, int status) {
  for (size_t step = 1; step <= n; step++) {
    rill_http_head_t h;
    ssize_t r = parse_n(&h, in, n, step, 16384);
    CHECK(r == -1 && h.err_status == status, "%s (step %zu): got %zd, status %d, want %d",
          name, step, r, h.err_status, status);
    rill__http_head_free(&h);
  }
}

/* String literals, NULs and all. */
#define head_bad(name, lit, status) head_bad_n((name), (lit), sizeof(lit) - 1, (status))

static void test_heads(void) {
  head_ok("simple", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", RILL_HTTP_KEEPALIVE);
  head_ok("chunked", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
          RILL_HTTP_CHUNKED);
  head_ok("length", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
          RILL_HTTP_LENGTH);
  head_ok(
      "expect",
      "PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
      RILL_HTTP_CONTINUE);
  head_ok("http/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 0);
  head_ok("absolute form", "GET http://a/b?c HTTP/1.1\r\nHost: a\r\n\r\n", 0);
  head_ok("options *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0);
  head_ok(
      "upgrade",
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
      RILL_HTTP_UPGRADE);
  head_ok("empty value", "GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n", 0);

  /* RFC 9112 §6.1, §6.3: framing that allows smuggling. */
  head_bad("CL and TE",
           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: "
           "chunked\r\n\r\n",
           400);
  head_bad("TE and CL",
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: "
           "3\r\n\r\n",
           400);
  head_bad("two CLs",
           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
           400);
  head_bad("CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", 400);
  head_bad("CL sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", 400);
  head_bad("TE not chunked last",
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400);
  head_bad("TE unknown", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
           400);
  head_bad("TE xchunked",
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400);
  head_bad("TE gzip, chunked",
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501);
  head_bad("TE twice",
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
           "chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
           400);
  head_bad("TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
  head_bad("obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400);
  head_bad("obs-fold tab", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", 400);
  head_bad("space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
  head_bad("tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", 400);
  head_bad("NUL in value", "GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", 400);
  head_bad("control in value", "GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n", 400);
  head_bad("DEL in value", "GET / HTTP/1.1\r\nHost: a\x7f\r\n\r\n", 400);
  head_bad("bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400);
  head_bad("missing Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 400);
  head_bad("two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
  head_bad("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
  head_bad("bad target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  head_bad("space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400);
  head_bad("bad expectation", "GET / HTTP/1.1\r\nHost: a\r\nExpect: tea\r\n\r\n", 417);

  /* Size limits: 414 while in the request line, 431 after. */
  char big[300];
  memset(big, 'a', sizeof(big));
  char line[400];
  snprintf(line, sizeof(line), "GET /%.*s HTTP/1.1\r\nHost: a\r\n\r\n", 250, big);
  rill_http_head_t h;
  CHECK(parse(&h, line, strlen(line), 100) == -1 && h.err_status == 414,
        "long target: %d", h.err_status);
  rill__http_head_free(&h);
  snprintf(line, sizeof(line), "GET / HTTP/1.1\r\nHost: a\r\nX: %.*s\r\n\r\n", 250, big);
  CHECK(parse(&h, line, 7, 100) == -1 && h.err_status == 431, "long field: %d",
        h.err_status);
  rill__http_head_free(&h);
  /* Too many fields */
  char many[4096] = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 120; i++)
    snprintf(many + strlen(many), 64, "X-%d: v\r\n", i);
  strcat(many, "\r\n");
  CHECK(parse(&h, many, strlen(many), 16384) == -1 && h.err_status == 431,
        "many fields: %d", h.err_status);
  rill__http_head_free(&h);

  /* Fields come back as offsets into the head. */
  const char *two =
      "GET /p?q=1 HTTP/1.1\r\nHost: example\r\nX-A: one\r\nx-a:  two \r\n\r\nrest";
  ssize_t r = parse(&h, two, 5, 16384);
  CHECK(r == (ssize_t)strlen(two) - 4, "head length %zd", r);
  CHECK(h.nfields == 3, "fields %u", h.nfields);
  CHECK(h.url_len == 6 && memcmp(two + h.url_off, "/p?q=1", 6) == 0, "target");
  if (h.nfields == 3) {
    rill_http_field_t *f = &h.fields[2];
    CHECK(f->value_len == 3 && memcmp(two + f->value_off, "two", 3) == 0, "value '%.*s'",
          (int)f->value_len, two + f->value_off);
  }
  rill__http_head_free(&h);
}

static void test_format(void) {
  char buf[64];
  size_t n = rill__http_status_line(buf, 404);
  CHECK(n == 24 && memcmp(buf, "HTTP/1.1 404 Not Found\r\n", n) == 0, "status line %.*s",
        (int)n, buf);
  /* every registered code has its phrase (the ones users met as "Unknown") */
  static const struct {
    int status;
    const char *reason;
  } known[] = {{100, "Continue"},          {103, "Early Hints"},
               {226, "IM Used"},           {308, "Permanent Redirect"},
               {416, "Range Not Satisfiable"}, {418, "I'm a teapot"},
               {422, "Unprocessable Content"}, {425, "Too Early"},
               {451, "Unavailable For Legal Reasons"}, {507, "Insufficient Storage"},
               {511, "Network Authentication Required"}, {599, "Unknown"},
               {306, "Unknown"},           {999, "Unknown"}};
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
    const char *r = rill__http_reason(known[i].status);
    CHECK(strcmp(r, known[i].reason) == 0, "reason for %d: %s", known[i].status, r);
  }
  n = rill__http_hex(buf, 0x1a2b);
  CHECK(n == 4 && memcmp(buf, "1a2b", 4) == 0, "hex");
  n = rill__http_u64(buf, 18446744073709551615ull);
  CHECK(n == 20 && memcmp(buf, "18446744073709551615", 20) == 0, "u64");
  n = rill__http_u64(buf, 0);
  CHECK(n == 1 && buf[0] == '0', "u64 zero");
}

int main(void) {
  test_chunked();
  test_heads();
  test_format();
  printf("http_parse: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
