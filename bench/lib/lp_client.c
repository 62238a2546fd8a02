/* lp_client HOST PORT MODE CONNS BYTES SECONDS
 *
 * The transports scenario's load client. MODE is tcp, tls, ws or wss. Each
 * of CONNS connections (a thread each) keeps one length-prefixed message in
 * flight: a 4-byte big-endian length, then BYTES bytes; it sends the
 * message, reads the echo (the same length and bytes back) and sends the
 * next. Over ws and wss the client first upgrades with GET / and then sends
 * each message as one masked binary frame; the echo is read from however
 * many frames the server sends it in. TLS is OpenSSL's, TLS 1.2, with the
 * (self-signed) certificate not checked. The first echo on each connection
 * is compared byte for byte; every echo's length is checked.
 *
 * Once every connection is open (and upgraded), the clock starts; after
 * SECONDS it prints
 *   RESULT round_trips=N seconds=S bytes=BYTES conns=CONNS
 * where N counts the echoes completed in that time, and exits 0. Any
 * failure prints a message to stderr and exits 1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { TCP, TLS, WS, WSS };

static const char *host;
static int port, mode, conns;
static size_t bytes;
static double seconds;
static SSL_CTX *ctx;
static pthread_barrier_t ready;
static atomic_long round_trips;
static atomic_int stop;

typedef struct {
  int fd;
  SSL *ssl;
  unsigned char *rbuf; /* bytes read past what was asked (ws framing) */
  size_t rlen, roff;
} conn_t;

static void die(const char *what) {
  fprintf(stderr, "lp_client: %s\n", what);
  ERR_print_errors_fp(stderr);
  exit(1);
}

static void put_all(conn_t *c, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t k = c->ssl ? SSL_write(c->ssl, p, (int)(n > (1 << 30) ? 1 << 30 : n))
                       : write(c->fd, p, n);
    if (k <= 0) die("write failed");
    p += k;
    n -= (size_t)k;
  }
}

/* Reads 1..n bytes. */
static size_t get_some(conn_t *c, unsigned char *p, size_t n) {
  if (c->roff < c->rlen) {
    size_t k = c->rlen - c->roff < n ? c->rlen - c->roff : n;
    memcpy(p, c->rbuf + c->roff, k);
    c->roff += k;
    return k;
  }
  ssize_t k = c->ssl ? SSL_read(c->ssl, p, (int)(n > (1 << 30) ? 1 << 30 : n))
                     : read(c->fd, p, n);
  if (k <= 0) die("the server closed or read failed");
  return (size_t)k;
}

static void get_all(conn_t *c, unsigned char *p, size_t n) {
  while (n > 0) {
    size_t k = get_some(c, p, n);
    p += k;
    n -= k;
  }
}

static void upgrade(conn_t *c) {
  char req[256];
  int n = snprintf(req, sizeof(req),
                   "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n",
                   host, port);
  put_all(c, (unsigned char *)req, (size_t)n);
  static __thread unsigned char head[4096];
  size_t len = 0;
  char *end = NULL;
  while (end == NULL) {
    if (len == sizeof(head)) die("response head too long");
    len += get_some(c, head + len, sizeof(head) - len);
    end = memmem(head, len, "\r\n\r\n", 4);
  }
  if (len < 12 || memcmp(head + 9, "101", 3) != 0) die("no 101 for the upgrade");
  size_t used = (size_t)((unsigned char *)end + 4 - head);
  c->rbuf = malloc(len - used + 1);
  memcpy(c->rbuf, head + used, len - used);
  c->rlen = len - used;
  c->roff = 0;
}

/* Reads n bytes of WebSocket payload, across data frames. */
static void ws_get(conn_t *c, unsigned char *p, size_t n, size_t *frame_left) {
  while (n > 0) {
    if (*frame_left == 0) {
      unsigned char h[14];
      get_all(c, h, 2);
      if (h[1] & 0x80) die("a masked frame from the server");
      int op = h[0] & 15;
      uint64_t len = h[1] & 127;
      if (len == 126) {
        get_all(c, h + 2, 2);
        len = (uint64_t)h[2] << 8 | h[3];
      } else if (len == 127) {
        get_all(c, h + 2, 8);
        len = 0;
        for (int i = 0; i < 8; i++) len = len << 8 | h[2 + i];
      }
      if (op >= 8) {
        if (op == 8) die("the server closed the WebSocket");
        unsigned char skip[125];
        get_all(c, skip, (size_t)len); /* a ping or pong: not answered */
        continue;
      }
      *frame_left = (size_t)len;
      continue;
    }
    size_t k = n < *frame_left ? n : *frame_left;
    get_all(c, p, k);
    p += k;
    n -= k;
    *frame_left -= k;
  }
}

static void *run(void *arg) {
  (void)arg;
  conn_t c = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &sa.sin_addr);
  if (connect(c.fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) die("connect failed");
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (mode == TLS || mode == WSS) {
    c.ssl = SSL_new(ctx);
    SSL_set_fd(c.ssl, c.fd);
    if (SSL_connect(c.ssl) != 1) die("TLS handshake failed");
  }
  size_t frame_left = 0;
  if (mode == WS || mode == WSS) upgrade(&c);

  /* The message (and, over ws, its frame: header, mask, masked payload). */
  size_t mlen = 4 + bytes;
  unsigned char *msg = malloc(mlen), *echo = malloc(mlen);
  msg[0] = (unsigned char)(bytes >> 24);
  msg[1] = (unsigned char)(bytes >> 16);
  msg[2] = (unsigned char)(bytes >> 8);
  msg[3] = (unsigned char)bytes;
  for (size_t i = 0; i < bytes; i++) msg[4 + i] = (unsigned char)(i * 131 + 7);
  unsigned char *out = msg;
  size_t olen = mlen;
  if (mode == WS || mode == WSS) {
    out = malloc(mlen + 14);
    size_t h = 0;
    out[h++] = 0x82;
    if (mlen < 126) {
      out[h++] = (unsigned char)(0x80 | mlen);
    } else if (mlen < 65536) {
      out[h++] = 0x80 | 126;
      out[h++] = (unsigned char)(mlen >> 8);
      out[h++] = (unsigned char)mlen;
    } else {
      out[h++] = 0x80 | 127;
      for (int i = 7; i >= 0; i--) out[h++] = (unsigned char)((uint64_t)mlen >> (8 * i));
    }
    unsigned char key[4];
    for (int i = 0; i < 4; i++) key[i] = (unsigned char)rand();
    memcpy(out + h, key, 4);
    h += 4;
    for (size_t i = 0; i < mlen; i++) out[h + i] = msg[i] ^ key[i & 3];
    olen = h + mlen;
  }

  pthread_barrier_wait(&ready);
  int first = 1;
  while (!atomic_load(&stop)) {
    put_all(&c, out, olen);
    if (mode == WS || mode == WSS)
      ws_get(&c, echo, mlen, &frame_left);
    else
      get_all(&c, echo, mlen);
    if (memcmp(echo, msg, 4) != 0) die("the echo's length is wrong");
    if (first && memcmp(echo, msg, mlen) != 0) die("the echo's bytes are wrong");
    first = 0;
    if (!atomic_load(&stop)) atomic_fetch_add(&round_trips, 1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: lp_client HOST PORT tcp|tls|ws|wss CONNS BYTES SECONDS\n");
    return 2;
  }
  host = argv[1];
  port = atoi(argv[2]);
  const char *modes[] = {"tcp", "tls", "ws", "wss"};
  mode = -1;
  for (int i = 0; i < 4; i++)
    if (strcmp(argv[3], modes[i]) == 0) mode = i;
  if (mode < 0) die("mode: tcp, tls, ws or wss");
  conns = atoi(argv[4]);
  bytes = (size_t)atol(argv[5]);
  seconds = atof(argv[6]);
  if (mode == TLS || mode == WSS) {
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  }
  pthread_barrier_init(&ready, NULL, (unsigned)conns + 1);
  pthread_t *th = calloc((size_t)conns, sizeof(*th));
  for (int i = 0; i < conns; i++)
    if (pthread_create(&th[i], NULL, run, NULL) != 0) die("no thread");
  pthread_barrier_wait(&ready);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  struct timespec d = {(time_t)seconds, (long)((seconds - (time_t)seconds) * 1e9)};
  nanosleep(&d, NULL);
  atomic_store(&stop, 1);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  long n = atomic_load(&round_trips);
  printf("RESULT round_trips=%ld seconds=%.6f bytes=%zu conns=%d\n", n,
         (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, bytes, conns);
  fflush(stdout);
  _exit(0); /* the threads are mid-exchange: no need to wind them down */
}
