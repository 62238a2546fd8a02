/* The PROXY protocol, versions 1 and 2 (haproxy.org's proxy-protocol.txt).
 * See proxy_proto.h. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_proto.h"

static const char v2sig[12] = "\r\n\r\n\0\r\nQUIT\n";

/* ---- version 1: "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n" ---- */

/* A port: 1-5 digits, no leading zero, at most 65535. -1 if not. */
static int v1_port(const char *p, size_t n) {
  if (n == 0 || n > 5 || (p[0] == '0' && n > 1)) return -1;
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v <= 65535 ? v : -1;
}

/* An address of family af into sa (with port 0). 0 or -1. */
static int v1_addr(int af, const char *p, size_t n, struct sockaddr_storage *ss) {
  char tmp[48];
  if (n == 0 || n >= sizeof(tmp)) return -1;
  memcpy(tmp, p, n);
  tmp[n] = 0;
  memset(ss, 0, sizeof(*ss));
  if (af == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    return inet_pton(AF_INET, tmp, &a->sin_addr) == 1 ? 0 : -1;
  }
  struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
  a->sin6_family = AF_INET6;
  return inet_pton(AF_INET6, tmp, &a->sin6_addr) == 1 ? 0 : -1;
}

static void set_port(struct sockaddr_storage *ss, int port) {
  if (ss->ss_family == AF_INET)
    ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
}

/* The line p[0..n) without its "\r\n". */
static int v1_line(const char *p, size_t n, rill_proxy_hdr_t *h) {
  if (n < 6 || memcmp(p, "PROXY ", 6) != 0) return RILL_EPROTO;
  const char *q = p + 6, *end = p + n;
  h->version = 1;
  if ((size_t)(end - q) >= 7 && memcmp(q, "UNKNOWN", 7) == 0 &&
      (end - q == 7 || q[7] == ' ')) {
    h->family = AF_UNSPEC; /* what follows is to be ignored */
    return 0;
  }
  int af;
  if ((size_t)(end - q) > 5 && memcmp(q, "TCP4 ", 5) == 0)
    af = AF_INET;
  else if ((size_t)(end - q) > 5 && memcmp(q, "TCP6 ", 5) == 0)
    af = AF_INET6;
  else
    return RILL_EPROTO;
  q += 5;
  /* Four fields, one space between each. */
  const char *f[4];
  size_t fl[4];
  for (int i = 0; i < 4; i++) {
    const char *sp = memchr(q, ' ', (size_t)(end - q));
    if (i < 3 && sp == NULL) return RILL_EPROTO;
    if (i == 3 && sp != NULL) return RILL_EPROTO;
    f[i] = q;
    fl[i] = (size_t)((i < 3 ? sp : end) - q);
    q = i < 3 ? sp + 1 : end;
  }
  int sport = v1_port(f[2], fl[2]), dport = v1_port(f[3], fl[3]);
  if (sport < 0 || dport < 0 || v1_addr(af, f[0], fl[0], &h->src) ||
      v1_addr(af, f[1], fl[1], &h->dst))
    return RILL_EPROTO;
  set_port(&h->src, sport);
  set_port(&h->dst, dport);
  h->family = af;
  return 0;
}

static int parse_v1(const char *p, size_t n, rill_proxy_hdr_t *h) {
  size_t lim = n < RILL_PROXY_V1_MAX ? n : RILL_PROXY_V1_MAX;
  for (size_t i = 0; i < lim; i++) {
    if (p[i] == '\r') {
      if (i + 2 > RILL_PROXY_V1_MAX) return RILL_EPROTO; /* no room for the "\n" */
      if (i + 1 == n) return 0;                          /* the "\n" is still to come */
      if (p[i + 1] != '\n') return RILL_EPROTO;
      int r = v1_line(p, i, h);
      return r ? r : (int)(i + 2);
    }
    /* Only printable ASCII before the end of the line. */
    if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] > 0x7e) return RILL_EPROTO;
    if (i < 6 && p[i] != "PROXY "[i]) return RILL_EPROTO;
  }
  return n >= RILL_PROXY_V1_MAX ? RILL_EPROTO : 0;
}

/* ---- version 2: a 16-byte head, addresses, then TLVs ---- */

static int parse_v2(const unsigned char *p, size_t n, rill_proxy_hdr_t *h) {
  if (n < 16) return 0;
  int ver = p[12] >> 4, cmd = p[12] & 15, af = p[13] >> 4, proto = p[13] & 15;
  size_t len = (size_t)p[14] << 8 | p[15];
  if (ver != 2 || cmd > 1 || af > 3 || proto > 2 || len > RILL_PROXY_V2_MAX)
    return RILL_EPROTO;
  size_t need = af == 1 ? 12 : af == 2 ? 36 : af == 3 ? 216 : 0;
  if (cmd == 1 && af != 0 && proto != 1) return RILL_EPROTO; /* a stream only */
  if (len < need) return RILL_EPROTO;
  if (n < 16 + len) return 0;
  memset(h, 0, sizeof(*h));
  h->version = 2;
  h->local = cmd == 0;
  /* The TLVs after the addresses: each whole, none past the end. */
  size_t off = 16 + need, end = 16 + len;
  while (off < end) {
    if (end - off < 3) return RILL_EPROTO;
    size_t tl = (size_t)p[off + 1] << 8 | p[off + 2];
    if (tl > end - off - 3) return RILL_EPROTO;
    off += 3 + tl;
  }
  if (h->local) {
    h->family = AF_UNSPEC;
    return (int)end;
  }
  const unsigned char *a = p + 16;
  if (af == 1) {
    struct sockaddr_in *s = (struct sockaddr_in *)&h->src,
                       *d = (struct sockaddr_in *)&h->dst;
    s->sin_family = d->sin_family = AF_INET;
    memcpy(&s->sin_addr, a, 4);
    memcpy(&d->sin_addr, a + 4, 4);
    memcpy(&s->sin_port, a + 8, 2);
    memcpy(&d->sin_port, a + 10, 2);
    h->family = AF_INET;
  } else if (af == 2) {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&h->src,
                        *d = (struct sockaddr_in6 *)&h->dst;
    s->sin6_family = d->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, a, 16);
    memcpy(&d->sin6_addr, a + 16, 16);
    memcpy(&s->sin6_port, a + 32, 2);
    memcpy(&d->sin6_port, a + 34, 2);
    h->family = AF_INET6;
  } else {
    h->family = af == 3 ? AF_UNIX : AF_UNSPEC;
  }
  return (int)end;
}

int rill__proxy_parse(const char *p, size_t n, rill_proxy_hdr_t *h) {
  if (n == 0) return 0;
  h->local = 0;
  if (p[0] == 'P') return parse_v1(p, n, h);
  size_t k = n < 12 ? n : 12;
  if (memcmp(p, v2sig, k) != 0) return RILL_EPROTO;
  return parse_v2((const unsigned char *)p, n, h);
}

/* ---- address ranges ---- */

int rill__cidr_parse(const char *s, rill_cidr_t *out) {
  char tmp[64];
  size_t n = strlen(s);
  if (n == 0 || n >= sizeof(tmp)) return UV_EINVAL;
  memcpy(tmp, s, n + 1);
  char *slash = strchr(tmp, '/');
  int bits = -1;
  if (slash) {
    *slash = 0;
    char *e;
    long b = strtol(slash + 1, &e, 10);
    if (e == slash + 1 || *e || b < 0 || b > 128) return UV_EINVAL;
    bits = (int)b;
  }
  memset(out, 0, sizeof(*out));
  struct in_addr a4;
  if (inet_pton(AF_INET, tmp, &a4) == 1) {
    if (bits > 32) return UV_EINVAL;
    out->ip[10] = out->ip[11] = 0xff;
    memcpy(out->ip + 12, &a4, 4);
    out->bits = 96 + (bits < 0 ? 32 : bits);
    return 0;
  }
  if (inet_pton(AF_INET6, tmp, out->ip) == 1) {
    out->bits = bits < 0 ? 128 : bits;
    return 0;
  }
  return UV_EINVAL;
}

int rill__cidr_match(const rill_cidr_t *list, size_t n, const uint8_t ip[16]) {
  for (size_t i = 0; i < n; i++) {
    int bits = list[i].bits, whole = bits / 8, rest = bits % 8;
    if (memcmp(list[i].ip, ip, (size_t)whole) != 0) continue;
    if (rest) {
      uint8_t mask = (uint8_t)(0xff << (8 - rest));
      if ((list[i].ip[whole] & mask) != (ip[whole] & mask)) continue;
    }
    return 1;
  }
  return 0;
}

/* ---- the reader of a new connection's header ---- */

typedef struct {
  rill_binding_t b;
  uv_timer_t timer;
  rill_uvstream_t *u;
  rill_proxy_read_cb cb;
  void *data;
} preader_t;

static void timer_closed(uv_handle_t *h) {
  free(h->data);
}

/* Unbinds and frees the reader (its memory goes with its timer). */
static void reader_end(preader_t *pr) {
  rill__stream_unbind(&pr->b);
  uv_timer_stop(&pr->timer);
  uv_close((uv_handle_t *)&pr->timer, timer_closed);
}

static void reader_fail(preader_t *pr, int status) {
  rill_uvstream_t *u = pr->u;
  rill_proxy_read_cb cb = pr->cb;
  void *data = pr->data;
  reader_end(pr);
  rill_stream_t *s = rill__uvstream_stream(u);
  s->vt->abort(s);
  cb(data, u, status);
}

/* Looks at what the stream holds: the whole header, more to read, or an
 * error. */
static void reader_step(preader_t *pr) {
  rill_stream_t *s = rill__uvstream_stream(pr->u);
  for (;;) {
    const char *p;
    size_t n;
    int r = s->vt->peek(s, &p, &n);
    if (r == 0 && n > 0) {
      rill_proxy_hdr_t h;
      r = rill__proxy_parse(p, n, &h);
      if (r > 0) {
        s->vt->consume(s, (size_t)r);
        if (!h.local && (h.family == AF_INET || h.family == AF_INET6))
          rill__uvstream_set_addrs(pr->u, (struct sockaddr *)&h.src,
                                   (struct sockaddr *)&h.dst);
        rill_uvstream_t *u = pr->u;
        rill_proxy_read_cb cb = pr->cb;
        void *data = pr->data;
        reader_end(pr);
        cb(data, u, 0);
        return;
      }
      if (r < 0) {
        reader_fail(pr, r);
        return;
      }
    } else if (r != 0) {
      reader_fail(pr, r == RILL_EOF ? RILL_EPROTO : r);
      return;
    }
    r = rill__stream_fill(s);
    if (r == 0) return; /* readable() follows */
    if (r < 0) {
      reader_fail(pr, r == RILL_EOF ? RILL_EPROTO : r);
      return;
    }
  }
}

static void reader_readable(rill_binding_t *b, int status) {
  (void)status; /* peek says which */
  reader_step((preader_t *)b);
}

static void reader_gone(rill_binding_t *b) {
  preader_t *pr = (preader_t *)b;
  rill_uvstream_t *u = pr->u;
  rill_proxy_read_cb cb = pr->cb;
  void *data = pr->data;
  pr->b.s = NULL;
  uv_timer_stop(&pr->timer);
  uv_close((uv_handle_t *)&pr->timer, timer_closed);
  cb(data, u, RILL_ECLOSED);
}

static void reader_timeout(uv_timer_t *t) {
  reader_fail(t->data, UV_ETIMEDOUT);
}

static const rill_binding_ops_t reader_ops = {.readable = reader_readable,
                                              .gone = reader_gone};

int rill__proxy_read(rill_uvstream_t *u, unsigned timeout_ms, rill_proxy_read_cb cb,
                     void *data) {
  rill_stream_t *s = rill__uvstream_stream(u);
  preader_t *pr = calloc(1, sizeof(*pr));
  if (pr == NULL) return UV_ENOMEM;
  pr->u = u;
  pr->cb = cb;
  pr->data = data;
  uv_timer_init(s->w->loop, &pr->timer);
  pr->timer.data = pr;
  uv_timer_start(&pr->timer, reader_timeout, timeout_ms ? timeout_ms : 30000, 0);
  rill__stream_bind(s, &pr->b, &reader_ops);
  reader_step(pr);
  return 0;
}
