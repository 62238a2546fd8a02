/* An HTTP/1.1 message body as a stream over the connection's stream:
 * Content-Length, chunked, or delimited by the end of the connection. It
 * hands out slices of the transport's buffer (no copy) and takes only the
 * body's bytes, so the next message stays in the transport. Used for request
 * bodies (http_conn.c) and response bodies (the HTTP client). No Lua.
 *
 * While it reads, the body is bound to the transport, above its owner: the
 * transport's readable() is the body's, and the body passes it on to whoever
 * is bound to the body (a Lua face, or the connection draining it). It lets
 * go at its end (rill__body_release). */
#ifndef RILL_HTTP_BODY_H
#define RILL_HTTP_BODY_H

#include "http_parse.h"
#include "stream.h"

enum { RILL_BODY_NONE, RILL_BODY_LENGTH, RILL_BODY_CHUNKED, RILL_BODY_EOF };

typedef struct rill_body_s rill_body_t;

struct rill_body_s {
  rill_stream_t base;   /* the body, for its reader */
  rill_binding_t tb;    /* bound to t while the body reads it */
  rill_stream_t *t;     /* the transport; not owned; NULL once let go */
  int mode;
  uint64_t left; /* LENGTH: bytes still to come */
  uint64_t read; /* body bytes taken */
  uint64_t max;  /* RILL_EBODY past it, in every mode; 0: no limit */
  rill_chunked_t chunk;
  int err;
  unsigned done : 1, own : 1, waiting : 1;
  /* A minimum rate, as Apache's mod_reqtimeout MinRate: only the time the
   * body waits for the peer counts (a reader slow on its own account is not
   * the peer's fault). Past grace_ms of waiting, each byte brought buys
   * 1000 / min_rate ms more; a body that waited longer fails with
   * UV_ETIMEDOUT. Checked as bytes arrive; a peer that sends nothing meets
   * the reader's per-read timeout. min_rate 0: none. */
  uint64_t min_rate; /* bytes per second */
  uint64_t grace_ms;
  uint64_t waited_ms, wait_since;
  /* Optional: told when a read starts waiting for the peer (1) and when the
   * wait ends (0); the owner keeps a deadline (rill__body_timeout). */
  void (*on_wait)(rill_body_t *b, int waiting);
  /* Called before each read until it clears itself (100 Continue). */
  void (*before_read)(rill_body_t *b);
  /* Optional: the body has ended (its last byte was read); may release b
   * from its transport. Called from inside a read: it must not call back. */
  void (*on_end)(rill_body_t *b);
  void *data; /* the owner's */
};

/* Prepares b to read a body of the given mode from t, and binds it to t
 * (unless there is no body). max_trailer bounds a chunked body's trailer
 * section. b->base must have been set up by rill__body_init. */
void rill__body_init(rill_body_t *b, rill_worker_t *w);
void rill__body_start(rill_body_t *b, rill_stream_t *t, int mode, uint64_t length,
                      uint64_t max, size_t max_trailer);

/* A heap-allocated body whose stream frees it when closed (the client's). The
 * body lets go of the transport at its end, so the transport can carry the
 * next message. */
rill_body_t *rill__body_new(rill_worker_t *w, rill_stream_t *t, int mode, uint64_t length,
                            uint64_t max);

/* Reads and takes framing; peek()/consume() of the base stream. */
int rill__body_peek(rill_body_t *b, const char **p, size_t *n);
void rill__body_consume(rill_body_t *b, size_t n);

/* How long a wait for the peer may last: timeout_ms, or less when the
 * minimum rate runs out first (a body that sends nothing at all is below any
 * rate once the grace is used). */
uint64_t rill__body_wait_limit(const rill_body_t *b, uint64_t timeout_ms);

/* The peer kept a read waiting too long: the body fails with UV_ETIMEDOUT
 * and its reader is told. */
void rill__body_timeout(rill_body_t *b);

/* The trailers once a chunked body ended, or NULL. */
const rill_chunked_t *rill__body_trailers(const rill_body_t *b);

/* Lets go of the transport (it carries the next message, or is going away):
 * unbinds from it. The body's own readers are not told; see retire. */
void rill__body_release(rill_body_t *b);
/* Ends the body's life as a stream: lets go of the transport and tells
 * whoever is bound to the body that it is gone. */
void rill__body_retire(rill_body_t *b);
void rill__body_free_state(rill_body_t *b);

#endif
