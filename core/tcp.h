/* Listeners (TCP, unix sockets, descriptors a host made) and outgoing TCP
 * connections. No Lua here. */
#ifndef RILL_TCP_H
#define RILL_TCP_H

#include "proxy_proto.h"
#include "uvstream.h"

typedef struct rill_listener_s rill_listener_t;
typedef struct rill_addr_table_s rill_addr_table_t;
/* Gets a new connection; the callee owns it. */
typedef void (*rill_accept_cb)(rill_listener_t *l, rill_uvstream_t *conn);

struct rill_listener_s {
  rill_obj_t obj;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  int kind;                      /* UV_TCP or UV_NAMED_PIPE (a unix socket) */
  struct rill_unix_sock_s *unix_sock; /* its unix socket file (unix_sock.h), or NULL */
  uv_timer_t resume; /* accepts again, on the loop's next turn, once a place is free */
  rill_worker_t *w;
  rill_accept_cb on_accept;
  void *data;
  void *ud; /* the Lua userdata, or NULL */
  /* Swaps the handler (a registry reference) for new connections. */
  void (*set_handler)(rill_listener_t *l, int ref);
  void (*on_free)(rill_listener_t *l); /* before the memory goes */
  /* Optional: at the connection limit, close a connection that is idle (or
   * has not sent a whole request) to make room for a new one. Returns 1 if
   * it closed one. */
  int (*make_room)(rill_listener_t *l);
  unsigned nconns, max_conns;
  unsigned max_per_addr;     /* connections from one address; 0: no limit */
  rill_addr_table_t *addrs; /* counts per address, when limited */
  int refs;                  /* 1 for the open listener + 1 per live connection */
  /* PROXY protocol: when on, a connection must begin with a header
   * (proxy_proto.h) and come from one of proxy_from, or it is closed. */
  rill_cidr_t *proxy_from;
  size_t nproxy_from;
  unsigned proxy_timeout_ms;
  /* connections whose header is still to come, oldest first: at the
   * connection limit the oldest is closed to make room */
  struct proxy_pending_s *pending_head, *pending_tail;
  unsigned paused : 1, closing : 1;
};

/* Binds host:port (port 0: any free port) and listens. Returns 0 and *out, or
 * a negative error. Listeners of a worker in a runtime share ports through
 * the worker's port_for/port_bound hooks. */
int rill__listen(rill_worker_t *w, const char *host, int port, int backlog,
                 unsigned max_conns, rill_accept_cb cb, void *data,
                 rill_listener_t **out);

/* Where to listen: host:port, else a unix socket file, else a descriptor. */
typedef struct {
  const char *host; /* with port; NULL: unix_path or fd */
  int port;
  /* A unix socket file: made (a stale one, where nothing listens, is
   * replaced; any other file is left alone: UV_EADDRINUSE or UV_EEXIST) and
   * removed when the last listener on it in this process closes. Listeners
   * on the same path in one process share the socket (each worker accepts
   * from it). */
  const char *unix_path;
  unsigned unix_mode; /* the file's permission bits (0660); 0: as the umask leaves them */
  /* >= 0: a listening socket (TCP or unix) of the host's: each listener
   * listens on a dup of it; fd itself is never closed here. */
  int fd;
} rill_listen_at_t;

/* Listens where at says. Returns 0 and *out, or a negative error. */
int rill__listen_at(rill_worker_t *w, const rill_listen_at_t *at, int backlog,
                    unsigned max_conns, rill_accept_cb cb, void *data,
                    rill_listener_t **out);

/* Serves fd, a connection accepted by someone else (TCP or unix), as if l
 * had accepted it: its limits, PROXY protocol and on_accept. Takes fd: it
 * is closed on error too. Returns 0 or an error. */
int rill__listener_adopt(rill_listener_t *l, int fd);

/* The bound port and address ("127.0.0.1"); for a unix socket the path and
 * port 0. */
int rill__listener_addr(rill_listener_t *l, char *host, size_t hostlen);
/* Stops listening; the memory goes when the last connection has ended. */
void rill__listener_close(rill_listener_t *l);
/* Limits connections from one address (0: no limit). Returns 0 or
 * UV_ENOMEM. */
int rill__listener_limit_per_addr(rill_listener_t *l, unsigned max);

/* Expects a PROXY protocol header (v1 or v2) first on every connection,
 * read within timeout_ms (0: 30 s), from the n sources in from (copied; n 0:
 * loopback only); a connection from elsewhere, or without a valid header,
 * is closed. on_accept gets the connection once the header is consumed,
 * with its addresses as the header gave them. Returns 0 or UV_ENOMEM. */
int rill__listener_proxy(rill_listener_t *l, const rill_cidr_t *from, size_t n,
                         unsigned timeout_ms);

/* Connects to host:port, resolving the name with uv_getaddrinfo and trying
 * each address in turn. cb gets the connected stream or an error. */
typedef struct rill_connect_s rill_connect_t;
typedef void (*rill_connect_cb)(void *data, int status, rill_uvstream_t *s);
int rill__connect(rill_worker_t *w, const char *host, int port, rill_connect_cb cb,
                  void *data, rill_connect_t **out);
/* Gives up: cb will not be called; the memory goes once libuv is done. */
void rill__connect_cancel(rill_connect_t *c);

#endif
