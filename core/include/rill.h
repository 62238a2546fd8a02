/* rill — a scriptable server runtime: libuv, LuaJIT, llhttp, mbedTLS.
 *
 * The public C interface, for programs that embed rill. Functions return 0
 * or a negative error code; libuv's codes pass through unchanged and rill
 * adds its own below; rill_strerror() turns any of them into a message.
 *
 *   rill_t *r;
 *   rill_new(&r, NULL);
 *   rill_register(r, "answer", my_lua_cfunction);   -- require("rill.host").answer
 *   rill_listen(r, "127.0.0.1", 8080, NULL);
 *   rill_load_file(r, "app.lua");
 *   rill_run(r);                                     -- until rill_stop()
 *   rill_free(r);
 */
#ifndef RILL_H
#define RILL_H

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* librill exports these names and nothing else. */
#if defined(__GNUC__)
#define RILL_API __attribute__((visibility("default")))
#else
#define RILL_API
#endif

/* A Lua C function (lua_CFunction), without needing lua.h here. */
struct lua_State;
typedef int (*rill_lua_cfunction)(struct lua_State *L);

#define RILL_VERSION_MAJOR 0
#define RILL_VERSION_MINOR 1
#define RILL_VERSION_PATCH 0

/* ABI policy. librill.so's SOVERSION is RILL_VERSION_MAJOR. Within one
 * SOVERSION there are only additions: new functions, new option numbers
 * (RILL_OPT_*, RILL_LISTEN_*), new error codes. The structs below
 * (rill_options_t, rill_listen_options_t) never change: every option added
 * since is a number set through rill_set_int / rill_set_str /
 * rill_listener_set_int / rill_listener_set_str, so that a host built
 * against an older rill.h keeps working with a newer librill. A removal, or
 * a change to what a function, constant or struct means, bumps SOVERSION. */

/* Errors of rill's own, below libuv's range. */
#define RILL_EOF UV_EOF             /* end of stream */
#define RILL_EAGAIN UV_EAGAIN       /* would block: wait and try again */
#define RILL_ETIMEDOUT UV_ETIMEDOUT /* a deadline passed */
#define RILL_ECLOSED (-30001)       /* the stream or connection is closed */
#define RILL_ETOOLONG (-30002)      /* read_until found no separator within max */
#define RILL_EBODY (-30003)         /* a body is larger than its limit */
#define RILL_EPROTO (-30004)        /* the peer broke the protocol */
#define RILL_ELOAD (-30005)         /* the app did not load (see the log) */
#define RILL_ESTATE (-30006)        /* not now: the runtime is running, or not */

/* Returns a message for err: "timeout", "closed", "the app did not load",
 * or "ENAME: text" for libuv's codes (and "unknown error N" for a code
 * neither knows). Never allocates: rill's own messages are static
 * strings; the others are formatted into a buffer of the calling thread,
 * valid until its next call. Any thread. */
RILL_API const char *rill_strerror(int err);

/* Returns the version as "MAJOR.MINOR.PATCH". */
RILL_API const char *rill_version(void);

typedef struct rill_s rill_t;

typedef struct {
  int workers;           /* threads, each with a loop and a Lua state; 0: 1 */
  const char *lua_path;  /* extra module path ("dir/?.lua;..."), searched first */
  const char *log_level; /* "error", "warn", "info" (default) or "debug" */
  double grace;          /* seconds a stop waits for requests in flight (default 30) */
  int watch;             /* reload when the app file or its modules change */
  int pin;               /* pin worker i to the i-th CPU the process may run on */
} rill_options_t;

/* Creates a runtime with its own loops. opts may be NULL. Options that
 * cannot work (workers or grace below 0, an unknown log_level) give
 * UV_EINVAL and no runtime.
 *
 * Signals: no write of rill's raises SIGPIPE, on any thread: sockets are
 * written with MSG_NOSIGNAL, anything else with SIGPIPE blocked for that one
 * call (a write to a peer that has gone fails with EPIPE). The process's
 * disposition and the host's threads' masks are never touched; rill's own
 * worker threads keep SIGPIPE blocked. */
RILL_API int rill_new(rill_t **out, const rill_options_t *opts);
/* Creates a runtime of one worker on the host's loop: the host runs the loop
 * (uv_run) and calls rill_start() first; rill_run_once() is then not needed. */
RILL_API int rill_new_on_loop(rill_t **out, uv_loop_t *loop, const rill_options_t *opts);

/* ---- options that can grow ----
 * Set before rill_start, from the thread that made the runtime. Each
 * returns 0; UV_EINVAL for an unknown option, the wrong type (an int
 * option given to rill_set_str, or the reverse) or a value out of range,
 * with the reason in rill_last_error(r); RILL_ESTATE once rill_start has
 * been called. Durations are in milliseconds, sizes in bytes.
 *
 * The HTTP limits apply to every listener of the runtime; an option not
 * set keeps the default given here (the same as `rill serve`'s, whose
 * flag is named beside each, in seconds where the constant is in ms). */
enum {
  /* int, 0 (default) or 1: 1 makes rill watch SIGTERM and SIGINT (a
   * graceful stop; a second one stops at once) and SIGHUP (a reload),
   * through libuv on worker 0's loop, from rill_start until the stop has
   * finished (or rill_free), then puts back the dispositions those signals
   * had before (a signal the host also watches through libuv stays with
   * it). With 0, rill installs no signal handler: the host's stay as they
   * are. */
  RILL_OPT_SIGNALS = 1,
  /* int RILL_LOG_ERROR .. RILL_LOG_DEBUG, or a string "error", "warn",
   * "info", "debug": the lines logged (default: rill_options_t.log_level,
   * else the RILL_LOG environment variable, else info). */
  RILL_OPT_LOG_LEVEL = 2,
  /* ms a stop waits for requests in flight (default 30000; as
   * rill_options_t.grace, in seconds, which it replaces); 1 .. 2^31-1. */
  RILL_OPT_GRACE = 3,

  /* HTTP limits, int (long long). Beside each: its default, the values
   * it takes, and rill serve's flag. */
  /* per worker; at the limit the connection idle longest is closed
   * (16384; 1 .. 2^31-1; --max-connections) */
  RILL_OPT_MAX_CONNECTIONS = 10,
  /* per worker, from one client address (no limit; -1 or 0: no limit, or
   * 1 .. 2^31-1; --max-connections-per-address) */
  RILL_OPT_MAX_CONNECTIONS_PER_ADDRESS = 11,
  /* bytes of request line and fields, 431 past it (16384; 64 .. 2^31-1;
   * --max-header-bytes) */
  RILL_OPT_MAX_HEADER_BYTES = 12,
  /* header fields (100; 1 .. 65535; --max-headers) */
  RILL_OPT_MAX_HEADERS = 13,
  /* bytes of a request body, 413 past it (1 GiB; -1 or 0: no limit, or
   * 1 .. 2^53; --max-body-bytes) */
  RILL_OPT_MAX_BODY_BYTES = 14,
  /* bytes/s a body must keep up once RILL_OPT_BODY_RATE_GRACE of waiting
   * is spent (500; -1 or 0: off, or 1 .. 2^31-1; --min-body-rate) */
  RILL_OPT_MIN_BODY_RATE = 15,
  /* ms of waiting for body bytes before the rate counts (20000;
   * --body-rate-grace) */
  RILL_OPT_BODY_RATE_GRACE = 16,
  /* ms to receive a request head (30000; --header-timeout) */
  RILL_OPT_HEADER_TIMEOUT = 17,
  /* ms of each wait for body bytes, 408 past it (60000; --body-timeout) */
  RILL_OPT_BODY_TIMEOUT = 18,
  /* ms an idle connection is kept between requests (60000;
   * --keepalive-timeout) */
  RILL_OPT_KEEPALIVE_TIMEOUT = 19,
  /* ms each response write may wait, then the connection is reset
   * (60000; --send-timeout) */
  RILL_OPT_SEND_TIMEOUT = 20,
  /* Every duration above: 1 .. 2^31-1 ms. */
};
RILL_API int rill_set_int(rill_t *r, int opt, long long value);
RILL_API int rill_set_str(rill_t *r, int opt, const char *value);

/* The message of the last call on r that failed (rill_start, rill_reload,
 * the setters, the listen calls), e.g. "app.lua:3: attempt to call a nil
 * value"; "" if none has (and for r NULL). Valid until the next call on r.
 * Call it from the thread that made the runtime. */
RILL_API const char *rill_last_error(rill_t *r);

/* ---- diagnostics ----
 * Log levels: a line is logged when its level is at most the runtime's. */
#define RILL_LOG_ERROR 0
#define RILL_LOG_WARN 1
#define RILL_LOG_INFO 2
#define RILL_LOG_DEBUG 3
typedef void (*rill_log_cb)(void *ud, int level, int worker, const char *msg);
/* Before rill_start: every line rill logs goes to cb instead of stderr:
 * rill's own, Lua's rill.log, a handler's error with its traceback, the
 * access logger's lines (at RILL_LOG_INFO). cb(ud, level, worker, msg)
 * runs on the thread that logs: the worker's (worker 0 .. workers - 1), or,
 * for a line not from a worker (a reload or a start refused on the host's
 * thread), the caller's with worker -1. msg has no timestamp and no
 * newline (it may hold several lines: a traceback) and is valid during the
 * call only. Several workers may call cb at once. cb NULL: stderr again. */
RILL_API int rill_on_log(rill_t *r, rill_log_cb cb, void *ud);

/* Before the runtime starts: what each worker's Lua state gets. */
/* A function callable from Lua as require("rill.host")[name]. */
RILL_API int rill_register(rill_t *r, const char *name, rill_lua_cfunction fn);
/* The same, with a pointer of the host's that the function gets back with
 * rill_context(L). ctx is shared by every worker (fn runs on each worker's
 * thread): what it points to must be safe for that, and live until
 * rill_free. */
RILL_API int rill_register_ctx(rill_t *r, const char *name, rill_lua_cfunction fn,
                               void *ctx);
/* Inside a function registered with rill_register_ctx (called from Lua, in
 * the function itself, not in one it calls through Lua): its ctx. NULL in a
 * function registered with rill_register. It is the C function's first
 * upvalue: meaningless anywhere else. */
RILL_API void *rill_context(struct lua_State *L);
/* Before rill_start: hooks run on each worker's own thread (worker 0's is
 * the thread that calls rill_start; with rill_new_on_loop, the host's).
 * start(r, worker, L, ud) runs once per worker after its Lua state is made
 * (rill.host and the preloads in it) and before the app loads: a host may
 * set up per-thread state, or add globals to L. stop(r, worker, ud) runs
 * once per worker whose start ran, after its last request (its stop has
 * finished, or rill_free ends it) and before its loop and Lua state close.
 * Either may be NULL. */
RILL_API int rill_on_worker(rill_t *r,
                            void (*start)(rill_t *r, int worker, struct lua_State *L,
                                          void *ud),
                            void (*stop)(rill_t *r, int worker, void *ud), void *ud);
/* A module for require(name), opened by open. */
RILL_API int rill_preload(rill_t *r, const char *name, rill_lua_cfunction open);
/* ---- host calls that wait ----
 * A C function called from a rill task (one registered with rill_register,
 * or any C function Lua calls in a handler or a rill.spawn thread) can wait
 * for the host's own asynchronous work:
 *
 *   static int slow_add(lua_State *L) {
 *     job_t *job = make_job(L);                // read the arguments first
 *     uv_queue_work(rill_loop(L), &job->req, work, after_work);
 *     return rill_suspend(L, &job->waiter);    // the task waits here
 *   }
 *   static int push_sum(lua_State *L, void *ud) { lua_pushnumber(L, ((job_t *)ud)->sum); return 1; }
 *   static void after_work(uv_work_t *req, int status) {
 *     job_t *job = req->data;
 *     rill_resume(job->waiter, push_sum, job); // the task goes on with the sum
 *   }
 *
 * rill_suspend() suspends the calling task: use it as `return
 * rill_suspend(L, &w);`. It sets *w before the task yields; it raises a Lua
 * error (nothing is suspended) outside a rill task or out of memory.
 *
 * rill_resume() must be called exactly once per waiter, from any thread
 * (the task's worker thread included). It returns at once (0); later, on
 * the task's worker thread, push(L, ud) pushes the values the suspended
 * call returns and returns their count, and the task goes on. push and ud
 * must stay valid until push runs. push is called exactly once: with L NULL
 * when the task can no longer be resumed (its worker stopped, rill_stop /
 * rill_free, or the wait was cancelled), to free what ud holds and push
 * nothing; that call may come on the caller's thread, inside rill_resume.
 * So the place to free ud is push. A task whose client has gone is still resumed: its later
 * reads and writes return "closed", as after any other wait. A waiting task
 * counts as work in flight for a graceful stop. rill_resume returns
 * RILL_ESTATE for a waiter already resumed (before it is freed; a resume
 * after that is a use after free), UV_EINVAL for NULL. */
typedef struct rill_waiter_s rill_waiter_t;
RILL_API int rill_suspend(struct lua_State *L, rill_waiter_t **w);
RILL_API int rill_resume(rill_waiter_t *w, int (*push)(struct lua_State *L, void *ud),
                         void *ud);
/* From a rill Lua state (any of its threads): the worker's loop, on which a
 * host may start its own work (uv_queue_work, timers) from that worker's
 * thread; and the worker's index (0 .. workers - 1). NULL and -1 for a
 * state rill did not make. */
RILL_API uv_loop_t *rill_loop(struct lua_State *L);
RILL_API int rill_worker_index(struct lua_State *L);
/* From a rill Lua state: the runtime it belongs to (NULL for a state rill
 * did not make). Call only the functions documented as safe from any
 * thread on it (rill_stop), or rill_reload from worker 0's thread. */
RILL_API rill_t *rill_runtime(struct lua_State *L);

/* An HTTP listener (port 0: any free one, the same for every worker). */
typedef struct {
  const char *tls_cert; /* PEM files: serve HTTPS */
  const char *tls_key;
} rill_listen_options_t;
RILL_API int rill_listen(rill_t *r, const char *host, int port, const rill_listen_options_t *o);
/* ---- more listeners, before rill_start ----
 * Each listen call (rill_listen, rill_listen_unix, rill_listen_fd) adds a
 * listener; `listener` below is its index in that order (as rill_port
 * counts). Every worker listens on each. The functions return 0, UV_EINVAL
 * (rill_last_error says why), or RILL_ESTATE once the runtime has started. */

/* A unix socket file at path (HTTP, or HTTPS with o's certificate). A stale
 * socket file that nothing listens on is replaced; any other file there
 * fails rill_start. The workers share the socket; the file is removed when
 * the runtime stops. Handlers see req.remote_addr "unix" (port 0). */
RILL_API int rill_listen_unix(rill_t *r, const char *path,
                              const rill_listen_options_t *o);
/* fd: a socket (TCP or unix) the host made, bound and listening. Each
 * worker listens on a dup of it: rill never closes the host's fd (the host
 * may close it after rill_start; the socket stays open until rill stops).
 * O_NONBLOCK is set on the shared open file. */
RILL_API int rill_listen_fd(rill_t *r, int fd, const rill_listen_options_t *o);

/* Another certificate for an HTTPS listener, chosen by SNI against its
 * names (CN and subjectAltName DNS, wildcards too); the first pair (o's
 * tls_cert, or the first added) is the default. Also makes a plain
 * listener HTTPS. PEM files, read at rill_start. */
RILL_API int rill_listener_add_cert(rill_t *r, int listener, const char *cert_file,
                                    const char *key_file);

/* Listener options (100..199), with rill_listener_set_int / _str. Numbers: */
/* RILL_VERIFY_* below (RILL_VERIFY_NONE); needs RILL_LISTEN_CLIENT_CA */
#define RILL_LISTEN_VERIFY_CLIENT 100
/* the TLS handshake's deadline, milliseconds (10000) */
#define RILL_LISTEN_HANDSHAKE_TIMEOUT 101
/* 0/1: each connection begins with a PROXY protocol header, v1 or v2 (0) */
#define RILL_LISTEN_PROXY_PROTOCOL 102
/* listen(2) backlog, 1..65535 (511) */
#define RILL_LISTEN_BACKLOG 103
/* a rill_listen_unix socket file's permission bits, e.g. 0660 (the umask's) */
#define RILL_LISTEN_UNIX_MODE 104
/* 0/1: HTTP/2 too: "h2" by ALPN over TLS, h2c with prior knowledge in
 * clear; HTTP/1.1 goes on as before (0) */
#define RILL_LISTEN_HTTP2 105
/* Strings: */
/* a PEM file of the CAs client certificates must chain to; alone it means
 * RILL_VERIFY_REQUIRED */
#define RILL_LISTEN_CLIENT_CA 110
/* a file of 80-byte TLS session ticket keys, the first sealing */
#define RILL_LISTEN_TLS_TICKET_KEYS 111
/* adds one source "ADDR[/BITS]" allowed to send the PROXY header (default:
 * 127.0.0.0/8 and ::1) */
#define RILL_LISTEN_PROXY_FROM 112
#define RILL_VERIFY_NONE 0     /* no client certificate asked for (default) */
#define RILL_VERIFY_OPTIONAL 1 /* asked for; a certificate given must verify */
#define RILL_VERIFY_REQUIRED 2 /* no handshake without a valid certificate */
RILL_API int rill_listener_set_int(rill_t *r, int listener, int opt, long long value);
RILL_API int rill_listener_set_str(rill_t *r, int listener, int opt, const char *value);

/* After rill_start, from any thread: serves fd, a connection the host
 * accepted (TCP or unix), as if `listener` had accepted it (its TLS, limits
 * and handler), on the workers in turn (round robin). rill owns fd from
 * this call on and closes it when done, on error too (a bad index:
 * UV_EINVAL; before rill_start or once stopping: RILL_ESTATE; a listener
 * closed meanwhile: closed later). */
RILL_API int rill_serve_fd(rill_t *r, int listener, int fd);
/* The app: a Lua file or chunk that returns a handler function(req, res) or a
 * router. name names a chunk in error messages. */
RILL_API int rill_load_file(rill_t *r, const char *path);
RILL_API int rill_load_string(rill_t *r, const char *code, const char *name);

/* Starts the workers and loads the app into each. Returns RILL_ELOAD if it
 * did not load (rill_last_error says why: the file, line and message).
 * rill_run() calls it if needed. */
RILL_API int rill_start(rill_t *r);
/* Runs until the runtime stops (rill_stop(), or with RILL_OPT_SIGNALS a
 * SIGTERM or SIGINT); returns the
 * exit status. */
RILL_API int rill_run(rill_t *r);
/* One non-blocking turn of the first worker's loop (for a host that has its
 * own loop to drive). Returns 1 while there is more to do, 0 when done. */
RILL_API int rill_run_once(rill_t *r);
/* For a host that is not built on libuv, with a runtime made by rill_new:
 * after rill_start, the descriptor to poll (readable: call rill_run_once)
 * and how long the host may wait at most before calling rill_run_once
 * anyway (ms; -1: no limit; 0: call it now). Worker 0's loop, as
 * uv_backend_fd / uv_backend_timeout; the other workers run on their own
 * threads. Ask for the timeout again after each rill_run_once. RILL_ESTATE
 * before rill_start, UV_EINVAL for a runtime on the host's loop. From the
 * thread that runs rill_run_once.
 *
 *   rill_start(r);
 *   struct pollfd p = {.fd = rill_backend_fd(r), .events = POLLIN};
 *   do poll(&p, 1, rill_backend_timeout(r)); while (rill_run_once(r));
 */
RILL_API int rill_backend_fd(rill_t *r);
RILL_API int rill_backend_timeout(rill_t *r);
/* Loads the app again in every worker; requests in flight finish on the old
 * code. A failed reload keeps the old handler everywhere. Called from
 * worker 0's thread (the host's thread that runs rill_run, rill_run_once or
 * the host's loop), outside a Lua call, the reload is tried on worker 0 at
 * once: an app that does not compile or raises while it loads gives
 * RILL_ELOAD, with rill_last_error naming the file and line, and no worker
 * reloads. From any other thread (or from Lua) the workers reload on their
 * own: then only an app file that does not compile is refused (RILL_ELOAD),
 * and other failures are logged. */
RILL_API int rill_reload(rill_t *r);
/* Stops gracefully: no new connections, requests in flight finish within the
 * grace period, WebSockets are closed with 1001. Safe from any thread.
 *
 * On the host's loop (rill_new_on_loop) rill never calls uv_stop: when the
 * stop has finished it closes every handle of its own, so the host's uv_run
 * returns by itself once the host's handles are gone too; call rill_free
 * after that uv_run has returned. With rill's own loops, rill_run returns,
 * and rill_run_once returns 0 from then on. */
RILL_API int rill_stop(rill_t *r);
/* Before rill_start: cb(r, ud) runs once, on worker 0's thread (the host's
 * loop thread with rill_new_on_loop), when a stop has finished: requests in
 * flight are done or the grace period is over. */
RILL_API int rill_on_stop(rill_t *r, void (*cb)(rill_t *r, void *ud), void *ud);
/* The port a listener got (after rill_start), by the order of the listen
 * calls; 0 for a unix socket. */
RILL_API int rill_port(rill_t *r, int index);
RILL_API void rill_free(rill_t *r);

/* The command line: rill serve|run|test|version. Returns the exit status. */
RILL_API int rill_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif /* RILL_H */
