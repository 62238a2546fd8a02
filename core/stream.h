/* Streams: the contract every layer honours, and who is told what.
 *
 * A stream holds the bytes it has read in a buffer of its own; a reader looks
 * at them with peek(), takes what it uses with consume() and asks for more
 * with fill(). Nothing is read from below unless fill() was called, so a
 * layer on top never over-reads: what it does not consume stays for the next
 * reader (an upgrade hands the rest on).
 *
 * Who is told: a stream has a stack of bindings. Each consumer (an HTTP
 * connection, a body borrowing the socket for a read, TLS on top, a
 * WebSocket, a Lua userdata) binds with its own callbacks and unbinds when
 * done. "More bytes" (readable) and "the write queue drained" (drained) go
 * to the topmost binding that has that callback; closing a stream pops every
 * binding, top down, calling its gone(). A layer never writes another
 * layer's fields: it binds, calls the vtable, and is called back. */
#ifndef RILL_STREAM_H
#define RILL_STREAM_H

#include "worker.h"

typedef struct rill_binding_s rill_binding_t;

enum { RILL_ADDR_LOCAL = 0, RILL_ADDR_PEER = 1, RILL_ADDR_PROXY = 2 };

typedef struct {
  /* The fill() asked for has completed: bytes, the end, or an error
   * (status). Peek again to see which. */
  void (*readable)(rill_binding_t *b, int status);
  /* A write that returned RILL_EAGAIN may go on: the queue fell below the
   * low-water mark (status 0), or writing failed (status < 0). */
  void (*drained)(rill_binding_t *b, int status);
  /* The stream is closing: the binding was removed; do not use the stream
   * again (its memory stays valid until the current callbacks return). */
  void (*gone)(rill_binding_t *b);
} rill_binding_ops_t;

struct rill_binding_s {
  const rill_binding_ops_t *ops;
  rill_binding_t *below;
  rill_stream_t *s; /* bound to, or NULL */
};

typedef struct rill_stream_vt_s {
  const char *name;
  /* Points *p, *n at the bytes available now. Returns 0 (n may be 0: call
   * fill), RILL_EOF when the stream ended with nothing left, or an error. */
  int (*peek)(rill_stream_t *s, const char **p, size_t *n);
  void (*consume)(rill_stream_t *s, size_t n);
  /* Asks for more bytes. Returns 0, and readable() follows once more bytes
   * are there, at the end or on an error (never before fill() returns); or
   * returns RILL_EOF or an error now, with no callback. */
  int (*fill)(rill_stream_t *s);
  /* Takes all of bufs (copying what cannot go out now). Returns 0, or
   * RILL_EAGAIN when the queue is above the high-water mark (drained()
   * follows when it falls below the low one), or an error (nothing taken). */
  int (*write)(rill_stream_t *s, const uv_buf_t *bufs, unsigned nbufs);
  /* Optional: sends what the stream gathered now, rather than when the
   * running tasks stop (a transport gathers writes: see worker.h). Returns
   * 0 or a write error. */
  int (*flush)(rill_stream_t *s);
  int (*shutdown)(rill_stream_t *s);
  /* Tells the bindings (gone), flushes what is queued, then closes; the
   * memory goes later. */
  void (*close)(rill_stream_t *s);
  /* The same, at once, dropping what is queued (a TCP reset where possible). */
  void (*abort)(rill_stream_t *s);
  /* Optional: a message for err more precise than rill__errmsg's, or NULL. */
  const char *(*strerror)(rill_stream_t *s, int err);
  /* Optional: the local (RILL_ADDR_LOCAL) or remote (RILL_ADDR_PEER)
   * address: writes the host and returns the port, or a negative error.
   * Behind a load balancer that sent a PROXY header, these are the ones it
   * gave, and RILL_ADDR_PROXY is the balancer's own (UV_ENOENT without a
   * header). */
  int (*addr)(rill_stream_t *s, int peer, char *host, size_t hostlen);
  /* Optional: whether the stream keeps the loop running (uv_ref/uv_unref). */
  int (*ref)(rill_stream_t *s, int ref);
  /* Optional, for sendfile(2): sends what the stream gathered and returns
   * its socket's descriptor once every byte written before has left the
   * stream's queue, so that bytes written to the descriptor directly come
   * after them; RILL_EAGAIN while bytes are still queued (drained() follows
   * once the queue is empty); or a write error. A stream that transforms
   * what is written (TLS) has none: the caller writes through write(). */
  int (*sendfile_fd)(rill_stream_t *s);
} rill_stream_vt;

struct rill_stream_s {
  const rill_stream_vt *vt;
  rill_worker_t *w;
  rill_binding_t *top;
};

void rill__stream_init(rill_stream_t *s, const rill_stream_vt *vt, rill_worker_t *w);

/* Pushes b onto s's stack. b must not be bound. */
void rill__stream_bind(rill_stream_t *s, rill_binding_t *b, const rill_binding_ops_t *ops);
/* Takes b off its stream's stack, wherever it is; nothing if unbound. */
void rill__stream_unbind(rill_binding_t *b);

/* For implementations: tell the topmost binding that has the callback. */
void rill__stream_readable(rill_stream_t *s, int status);
void rill__stream_drained(rill_stream_t *s, int status);
/* For implementations and owners retiring a stream: pops every binding, top
 * down, calling its gone(). */
void rill__stream_gone(rill_stream_t *s);

/* fill(), for a reader that must be bound to hear the answer. */
static inline int rill__stream_fill(rill_stream_t *s) {
  assert(s->top != NULL && "a stream is bound before it is filled");
  return s->vt->fill(s);
}

/* vt->flush, or 0 for a stream that does not gather. */
static inline int rill__stream_flush(rill_stream_t *s) {
  return s->vt->flush ? s->vt->flush(s) : 0;
}

/* The message Lua sees for err on s. */
const char *rill__stream_errmsg(rill_stream_t *s, int err);
/* vt->addr and vt->ref, or UV_ENOTSUP. */
int rill__stream_addr(rill_stream_t *s, int peer, char *host, size_t hostlen);
int rill__stream_ref(rill_stream_t *s, int ref);

#endif /* RILL_STREAM_H */
