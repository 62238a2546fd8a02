/* TCP listeners and outgoing connections. No Lua here. */
#ifndef RILL_TCP_H
#define RILL_TCP_H

#include "rill_int.h"

typedef struct rill_listener_s rill_listener_t;
/* Gets a new connection; the callee owns it. */
typedef void (*rill_accept_cb)(rill_listener_t *l, rill_uvstream_t *conn);

struct rill_listener_s {
  rill_obj_t obj;
  uv_tcp_t h;
  rill_worker_t *w;
  rill_accept_cb on_accept;
  void *data;
  void *ud; /* the Lua userdata, or NULL */
  /* Swaps the handler (a registry reference) for new connections. */
  void (*set_handler)(rill_listener_t *l, int ref);
  void (*on_free)(rill_listener_t *l); /* before the memory goes */
  unsigned nconns, max_conns;
  int refs; /* 1 for the open listener + 1 per live connection */
  unsigned paused : 1, closing : 1;
};

/* Binds host:port (port 0: any free port) and listens. Returns 0 and *out, or
 * a negative error. */
int rill__listen(rill_worker_t *w, const char *host, int port, int backlog,
                 unsigned max_conns, rill_accept_cb cb, void *data,
                 rill_listener_t **out);

/* Listening from a worker of a runtime with several: rill.c maps a port 0
 * to the port the first worker got, and shares the port (SO_REUSEPORT).
 * Returns the port to bind and sets *reuse; report the port bound after. */
int rill__port_for(rill_worker_t *w, const char *host, int port, int *reuse, int *slot);
void rill__port_bound(rill_worker_t *w, int slot, int port);
/* The bound port and address ("127.0.0.1"). */
int rill__listener_addr(rill_listener_t *l, char *host, size_t hostlen);
/* Stops listening; the memory goes when the last connection has ended. */
void rill__listener_close(rill_listener_t *l);

/* Connects to host:port, resolving the name with uv_getaddrinfo and trying
 * each address in turn. cb gets the connected stream or an error. */
typedef struct rill_connect_s rill_connect_t;
typedef void (*rill_connect_cb)(void *data, int status, rill_uvstream_t *s);
int rill__connect(rill_worker_t *w, const char *host, int port, rill_connect_cb cb,
                  void *data, rill_connect_t **out);
/* Gives up: cb will not be called; the memory goes once libuv is done. */
void rill__connect_cancel(rill_connect_t *c);

/* Formats a socket address as "host" and returns the port. */
int rill__sockaddr_str(const struct sockaddr *sa, char *host, size_t hostlen);

#endif
