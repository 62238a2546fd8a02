/* libuv streams (TCP sockets and pipes) as rill streams. No Lua. */
#ifndef RILL_UVSTREAM_H
#define RILL_UVSTREAM_H

#include "stream.h"

typedef struct rill_uvstream_s rill_uvstream_t;

/* A stream around a new handle of kind UV_TCP or UV_NAMED_PIPE, on w's
 * object list until its memory goes. Returns NULL when out of memory. */
rill_uvstream_t *rill__uvstream_new(rill_worker_t *w, int kind);
uv_stream_t *rill__uvstream_handle(rill_uvstream_t *u);
rill_stream_t *rill__uvstream_stream(rill_uvstream_t *u);
/* Frees a stream whose handle was never opened (e.g. a failed accept). */
void rill__uvstream_discard(rill_uvstream_t *u);
/* Callbacks for whoever counts the stream (a listener): released runs once
 * the stream stops being open (closed, reset, or torn down: a place at a
 * connection limit is free again, though a close may still linger), freed
 * once its handles and memory are gone. Either may be NULL. */
void rill__uvstream_owner(rill_uvstream_t *u, void (*released)(void *),
                          void (*freed)(void *), void *arg);

/* Makes src and dst the stream's remote and local addresses (vt->addr), as
 * a load balancer's PROXY header said; the socket's own remote address
 * stays as RILL_ADDR_PROXY. Returns 0 or UV_ENOMEM. */
int rill__uvstream_set_addrs(rill_uvstream_t *u, const struct sockaddr *src,
                             const struct sockaddr *dst);

/* Formats a socket address as "host" and returns the port. */
int rill__sockaddr_str(const struct sockaddr *sa, char *host, size_t hostlen);

#endif /* RILL_UVSTREAM_H */
