/* An HTTP/1.1 message body as a stream over the connection's stream:
 * Content-Length, chunked, or delimited by the end of the connection. It
 * hands out slices of the transport's buffer (no copy) and takes only the
 * body's bytes, so the next message stays in the transport. Used for request
 * bodies (http_conn.c) and response bodies (the HTTP client). No Lua. */
#ifndef RILL_BODY_H
#define RILL_BODY_H

#include "http1.h"
#include "rill_int.h"

enum { RILL_BODY_NONE, RILL_BODY_LENGTH, RILL_BODY_CHUNKED, RILL_BODY_EOF };

typedef struct rill_body_s rill_body_t;

struct rill_body_s {
  rill_stream_t base; /* the body, for its reader */
  rill_stream_t *t;   /* the transport; not owned; NULL once gone */
  int mode;
  uint64_t left; /* LENGTH: bytes still to come */
  uint64_t read; /* body bytes taken */
  uint64_t max;  /* RILL_EBODY past it; 0: no limit */
  rill_chunked_t chunk;
  int err;
  unsigned done : 1, waiting : 1, own : 1;
  /* Called before each read until it clears itself (100 Continue). */
  void (*before_read)(rill_body_t *b);
  void *data; /* the owner's */
  /* the transport's callback while the body borrows it for a fill */
  rill_stream_cb saved_fill_cb;
  void *saved_data;
};

/* Prepares b to read a body of the given mode from t. max_trailer bounds a
 * chunked body's trailer section. */
void rill_body_start(rill_body_t *b, rill_worker_t *w, rill_stream_t *t, int mode,
                     uint64_t length, uint64_t max, size_t max_trailer);

/* A heap-allocated body whose stream frees it when closed (the client's). The
 * body lets go of the transport at its end, so the transport can carry the
 * next message. */
rill_body_t *rill_body_new(rill_worker_t *w, rill_stream_t *t, int mode, uint64_t length,
                           uint64_t max);

/* Reads and takes framing; peek()/consume() of the base stream. Exposed for
 * an owner that drains a body itself. */
int rill_body_peek(rill_body_t *b, const char **p, size_t *n);
void rill_body_consume(rill_body_t *b, size_t n);

/* Looks through the chunked bytes the transport holds already, without taking
 * them, for a framing error; records it (RILL_EPROTO) and returns it. */
int rill_body_check_buffered(rill_body_t *b);

/* The trailers once a chunked body ended, or NULL. */
const rill_chunked_t *rill_body_trailers(const rill_body_t *b);

/* Forgets the transport (it is going away or carries the next message). */
void rill_body_release(rill_body_t *b);
void rill_body_free_state(rill_body_t *b);

#endif
