/* The PROXY protocol (HAProxy's, versions 1 and 2): the header a load
 * balancer sends first on a connection to say whom it is from. The parser
 * looks at the bytes a stream holds and says how many the header took, so
 * that a reader consumes exactly the header and leaves what follows (a TLS
 * handshake, an HTTP request) in the stream. The reader of a listener's new
 * connections (rill__proxy_read) is below it. No Lua here. */
#ifndef RILL_PROXY_PROTO_H
#define RILL_PROXY_PROTO_H

#include <sys/socket.h>

#include "uvstream.h"

#define RILL_PROXY_V1_MAX 107  /* the longest v1 line, "\r\n" included */
#define RILL_PROXY_V2_MAX 4096 /* the most a v2 header's addresses and TLVs take */

typedef struct {
  int version; /* 1 or 2 */
  /* AF_INET or AF_INET6: src and dst are the client's and the address it
   * connected to. AF_UNIX, AF_UNSPEC (v1 UNKNOWN, v2 UNSPEC) and a v2 LOCAL
   * header (local = 1: the balancer's own health check) carry no address
   * to use: the connection's own addresses stand. */
  int family;
  int local;
  struct sockaddr_storage src, dst;
} rill_proxy_hdr_t;

/* Parses the PROXY header at the start of p[0..n). Returns its length once
 * it is whole (and fills *h), 0 while the bytes so far may still begin one
 * (read more), or RILL_EPROTO when they cannot: a bad signature, version,
 * command, family, address, port or length. Every call looks at p from its
 * start, so the bytes may come in any pieces. */
int rill__proxy_parse(const char *p, size_t n, rill_proxy_hdr_t *h);

/* ---- reading it on a listener's new connection ---- */

/* Which sources may send a header: a list of address/prefix pairs. */
typedef struct {
  uint8_t ip[16]; /* IPv4 as ::ffff:a.b.c.d */
  int bits;       /* prefix length over the 16 bytes */
} rill_cidr_t;

/* Parses "10.0.0.0/8", "::1", "127.0.0.1" into *out. Returns 0 or
 * UV_EINVAL. */
int rill__cidr_parse(const char *s, rill_cidr_t *out);
/* Whether ip (16 bytes, IPv4 mapped) is in one of the n ranges. */
int rill__cidr_match(const rill_cidr_t *list, size_t n, const uint8_t ip[16]);

/* Called once: status 0 with the header read and consumed (the stream's
 * addresses are the header's now), or an error (RILL_EPROTO, a timeout,
 * RILL_ECLOSED: the stream went away): then the stream is aborted already
 * and must not be used. */
typedef void (*rill_proxy_read_cb)(void *data, rill_uvstream_t *u, int status);

/* Reads the PROXY header of a new connection u within timeout_ms (0: 30
 * s), bound to u meanwhile (nothing else may be bound). Returns 0 (cb
 * follows, maybe before this returns) or UV_ENOMEM (u is left as it was). */
int rill__proxy_read(rill_uvstream_t *u, unsigned timeout_ms, rill_proxy_read_cb cb,
                     void *data);

#endif /* RILL_PROXY_PROTO_H */
