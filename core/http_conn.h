/* A server-side HTTP/1.1 connection over any rill stream: reads request heads
 * (with limits and timeouts), offers the request body as a stream, frames the
 * response, and carries keep-alive, pipelining and draining. No Lua: the
 * layer above starts a handler in on_request and reports its end with
 * rill__http_conn_handler_done(). */
#ifndef RILL_HTTP_CONN_H
#define RILL_HTTP_CONN_H

#include "http_body.h"
#include "http_parse.h"
#include "stream.h"

typedef struct {
  size_t max_header_bytes;       /* request line + fields; 431 past it */
  unsigned max_headers;          /* field count; 431 past it */
  uint64_t max_body_bytes;       /* 413 past it; 0: no limit */
  unsigned header_timeout_ms;    /* from the first byte to the end of the head */
  unsigned body_timeout_ms;      /* the longest wait for body bytes */
  unsigned keepalive_timeout_ms; /* idle between requests */
  unsigned send_timeout_ms;      /* the longest a response write waits */
  size_t drain_bytes;            /* unread body thrown away to keep the connection */
  uint64_t min_body_rate;        /* bytes/s a body must keep up while we wait for it,
                                    once the grace is used; 0: none */
  unsigned body_rate_grace_ms;   /* waiting for body bytes before the rate counts */
} rill_http_limits_t;

void rill__http_limits_default(rill_http_limits_t *l);

typedef struct rill_http_server_s rill_http_server_t;
typedef struct rill_http_conn_s rill_http_conn_t;

struct rill_http_server_s {
  rill_worker_t *w;
  rill_http_limits_t limits;
  void (*on_request)(rill_http_conn_t *c); /* a head arrived: start a handler */
  /* A response write that returned RILL_EAGAIN may go on (status 0), or the
   * connection failed (status < 0). */
  void (*on_drained)(rill_http_conn_t *c, int status);
  void (*on_close)(rill_http_conn_t *c);  /* the connection is going */
  /* Optional: the connection waits for its next request, with nothing
   * buffered: what the layer above keeps for it may go. */
  void (*on_idle)(rill_http_conn_t *c);
  /* Optional: the client went away while a handler ran (see
   * rill__http_conn_watch); its socket is closed already. */
  void (*on_peer_gone)(rill_http_conn_t *c);
  void (*on_free)(rill_http_server_t *s); /* the last reference went */
  /* A rill__http_sendfile call ended: bytes sent (> 0), or an error. */
  void (*on_file)(rill_http_conn_t *c, int64_t result);
  void *data;
  int refs;         /* the owner's, plus one per connection */
  unsigned gen_seq; /* the last request number given to a connection */

  /* Timeouts without a libuv timer per connection. Each kind of timeout has
   * one delay, so its queue, kept in the order the timeouts were set, is in
   * deadline order too; one timer wakes at the earliest deadline. The same
   * timer frees closed connections on the loop's next turn. */
  uv_timer_t *timer;
  uint64_t armed_at; /* when the timer fires; UINT64_MAX: not armed */
  rill_http_conn_t *due_head[4], *due_tail[4];
  rill_http_conn_t *dead; /* closed, to be freed */
  /* A compressor of a response that ended, kept for the next one (zlib's
   * state is 256 KiB: allocating and freeing it per response costs page
   * faults); freed with the server. */
  struct rill_http_zip_s *zip_spare;
};

/* Makes s's timer; returns 0 or UV_ENOMEM. */
int rill__http_server_init(rill_http_server_t *s, rill_worker_t *w);
/* Closes s's timer, once nothing uses s (from on_free, or before any
 * connection). */
void rill__http_server_close(rill_http_server_t *s);
/* Closes the connection that has waited longest for a request (idle between
 * requests, or still sending its head): a listener at its limit makes room
 * this way. Returns 1 if it closed one. */
int rill__http_server_make_room(rill_http_server_t *s);

typedef struct {
  const char *name;
  size_t nlen;
  const char *value;
  size_t vlen;
} rill_hdr_t;

enum {
  RILL_CONN_HEAD,
  RILL_CONN_HANDLER,
  RILL_CONN_DRAIN,
  RILL_CONN_UPGRADED,
  RILL_CONN_CLOSED
};

struct rill_http_conn_s {
  rill_obj_t obj;
  rill_http_server_t *srv;
  rill_worker_t *w;
  rill_stream_t *t;  /* the transport, owned; NULL once handed over or gone */
  rill_binding_t tb; /* bound to t */
  rill_binding_t db; /* bound to the body while draining it */
  int timer_kind;
  uint64_t due;                          /* the timeout's deadline, loop ms */
  rill_http_conn_t *due_prev, *due_next; /* in the server's queue of its kind */
  rill_http_conn_t *next_dead;
  int state;
  unsigned gen; /* the request's number, unique among srv's connections; a
                 * request's objects carry it */
  unsigned nreq;
  int handler_running; /* the memory stays until the handler has ended */

  /* The head's parser, while a request is read or handled; an idle
   * connection has none, nor a body (together 712 bytes). */
  rill_http_head_t *head;
  char *hbuf; /* the current request's head, copied out of the stream */
  size_t hlen, hcap;

  /* the request body, a stream; made with the request, gone when idle */
  rill_body_t *body;
  unsigned continue_pending : 1, continue_sent : 1;

  /* the response */
  int resp; /* none, streaming, done */
  int framing;
  uint64_t resp_left;
  unsigned keepalive : 1, close_after : 1, is_head : 1;
  unsigned watching : 1, peer_gone : 1; /* see rill__http_conn_watch */
  int werr;
  /* Response compression (rill__http_compress): the format asked for, and
   * the compressor while the body streams. */
  int zformat, zlevel;
  struct rill_http_zip_s *zip;
  char *out; /* head and framing bytes not yet written */
  size_t olen, ocap;
  uint64_t piece_left; /* bytes of a body piece written outside (a file) still to come */
  struct rill_http_file_s *file; /* sending a file, while the response lasts */

  void *data; /* the layer above's */
  int ref;
  char *peer_host; /* the client's address (malloc'd), once a request asked */
  int peer_port;
};

/* Takes over the transport t (binds to it and owns it) and starts reading
 * the first request. */
rill_http_conn_t *rill__http_conn_new(rill_http_server_t *srv, rill_stream_t *t);
/* The handler of the current request ended; ok is 0 if it raised. */
void rill__http_conn_handler_done(rill_http_conn_t *c, int ok);
/* Writes out buffered response bytes (called when the handler waits). */
void rill__http_conn_flush(rill_http_conn_t *c);

/* Whether the response has started (its head is built). */
static inline int rill__http_started(const rill_http_conn_t *c) {
  return c->resp != 0;
}

/* Responses. status and headers are used only while the head is unsent.
 * Each returns 0, RILL_EAGAIN (the bytes are queued above the high-water mark:
 * wait for the transport's drain), UV_EINVAL for a bad header name or value,
 * UV_EBUSY if the response has started (respond) or ended (write), RILL_EBODY
 * for more bytes than Content-Length, or a transport error. */
/* rill__http_write's answer for data a response takes no body for (HEAD,
 * 1xx, 204, 304): nothing was sent. */
#define RILL_HTTP_NOBODY 1
int rill__http_respond(rill_http_conn_t *c, int status, const rill_hdr_t *h, size_t nh,
                      const char *body, size_t len);
int rill__http_write(rill_http_conn_t *c, int status, const rill_hdr_t *h, size_t nh,
                    const char *data, size_t len);
int rill__http_finish(rill_http_conn_t *c, int status, const rill_hdr_t *h, size_t nh);

/* ---- a file as (part of) the body, by sendfile: http_file.c ----
 * rill__http_sendfile sends up to len bytes of f from off, the rest of a
 * body piece of the file: the first call of a piece starts the head if
 * needed and frames len bytes (under Content-Length, or as one chunk);
 * each later call must ask for what is left of it. Returns 0, and on_file
 * follows once (bytes sent, or an error; less than len: call again for the
 * rest); UV_ENOTSUP (nothing done) when the transport cannot (TLS: write
 * the bytes instead); RILL_HTTP_NOBODY for a response without a body; or
 * another error at once. A failure cuts the response (it cannot be whole).
 * RILL_EFILE: the file ended before the range did. */
typedef struct rill_http_file_s rill_http_file_t;
struct rill_file_s;
int rill__http_sendfile(rill_http_conn_t *c, int status, const rill_hdr_t *h, size_t nh,
                        struct rill_file_s *f, int64_t off, uint64_t len);
/* For http_conn.c: the transport drained while the sender waits for its
 * queue to empty (rill__http_file_waiting); the response ends (frees the
 * sender, cutting a send in progress). */
void rill__http_file_drained(rill_http_conn_t *c, int status);
int rill__http_file_waiting(const rill_http_conn_t *c);
void rill__http_file_free(rill_http_conn_t *c);
/* For http_file.c: begins a body piece of len bytes written outside the
 * write path (0, RILL_HTTP_NOBODY, or an error as rill__http_write's), and
 * counts n of its bytes sent. */
int rill__http_piece_begin(rill_http_conn_t *c, int status, const rill_hdr_t *h, size_t nh,
                           uint64_t len);
void rill__http_piece_sent(rill_http_conn_t *c, uint64_t n);
/* Compresses the response about to start: its body goes through a gzip or
 * zlib compressor (format RILL_Z_GZIP or RILL_Z_DEFLATE, level 1-9), and
 * leaves chunked (HTTP/1.1) or delimited by the connection's end (HTTP/1.0);
 * a Content-Length given is not sent. The layer above sets Content-Encoding
 * and the other headers. The compressed bytes are gathered like any write:
 * what was written is flushed (Z_SYNC_FLUSH) when the burst leaves (the
 * handler waits or ends, rill__http_conn_flush, the end of the loop turn),
 * so each burst arrives whole; Z_FINISH at the end. State per response:
 * zlib's (256 KiB at most, less for a short body given whole) and a 16 KiB
 * buffer, freed when the response ends. HEAD and bodiless statuses get the
 * head a compressed body would have, with no compressor. Returns 0, or
 * UV_EBUSY if the response has started, or UV_EINVAL. */
int rill__http_compress(rill_http_conn_t *c, int format, int level);

/* Answers the current request with a head (101 for an upgrade, 200 for a
 * CONNECT) made of status line, Date and the given fields as they are, and
 * hands the transport over: the connection unbinds from it, and the caller
 * owns it from then on (bind to it), with any bytes after the request already
 * in its buffer. Returns NULL if the request had a body or the response had
 * started. The handler goes on running; its end just frees the conn. */
rill_stream_t *rill__http_conn_upgrade(rill_http_conn_t *c, int status,
                                      const rill_hdr_t *h, size_t nh);

/* While a handler writes what is not sent (RILL_HTTP_NOBODY), nothing tells
 * it that the client has gone: so the connection reads ahead (as Go's server
 * does), and sets peer_gone at the client's end or an error. A pipelined
 * request found instead stays in the transport's buffer.
 *
 * A request without a body is watched so from its dispatch on (one with a
 * body, once the body has ended): a client that closes (or resets) while the
 * handler runs has its socket closed at once, freeing the descriptor and the
 * listener's slot, peer_gone set, later writes failing with RILL_ECLOSED, and
 * on_peer_gone called (as nginx takes such a client as gone: its 499). A
 * request that asked to close the connection after its answer (Connection:
 * close, or HTTP/1.0 without keep-alive) is not watched: its client may
 * half-close after sending it (as `nc -N` does) and still wants the answer. */
void rill__http_conn_watch(rill_http_conn_t *c);

/* The body as the handler reads it (decoded by a layer above the body
 * stream) failed with err: RILL_EBODY (413) or RILL_EPROTO (400). The
 * request is answered as for a broken body, whatever the handler sends. */
void rill__http_conn_body_failed(rill_http_conn_t *c, int err);

/* The response cannot be finished (a write waited past its deadline): every
 * later write fails, and the connection is cut, not ended, when the handler
 * ends, so the client does not take a part for the whole. */
void rill__http_conn_cut(rill_http_conn_t *c, int err);
/* Closes the connection now, dropping what is queued (a response cut short
 * must not look whole); the running handler's later calls find it closed. */
void rill__http_conn_abort(rill_http_conn_t *c);

/* Frees an upgraded connection now rather than when its handler ends (the
 * caller makes sure nothing will use it). */
void rill__http_conn_release(rill_http_conn_t *c);

/* The chunked decoder once the body has ended (for its trailers), or NULL. */
const rill_chunked_t *rill__http_conn_chunk(rill_http_conn_t *c);

#endif
