/* A host that makes its own sockets and hands them to rill, as a real
 * daemon would: the C face of spec/listen_spec.lua.
 *
 *   listen_host [--workers N] [LISTENER [OPTION]...]...
 *
 * LISTENER: --tcp (rill_listen on 127.0.0.1:0), --tcp-fd (a socket this host
 * binds and listens on, given with rill_listen_fd; still open after
 * rill_free, or the exit status is 3),
 * --unix PATH (rill_listen_unix), --serve-fd (a socket this host accepts on
 * in a thread of its own; each connection goes to rill_serve_fd for the
 * listener made before it). OPTION, for the last listener: --cert CRT KEY
 * (rill_listener_add_cert), --client-ca FILE, --verify N, --proxy-protocol,
 * --unix-mode OCTAL, --http2.
 *
 * Prints "listener I 127.0.0.1:PORT" (or "listener I unix:PATH") to stderr
 * for each, then "ready"; stops on SIGTERM or SIGINT. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <rill.h>

static const char app[] =
    "local rill = require 'rill'\n"
    "return function(req, res)\n"
    "  local c = req.tls_client\n"
    "  res:header('X-Worker', tostring(rill.worker_id()))\n"
    "  res:send(('%s %s %s'):format(req.scheme, tostring(req.remote_addr),\n"
    "    c and c.subject or '-'))\n"
    "end\n";

static int die(const char *what, int err, rill_t *r) {
  (void)r;
  fprintf(stderr, "listen_host: %s: %s\n", what, rill_strerror(err));
  exit(1);
}

/* A TCP socket on 127.0.0.1, any port, listening. */
static int tcp_socket(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof(sa));
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sa);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
      listen(fd, 128) != 0 || getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
    perror("listen_host: socket");
    exit(1);
  }
  *port = ntohs(sa.sin_port);
  return fd;
}

typedef struct {
  rill_t *r;
  int listener, fd, port;
} acceptor_t;

/* The host's own accept loop: each connection is rill's from here on. */
static void *acceptor(void *arg) {
  acceptor_t *a = arg;
  for (;;) {
    int c = accept(a->fd, NULL, NULL);
    if (c < 0) continue;
    int e = rill_serve_fd(a->r, a->listener, c);
    if (e) fprintf(stderr, "listen_host: rill_serve_fd: %s\n", rill_strerror(e));
  }
  return NULL;
}

static sigset_t stops;

static void *stopper(void *arg) {
  int sig;
  sigwait(&stops, &sig);
  rill_stop(arg);
  return NULL;
}

int main(int argc, char **argv) {
  rill_options_t o;
  memset(&o, 0, sizeof(o));
  o.workers = 1;
  o.grace = 2;
  int i = 1;
  if (argc > 2 && strcmp(argv[1], "--workers") == 0) {
    o.workers = atoi(argv[2]);
    i = 3;
  }
  sigemptyset(&stops);
  sigaddset(&stops, SIGTERM);
  sigaddset(&stops, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stops, NULL);
  rill_t *r;
  int e = rill_new(&r, &o);
  if (e) die("rill_new", e, NULL);
  int n = -1, ports[16], tcp_fds[16];
  acceptor_t acc[16];
  int nacc = 0;
  if (argc > 17) die("too many arguments", UV_EINVAL, NULL);
  char *paths[16];
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (n >= 15) die("too many listeners", UV_EINVAL, r);
    if (strcmp(a, "--tcp") == 0) {
      e = rill_listen(r, "127.0.0.1", 0, NULL);
      n++;
      ports[n] = -1;
      paths[n] = NULL;
    } else if (strcmp(a, "--tcp-fd") == 0) {
      n++;
      tcp_fds[n] = tcp_socket(&ports[n]);
      paths[n] = NULL;
      e = rill_listen_fd(r, tcp_fds[n], NULL);
    } else if (strcmp(a, "--unix") == 0 && i + 1 < argc) {
      n++;
      paths[n] = argv[++i];
      ports[n] = 0;
      e = rill_listen_unix(r, paths[n], NULL);
    } else if (strcmp(a, "--serve-fd") == 0 && n >= 0) {
      /* connections accepted here go to the listener made before */
      acc[nacc].r = r;
      acc[nacc].listener = n;
      acc[nacc].fd = tcp_socket(&acc[nacc].port);
      nacc++;
      e = 0;
    } else if (strcmp(a, "--cert") == 0 && i + 2 < argc) {
      e = rill_listener_add_cert(r, n, argv[i + 1], argv[i + 2]);
      i += 2;
    } else if (strcmp(a, "--client-ca") == 0 && i + 1 < argc) {
      e = rill_listener_set_str(r, n, RILL_LISTEN_CLIENT_CA, argv[++i]);
    } else if (strcmp(a, "--verify") == 0 && i + 1 < argc) {
      e = rill_listener_set_int(r, n, RILL_LISTEN_VERIFY_CLIENT, atoi(argv[++i]));
    } else if (strcmp(a, "--unix-mode") == 0 && i + 1 < argc) {
      e = rill_listener_set_int(r, n, RILL_LISTEN_UNIX_MODE, strtol(argv[++i], NULL, 8));
    } else if (strcmp(a, "--proxy-protocol") == 0) {
      e = rill_listener_set_int(r, n, RILL_LISTEN_PROXY_PROTOCOL, 1);
    } else if (strcmp(a, "--http2") == 0) {
      e = rill_listener_set_int(r, n, RILL_LISTEN_HTTP2, 1);
    } else {
      die(a, UV_EINVAL, r);
    }
    if (e) die(a, e, r);
  }
  if ((e = rill_load_string(r, app, "listen_host")) != 0) die("rill_load_string", e, r);
  if ((e = rill_start(r)) != 0) die("rill_start", e, r);
  for (int k = 0; k <= n; k++) {
    if (paths[k])
      fprintf(stderr, "listener %d unix:%s\n", k, paths[k]);
    else if (ports[k] > 0)
      fprintf(stderr, "listener %d 127.0.0.1:%d\n", k, ports[k]);
    else
      fprintf(stderr, "listener %d 127.0.0.1:%d\n", k, rill_port(r, k));
  }
  /* a bad index is refused, and the descriptor closed all the same */
  int spare = socket(AF_INET, SOCK_STREAM, 0);
  if (rill_serve_fd(r, n + 1, spare) != UV_EINVAL || close(spare) == 0) {
    fprintf(stderr, "listen_host: rill_serve_fd took a bad index\n");
    return 1;
  }
  pthread_t t;
  for (int k = 0; k < nacc; k++) {
    fprintf(stderr, "serve_fd %d 127.0.0.1:%d\n", acc[k].listener, acc[k].port);
    pthread_create(&t, NULL, acceptor, &acc[k]);
    pthread_detach(t);
  }
  pthread_create(&t, NULL, stopper, r);
  pthread_detach(t);
  fprintf(stderr, "ready\n");
  int code = rill_run(r);
  rill_free(r);
  /* rill listened on dups: the host's own descriptors are still open */
  for (int k = 0; k <= n; k++)
    if (!paths[k] && ports[k] > 0 && close(tcp_fds[k]) != 0) {
      fprintf(stderr, "listen_host: rill closed the host's descriptor %d\n", tcp_fds[k]);
      return 3;
    }
  return code;
}
