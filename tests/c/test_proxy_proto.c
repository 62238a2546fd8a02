/* Unit tests of the PROXY protocol parser (core/proxy_proto.c), with the
 * examples of haproxy.org's proxy-protocol.txt as vectors. Every header is
 * fed whole and also cut at every byte: a prefix must ask for more, never
 * fail, and the bytes after a header are never taken. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_proto.h"

#include "check.h"

#define B(lit) (lit), sizeof(lit) - 1

static const char sig[] = "\r\n\r\n\0\r\nQUIT\n";

/* Parses in[0..n) whole and every prefix of it; returns the whole result. */
static int parse_all(const char *in, size_t n, rill_proxy_hdr_t *h) {
  int whole = rill__proxy_parse(in, n, h);
  for (size_t k = 0; k < n; k++) {
    rill_proxy_hdr_t t;
    /* a copy of exactly k bytes: nothing past it may be read */
    char *p = malloc(k ? k : 1);
    memcpy(p, in, k);
    int r = rill__proxy_parse(p, k, &t);
    free(p);
    if (whole > 0 && (int)k < whole)
      CHECK(r == 0, "a prefix of %zu bytes of a good header gave %d", k, r);
    if (whole > 0 && (int)k >= whole)
      CHECK(r == whole, "cut at %zu: %d, not %d", k, r, whole);
    if (whole < 0) CHECK(r <= 0, "a prefix of %zu bytes of a bad header gave %d", k, r);
  }
  return whole;
}

static void addr_is(const struct sockaddr_storage *ss, const char *host, int port) {
  char buf[64];
  int p;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const void *)ss;
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    p = ntohs(a->sin_port);
  } else {
    const struct sockaddr_in6 *a = (const void *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    p = ntohs(a->sin6_port);
  }
  CHECK(strcmp(buf, host) == 0 && p == port, "address %s:%d, not %s:%d", buf, p, host,
        port);
}

static void v1(void) {
  rill_proxy_hdr_t h;
  static const char tcp4[] =
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
  int r = parse_all(B(tcp4), &h);
  CHECK(r == 47, "TCP4: %d", r);
  CHECK(h.version == 1 && h.family == AF_INET && !h.local, "TCP4 fields");
  addr_is(&h.src, "192.168.0.1", 56324);
  addr_is(&h.dst, "192.168.0.11", 443);

  r = parse_all(B("PROXY TCP6 ::1 2001:db8::7 65535 0\r\n"), &h);
  CHECK(r == 36 && h.family == AF_INET6, "TCP6: %d", r);
  addr_is(&h.src, "::1", 65535);
  addr_is(&h.dst, "2001:db8::7", 0);

  r = parse_all(B("PROXY UNKNOWN\r\n"), &h);
  CHECK(r == 15 && h.family == AF_UNSPEC, "UNKNOWN: %d", r);
  static const char unk[] =
      "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
  r = parse_all(B(unk), &h);
  CHECK(r == (int)sizeof(unk) - 1 && h.family == AF_UNSPEC, "UNKNOWN with fields: %d", r);

  /* The longest line is 107 bytes. */
  static const char longest[] = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                                "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
  CHECK(sizeof(longest) - 1 == 104, "longest: %zu", sizeof(longest) - 1);
  r = parse_all(B(longest), &h);
  CHECK(r == 104, "longest TCP6: %d", r);
  char big[200];
  memcpy(big, "PROXY UNKNOWN ", 14);
  memset(big + 14, 'x', sizeof(big) - 14);
  CHECK(rill__proxy_parse(big, 106, &h) == 0, "106 bytes without an end wait for more");
  CHECK(rill__proxy_parse(big, 107, &h) == RILL_EPROTO, "107 without an end fail");
  CHECK(rill__proxy_parse(big, sizeof(big), &h) == RILL_EPROTO, "a long line fails");

  static const char *const bad[] = {
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",     /* LF alone */
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 65536\r\n", /* port */
      "PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",  /* leading zero */
      "PROXY TCP4 192.168.0.1 192.168.0.11 -1 443\r\n",
      "PROXY TCP4 192.168.0.256 192.168.0.11 1 443\r\n", /* address */
      "PROXY TCP4 ::1 ::1 1 2\r\n",                      /* family */
      "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
      "PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", /* two spaces */
      "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", /* a field too many */
      "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",    /* too few */
      "PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
      "PROXY UNKNOWNX\r\n",
      "PROXY\r\n",
      "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n",
      "GET / HTTP/1.1\r\n",
      "PROXY TCP4 1.2.3.4\t1.2.3.4 1 2\r\n",
      "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r\r\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    r = parse_all(bad[i], strlen(bad[i]), &h);
    CHECK(r == RILL_EPROTO, "bad v1 #%zu gave %d", i, r);
  }
  /* A first byte that begins neither version fails at once. */
  CHECK(rill__proxy_parse("\x16", 1, &h) == RILL_EPROTO, "TLS first fails");
  CHECK(rill__proxy_parse("PRO", 3, &h) == 0, "PRO waits");
  CHECK(rill__proxy_parse("PRX", 3, &h) == RILL_EPROTO, "PRX fails");
}

/* A v2 header: ver_cmd, fam, then body[0..len). */
static size_t v2(char *out, int vc, int fam, const void *body, size_t len) {
  memcpy(out, sig, 12);
  out[12] = (char)vc;
  out[13] = (char)fam;
  out[14] = (char)(len >> 8);
  out[15] = (char)len;
  if (len) memcpy(out + 16, body, len);
  return 16 + len;
}

static void v2tests(void) {
  rill_proxy_hdr_t h;
  char buf[16 + RILL_PROXY_V2_MAX + 16];
  unsigned char a4[12 + 10] = {10, 1, 2, 3, 127, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb,
                               /* a TLV: type 4 (NOOP), 3 bytes; and an ALPN one */
                               0x04, 0, 3, 'a', 'b', 'c', 0x01, 0, 1, 'h'};
  size_t n = v2(buf, 0x21, 0x11, a4, 12);
  memcpy(buf + n, "GET", 3); /* what follows stays */
  int r = parse_all(buf, n + 3, &h);
  CHECK(r == 28 && h.version == 2 && h.family == AF_INET && !h.local, "v2 INET: %d", r);
  addr_is(&h.src, "10.1.2.3", 8080);
  addr_is(&h.dst, "127.0.0.1", 443);
  n = v2(buf, 0x21, 0x11, a4, sizeof(a4));
  r = parse_all(buf, n, &h);
  CHECK(r == (int)n && h.family == AF_INET, "v2 INET with TLVs: %d", r);
  n = v2(buf, 0x21, 0x11, a4, sizeof(a4) - 1); /* the last TLV cut */
  CHECK(parse_all(buf, n, &h) == RILL_EPROTO, "a TLV past the end fails");

  unsigned char a6[36] = {0};
  a6[15] = 1;
  a6[16] = 0x20, a6[17] = 0x01, a6[18] = 0x0d, a6[19] = 0xb8, a6[31] = 7;
  a6[32] = 0xff, a6[33] = 0xff, a6[35] = 80;
  n = v2(buf, 0x21, 0x21, a6, sizeof(a6));
  r = parse_all(buf, n, &h);
  CHECK(r == 52 && h.family == AF_INET6, "v2 INET6: %d", r);
  addr_is(&h.src, "::1", 65535);
  addr_is(&h.dst, "2001:db8::7", 80);

  n = v2(buf, 0x20, 0x00, NULL, 0);
  r = parse_all(buf, n, &h);
  CHECK(r == 16 && h.local && h.family == AF_UNSPEC, "v2 LOCAL: %d", r);
  n = v2(buf, 0x20, 0x11, a4, 12); /* LOCAL with addresses: they are ignored */
  r = parse_all(buf, n, &h);
  CHECK(r == 28 && h.local && h.family == AF_UNSPEC, "v2 LOCAL with addresses: %d", r);
  n = v2(buf, 0x21, 0x00, NULL, 0);
  r = parse_all(buf, n, &h);
  CHECK(r == 16 && !h.local && h.family == AF_UNSPEC, "v2 UNSPEC: %d", r);
  static unsigned char un[216];
  n = v2(buf, 0x21, 0x31, un, sizeof(un));
  r = parse_all(buf, n, &h);
  CHECK(r == 232 && h.family == AF_UNIX, "v2 UNIX: %d", r);

  /* bad ones */
  n = v2(buf, 0x11, 0x11, a4, 12);
  CHECK(parse_all(buf, n, &h) == RILL_EPROTO, "version 1 in a v2 header");
  n = v2(buf, 0x22, 0x11, a4, 12);
  CHECK(parse_all(buf, n, &h) == RILL_EPROTO, "command 2");
  n = v2(buf, 0x21, 0x41, a4, 12);
  CHECK(parse_all(buf, n, &h) == RILL_EPROTO, "family 4");
  n = v2(buf, 0x21, 0x12, a4, 12);
  CHECK(parse_all(buf, n, &h) == RILL_EPROTO, "a datagram");
  n = v2(buf, 0x21, 0x11, a4, 11);
  CHECK(parse_all(buf, n, &h) == RILL_EPROTO, "INET addresses cut");
  n = v2(buf, 0x21, 0x21, a6, 35);
  CHECK(parse_all(buf, n, &h) == RILL_EPROTO, "INET6 addresses cut");
  n = v2(buf, 0x21, 0x11, a4, 12);
  buf[14] = (char)((RILL_PROXY_V2_MAX + 1) >> 8), buf[15] = (char)(RILL_PROXY_V2_MAX + 1);
  CHECK(rill__proxy_parse(buf, 16, &h) == RILL_EPROTO,
        "a length past the cap fails at once");
  n = v2(buf, 0x21, 0x11, a4, 12);
  buf[7] = 'X';
  CHECK(rill__proxy_parse(buf, 8, &h) == RILL_EPROTO, "a bad signature fails at once");
}

static void cidr(void) {
  rill_cidr_t l[3];
  CHECK(rill__cidr_parse("10.0.0.0/8", &l[0]) == 0, "10/8");
  CHECK(rill__cidr_parse("::1", &l[1]) == 0, "::1");
  CHECK(rill__cidr_parse("192.168.1.7", &l[2]) == 0, "one address");
  CHECK(rill__cidr_parse("10.0.0.0/33", &l[0]) == UV_EINVAL, "/33");
  CHECK(rill__cidr_parse("10.0.0/8", &l[0]) == UV_EINVAL, "a short address");
  CHECK(rill__cidr_parse("", &l[0]) == UV_EINVAL, "nothing");
  CHECK(rill__cidr_parse("1.2.3.4/", &l[0]) == UV_EINVAL, "no bits");
  rill__cidr_parse("10.0.0.0/8", &l[0]);
  uint8_t ip[16] = {0};
  ip[10] = ip[11] = 0xff;
  ip[12] = 10, ip[13] = 200, ip[15] = 1;
  CHECK(rill__cidr_match(l, 3, ip), "10.200.0.1 in 10/8");
  ip[12] = 11;
  CHECK(!rill__cidr_match(l, 3, ip), "11.200.0.1 not in the list");
  ip[12] = 192, ip[13] = 168, ip[14] = 1, ip[15] = 7;
  CHECK(rill__cidr_match(l, 3, ip), "192.168.1.7");
  ip[15] = 8;
  CHECK(!rill__cidr_match(l, 3, ip), "192.168.1.8");
  uint8_t one[16] = {0};
  one[15] = 1;
  CHECK(rill__cidr_match(l, 3, one), "::1");
  rill_cidr_t all;
  rill__cidr_parse("::/0", &all);
  CHECK(rill__cidr_match(&all, 1, ip), "::/0 takes all");
  rill__cidr_parse("10.0.0.0/12", &all);
  uint8_t x[16] = {0};
  x[10] = x[11] = 0xff, x[12] = 10, x[13] = 15;
  CHECK(rill__cidr_match(&all, 1, x), "10.15 in 10.0/12");
  x[13] = 16;
  CHECK(!rill__cidr_match(&all, 1, x), "10.16 not in 10.0/12");
}

int main(void) {
  v1();
  v2tests();
  cidr();
  printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
