/* tls_client HOST PORT CONNS SECONDS [GROUPS [resume]]
 *
 * New TLS connections per second, for the bench harness: CONNS connections
 * at a time, single-threaded on epoll with OpenSSL. Each connects, does the
 * TLS handshake, sends "GET / HTTP/1.1" with "Connection: close", reads the
 * answer until the server closes (it must start "HTTP/1.1 200"), and is
 * replaced by a new one, for SECONDS seconds. Then it prints
 *   RESULT handshakes=N resumed=R seconds=S
 * where N counts the connections completed within the SECONDS and R how many
 * of them resumed a session, and exits 0.
 *
 * Every handshake is a full one (no session is offered) unless "resume" is
 * given: then each connection offers the session (ticket) of the previous
 * one in its slot, as a browser or wrk does when it reconnects. GROUPS (an
 * OpenSSL list, "X25519:P-256"; "default" for OpenSSL's own) are the ECDHE
 * groups offered. The client offers TLS 1.2 at most (the servers speak
 * nothing newer, and a TLS 1.3 key share would be computed for nothing)
 * and does not verify the certificate chain, only the handshake's
 * signature: its work per handshake is what TLS 1.2 requires.
 *
 * Any failure prints a message to stderr and exits 1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1024
#define STALL_MS 10000

enum { HANDSHAKE, WRITING, READING };

typedef struct {
  int fd;
  int state;
  SSL *ssl;
  SSL_SESSION *session; /* to offer next time (resume mode) */
  size_t sent;
  size_t got;
  char head[16];
} conn_t;

static const char request[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
static SSL_CTX *ctx;
static int ep;
static int resume;
static struct sockaddr_in addr;

static void die(const char *what) {
  fprintf(stderr, "tls_client: %s", what);
  if (errno) fprintf(stderr, ": %s", strerror(errno));
  unsigned long e = ERR_get_error();
  if (e) fprintf(stderr, " (%s)", ERR_error_string(e, NULL));
  fprintf(stderr, "\n");
  exit(1);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The certificate is the harness's own self-signed one: skipping the chain
 * check keeps an ECDSA verification per connection off the client's core. */
static int accept_any_chain(X509_STORE_CTX *store, void *arg) {
  (void)store;
  (void)arg;
  return 1;
}

static void start(conn_t *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) die("socket");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 && errno != EINPROGRESS)
    die("connect");
  c->ssl = SSL_new(ctx);
  if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) die("SSL_new");
  SSL_set_connect_state(c->ssl);
  if (resume && c->session) SSL_set_session(c->ssl, c->session);
  c->state = HANDSHAKE;
  c->sent = c->got = 0;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

static void finish(conn_t *c) {
  /* The server closed after its answer: the connection ended as it should,
   * which OpenSSL must be told, or it marks the session not resumable. No
   * close_notify is sent; the socket is closed anyway. */
  SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  if (resume) {
    if (c->session) SSL_SESSION_free(c->session);
    c->session = SSL_get1_session(c->ssl);
  }
  SSL_free(c->ssl);
  /* The server has closed (its socket waits in FIN_WAIT2): a reset ends
   * both sides with no TIME_WAIT. Otherwise tens of thousands of server-side
   * TIME_WAIT sockets meet the client's recycled ports, and the SYNs that
   * run into them wait a second to be sent again. */
  struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
  close(c->fd); /* also takes it out of the epoll set */
  c->ssl = NULL;
}

/* Waits for what OpenSSL asked for; exits on an error. Returns 0. */
static int want(conn_t *c, int r, const char *what) {
  int e = SSL_get_error(c->ssl, r);
  uint32_t events;
  if (e == SSL_ERROR_WANT_READ) {
    events = EPOLLIN;
  } else if (e == SSL_ERROR_WANT_WRITE) {
    events = EPOLLOUT;
  } else {
    if (e != SSL_ERROR_SYSCALL) errno = 0;
    die(what);
    return 0;
  }
  struct epoll_event ev = {.events = events, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
  return 0;
}

/* Advances c as far as it goes; returns 1 when its answer has been read to
 * the server's close, its resumption status in *reused. */
static int step(conn_t *c, int *reused) {
  if (c->state == HANDSHAKE) {
    int r = SSL_do_handshake(c->ssl);
    if (r != 1) return want(c, r, "handshake");
    c->state = WRITING;
  }
  if (c->state == WRITING) {
    int r = SSL_write(c->ssl, request + c->sent, (int)(sizeof(request) - 1 - c->sent));
    if (r <= 0) return want(c, r, "write");
    c->sent += (size_t)r;
    if (c->sent < sizeof(request) - 1) return 0;
    c->state = READING;
  }
  char buf[4096];
  for (;;) {
    int r = SSL_read(c->ssl, buf, sizeof(buf));
    if (r <= 0) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_ZERO_RETURN) break; /* close_notify, or the close itself */
      return want(c, r, "read");
    }
    for (int i = 0; i < r && c->got < sizeof(c->head); i++)
      c->head[c->got++] = buf[i];
  }
  if (c->got < 12 || memcmp(c->head, "HTTP/1.1 200", 12) != 0) {
    errno = 0;
    die("expected an HTTP/1.1 200 answer");
  }
  *reused = SSL_session_reused(c->ssl);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 5 || argc > 7 || (argc == 7 && strcmp(argv[6], "resume") != 0)) {
    fprintf(stderr, "usage: tls_client HOST PORT CONNS SECONDS [GROUPS [resume]]\n");
    return 2;
  }
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) die("bad host");
  int n = atoi(argv[3]);
  double seconds = atof(argv[4]);
  resume = argc == 7;
  if (n <= 0 || n > MAX_CONNS) die("CONNS out of range");

  ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) die("SSL_CTX_new");
  SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_cert_verify_callback(ctx, accept_any_chain, NULL);
  /* Sessions are offered only as resume mode says, never from a cache. */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  /* A server that closes without close_notify ends the answer all the same. */
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (argc >= 6 && strcmp(argv[5], "default") != 0 &&
      SSL_CTX_set1_groups_list(ctx, argv[5]) != 1)
    die("bad GROUPS");

  ep = epoll_create1(0);
  conn_t *conns = calloc((size_t)n, sizeof(conn_t));
  if (ep < 0 || conns == NULL) die("setup");
  unsigned long long done = 0, reused = 0;
  double t0 = now(), deadline = t0 + seconds, last = t0;
  for (int i = 0; i < n; i++)
    start(&conns[i]);
  struct epoll_event events[MAX_CONNS];
  for (;;) {
    double t = now();
    if (t >= deadline) break;
    if (t - last > STALL_MS / 1000.0) {
      errno = 0;
      die("no connection finished for 10 s");
    }
    int k = epoll_wait(ep, events, MAX_CONNS, 50);
    if (k < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < k; i++) {
      conn_t *c = events[i].data.ptr;
      int r = 0;
      if (!step(c, &r)) continue;
      finish(c);
      if (now() < deadline) {
        done++;
        reused += (unsigned long long)r;
        last = now();
        start(c);
      }
    }
  }
  double elapsed = now() - t0;
  if (done == 0) {
    errno = 0;
    die("no connection finished");
  }
  printf("RESULT handshakes=%llu resumed=%llu seconds=%.6f\n", done, reused, elapsed);
  return 0;
}
