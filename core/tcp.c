/* Listeners and outgoing TCP connections. See tcp.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tcp.h"
#include "unix_sock.h"

static void listener_unref(rill_listener_t *l);
static void listener_accept(rill_listener_t *l);

/* ---- connections per address ----
 * An open-addressing table of (address, count), with deletion by backward
 * shift (no tombstones), at most half full. */

typedef struct {
  uint8_t ip[16]; /* IPv4 as ::ffff:a.b.c.d */
  unsigned count; /* 0: an empty slot */
} addr_slot_t;

struct rill_addr_table_s {
  addr_slot_t *slots;
  size_t cap, used; /* cap: a power of two */
};

/* A connection of a listener that counts addresses: what to give back. */
typedef struct {
  rill_listener_t *l;
  uint8_t ip[16];
} addr_ref_t;

static size_t addr_hash(const uint8_t ip[16], size_t mask) {
  uint64_t a, b;
  memcpy(&a, ip, 8);
  memcpy(&b, ip + 8, 8);
  uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15ull)) * 0xC2B2AE3D27D4EB4Full;
  return (size_t)(h >> 32) & mask;
}

static addr_slot_t *addr_find(rill_addr_table_t *t, const uint8_t ip[16]) {
  size_t mask = t->cap - 1;
  for (size_t i = addr_hash(ip, mask);; i = (i + 1) & mask) {
    addr_slot_t *e = &t->slots[i];
    if (e->count == 0 || memcmp(e->ip, ip, 16) == 0) return e;
  }
}

static int addr_grow(rill_addr_table_t *t) {
  size_t cap = t->cap ? t->cap * 2 : 64;
  addr_slot_t *old = t->slots, *slots = calloc(cap, sizeof(*slots));
  if (slots == NULL) return UV_ENOMEM;
  size_t oldcap = t->cap;
  t->slots = slots;
  t->cap = cap;
  for (size_t i = 0; i < oldcap; i++)
    if (old[i].count) *addr_find(t, old[i].ip) = old[i];
  free(old);
  return 0;
}

/* Counts a connection from ip; returns its count, or 0 if out of memory. */
static unsigned addr_add(rill_addr_table_t *t, const uint8_t ip[16]) {
  if ((t->used + 1) * 2 > t->cap && addr_grow(t) != 0) return 0;
  addr_slot_t *e = addr_find(t, ip);
  if (e->count == 0) {
    memcpy(e->ip, ip, 16);
    t->used++;
  }
  return ++e->count;
}

static void addr_remove(rill_addr_table_t *t, const uint8_t ip[16]) {
  addr_slot_t *e = addr_find(t, ip);
  if (e->count == 0 || --e->count > 0) return;
  t->used--;
  /* Shift back the entries of the run after the hole that hash before it. */
  size_t mask = t->cap - 1, hole = (size_t)(e - t->slots);
  for (size_t i = (hole + 1) & mask; t->slots[i].count; i = (i + 1) & mask) {
    size_t home = addr_hash(t->slots[i].ip, mask);
    if (((i - home) & mask) >= ((i - hole) & mask)) {
      t->slots[hole] = t->slots[i];
      t->slots[i].count = 0;
      hole = i;
    }
  }
}

/* The peer's address as 16 bytes; 0, or an error (a pipe, a closed socket). */
static int peer_ip(uv_tcp_t *h, uint8_t ip[16]) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  int r = uv_tcp_getpeername(h, (struct sockaddr *)&ss, &len);
  if (r) return r;
  if (ss.ss_family == AF_INET6) {
    memcpy(ip, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
  } else {
    memset(ip, 0, 10);
    ip[10] = ip[11] = 0xff;
    memcpy(ip + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
  }
  return 0;
}

int rill__listener_limit_per_addr(rill_listener_t *l, unsigned max) {
  l->max_per_addr = max;
  if (max == 0 || l->addrs) return 0;
  l->addrs = calloc(1, sizeof(*l->addrs));
  if (l->addrs == NULL || addr_grow(l->addrs) != 0) {
    free(l->addrs);
    l->addrs = NULL;
    l->max_per_addr = 0;
    return UV_ENOMEM;
  }
  return 0;
}

/* ---- listeners ---- */

static void listener_closed(uv_handle_t *h) {
  rill_listener_t *l = h->data;
  listener_unref(l);
}

static void resume_closed(uv_handle_t *h) {
  listener_unref(h->data);
}

static void listener_unref(rill_listener_t *l) {
  if (--l->refs > 0) return;
  if (l->on_free) l->on_free(l);
  if (l->addrs) free(l->addrs->slots);
  free(l->addrs);
  free(l->proxy_from);
  free(l);
}

/* A connection stopped being open: its place is free (its close may still
 * linger, but there is nothing more to do for it). */
static void resume_cb(uv_timer_t *t) {
  rill_listener_t *l = t->data;
  if (!l->paused || l->closing || l->nconns >= l->max_conns) return;
  /* A connection was waiting in the kernel's queue; take it now. */
  l->paused = 0;
  listener_accept(l);
}

static void conn_released(void *arg) {
  rill_listener_t *l = arg;
  l->nconns--;
  RILL_COUNT(l->w->m->connections, -1);
  /* Not from here: whoever closed the connection is in the middle of
   * something. */
  if (l->paused && !l->closing) uv_timer_start(&l->resume, resume_cb, 0, 0);
}

static void conn_freed(void *arg) {
  listener_unref(arg);
}

static void addr_conn_released(void *arg) {
  addr_ref_t *ref = arg;
  if (ref->l->addrs) addr_remove(ref->l->addrs, ref->ip);
  conn_released(ref->l);
}

static void addr_conn_freed(void *arg) {
  addr_ref_t *ref = arg;
  rill_listener_t *l = ref->l;
  free(ref);
  conn_freed(l);
}

/* A connection whose PROXY header is being read, in its listener's list. */
typedef struct proxy_pending_s {
  struct proxy_pending_s *prev, *next;
  rill_listener_t *l;
  rill_uvstream_t *u;
} proxy_pending_t;

/* At the connection limit: the connection that has waited longest for its
 * header is closed (its proxy_done follows at once). Returns 1 if one was. */
static int proxy_make_room(rill_listener_t *l) {
  proxy_pending_t *p = l->pending_head;
  if (p == NULL) return 0;
  rill_stream_t *s = rill__uvstream_stream(p->u);
  s->vt->abort(s);
  return 1;
}

/* The PROXY header was read (or not): the connection goes on to its
 * handler, now with the client's address. During a graceful stop the
 * listener is closed: a connection that got in before is closed too. */
static void proxy_done(void *data, rill_uvstream_t *u, int status) {
  proxy_pending_t *p = data;
  rill_listener_t *l = p->l;
  if (p->prev)
    p->prev->next = p->next;
  else
    l->pending_head = p->next;
  if (p->next)
    p->next->prev = p->prev;
  else
    l->pending_tail = p->prev;
  free(p);
  if (status != 0) {
    rill__log(l->w, RILL_LOG_DEBUG, "PROXY protocol: %s", rill__errmsg(status));
    return;
  }
  if (l->w->graceful || l->w->stopping) {
    rill_stream_t *s = rill__uvstream_stream(u);
    s->vt->abort(s);
    return;
  }
  l->on_accept(l, u);
}

static void proxy_accept(rill_listener_t *l, rill_uvstream_t *u, uv_stream_t *h) {
  uint8_t ip[16];
  rill_stream_t *s = rill__uvstream_stream(u);
  /* Over a unix socket the file's permissions say who may connect. */
  if (l->kind == UV_TCP && (peer_ip((uv_tcp_t *)h, ip) != 0 ||
                            !rill__cidr_match(l->proxy_from, l->nproxy_from, ip))) {
    rill__log(l->w, RILL_LOG_DEBUG,
              "PROXY protocol: a connection from a source not allowed");
    s->vt->abort(s);
    return;
  }
  proxy_pending_t *p = calloc(1, sizeof(*p));
  if (p == NULL) {
    s->vt->abort(s);
    return;
  }
  p->l = l;
  p->u = u;
  p->prev = l->pending_tail;
  if (l->pending_tail)
    l->pending_tail->next = p;
  else
    l->pending_head = p;
  l->pending_tail = p;
  /* proxy_done takes p off the list, whenever and however the read ends */
  if (rill__proxy_read(u, l->proxy_timeout_ms, proxy_done, p) != 0) {
    proxy_done(p, u, UV_ENOMEM);
    s->vt->abort(s);
  }
}

int rill__listener_proxy(rill_listener_t *l, const rill_cidr_t *from, size_t n,
                         unsigned timeout_ms) {
  static const char *const loopback[] = {"127.0.0.0/8", "::1"};
  rill_cidr_t *list = calloc(n ? n : 2, sizeof(*list));
  if (list == NULL) return UV_ENOMEM;
  if (n) {
    memcpy(list, from, n * sizeof(*list));
  } else {
    n = 2;
    for (size_t i = 0; i < n; i++)
      rill__cidr_parse(loopback[i], &list[i]);
  }
  free(l->proxy_from);
  l->proxy_from = list;
  l->nproxy_from = n;
  l->proxy_timeout_ms = timeout_ms;
  return 0;
}

/* A connection accepted (or adopted): counted, then to the PROXY header or
 * on_accept. */
static void listener_take(rill_listener_t *l, rill_uvstream_t *u) {
  uv_stream_t *h = rill__uvstream_handle(u);
  if (h->type == UV_TCP) uv_tcp_nodelay((uv_tcp_t *)h, 1);
  addr_ref_t *ref = NULL;
  if (l->max_per_addr && l->addrs && h->type == UV_TCP) {
    ref = malloc(sizeof(*ref));
    unsigned n = 0;
    if (ref && peer_ip((uv_tcp_t *)h, ref->ip) == 0) n = addr_add(l->addrs, ref->ip);
    if (n == 0 || n > l->max_per_addr) {
      if (n) addr_remove(l->addrs, ref->ip);
      free(ref);
      if (n) rill__log(l->w, RILL_LOG_DEBUG, "refusing a connection: %u from its address",
                       l->max_per_addr);
      rill_stream_t *s = rill__uvstream_stream(u);
      s->vt->abort(s);
      return;
    }
    ref->l = l;
  }
  l->nconns++;
  RILL_COUNT(l->w->m->connections, 1);
  l->refs++;
  if (ref)
    rill__uvstream_owner(u, addr_conn_released, addr_conn_freed, ref);
  else
    rill__uvstream_owner(u, conn_released, conn_freed, l);
  if (l->proxy_from) {
    proxy_accept(l, u, h);
    return;
  }
  l->on_accept(l, u);
}

static void listener_accept(rill_listener_t *l) {
  rill_uvstream_t *u = rill__uvstream_new(l->w, l->kind);
  if (u == NULL) return;
  if (uv_accept(&l->h.stream, rill__uvstream_handle(u)) != 0) {
    rill__uvstream_discard(u);
    return;
  }
  listener_take(l, u);
}

/* The kind of handle for a socket: UV_NAMED_PIPE (unix), UV_TCP, or an
 * error (not a socket, or neither). */
static int socket_kind(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return uv_translate_sys_error(errno);
  if (ss.ss_family == AF_UNIX) return UV_NAMED_PIPE;
  if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) return UV_TCP;
  return UV_EAFNOSUPPORT;
}

int rill__listener_adopt(rill_listener_t *l, int fd) {
  int kind = socket_kind(fd);
  if (kind < 0 || l->closing) {
    close(fd);
    return kind < 0 ? kind : RILL_ECLOSED;
  }
  rill_uvstream_t *u = rill__uvstream_new(l->w, kind);
  if (u == NULL) {
    close(fd);
    return UV_ENOMEM;
  }
  uv_stream_t *h = rill__uvstream_handle(u);
  int r =
      kind == UV_TCP ? uv_tcp_open((uv_tcp_t *)h, fd) : uv_pipe_open((uv_pipe_t *)h, fd);
  if (r) {
    rill__uvstream_discard(u);
    close(fd);
    return r;
  }
  listener_take(l, u);
  return 0;
}

static void connection_cb(uv_stream_t *server, int status) {
  rill_listener_t *l = server->data;
  if (status < 0) {
    /* Out of descriptors (the client was refused): an idle connection
     * makes room for the next one, as at the connection limit. */
    int full = status == UV_EMFILE || status == UV_ENFILE;
    if (!(full && (proxy_make_room(l) || (l->make_room && l->make_room(l)))))
      rill__log(l->w, RILL_LOG_WARN, "accept: %s%s", rill__errmsg(status),
                full ? " (raise the open-file limit, or lower --max-connections)" : "");
    return;
  }
  if (l->nconns >= l->max_conns) {
    /* Leave it to the kernel's queue (libuv stops polling until we accept),
     * and accept it once a connection is freed: one that was idle, closed
     * now to make room, or the next to end. */
    if (l->paused) return;
    l->paused = 1;
    if (proxy_make_room(l) || (l->make_room && l->make_room(l))) return;
    rill__log(l->w, RILL_LOG_WARN, "connection limit (%u) reached", l->max_conns);
    return;
  }
  listener_accept(l);
}

static void listener_destroy(rill_obj_t *o) {
  rill_listener_t *l = rill__container_of(o, rill_listener_t, obj);
  rill__listener_close(l);
}

static int resolve(uv_loop_t *loop, const char *host, int port,
                   struct sockaddr_storage *ss) {
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  uv_getaddrinfo_t req;
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  int r = uv_getaddrinfo(loop, &req, NULL, host, NULL, &hints); /* synchronous */
  if (r) return r;
  memcpy(ss, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
  ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
  uv_freeaddrinfo(req.addrinfo);
  return 0;
}

/* ---- listen ---- */

/* Opens l's handle on a socket of its own: bound to host:port, a unix
 * socket, or a dup of the host's descriptor. */
static int listener_open(rill_listener_t *l, const rill_listen_at_t *at, int *slot) {
  rill_worker_t *w = l->w;
  int fd;
  if (at->host == NULL) {
    if (at->unix_path) {
      fd = rill__unix_open(at->unix_path, at->unix_mode, &l->unix_sock);
      l->kind = UV_NAMED_PIPE;
    } else {
      int on = 0;
      socklen_t len = sizeof(on);
      l->kind = socket_kind(at->fd);
      if (l->kind < 0) return l->kind;
      if (getsockopt(at->fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0 || !on)
        return UV_EINVAL; /* not a listening socket */
      fd = fcntl(at->fd, F_DUPFD_CLOEXEC, 3);
      if (fd < 0) return uv_translate_sys_error(errno);
    }
    if (fd < 0) return fd;
    int r = l->kind == UV_TCP ? uv_tcp_init(w->loop, &l->h.tcp)
                              : uv_pipe_init(w->loop, &l->h.pipe, 0);
    if (r)
      l->h.handle.type = UV_UNKNOWN_HANDLE; /* not on the loop: nothing to close */
    else
      r = l->kind == UV_TCP ? uv_tcp_open(&l->h.tcp, fd) : uv_pipe_open(&l->h.pipe, fd);
    if (r) close(fd);
    return r;
  }
  int reuse = 0, port = at->port;
  if (w->port_for) port = w->port_for(w, at->host, port, &reuse, slot);
  struct sockaddr_storage ss;
  int r = resolve(w->loop, at->host, port, &ss);
  if (r) return r;
  l->kind = UV_TCP;
  if ((r = uv_tcp_init_ex(w->loop, &l->h.tcp, ss.ss_family)) != 0) {
    l->h.handle.type = UV_UNKNOWN_HANDLE; /* not on the loop: nothing to close */
    return r;
  }
  if (reuse) {
    /* Each worker has a socket of its own on the port; the kernel spreads
     * the connections over them. */
    uv_os_fd_t sfd;
    int on = 1;
    if (uv_fileno(&l->h.handle, &sfd) == 0)
      setsockopt(sfd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
  }
  return uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0);
}

static void failed_closed(uv_handle_t *h) {
  free(h->data);
}

int rill__listen_at(rill_worker_t *w, const rill_listen_at_t *at, int backlog,
                    unsigned max_conns, rill_accept_cb cb, void *data,
                    rill_listener_t **out) {
  rill_listener_t *l = calloc(1, sizeof(*l));
  if (l == NULL) return UV_ENOMEM;
  l->w = w;
  int slot = -1;
  int r = listener_open(l, at, &slot);
  if (r) {
    if (l->unix_sock) rill__unix_release(l->unix_sock);
    if (l->h.handle.type == UV_UNKNOWN_HANDLE) {
      free(l); /* no handle was made */
    } else {
      l->h.handle.data = l;
      uv_close(&l->h.handle, failed_closed);
    }
    return r;
  }
  l->on_accept = cb;
  l->data = data;
  l->max_conns = max_conns ? max_conns : 1u << 30;
  l->refs = 2; /* the socket's handle and the resume timer */
  uv_timer_init(w->loop, &l->resume);
  l->resume.data = l;
  l->h.handle.data = l;
  r = uv_listen(&l->h.stream, backlog > 0 ? backlog : 511, connection_cb);
  if (r) {
    if (l->unix_sock) rill__unix_release(l->unix_sock);
    l->unix_sock = NULL;
    uv_close(&l->h.handle, listener_closed);
    uv_close((uv_handle_t *)&l->resume, resume_closed);
    return r;
  }
  rill__obj_link(w, &l->obj, listener_destroy);
  l->obj.kind = RILL_OBJ_LISTENER;
  l->obj.shutdown = listener_destroy; /* a graceful stop closes it too */
  char name[64];
  if (w->port_bound && slot >= 0)
    w->port_bound(w, slot, rill__listener_addr(l, name, sizeof(name)));
  *out = l;
  return 0;
}

int rill__listen(rill_worker_t *w, const char *host, int port, int backlog,
                 unsigned max_conns, rill_accept_cb cb, void *data,
                 rill_listener_t **out) {
  rill_listen_at_t at = {.host = host, .port = port, .fd = -1};
  return rill__listen_at(w, &at, backlog, max_conns, cb, data, out);
}

int rill__listener_addr(rill_listener_t *l, char *host, size_t hostlen) {
  if (l->kind == UV_NAMED_PIPE) {
    size_t n = hostlen;
    if (uv_pipe_getsockname(&l->h.pipe, host, &n) != 0) {
      if (hostlen) host[0] = 0;
      return 0;
    }
    return 0;
  }
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len) != 0) return -1;
  return rill__sockaddr_str((struct sockaddr *)&ss, host, hostlen);
}

void rill__listener_close(rill_listener_t *l) {
  if (l->closing) return;
  l->closing = 1;
  rill__obj_unlink(&l->obj);
  if (l->unix_sock) rill__unix_release(l->unix_sock);
  l->unix_sock = NULL;
  uv_close(&l->h.handle, listener_closed);
  uv_close((uv_handle_t *)&l->resume, resume_closed);
}

/* ---- connect ---- */

struct rill_connect_s {
  rill_worker_t *w;
  uv_getaddrinfo_t gai;
  uv_connect_t creq;
  struct addrinfo *ai, *cur;
  rill_uvstream_t *u;
  rill_connect_cb cb;
  void *data;
  int port;
  int last_err;
  unsigned resolving : 1, connecting : 1, cancelled : 1;
  struct addrinfo numeric; /* a host given as an address: no lookup */
  struct sockaddr_storage addr;
};

static void connect_next(rill_connect_t *c);

static void connect_finish(rill_connect_t *c, int status, rill_uvstream_t *u) {
  if (c->ai) uv_freeaddrinfo(c->ai);
  if (!c->cancelled)
    c->cb(c->data, status, u);
  else if (u)
    rill__uvstream_discard(u);
  free(c);
}

static void connect_cb(uv_connect_t *req, int status) {
  rill_connect_t *c = req->data;
  c->connecting = 0;
  if (status == 0 && !c->cancelled) {
    uv_tcp_nodelay((uv_tcp_t *)rill__uvstream_handle(c->u), 1);
    connect_finish(c, 0, c->u);
    return;
  }
  if (c->u) rill__uvstream_discard(c->u);
  c->u = NULL;
  if (c->cancelled) {
    connect_finish(c, UV_ECANCELED, NULL);
    return;
  }
  c->last_err = status;
  c->cur = c->cur->ai_next;
  connect_next(c);
}

static void connect_next(rill_connect_t *c) {
  for (; c->cur; c->cur = c->cur->ai_next) {
    struct addrinfo *a = c->cur;
    if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
    struct sockaddr_storage ss;
    memcpy(&ss, a->ai_addr, a->ai_addrlen);
    ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)c->port);
    c->u = rill__uvstream_new(c->w, UV_TCP);
    if (c->u == NULL) break;
    c->creq.data = c;
    int r = uv_tcp_connect(&c->creq, (uv_tcp_t *)rill__uvstream_handle(c->u),
                           (struct sockaddr *)&ss, connect_cb);
    if (r == 0) {
      c->connecting = 1;
      return;
    }
    rill__uvstream_discard(c->u);
    c->u = NULL;
    c->last_err = r;
  }
  connect_finish(c, c->last_err ? c->last_err : UV_EAI_NONAME, NULL);
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  rill_connect_t *c = req->data;
  c->resolving = 0;
  c->ai = res;
  if (c->cancelled || status < 0) {
    connect_finish(c, c->cancelled ? UV_ECANCELED : status, NULL);
    return;
  }
  c->cur = res;
  connect_next(c);
}

int rill__connect(rill_worker_t *w, const char *host, int port, rill_connect_cb cb,
                  void *data, rill_connect_t **out) {
  rill_connect_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return UV_ENOMEM;
  c->w = w;
  c->cb = cb;
  c->data = data;
  c->port = port;
  c->gai.data = c;
  /* An address needs no lookup (getaddrinfo runs on the thread pool). */
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&c->addr) == 0 ||
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&c->addr) == 0) {
    c->numeric.ai_family = c->addr.ss_family;
    c->numeric.ai_addr = (struct sockaddr *)&c->addr;
    c->numeric.ai_addrlen = c->addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                           : sizeof(struct sockaddr_in);
    c->cur = &c->numeric;
    c->u = rill__uvstream_new(w, UV_TCP);
    if (c->u == NULL) {
      free(c);
      return UV_ENOMEM;
    }
    c->creq.data = c;
    int r = uv_tcp_connect(&c->creq, (uv_tcp_t *)rill__uvstream_handle(c->u),
                           (struct sockaddr *)&c->addr, connect_cb);
    if (r) {
      rill__uvstream_discard(c->u);
      free(c);
      return r;
    }
    c->connecting = 1;
    *out = c;
    return 0;
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  char portstr[16];
  snprintf(portstr, sizeof(portstr), "%d", port);
  int r = uv_getaddrinfo(w->loop, &c->gai, gai_cb, host, portstr, &hints);
  if (r) {
    free(c);
    return r;
  }
  c->resolving = 1;
  *out = c;
  return 0;
}

void rill__connect_cancel(rill_connect_t *c) {
  if (c->cancelled) return;
  c->cancelled = 1;
  if (c->resolving) {
    uv_cancel((uv_req_t *)&c->gai); /* gai_cb still runs, with UV_ECANCELED */
  } else if (c->connecting) {
    rill__uvstream_discard(c->u); /* connect_cb runs with UV_ECANCELED */
    c->u = NULL;
  }
}
