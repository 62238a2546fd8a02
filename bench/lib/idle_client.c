/* idle_client HOST PORT N PATH
 *
 * Opens N keep-alive connections to HOST:PORT (at most MAX_PENDING still
 * connecting or waiting for their answer at a time, so that the server's
 * accept backlog never overflows), sends "GET PATH" on each and reads its
 * whole response (Content-Length bodies only). Then prints "ready N", holds
 * every connection open until its standard input closes, prints "closed K" --
 * how many connections the server closed meanwhile -- and exits 0.
 * Any failure prints a message to stderr and exits 1.
 *
 * The bench harness uses it to measure a server's memory per idle connection.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PENDING 256
#define RESPONSE_MAX 4096
#define STALL_MS 10000

typedef struct {
  int fd;
  int sent;
  size_t got;
  char buf[RESPONSE_MAX];
} conn_t;

static void die(const char *what) {
  fprintf(stderr, "idle_client: %s: %s\n", what, errno ? strerror(errno) : "failed");
  exit(1);
}

/* Returns 1 when c->buf holds one whole 200 response, 0 when more bytes are
 * needed; exits on any other status or a response too large for the buffer. */
static int response_complete(conn_t *c) {
  c->buf[c->got] = 0;
  char *end = strstr(c->buf, "\r\n\r\n");
  if (end == NULL) {
    errno = 0;
    if (c->got == RESPONSE_MAX - 1) die("response head too large");
    return 0;
  }
  errno = 0;
  if (strncmp(c->buf, "HTTP/1.1 200 ", 13) != 0) die("expected HTTP/1.1 200");
  size_t length = 0;
  for (char *line = strstr(c->buf, "\r\n"); line && line < end;
       line = strstr(line + 2, "\r\n")) {
    if (strncasecmp(line + 2, "content-length:", 15) == 0)
      length = strtoul(line + 17, NULL, 10);
  }
  size_t total = (size_t)(end + 4 - c->buf) + length;
  if (total >= RESPONSE_MAX) die("response too large");
  return c->got >= total;
}

static conn_t *open_conn(int ep, const struct sockaddr_in *addr) {
  conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL) die("calloc");
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) die("socket (raise ulimit -n?)");
  if (connect(c->fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 &&
      errno != EINPROGRESS)
    die("connect");
  struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
  return c;
}

/* Advances c on an epoll event; returns 1 once its response has been read. */
static int step(int ep, conn_t *c, const char *request) {
  if (!c->sent) {
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    errno = err;
    if (err) die("connect");
    /* A request this small always fits in an empty socket buffer. */
    if (write(c->fd, request, strlen(request)) != (ssize_t)strlen(request)) die("write");
    c->sent = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    return 0;
  }
  ssize_t n = read(c->fd, c->buf + c->got, RESPONSE_MAX - 1 - c->got);
  if (n < 0 && errno == EAGAIN) return 0;
  if (n <= 0) {
    if (n == 0) errno = ECONNRESET;
    die("read");
  }
  c->got += (size_t)n;
  if (!response_complete(c)) return 0;
  if (epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL) < 0) die("epoll_ctl");
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: idle_client HOST PORT N PATH\n");
    return 2;
  }
  struct sockaddr_in addr = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) die("bad host");
  int n = atoi(argv[3]);
  char request[1024];
  snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", argv[4],
           argv[1]);

  conn_t **conns = calloc((size_t)n, sizeof(*conns));
  int ep = epoll_create1(0);
  if (conns == NULL || ep < 0) die("setup");
  int opened = 0, done = 0;
  struct epoll_event events[MAX_PENDING];
  while (done < n) {
    while (opened < n && opened - done < MAX_PENDING) {
      conns[opened] = open_conn(ep, &addr);
      opened++;
    }
    int k = epoll_wait(ep, events, MAX_PENDING, STALL_MS);
    if (k < 0 && errno != EINTR) die("epoll_wait");
    errno = 0;
    if (k == 0) die("no progress for 10 s");
    for (int i = 0; i < k; i++)
      done += step(ep, events[i].data.ptr, request);
  }
  printf("ready %d\n", n);
  fflush(stdout);

  char sink[256];
  while (read(0, sink, sizeof(sink)) > 0) {}

  /* A connection the server closed reads as end of file (or a reset). */
  int closed = 0;
  for (int i = 0; i < n; i++) {
    ssize_t r = recv(conns[i]->fd, sink, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN)) closed++;
  }
  printf("closed %d\n", closed);
  return 0;
}
