/* Internal interfaces shared by the core's files.
 *
 * Layers, bottom up: worker (loop, buffers, object list, log) → stream (a
 * buffered pull-driven byte stream with a vtable; uv streams are one transport)
 * → protocols over streams (http1, http_conn) → the Lua-facing layer (sched,
 * lua_*). Files below the Lua-facing layer do not include Lua headers; they see
 * tasks only as opaque pointers.
 */
#ifndef RILL_INT_H
#define RILL_INT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "rill.h"

struct lua_State;
typedef struct rill_worker_s rill_worker_t;
typedef struct rill_task_s rill_task_t;
typedef struct rill_stream_s rill_stream_t;
typedef struct rill_obj_s rill_obj_t;

#define RILL_BUF_SIZE 65536   /* a pooled input buffer */
#define RILL_WRITE_HIGH 65536 /* queued bytes above which a writer waits */
#define RILL_WRITE_LOW 16384  /* ... until the queue falls to this */

#define rill__container_of(ptr, type, field)                                             \
  ((type *)((char *)(ptr)-offsetof(type, field)))

/* ---- objects ------------------------------------------------------------
 * Every C object that owns libuv handles is linked into its worker's list, so
 * that a worker can be torn down without leaks: destroy() closes the handles
 * (memory is freed in their close callbacks) and forgets any Lua userdata that
 * points at the object. */
enum { RILL_OBJ_OTHER, RILL_OBJ_LISTENER, RILL_OBJ_CONN, RILL_OBJ_WS };

struct rill_obj_s {
  rill_obj_t *prev, *next;
  void (*destroy)(rill_obj_t *o);
  /* Optional: begin a graceful stop (listeners stop accepting, connections
   * finish their request, WebSockets close with 1001). */
  void (*shutdown)(rill_obj_t *o);
  int kind; /* connections and WebSockets hold a graceful stop open */
  int done; /* ... unless closed already (a WebSocket waiting to be freed) */
};

void rill__obj_link(rill_worker_t *w, rill_obj_t *o, void (*destroy)(rill_obj_t *));
void rill__obj_unlink(rill_obj_t *o);

/* ---- worker ------------------------------------------------------------- */
enum { RILL_LOG_ERROR, RILL_LOG_WARN, RILL_LOG_INFO, RILL_LOG_DEBUG };

struct rill_worker_s {
  uv_loop_t *loop;
  int own_loop;
  struct lua_State *L;
  int id;
  struct rill_s *rt; /* the runtime it belongs to, or NULL */
  int log_level;
  int stopping; /* tearing down: no more Lua, no more resumes */
  int exit_code;

  /* scheduler (sched.c) */
  rill_task_t *current;                 /* the task running now, or NULL */
  rill_task_t *ready_head, *ready_tail; /* woken, to resume in this turn */
  rill_task_t *defer_head, *defer_tail; /* yielded, to resume next turn */
  int draining;
  rill_task_t *pool; /* finished tasks whose coroutines can be reused */
  unsigned npool;
  uv_idle_t defer_idle;
  uv_check_t defer_check;

  rill_obj_t objs; /* list head */

  /* free input buffers of RILL_BUF_SIZE */
  char **bufs;
  unsigned nbufs, maxbufs;
  char *scratch; /* RILL_BUF_SIZE bytes read and thrown away */

  /* "Date: ..." header line, formatted once a second */
  char date[48];
  size_t date_len;
  int64_t date_sec;

  void *tls; /* TLS state (tls.c): random generator, ticket keys, CA cache */

  /* commands from other threads (rill.c): RILL_CMD_* bits */
  uv_async_t cmd;
  int cmds;
  void (*on_command)(rill_worker_t *w, int cmds);
  /* a graceful stop in progress */
  int graceful;
  uv_timer_t grace_timer, stop_check;
  uint64_t requests; /* HTTP requests dispatched */
  int listen_seq;    /* listeners made so far (rill.c pairs them across workers) */
};

enum { RILL_CMD_STOP = 1, RILL_CMD_RELOAD = 2, RILL_CMD_FORCE = 4 };

rill_worker_t *rill__worker_new(uv_loop_t *loop);
/* Sends a command to w from any thread. */
void rill__worker_command(rill_worker_t *w, int cmd);
/* Begins a graceful stop: see rill_obj_s.shutdown. The loop stops once no
 * connection or WebSocket is left, or after grace_ms. */
void rill__worker_stop(rill_worker_t *w, unsigned grace_ms);
/* Closes every object, runs the loop until their handles are closed, closes
 * the Lua state and frees the worker. */
void rill__worker_free(rill_worker_t *w);

char *rill__buf_get(rill_worker_t *w);
void rill__buf_put(rill_worker_t *w, char *buf);

/* Returns "Date: <IMF-fixdate>\r\n", valid until the next call. */
const char *rill__date_line(rill_worker_t *w, size_t *len);

void rill__log(rill_worker_t *w, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- streams -------------------------------------------------------------
 * A stream holds the bytes it has read in a buffer of its own; readers look at
 * them with peek(), take what they use with consume() and ask for more with
 * fill(). Nothing is read from below unless fill() was called, so a layer on
 * top never over-reads: what it does not consume stays for the next reader. */
typedef void (*rill_stream_cb)(rill_stream_t *s, int status);

typedef struct rill_stream_vt_s {
  const char *name;
  /* Points *p, *n at the bytes available now. Returns 0 (n may be 0: call
   * fill), RILL_EOF when the stream ended with nothing left, or an error. */
  int (*peek)(rill_stream_t *s, const char **p, size_t *n);
  void (*consume)(rill_stream_t *s, size_t n);
  /* Asks for more bytes. Returns 0 and later calls s->fill_cb once more bytes
   * are available, at end of stream or on error; or returns RILL_EOF or an
   * error now, without a callback. Never calls fill_cb synchronously. */
  int (*fill)(rill_stream_t *s);
  /* Takes all of bufs (copying what cannot be written now). Returns 0, or
   * RILL_EAGAIN when the queue is above the high-water mark (then drain_cb
   * follows when it falls below the low one), or an error (nothing taken). */
  int (*write)(rill_stream_t *s, const uv_buf_t *bufs, unsigned nbufs);
  int (*shutdown)(rill_stream_t *s);
  /* Flushes what is queued, then closes; the stream is freed later. */
  void (*close)(rill_stream_t *s);
  /* Closes at once, dropping queued data (a TCP reset where possible). */
  void (*abort)(rill_stream_t *s);
  /* Optional: a message for err more precise than rill__errmsg's, or NULL. */
  const char *(*strerror)(rill_stream_t *s, int err);
} rill_stream_vt;

/* A pending read of the Lua layer (lua_stream.c), kept here so that any
 * stream, whatever its transport, can be read with the same methods. */
enum { RILL_ROP_NONE, RILL_ROP_SOME, RILL_ROP_EXACT, RILL_ROP_UNTIL };

struct rill_stream_s {
  const rill_stream_vt *vt;
  rill_worker_t *w;
  rill_stream_cb fill_cb;  /* set by whoever reads the stream */
  rill_stream_cb drain_cb; /* set by whoever writes it */
  void *data;              /* the reading/writing layer's own pointer */
  void *ud;                /* the Lua userdata wrapping this stream, or NULL */
  /* A layer reading through this stream without owning it (an HTTP body):
   * told when the stream goes away. */
  void (*gone_cb)(void *arg);
  void *gone_arg;

  /* Lua layer state (lua_stream.c): waiting tasks, deadlines, the read. */
  rill_task_t *reader, *writer;
  int timeout_ms; /* -1: none */
  int rop;
  size_t rop_n; /* max for SOME and UNTIL, count for EXACT */
  char *sep;    /* UNTIL: the separator (points at sep_small or the heap) */
  size_t seplen;
  char sep_small[16];
  char *acc; /* bytes taken from the stream for a read not yet complete */
  size_t acclen, acccap;
};

void rill__stream_init(rill_stream_t *s, const rill_stream_vt *vt, rill_worker_t *w);
/* Wakes Lua waiters with "closed" and forgets the userdata; for owners that
 * are about to free the stream. Defined by the Lua layer. */
void rill__stream_detach(rill_stream_t *s);

/* uv streams (TCP sockets and pipes) as rill streams: stream.c */
typedef struct rill_uvstream_s rill_uvstream_t;
rill_uvstream_t *rill__uvstream_new(rill_worker_t *w,
                                    int kind /* UV_TCP | UV_NAMED_PIPE */);
uv_stream_t *rill__uvstream_handle(rill_uvstream_t *u);
rill_stream_t *rill__uvstream_stream(rill_uvstream_t *u);
/* Frees a stream whose handle was never opened (e.g. a failed accept). */
void rill__uvstream_discard(rill_uvstream_t *u);
/* The local (peer 0) or remote (peer 1) address of a TCP stream: writes the
 * host and returns the port, or a negative error for other streams. */
int rill__stream_addr(rill_stream_t *s, int peer, char *host, size_t hostlen);
/* Takes the stream off the worker's object list: its owner closes it. */
void rill__uvstream_owned(rill_uvstream_t *u);
/* The same for any stream (a no-op for those not on the list). */
void rill__stream_owned(rill_stream_t *s);
/* Whether a socket keeps the loop running (uv_ref/uv_unref); sockets only. */
int rill__stream_ref(rill_stream_t *s, int ref);
/* Tells a layer reading through s (gone_cb) that s is going away. */
void rill__stream_gone(rill_stream_t *s);
/* The message Lua sees for err on s. */
const char *rill__stream_errmsg(rill_stream_t *s, int err);
/* Sets a callback run once the stream and its handle are gone. */
void rill__uvstream_on_free(rill_uvstream_t *u, void (*cb)(void *), void *arg);

/* Error codes as the messages Lua sees: "timeout", "closed", "ENAME: text". */
const char *rill__errmsg(int err);

#endif /* RILL_INT_H */
