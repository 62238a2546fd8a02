/* A worker: one uv loop and everything that lives on it. It is the bottom
 * layer: the object list a teardown sweeps, the pool of input buffers, the
 * Date line, random bytes, the log, and the per-worker services the layers
 * above register (the Lua state and scheduler, TLS state). No Lua here: the
 * layers above are reached only through the hooks they set. */
#ifndef RILL_WORKER_H
#define RILL_WORKER_H

#include "rill_int.h"

/* ---- objects ------------------------------------------------------------
 * Every C object that owns libuv handles is linked into its worker's list,
 * so that a worker can be torn down without leaks: destroy() closes the
 * handles at once (memory is freed in their close callbacks) and tells
 * whoever is bound to the object that it is gone. */
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

/* ---- services -----------------------------------------------------------
 * State a layer above keeps per worker (the Lua state, TLS). At teardown,
 * after every object is destroyed, each service's close() runs (close
 * handles), the loop runs until the handles are gone, then each free()
 * runs, in the order the services were added. */
typedef struct rill_service_s rill_service_t;
struct rill_service_s {
  rill_service_t *next;
  void (*close)(rill_service_t *svc, rill_worker_t *w);
  void (*free)(rill_service_t *svc, rill_worker_t *w);
};

void rill__worker_add_service(rill_worker_t *w, rill_service_t *svc);

/* ---- gathered writes ---------------------------------------------------
 * A transport gathers the small writes made while a task runs and sends them
 * together. It joins its worker's flush list when it first holds unsent
 * bytes; the list is flushed when the running tasks stop (the scheduler calls
 * rill__worker_flush) and, for writes made outside tasks, at the end of the
 * loop turn (before the loop next waits for I/O). Nothing waits on a timer.
 * Layers above a transport that gather too (TLS seals its plaintext into
 * records; a compressed HTTP response flushes its compressor above that)
 * are flushed first, highest level first, so that their bytes join the same
 * write. */
typedef struct rill_flush_s rill_flush_t;
enum { RILL_FLUSH_TRANSPORT, RILL_FLUSH_ABOVE, RILL_FLUSH_HTTP, RILL_FLUSH_LEVELS };
struct rill_flush_s {
  rill_flush_t *prev, *next;
  void (*flush)(rill_flush_t *f);
  int level; /* RILL_FLUSH_*: what is above flushes first */
  int listed;
};

/* ---- metrics ------------------------------------------------------------
 * Counters a worker keeps of itself, for rill.metrics(). Only the worker's
 * own thread changes them, with plain arithmetic and relaxed atomic stores
 * (RILL_COUNT: no lock prefix, as cheap as a plain increment); a scrape on
 * another worker reads them with relaxed loads. They live in the runtime
 * (rill.c), so that a scrape never reads a worker that is gone. */
typedef struct {
  uint64_t requests;       /* HTTP requests dispatched */
  uint64_t responses[6];   /* by status class: [1] 1xx ... [5] 5xx, [0] other */
  uint64_t bytes_in;       /* read from sockets */
  uint64_t bytes_out;      /* written to sockets (sendfile's bytes not included) */
  uint64_t connections;    /* open now: accepted and not yet closed */
  uint64_t websockets;     /* open now */
  uint64_t reloads;        /* app reloads this worker made */
  uint64_t lua_bytes;      /* the Lua state's memory, as of its last run */
  uint64_t buffers_pooled; /* idle input/output buffers in the worker's pool */
} rill_metrics_t;

#define RILL_COUNT(field, n) __atomic_store_n(&(field), (field) + (n), __ATOMIC_RELAXED)
#define RILL_GAUGE(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)

/* Log levels: RILL_LOG_ERROR .. RILL_LOG_DEBUG, public in rill.h. */
enum {
  RILL_CMD_STOP = 1,
  RILL_CMD_RELOAD = 2,
  RILL_CMD_FORCE = 4,
  RILL_CMD_ADOPT = 8,
  RILL_CMD_SIGNAL = 16
};

struct lua_State;
struct rill_sched_s;

struct rill_worker_s {
  uv_loop_t *loop;
  int own_loop;
  int id;
  int log_level;
  int log_plain; /* lines without time and worker (`rill run` on a terminal) */
  int unhandled; /* rill.spawn threads that raised and whose error nobody took */
  /* The host's log callback (rill_on_log), or NULL: lines go to stderr. */
  rill_log_cb log_cb;
  void *log_ud;
  int stopping; /* tearing down: no more Lua, no more resumes */
  int exit_code;

  /* The Lua layer's state and scheduler (lua_core.c, sched.c): opaque here. */
  struct lua_State *L;
  struct rill_sched_s *sched;
  void *tls;      /* TLS state (tls.c), freed as a service */
  void *fcache;   /* the open-file cache (file_cache.c), made when first used */
  void *host_hub; /* resumes from host threads (lua_host.c), made when first used */

  /* The runtime around the worker (rill.c), or NULL: a port 0 is the port the
   * first worker got, and workers share ports (SO_REUSEPORT). port_for
   * returns the port to bind and sets *reuse; port_bound reports the port
   * bound for *slot. */
  void *rt;
  int (*port_for)(rill_worker_t *w, const char *host, int port, int *reuse, int *slot);
  void (*port_bound)(rill_worker_t *w, int slot, int port);

  rill_obj_t objs; /* list head */
  rill_service_t *services;

  /* free input buffers of RILL_BUF_SIZE */
  char **bufs;
  unsigned nbufs, maxbufs;
  char *scratch; /* RILL_BUF_SIZE bytes read and thrown away, or masked */

  /* "Date: ..." header line, formatted once a second */
  char date[48];
  size_t date_len;
  int64_t date_sec;

  /* random bytes from the kernel, taken in batches */
  uint8_t rnd[256];
  unsigned rnd_left;

  /* commands from other threads (rill.c): RILL_CMD_* bits */
  uv_async_t cmd;
  int cmds;
  void (*on_command)(rill_worker_t *w, int cmds);
  /* a graceful stop in progress */
  int graceful;
  int stop_done; /* the stop has finished: nothing in flight, or the grace is over */
  int closed;    /* rill__worker_close has run: every object and handle is closing */
  void (*on_stopped)(rill_worker_t *w); /* called once, when the stop finishes */
  uv_timer_t grace_timer, stop_check;
  int busy; /* things besides connections that a graceful stop waits for */
  /* rill__worker_hold: while held, tasks made ready wait; the last release
   * runs them (release: the scheduler's, NULL without one). */
  int hold;
  void (*release)(rill_worker_t *w);
  uint64_t requests; /* HTTP requests dispatched */
  rill_metrics_t *m; /* its counters: the runtime's slot for it, or own_m */
  rill_metrics_t own_m;
  rill_flush_t *flush_head[RILL_FLUSH_LEVELS]; /* holding gathered writes, by level */
  uv_prepare_t flush_prepare;
  uv_check_t flush_check;
  int listen_seq; /* listeners made so far (rill.c pairs them across workers) */
  /* The log capture (rill__log_capture): lines logged on the capturing
   * thread are kept here instead of going to stderr. */
  int capturing;
  uv_thread_t capture_thread;
  char *capture;
  size_t capture_len, capture_cap;
  unsigned long capture_dropped; /* lines past RILL_LOG_CAPTURE_MAX */
};

rill_worker_t *rill__worker_new(uv_loop_t *loop);
/* Sends a command to w from any thread. */
void rill__worker_command(rill_worker_t *w, int cmd);
/* Begins a graceful stop: see rill_obj_s.shutdown. The loop stops once no
 * connection, WebSocket or busy task is left, or after grace_ms. */
void rill__worker_stop(rill_worker_t *w, unsigned grace_ms);
/* Ends the stop now (the grace period is over, or a forced stop): calls
 * on_stopped; then stops the loop if it is the worker's own, or, on a host's
 * loop, closes everything of the worker's (rill__worker_close), so that the
 * host's uv_run returns by itself once its own handles are gone. */
void rill__worker_stop_now(rill_worker_t *w);
/* Destroys every object and closes every handle of the worker's (they
 * finish closing as the loop turns); the Lua state stays until
 * rill__worker_free. Once only. */
void rill__worker_close(rill_worker_t *w);
/* Closes the worker (if not closed yet), frees the services, closes the
 * loop (if its own) and frees the worker. */
void rill__worker_free(rill_worker_t *w);

/* Reads m (another worker's counters) into out, field by field, with
 * relaxed atomic loads. */
void rill__metrics_read(const rill_metrics_t *m, rill_metrics_t *out);

/* Lists f to be flushed (nothing if it is listed). */
void rill__flush_add(rill_worker_t *w, rill_flush_t *f);
/* Takes f off the list (nothing if it is not listed). */
void rill__flush_remove(rill_worker_t *w, rill_flush_t *f);
/* Flushes every listed transport, emptying the list. */
void rill__worker_flush(rill_worker_t *w);

/* Batching: a layer that delivers many requests from one read (HTTP/2's
 * streams) holds the worker while it does, so that their handlers run
 * together after it and their answers leave in one write rather than one
 * write each. Holds nest; the last release runs the tasks made ready
 * meanwhile, then flushes. */
void rill__worker_hold(rill_worker_t *w);
void rill__worker_release(rill_worker_t *w);

char *rill__buf_get(rill_worker_t *w);
void rill__buf_put(rill_worker_t *w, char *buf);

/* Returns "Date: <IMF-fixdate>\r\n", valid until the next call. */
const char *rill__date_line(rill_worker_t *w, size_t *len);

/* Fills buf with n bytes from the kernel's random generator. Returns 0 or
 * an error. */
int rill__random(rill_worker_t *w, void *buf, size_t n);

/* Logs a line at level, if w's log_level lets it through (w NULL: always):
 * to w's log callback when it has one (worker w->id), else kept by the
 * capture or written to stderr with a timestamp, level and worker. */
void rill__log(rill_worker_t *w, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same, for a line not from a worker but through w's log settings: the
 * callback hears worker -1. */
void rill__log_host(rill_worker_t *w, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Writes whole log lines (len bytes ending in "\n"): to the log callback
 * (one call per line, at RILL_LOG_INFO, without the newline) when w has one;
 * else kept by the capture when it is on and the caller is its thread, else
 * to stderr in one write. */
void rill__log_write(rill_worker_t *w, const char *text, size_t len);

/* The log capture, for `rill test` (which shows the log of a failing test
 * only): while on, what the calling thread logs through w (rill__log,
 * rill__log_write) is kept in memory instead of going to stderr; other
 * threads (a signal thread) still write to stderr. Past
 * RILL_LOG_CAPTURE_MAX bytes kept, lines are counted, not kept. on = 0
 * stops it (what is kept stays until taken). */
#define RILL_LOG_CAPTURE_MAX (1024 * 1024)
void rill__log_capture(rill_worker_t *w, int on);
/* Returns what the capture kept since the last call (*len bytes, valid
 * until the next log line) and how many lines it dropped, and empties it. */
const char *rill__log_captured(rill_worker_t *w, size_t *len, unsigned long *dropped);

#endif /* RILL_WORKER_H */
