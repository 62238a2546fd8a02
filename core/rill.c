/* The runtime (rill.h): workers on threads, each with a loop and a Lua state
 * of its own; the app they load; signals, reloads and graceful stops; and the
 * command line.
 *
 * Worker 0 runs on the thread that calls rill_run() (or on the host's loop);
 * the others on threads of their own. Each worker runs the same bootstrap:
 * the command line's Lua (rill.cli) or rill.app.start with the embedder's
 * configuration. Listeners on the same port share it with SO_REUSEPORT, and a
 * port 0 is the port the first worker got. Nothing is shared between Lua
 * states; other threads reach a worker only through its command async. */

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lua_core.h"
#include "lua_sched.h"
#include "tcp.h"
#include "tls_ticket.h"

typedef struct {
  char *name;
  lua_CFunction fn;
  void *ctx; /* rill_register_ctx: its first upvalue */
} named_fn_t;

/* The HTTP limits (RILL_OPT_MAX_CONNECTIONS ..): cfg.limits's keys, the
 * values a setter takes, and whether -1 and 0 mean "no limit" (which Lua
 * hears as 0). */
typedef struct {
  int opt;
  const char *key;
  long long min, max;
  int unlimited;
} limit_t;

#define MAX_INT 2147483647LL
static const limit_t limits[] = {
    {RILL_OPT_MAX_CONNECTIONS, "max_connections", 1, MAX_INT, 0},
    {RILL_OPT_MAX_CONNECTIONS_PER_ADDRESS, "max_connections_per_address", 1, MAX_INT, 1},
    {RILL_OPT_MAX_HEADER_BYTES, "max_header_bytes", 64, MAX_INT, 0},
    {RILL_OPT_MAX_HEADERS, "max_headers", 1, 65535, 0},
    {RILL_OPT_MAX_BODY_BYTES, "max_body_bytes", 1, 1LL << 53, 1},
    {RILL_OPT_MIN_BODY_RATE, "min_body_rate", 1, MAX_INT, 1},
    {RILL_OPT_BODY_RATE_GRACE, "body_rate_grace", 1, MAX_INT, 0},
    {RILL_OPT_HEADER_TIMEOUT, "header_timeout", 1, MAX_INT, 0},
    {RILL_OPT_BODY_TIMEOUT, "body_timeout", 1, MAX_INT, 0},
    {RILL_OPT_KEEPALIVE_TIMEOUT, "keepalive_timeout", 1, MAX_INT, 0},
    {RILL_OPT_SEND_TIMEOUT, "send_timeout", 1, MAX_INT, 0},
};
#define NLIMITS (sizeof(limits) / sizeof(*limits))
#define NSIGS 3
static const int signums[NSIGS] = {SIGTERM, SIGINT, SIGHUP};

/* A listen call: where (host:port, a unix path, or the host's fd) and the
 * listener's options, for rill.app.start (push_config). */
typedef struct {
  char *host, *unix_path;
  int port, fd;         /* fd -1: none */
  char **certs, **keys; /* ncerts pairs; the first is the default */
  int ncerts;
  char *client_ca, *ticket_keys;
  int verify_client;           /* RILL_VERIFY_* */
  long long handshake_timeout; /* ms; 0: the default */
  int proxy_protocol, backlog, unix_mode, http2;
  char **proxy_from;
  int nproxy_from;
} listen_spec_t;

/* A connection handed over by rill_serve_fd, waiting for its worker. */
typedef struct adopt_s {
  struct adopt_s *next;
  int worker, listener, fd;
} adopt_t;

struct rill_s {
  rill_options_t o;
  char *lua_path, *log_level;
  /* options set with rill_set_int / rill_set_str */
  long long limit[NLIMITS];
  unsigned char limit_set[NLIMITS];
  int signals;        /* RILL_OPT_SIGNALS */
  int level;          /* RILL_OPT_LOG_LEVEL, or -1 */
  long long grace;    /* RILL_OPT_GRACE (ms), or -1 */
  rill_log_cb log_cb; /* rill_on_log */
  void *log_ud;
  char last_error[1024]; /* rill_last_error */
  /* rill_on_worker; per worker, whether start ran (1) and stop ran (2) */
  void (*worker_start)(rill_t *r, int worker, lua_State *L, void *ud);
  void (*worker_stop)(rill_t *r, int worker, void *ud);
  void *worker_ud;
  int *hooked;
  uv_thread_t thread0; /* worker 0's thread: the one that called rill_start */
  /* the signals' dispositions before rill watched them (RILL_OPT_SIGNALS) */
  struct sigaction old_sigs[NSIGS];
  uv_loop_t *host_loop;
  int nworkers;
  rill_worker_t **workers;
  uv_thread_t *threads;
  /* per worker: its counters, here so that they outlive it (worker.h) */
  rill_metrics_t *metrics;
  cpu_set_t cpus; /* the process's CPUs when it started, for pin */
  uv_sem_t ready;
  uv_mutex_t lock;
  int started, stop_requested, exit_code, boot_error, joined;
  named_fn_t *fns, *pres;
  int nfns, npres;
  listen_spec_t *listens;
  int nlistens;
  int *ports; /* per listen spec: the port bound */
  adopt_t *adopts, *adopts_tail; /* rill_serve_fd's, under lock */
  unsigned adopt_next;           /* the worker the next one goes to */
  char *app_path, *app_code, *app_name;
  int *slots; /* per listen call of a worker, in order: the port bound */
  void (*on_stop)(rill_t *r, void *ud); /* rill_on_stop */
  void *on_stop_ud;
  int nslots;
  /* the command line: each worker runs rill.cli.main(argv...) */
  int cli, argc;
  /* `rill run`: the signals a script takes itself (rill.on_signal), as bits
   * by number, and those arrived for worker 0 to run its handlers for */
  int run_mode;
  unsigned sig_wanted, sig_pending;
  char **argv;
  /* on worker 0's loop */
  uv_signal_t sigs[NSIGS];
  int nsigs;
  uv_fs_event_t watch;
  uv_timer_t debounce;
  int watching;
};

/* ---- Lua states ---- */

/* What the embedder registered: require("rill.host") and preloads. */
static void add_host(rill_t *r, lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  for (int i = 0; i < r->npres; i++) {
    lua_pushcfunction(L, r->pres[i].fn);
    lua_setfield(L, -2, r->pres[i].name);
  }
  lua_pop(L, 1);
  lua_getfield(L, -1, "loaded");
  lua_createtable(L, 0, r->nfns);
  for (int i = 0; i < r->nfns; i++) {
    /* Each with its ctx (NULL for rill_register) as its first upvalue,
     * which rill_context reads. */
    lua_pushlightuserdata(L, r->fns[i].ctx);
    lua_pushcclosure(L, r->fns[i].fn, 1);
    lua_setfield(L, -2, r->fns[i].name);
  }
  lua_setfield(L, -2, "rill.host");
  lua_pop(L, 2);
}

/* ---- ports shared by workers ---- */

static int port_for(rill_worker_t *w, const char *host, int port, int *reuse, int *slot) {
  rill_t *r = w->rt;
  *reuse = 0;
  *slot = -1;
  if (r == NULL || r->nworkers < 2) return port;
  *reuse = 1;
  uv_mutex_lock(&r->lock);
  int k = w->listen_seq++;
  *slot = k;
  if (k < r->nslots && r->slots[k] > 0) port = r->slots[k];
  uv_mutex_unlock(&r->lock);
  return port;
}

static void port_bound(rill_worker_t *w, int slot, int port) {
  rill_t *r = w->rt;
  if (r == NULL || slot < 0 || port <= 0) return;
  uv_mutex_lock(&r->lock);
  if (slot >= r->nslots) {
    int *s = realloc(r->slots, sizeof(int) * (size_t)(slot + 1));
    if (s) {
      for (int i = r->nslots; i <= slot; i++)
        s[i] = 0;
      r->slots = s;
      r->nslots = slot + 1;
    }
  }
  if (slot < r->nslots && r->slots[slot] == 0) r->slots[slot] = port;
  uv_mutex_unlock(&r->lock);
}

/* ---- workers ---- */

static unsigned grace_ms(rill_t *r) {
  if (r->grace >= 0) return (unsigned)r->grace;
  double g = r->o.grace > 0 ? r->o.grace : 30;
  return (unsigned)(g * 1000);
}

static void run_lua(rill_worker_t *w, const char *code) {
  rill_task_t *t = rill__task_new(w, "command");
  if (t == NULL) return;
  if (luaL_loadstring(t->co, code) != 0) {
    rill__log(w, RILL_LOG_ERROR, "%s", lua_tostring(t->co, -1));
    lua_settop(t->co, 0);
    return;
  }
  rill__task_start(t, 0);
}

/* Takes the connections rill_serve_fd queued for worker id (-1: for any)
 * off the queue; returns them in order. */
static adopt_t *adopts_take(rill_t *r, int id) {
  adopt_t *out = NULL, **tail = &out, *prev = NULL;
  uv_mutex_lock(&r->lock);
  for (adopt_t *a = r->adopts, *next; a; a = next) {
    next = a->next;
    if (id >= 0 && a->worker != id) {
      prev = a;
      continue;
    }
    if (prev)
      prev->next = next;
    else
      r->adopts = next;
    if (r->adopts_tail == a) r->adopts_tail = prev;
    a->next = NULL;
    *tail = a;
    tail = &a->next;
  }
  uv_mutex_unlock(&r->lock);
  return out;
}

/* On a worker: each connection queued for it goes to its listener in this
 * worker's Lua state (rill.app._adopt), which owns the fd from then on. */
static void adopt_all(rill_worker_t *w) {
  /* One chunk for up to 64 of them: a busy host hands over many per wake. */
  char code[64 * 32 + 64];
  adopt_t *a = adopts_take(w->rt, w->id);
  while (a) {
    size_t n = (size_t)snprintf(code, sizeof(code), "local a = require('rill.app')._adopt\n");
    for (int k = 0; a && k < 64; k++) {
      adopt_t *next = a->next;
      n += (size_t)snprintf(code + n, sizeof(code) - n, "a(%d, %d)\n", a->listener + 1, a->fd);
      free(a);
      a = next;
    }
    run_lua(w, code);
  }
}

static void on_command(rill_worker_t *w, int cmds) {
  if (cmds & RILL_CMD_FORCE) {
    rill__worker_stop_now(w);
    return;
  }
  if (cmds & RILL_CMD_ADOPT) adopt_all(w);
  if ((cmds & RILL_CMD_SIGNAL) && w->rt) {
    rill_t *r = w->rt;
    unsigned bits = __atomic_exchange_n(&r->sig_pending, 0, __ATOMIC_SEQ_CST);
    for (int sig = 1; sig < 32; sig++) {
      if (!(bits & (1u << sig))) continue;
      char code[64];
      snprintf(code, sizeof(code), "require('rill')._signal(%d)", sig);
      run_lua(w, code);
    }
  }
  if (cmds & RILL_CMD_STOP) rill__worker_stop(w, w->rt ? grace_ms(w->rt) : 30000);
  if ((cmds & RILL_CMD_RELOAD) && !w->graceful) {
    RILL_COUNT(w->m->reloads, 1);
    run_lua(w, "require('rill.app').reload()");
  }
}

/* The bootstrap task ended. */
static void boot_done(rill_task_t *t, int status) {
  rill_worker_t *w = t->w;
  rill_t *r = w->rt;
  if (r->cli) {
    /* A script's error or exit status ends the run. */
    if (status != 0) {
      r->exit_code = 1;
      rill_stop(r);
    } else if (lua_type(t->co, 1) == LUA_TNUMBER) {
      r->exit_code = (int)lua_tointeger(t->co, 1);
      if (r->exit_code != 0) rill_stop(r);
    }
    return;
  }
  if (status != 0 || !lua_toboolean(t->co, 1)) {
    const char *msg = lua_tostring(t->co, status != 0 ? -1 : 2);
    if (status == 0 && msg) rill__log(w, RILL_LOG_ERROR, "%s", msg);
    /* The first worker to fail says why (they all load the same app). */
    uv_mutex_lock(&r->lock);
    if (r->boot_error == 0) rill__set_error(r, "%s", msg ? msg : "the app did not load");
    r->boot_error = RILL_ELOAD;
    uv_mutex_unlock(&r->lock);
    return;
  }
  if (w->id == 0 && lua_istable(t->co, 2)) {
    for (int i = 0; i < r->nlistens; i++) {
      lua_rawgeti(t->co, 2, i + 1);
      r->ports[i] = (int)lua_tointeger(t->co, -1);
      lua_pop(t->co, 1);
    }
  }
}

/* Pushes one listen's entry of cfg.listens: {host =, port =} | {unix =} |
 * {fd =}, tls = {{cert =, key =}..., client_ca =, verify_client =,
 * handshake_timeout =, ticket_keys =}, proxy_protocol =, proxy_from =,
 * backlog = (rill.app.start). */
static void push_listen(lua_State *L, const listen_spec_t *ls) {
  lua_createtable(L, 0, 6);
  if (ls->unix_path) {
    lua_pushstring(L, ls->unix_path);
    lua_setfield(L, -2, "unix");
    if (ls->unix_mode) {
      lua_pushinteger(L, ls->unix_mode);
      lua_setfield(L, -2, "unix_mode");
    }
  } else if (ls->fd >= 0) {
    lua_pushinteger(L, ls->fd);
    lua_setfield(L, -2, "fd");
  } else {
    lua_pushstring(L, ls->host);
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, ls->port);
    lua_setfield(L, -2, "port");
  }
  if (ls->ncerts > 0 || ls->client_ca || ls->verify_client || ls->ticket_keys) {
    lua_createtable(L, ls->ncerts, 4);
    for (int i = 0; i < ls->ncerts; i++) {
      lua_createtable(L, 0, 2);
      lua_pushstring(L, ls->certs[i]);
      lua_setfield(L, -2, "cert");
      lua_pushstring(L, ls->keys[i]);
      lua_setfield(L, -2, "key");
      lua_rawseti(L, -2, i + 1);
    }
    if (ls->client_ca) {
      lua_pushstring(L, ls->client_ca);
      lua_setfield(L, -2, "client_ca");
    }
    if (ls->verify_client) {
      lua_pushstring(L,
                     ls->verify_client == RILL_VERIFY_OPTIONAL ? "optional" : "required");
      lua_setfield(L, -2, "verify_client");
    }
    if (ls->handshake_timeout > 0) {
      lua_pushnumber(L, (lua_Number)ls->handshake_timeout);
      lua_setfield(L, -2, "handshake_timeout");
    }
    if (ls->ticket_keys) {
      lua_pushstring(L, ls->ticket_keys);
      lua_setfield(L, -2, "ticket_keys");
    }
    lua_setfield(L, -2, "tls");
  }
  if (ls->proxy_protocol) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "proxy_protocol");
    lua_createtable(L, ls->nproxy_from, 0);
    for (int i = 0; i < ls->nproxy_from; i++) {
      lua_pushstring(L, ls->proxy_from[i]);
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "proxy_from");
  }
  if (ls->backlog > 0) {
    lua_pushinteger(L, ls->backlog);
    lua_setfield(L, -2, "backlog");
  }
  if (ls->http2) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "http2");
  }
}

/* Pushes rill.app.start's configuration. */
static void push_config(rill_t *r, lua_State *L) {
  lua_createtable(L, 0, 6);
  if (r->app_path) {
    lua_pushstring(L, r->app_path);
    lua_setfield(L, -2, "path");
  }
  if (r->app_code) {
    lua_pushstring(L, r->app_code);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, r->app_name ? r->app_name : "app");
    lua_setfield(L, -2, "name");
  }
  lua_pushboolean(L, r->o.watch);
  lua_setfield(L, -2, "watch");
  lua_createtable(L, r->nlistens, 0);
  for (int i = 0; i < r->nlistens; i++) {
    push_listen(L, &r->listens[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "listens");
  /* The HTTP limits set with rill_set_int, under rill serve's keys and
   * units (ms, bytes; 0: no limit); those not set keep http.listen's
   * defaults. */
  lua_createtable(L, 0, NLIMITS);
  for (size_t i = 0; i < NLIMITS; i++) {
    if (!r->limit_set[i]) continue;
    lua_pushnumber(L, (lua_Number)r->limit[i]);
    lua_setfield(L, -2, limits[i].key);
  }
  lua_setfield(L, -2, "limits");
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static int level_known(const char *name) {
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0) return 1;
  return 0;
}

static int level_of(const char *name) {
  for (int i = 0; name && i < 4; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return RILL_LOG_INFO;
}

static void control_start(rill_t *r);
static void control_stop(rill_t *r);
static void worker_stopped(rill_worker_t *w);

/* Runs worker id's stop hook, on its thread, once, if its start hook ran
 * (rill_on_worker). */
static void worker_stop_hook(rill_t *r, int id) {
  if (r->hooked == NULL || r->hooked[id] != 1) return;
  r->hooked[id] = 2;
  if (r->worker_stop) r->worker_stop(r, id, r->worker_ud);
}

/* Creates worker id and runs its bootstrap; 0 or an error. */
static int boot(rill_t *r, int id, uv_loop_t *loop) {
  rill_worker_t *w = rill__worker_new(loop);
  if (w == NULL) return UV_ENOMEM;
  r->workers[id] = w;
  w->id = id;
  w->rt = r;
  w->m = &r->metrics[id];
  w->port_for = port_for;
  w->port_bound = port_bound;
  w->log_level = r->level >= 0
                     ? r->level
                     : level_of(r->log_level ? r->log_level : getenv("RILL_LOG"));
  w->log_cb = r->log_cb;
  w->log_ud = r->log_ud;
  /* A script's log lines on a terminal: for people, without time or worker. */
  w->log_plain = r->run_mode && isatty(STDERR_FILENO);
  w->on_command = on_command;
  w->on_stopped = worker_stopped;
  /* Signals are watched before the bootstrap logs its ports: whoever reads
   * them may send SIGTERM at once (it is handled when the loop first runs). */
  if (id == 0 && r->signals && !r->cli) control_start(r);
  if (rill__lua_setup(w, r->lua_path) != 0) return UV_ENOMEM;
  rill__host_bind(w->L, w);
  add_host(r, w->L);
  if (r->worker_start || r->worker_stop) {
    r->hooked[id] = 1;
    if (r->worker_start) r->worker_start(r, id, w->L, r->worker_ud);
  }
  rill_task_t *t = rill__task_new(w, "main");
  if (t == NULL) return UV_ENOMEM;
  int nargs;
  if (r->cli) {
    lua_State *L = w->L;
    lua_createtable(L, r->argc, 1);
    for (int i = 0; i < r->argc; i++) {
      lua_pushstring(L, r->argv[i]);
      lua_rawseti(L, -2, i);
    }
    lua_setglobal(L, "arg");
    luaL_loadstring(t->co, "return require('rill.cli').main(...)");
    for (int i = 1; i < r->argc; i++)
      lua_pushstring(t->co, r->argv[i]);
    nargs = r->argc - 1;
  } else {
    luaL_loadstring(t->co, "return require('rill.app').start(...)");
    push_config(r, t->co);
    nargs = 1;
  }
  t->done = boot_done;
  rill__task_start(t, nargs);
  return 0;
}

typedef struct {
  rill_t *r;
  int id;
} thread_arg_t;

/* With the pin option: the calling thread, worker id's, goes to the id-th
 * CPU of the process's mask (round robin past the last). */
static void pin(rill_t *r, int id) {
  int n = CPU_COUNT(&r->cpus);
  if (!r->o.pin || n == 0) return;
  int k = id % n;
  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
    if (!CPU_ISSET(cpu, &r->cpus) || k-- > 0) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    int err = pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
    if (r->workers[id])
      rill__log(r->workers[id], err ? RILL_LOG_WARN : RILL_LOG_DEBUG,
                err ? "worker %d: pinning to CPU %d failed" : "worker %d on CPU %d", id, cpu);
    return;
  }
}

/* No write of rill's raises SIGPIPE (core/nosigpipe.c: MSG_NOSIGNAL on
 * sockets, the signal blocked for that one call otherwise). rill's own
 * threads keep it blocked besides, so that Lua code writing to a pipe
 * (io.write to a closed stdout) cannot kill the host from them; the host's
 * threads and the process's disposition are never touched. */
static void sigpipe_block(void) {
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, NULL);
}

static void worker_thread(void *arg) {
  thread_arg_t *ta = arg;
  rill_t *r = ta->r;
  int id = ta->id;
  free(ta);
  sigpipe_block();
  pin(r, id);
  int err = boot(r, id, NULL);
  if (err && r->boot_error == 0) r->boot_error = err;
  uv_sem_post(&r->ready);
  if (err == 0) uv_run(r->workers[id]->loop, UV_RUN_DEFAULT);
  /* The loop ended without a stop (rill.exit on another worker): the
   * worker's stop hook still runs on its thread. */
  if (r->workers[id]) worker_stop_hook(r, id);
}

/* ---- signals and watching, on worker 0's loop ---- */

static void signal_cb(uv_signal_t *h, int signum) {
  rill_t *r = h->data;
  if (signum == SIGHUP) {
    rill__log(r->workers[0], RILL_LOG_INFO, "SIGHUP: reloading");
    rill_reload(r);
    return;
  }
  const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
  if (r->stop_requested) {
    rill__log(r->workers[0], RILL_LOG_WARN, "%s again: stopping now", name);
    for (int i = 0; i < r->nworkers; i++)
      if (r->workers[i]) rill__worker_command(r->workers[i], RILL_CMD_FORCE);
    return;
  }
  rill__log(r->workers[0], RILL_LOG_INFO, "%s: stopping", name);
  rill_stop(r);
}

static void handle_closed(uv_handle_t *h) {}

/* RILL_OPT_SIGNALS: watches SIGTERM, SIGINT and SIGHUP on worker 0's loop,
 * keeping the dispositions they had, for restore_signals. */
static void control_start(rill_t *r) {
  uv_loop_t *loop = r->workers[0]->loop;
  for (int i = 0; i < NSIGS; i++) {
    sigaction(signums[i], NULL, &r->old_sigs[i]);
    uv_signal_init(loop, &r->sigs[i]);
    r->sigs[i].data = r;
    uv_signal_start(&r->sigs[i], signal_cb, signums[i]);
    uv_unref((uv_handle_t *)&r->sigs[i]);
  }
  r->nsigs = NSIGS;
}

/* After rill's signal handles are closed: libuv set a signal nobody else
 * watches to SIG_DFL; it gets back the disposition it had before
 * rill_start. A signal the host watches through libuv too is left to it. */
static void restore_signals(rill_t *r) {
  for (int i = 0; i < NSIGS; i++) {
    struct sigaction now;
    if (sigaction(signums[i], NULL, &now) == 0 && !(now.sa_flags & SA_SIGINFO) &&
        now.sa_handler == SIG_DFL)
      sigaction(signums[i], &r->old_sigs[i], NULL);
  }
}

static void control_stop(rill_t *r) {
  int had = r->nsigs;
  for (int i = 0; i < r->nsigs; i++)
    uv_close((uv_handle_t *)&r->sigs[i], handle_closed);
  r->nsigs = 0;
  /* uv_close stops a signal handle at once (it need not wait for the loop). */
  if (had) restore_signals(r);
  if (r->watching) {
    uv_close((uv_handle_t *)&r->watch, handle_closed);
    uv_close((uv_handle_t *)&r->debounce, handle_closed);
    r->watching = 0;
  }
}

static void debounce_cb(uv_timer_t *t) {
  rill_t *r = t->data;
  rill__log(r->workers[0], RILL_LOG_INFO, "a file changed: reloading");
  rill_reload(r);
}

static void watch_cb(uv_fs_event_t *h, const char *file, int events, int status) {
  rill_t *r = h->data;
  size_t n = file ? strlen(file) : 0;
  if (status < 0 || n < 4 || strcmp(file + n - 4, ".lua") != 0) return;
  /* Editors write a file in several steps: reload once they are done. */
  uv_timer_start(&r->debounce, debounce_cb, 100, 0);
}

int rill__runtime_watch(rill_worker_t *w, const char *dir) {
  rill_t *r = w->rt;
  if (r == NULL || w->id != 0 || r->watching) return 0;
  uv_loop_t *loop = w->loop;
  uv_fs_event_init(loop, &r->watch);
  uv_timer_init(loop, &r->debounce);
  r->watch.data = r->debounce.data = r;
  int e = uv_fs_event_start(&r->watch, watch_cb, dir, 0);
  if (e) {
    uv_close((uv_handle_t *)&r->watch, handle_closed);
    uv_close((uv_handle_t *)&r->debounce, handle_closed);
    return e;
  }
  uv_unref((uv_handle_t *)&r->watch);
  uv_unref((uv_handle_t *)&r->debounce);
  r->watching = 1;
  return 0;
}

int rill__runtime_on_signal(rill_worker_t *w, int sig, int on) {
  rill_t *r = w->rt;
  if (r == NULL || !r->run_mode || w->id != 0) return UV_ENOTSUP;
  if (sig != SIGINT && sig != SIGTERM && sig != SIGHUP && sig != SIGUSR1 && sig != SIGUSR2)
    return UV_EINVAL;
  if (on)
    __atomic_fetch_or(&r->sig_wanted, 1u << sig, __ATOMIC_SEQ_CST);
  else
    __atomic_fetch_and(&r->sig_wanted, ~(1u << sig), __ATOMIC_SEQ_CST);
  return 0;
}

void rill__runtime_exit(rill_worker_t *w, int code) {
  rill_t *r = w->rt;
  if (r == NULL) return;
  r->exit_code = code;
  r->stop_requested = 1;
  for (int i = 0; i < r->nworkers; i++)
    if (r->workers[i] && r->workers[i] != w)
      rill__worker_command(r->workers[i], RILL_CMD_FORCE);
}

/* TLS ticket key files are read again at each reload: the new first key
 * seals, the old ones listed after it still open. */
static void reload_ticket_keys(rill_worker_t *w) {
  char err[256];
  if (rill__ticket_keys_reload(err, sizeof(err)) != 0)
    rill__log(w, RILL_LOG_ERROR, "reload: %s (the old keys stay)", err);
}

int rill__runtime_metrics(rill_worker_t *w, rill_metrics_t *out, int max) {
  rill_t *r = w->rt;
  if (r == NULL || max < 1) {
    if (max < 1) return 0;
    rill__metrics_read(w->m, &out[0]);
    return 1;
  }
  int n = r->nworkers < max ? r->nworkers : max;
  for (int i = 0; i < n; i++)
    rill__metrics_read(&r->metrics[i], &out[i]);
  return n;
}

int rill__runtime_reload(rill_worker_t *w) {
  if (w->rt) return rill_reload(w->rt);
  reload_ticket_keys(w);
  RILL_COUNT(w->m->reloads, 1);
  run_lua(w, "require('rill.app').reload()");
  return 0;
}

/* ---- the API ---- */

static char *strdup_or_null(const char *s) {
  return s ? strdup(s) : NULL;
}

static int level_known(const char *name);

static int create(rill_t **out, uv_loop_t *loop, const rill_options_t *opts) {
  /* Options that cannot work are refused here, not found out later. */
  if (opts && (opts->workers < 0 || opts->grace < 0 ||
               (opts->log_level && !level_known(opts->log_level))))
    return UV_EINVAL;
  rill_t *r = calloc(1, sizeof(*r));
  if (r == NULL) return UV_ENOMEM;
  if (opts) r->o = *opts;
  r->lua_path = strdup_or_null(r->o.lua_path);
  r->log_level = strdup_or_null(r->o.log_level);
  r->host_loop = loop;
  r->nworkers = loop ? 1 : r->o.workers > 0 ? r->o.workers : 1;
  r->workers = calloc((size_t)r->nworkers, sizeof(*r->workers));
  r->threads = calloc((size_t)r->nworkers, sizeof(*r->threads));
  r->metrics = calloc((size_t)r->nworkers, sizeof(*r->metrics));
  r->hooked = calloc((size_t)r->nworkers, sizeof(*r->hooked));
  if (r->workers == NULL || r->threads == NULL || r->metrics == NULL ||
      r->hooked == NULL) {
    free(r->workers);
    free(r->threads);
    free(r->metrics);
    free(r->hooked);
    free(r->lua_path);
    free(r->log_level);
    free(r);
    return UV_ENOMEM;
  }
  r->level = -1;
  r->grace = -1;
  uv_mutex_init(&r->lock);
  uv_sem_init(&r->ready, 0);
  *out = r;
  return 0;
}

int rill_new(rill_t **out, const rill_options_t *opts) {
  return create(out, NULL, opts);
}

int rill_new_on_loop(rill_t **out, uv_loop_t *loop, const rill_options_t *opts) {
  if (loop == NULL) return UV_EINVAL;
  return create(out, loop, opts);
}

static int add_fn(named_fn_t **list, int *n, const char *name, lua_CFunction fn,
                  void *ctx) {
  named_fn_t *l = realloc(*list, sizeof(**list) * (size_t)(*n + 1));
  if (l == NULL) return UV_ENOMEM;
  *list = l;
  l[*n].name = strdup(name);
  if (l[*n].name == NULL) return UV_ENOMEM;
  l[*n].fn = fn;
  l[*n].ctx = ctx;
  (*n)++;
  return 0;
}

int rill_register_ctx(rill_t *r, const char *name, lua_CFunction fn, void *ctx) {
  if (r->started) return RILL_ESTATE;
  if (name == NULL || fn == NULL) {
    rill__set_error(r, "rill_register: %s is NULL", name ? "fn" : "name");
    return UV_EINVAL;
  }
  return add_fn(&r->fns, &r->nfns, name, fn, ctx);
}

int rill_register(rill_t *r, const char *name, lua_CFunction fn) {
  return rill_register_ctx(r, name, fn, NULL);
}

int rill_preload(rill_t *r, const char *name, lua_CFunction open) {
  if (r->started) return RILL_ESTATE;
  if (name == NULL || open == NULL) return UV_EINVAL;
  return add_fn(&r->pres, &r->npres, name, open, NULL);
}

/* ---- options, errors and the log ---- */

void rill__set_error(rill_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->last_error, sizeof(r->last_error), fmt, ap);
  va_end(ap);
}

const char *rill_last_error(rill_t *r) {
  return r ? r->last_error : "";
}

int rill_set_int(rill_t *r, int opt, long long v) {
  if (r->started) {
    rill__set_error(r, "rill_set_int: option %d: the runtime has started", opt);
    return RILL_ESTATE;
  }
  switch (opt) {
  case RILL_OPT_SIGNALS:
    if (v != 0 && v != 1) break;
    r->signals = (int)v;
    return 0;
  case RILL_OPT_LOG_LEVEL:
    if (v < RILL_LOG_ERROR || v > RILL_LOG_DEBUG) break;
    r->level = (int)v;
    return 0;
  case RILL_OPT_GRACE:
    if (v < 1 || v > MAX_INT) break;
    r->grace = v;
    return 0;
  default:
    for (size_t i = 0; i < NLIMITS; i++) {
      const limit_t *l = &limits[i];
      if (l->opt != opt) continue;
      if (l->unlimited && (v == -1 || v == 0)) {
        r->limit[i] = 0; /* Lua's "no limit" */
      } else if (v < l->min || v > l->max) {
        rill__set_error(r, "rill_set_int: %s must be %s%lld .. %lld, not %lld", l->key,
                        l->unlimited ? "-1 (no limit) or " : "", l->min, l->max, v);
        return UV_EINVAL;
      } else {
        r->limit[i] = v;
      }
      r->limit_set[i] = 1;
      return 0;
    }
    rill__set_error(r, "rill_set_int: unknown option %d", opt);
    return UV_EINVAL;
  }
  rill__set_error(r, "rill_set_int: option %d cannot be %lld", opt, v);
  return UV_EINVAL;
}

int rill_set_str(rill_t *r, int opt, const char *v) {
  if (r->started) {
    rill__set_error(r, "rill_set_str: option %d: the runtime has started", opt);
    return RILL_ESTATE;
  }
  if (opt == RILL_OPT_LOG_LEVEL) {
    if (v == NULL || !level_known(v)) {
      rill__set_error(r,
                      "rill_set_str: the log level must be error, warn, info or debug");
      return UV_EINVAL;
    }
    r->level = level_of(v);
    return 0;
  }
  if (opt == RILL_OPT_SIGNALS || opt == RILL_OPT_GRACE) {
    rill__set_error(r, "rill_set_str: option %d takes a number: rill_set_int", opt);
    return UV_EINVAL;
  }
  for (size_t i = 0; i < NLIMITS; i++) {
    if (limits[i].opt == opt) {
      rill__set_error(r, "rill_set_str: %s takes a number: rill_set_int", limits[i].key);
      return UV_EINVAL;
    }
  }
  rill__set_error(r, "rill_set_str: unknown option %d", opt);
  return UV_EINVAL;
}

int rill_on_log(rill_t *r, rill_log_cb cb, void *ud) {
  if (r->started) return RILL_ESTATE;
  r->log_cb = cb;
  r->log_ud = ud;
  return 0;
}

/* ---- listeners (rill_listen*, rill_listener_*, rill_serve_fd) ---- */

static int add_str(char ***list, int *n, const char *v) {
  char **l = realloc(*list, sizeof(char *) * (size_t)(*n + 1));
  if (l == NULL) return UV_ENOMEM;
  *list = l;
  if ((l[*n] = strdup(v)) == NULL) return UV_ENOMEM;
  (*n)++;
  return 0;
}

static void listen_spec_free(listen_spec_t *ls) {
  free(ls->host);
  free(ls->unix_path);
  for (int i = 0; i < ls->ncerts; i++) {
    free(ls->certs[i]);
    free(ls->keys[i]);
  }
  free(ls->certs);
  free(ls->keys);
  free(ls->client_ca);
  free(ls->ticket_keys);
  for (int i = 0; i < ls->nproxy_from; i++)
    free(ls->proxy_from[i]);
  free(ls->proxy_from);
}

/* Adds a cert/key pair to ls; 0, UV_EINVAL (a file that cannot be read) or
 * UV_ENOMEM. */
static int spec_add_cert(rill_t *r, listen_spec_t *ls, const char *cert,
                         const char *key) {
  if (cert == NULL || key == NULL) {
    rill__set_error(r, "a certificate needs its key, and a key its certificate");
    return UV_EINVAL;
  }
  const char *bad = access(cert, R_OK) != 0 ? cert : access(key, R_OK) != 0 ? key : NULL;
  if (bad) {
    rill__set_error(r, "cannot read %s", bad);
    return UV_EINVAL;
  }
  int nkeys = ls->ncerts, e = add_str(&ls->certs, &ls->ncerts, cert);
  if (e == 0 && (e = add_str(&ls->keys, &nkeys, key)) != 0) free(ls->certs[--ls->ncerts]);
  return e;
}

/* Adds a listen spec (its where set by the caller through *out), with o's
 * certificate. */
static int add_listen(rill_t *r, const rill_listen_options_t *o, listen_spec_t **out) {
  if (r->started) return RILL_ESTATE;
  listen_spec_t *l = realloc(r->listens, sizeof(*l) * (size_t)(r->nlistens + 1));
  if (l == NULL) return UV_ENOMEM;
  r->listens = l;
  listen_spec_t *ls = &l[r->nlistens];
  memset(ls, 0, sizeof(*ls));
  ls->fd = -1;
  if (o && (o->tls_cert || o->tls_key)) {
    int e = spec_add_cert(r, ls, o->tls_cert, o->tls_key);
    if (e) {
      listen_spec_free(ls);
      return e;
    }
  }
  r->nlistens++;
  *out = ls;
  return 0;
}

int rill_listen(rill_t *r, const char *host, int port, const rill_listen_options_t *o) {
  if (r->started) return RILL_ESTATE;
  if (port < 0 || port > 65535) {
    rill__set_error(r, "rill_listen: port %d is not 0-65535", port);
    return UV_EINVAL;
  }
  listen_spec_t *ls;
  int e = add_listen(r, o, &ls);
  if (e) return e;
  ls->port = port;
  if ((ls->host = strdup(host ? host : "127.0.0.1")) == NULL) return UV_ENOMEM;
  return 0;
}

int rill_listen_unix(rill_t *r, const char *path, const rill_listen_options_t *o) {
  if (r->started) return RILL_ESTATE;
  if (path == NULL || path[0] == 0 || strlen(path) >= 108) {
    rill__set_error(r, "rill_listen_unix: a socket path is 1 to 107 bytes");
    return UV_EINVAL;
  }
  listen_spec_t *ls;
  int e = add_listen(r, o, &ls);
  if (e) return e;
  if ((ls->unix_path = strdup(path)) == NULL) return UV_ENOMEM;
  return 0;
}

int rill_listen_fd(rill_t *r, int fd, const rill_listen_options_t *o) {
  if (r->started) return RILL_ESTATE;
  int on = 0;
  socklen_t len = sizeof(on);
  if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0 || !on) {
    rill__set_error(r, "rill_listen_fd: %d is not a listening socket", fd);
    return UV_EINVAL;
  }
  listen_spec_t *ls;
  int e = add_listen(r, o, &ls);
  if (e) return e;
  ls->fd = fd;
  return 0;
}

static listen_spec_t *listener_spec(rill_t *r, int listener, const char *fn) {
  if (listener >= 0 && listener < r->nlistens) return &r->listens[listener];
  rill__set_error(r, "%s: no listener %d (%d made)", fn, listener, r->nlistens);
  return NULL;
}

int rill_listener_add_cert(rill_t *r, int listener, const char *cert_file,
                           const char *key_file) {
  if (r->started) return RILL_ESTATE;
  listen_spec_t *ls = listener_spec(r, listener, "rill_listener_add_cert");
  if (ls == NULL) return UV_EINVAL;
  return spec_add_cert(r, ls, cert_file, key_file);
}

int rill_listener_set_int(rill_t *r, int listener, int opt, long long value) {
  if (r->started) return RILL_ESTATE;
  listen_spec_t *ls = listener_spec(r, listener, "rill_listener_set_int");
  if (ls == NULL) return UV_EINVAL;
  const char *bad = NULL;
  switch (opt) {
  case RILL_LISTEN_VERIFY_CLIENT:
    if (value < RILL_VERIFY_NONE || value > RILL_VERIFY_REQUIRED)
      bad = "RILL_LISTEN_VERIFY_CLIENT is RILL_VERIFY_NONE, _OPTIONAL or _REQUIRED";
    else
      ls->verify_client = (int)value;
    break;
  case RILL_LISTEN_HANDSHAKE_TIMEOUT:
    if (value < 1 || value > 4000000000LL)
      bad = "RILL_LISTEN_HANDSHAKE_TIMEOUT is 1 to 4e9 milliseconds";
    else
      ls->handshake_timeout = value;
    break;
  case RILL_LISTEN_PROXY_PROTOCOL:
    if (value != 0 && value != 1)
      bad = "RILL_LISTEN_PROXY_PROTOCOL is 0 or 1";
    else
      ls->proxy_protocol = (int)value;
    break;
  case RILL_LISTEN_BACKLOG:
    if (value < 1 || value > 65535)
      bad = "RILL_LISTEN_BACKLOG is 1 to 65535";
    else
      ls->backlog = (int)value;
    break;
  case RILL_LISTEN_UNIX_MODE:
    if (value < 1 || value > 07777 || ls->unix_path == NULL)
      bad = "RILL_LISTEN_UNIX_MODE is permission bits (1 to 07777) of a rill_listen_unix "
            "listener";
    else
      ls->unix_mode = (int)value;
    break;
  case RILL_LISTEN_HTTP2:
    if (value != 0 && value != 1)
      bad = "RILL_LISTEN_HTTP2 is 0 or 1";
    else
      ls->http2 = (int)value;
    break;
  default:
    bad = "not a listener option taking a number";
  }
  if (bad) {
    rill__set_error(r, "rill_listener_set_int: %s (option %d)", bad, opt);
    return UV_EINVAL;
  }
  return 0;
}

int rill_listener_set_str(rill_t *r, int listener, int opt, const char *value) {
  if (r->started) return RILL_ESTATE;
  listen_spec_t *ls = listener_spec(r, listener, "rill_listener_set_str");
  if (ls == NULL) return UV_EINVAL;
  if (value == NULL) {
    rill__set_error(r, "rill_listener_set_str: NULL value (option %d)", opt);
    return UV_EINVAL;
  }
  char **field = NULL;
  switch (opt) {
  case RILL_LISTEN_CLIENT_CA:
    field = &ls->client_ca;
    break;
  case RILL_LISTEN_TLS_TICKET_KEYS:
    field = &ls->ticket_keys;
    break;
  case RILL_LISTEN_PROXY_FROM: {
    rill_cidr_t c;
    if (rill__cidr_parse(value, &c) != 0) {
      rill__set_error(r, "RILL_LISTEN_PROXY_FROM: bad address %s (ADDR or ADDR/BITS)",
                      value);
      return UV_EINVAL;
    }
    if (ls->nproxy_from >= RILL_PROXY_FROM_MAX) {
      rill__set_error(r, "RILL_LISTEN_PROXY_FROM: at most %d sources",
                      RILL_PROXY_FROM_MAX);
      return UV_EINVAL;
    }
    return add_str(&ls->proxy_from, &ls->nproxy_from, value);
  }
  default:
    rill__set_error(
        r, "rill_listener_set_str: option %d is not a listener option taking a string",
        opt);
    return UV_EINVAL;
  }
  if (access(value, R_OK) != 0) {
    rill__set_error(r, "cannot read %s", value);
    return UV_EINVAL;
  }
  char *v = strdup(value);
  if (v == NULL) return UV_ENOMEM;
  free(*field);
  *field = v;
  return 0;
}

int rill_serve_fd(rill_t *r, int listener, int fd) {
  if (fd < 0) return UV_EINVAL;
  int err = 0;
  adopt_t *a = NULL;
  if (!r->started || r->stop_requested || r->workers[0] == NULL)
    err = RILL_ESTATE;
  else if (listener < 0 || listener >= r->nlistens)
    err = UV_EINVAL;
  else if ((a = malloc(sizeof(*a))) == NULL)
    err = UV_ENOMEM;
  if (err) {
    close(fd);
    return err;
  }
  a->next = NULL;
  a->listener = listener;
  a->fd = fd;
  uv_mutex_lock(&r->lock);
  /* round robin over the workers that started */
  int id = (int)(r->adopt_next++ % (unsigned)r->nworkers);
  while (r->workers[id] == NULL)
    id = (id + 1) % r->nworkers;
  a->worker = id;
  if (r->adopts_tail)
    r->adopts_tail->next = a;
  else
    r->adopts = a;
  r->adopts_tail = a;
  uv_mutex_unlock(&r->lock);
  rill__worker_command(r->workers[id], RILL_CMD_ADOPT);
  return 0;
}

int rill_load_file(rill_t *r, const char *path) {
  if (r->started) return RILL_ESTATE;
  free(r->app_path);
  r->app_path = strdup(path);
  return 0;
}

int rill_load_string(rill_t *r, const char *code, const char *name) {
  if (r->started) return RILL_ESTATE;
  free(r->app_code);
  free(r->app_name);
  r->app_code = strdup(code);
  r->app_name = strdup_or_null(name);
  return 0;
}

int rill_start(rill_t *r) {
  if (r->started) return 0;
  if (!r->cli && r->app_path == NULL && r->app_code == NULL) {
    rill__set_error(r, "rill_start: no app (rill_load_file or rill_load_string)");
    return RILL_ELOAD;
  }
  r->started = 1;
  r->thread0 = uv_thread_self();
  if (sched_getaffinity(0, sizeof(r->cpus), &r->cpus) != 0) CPU_ZERO(&r->cpus);
  r->ports = calloc((size_t)(r->nlistens + 1), sizeof(int));
  /* Worker 0 first, on this thread: its listeners fix the ports the others
   * then share. */
  int err = boot(r, 0, r->host_loop);
  if (err == 0) err = r->boot_error;
  if (err) return err;
  for (int i = 1; i < r->nworkers && !r->stop_requested; i++) {
    thread_arg_t *ta = malloc(sizeof(*ta));
    ta->r = r;
    ta->id = i;
    if (uv_thread_create(&r->threads[i], worker_thread, ta) != 0) {
      free(ta);
      r->nworkers = i;
      break;
    }
    uv_sem_wait(&r->ready);
  }
  /* Worker 0 last: the threads made before inherited the whole mask. */
  if (!r->host_loop) pin(r, 0);
  /* A stop asked for while workers were starting reaches them all now. */
  if (r->stop_requested) rill_stop(r);
  return r->boot_error;
}

int rill_run_once(rill_t *r) {
  if (!r->started) {
    int err = rill_start(r);
    if (err) return err;
  }
  int more = uv_run(r->workers[0]->loop, UV_RUN_NOWAIT) != 0;
  /* Once the stop has finished there is nothing more to do: rill_free. */
  return more && !r->workers[0]->stop_done;
}

static void join_threads(rill_t *r) {
  if (r->joined) return;
  r->joined = 1;
  for (int i = 1; i < r->nworkers; i++)
    if (r->workers[i]) uv_thread_join(&r->threads[i]);
}

int rill_run(rill_t *r) {
  if (!r->started) {
    int err = rill_start(r);
    if (err) {
      rill__log_host(r->workers[0], RILL_LOG_ERROR, "rill: %s", rill_strerror(err));
      return 1;
    }
  }
  if (r->host_loop) return RILL_ESTATE; /* the host runs its loop */
  uv_run(r->workers[0]->loop, UV_RUN_DEFAULT);
  /* A script whose thread raised, with nobody taking the error, failed. */
  if (r->run_mode && r->exit_code == 0 && r->workers[0]->unhandled > 0) r->exit_code = 1;
  /* Worker 0 is done: so are the others. */
  for (int i = 1; i < r->nworkers; i++)
    if (r->workers[i]) rill__worker_command(r->workers[i], RILL_CMD_STOP);
  join_threads(r);
  return r->exit_code;
}

/* rill_reload on worker 0's thread, outside Lua: worker 0 reloads now. */
typedef struct {
  int done, ok;
  char err[1000];
} reload_t;

static void reload_done(rill_task_t *t, int status) {
  reload_t *rl = t->done_data;
  rl->done = 1;
  rl->ok = status == 0 && lua_toboolean(t->co, 1);
  if (!rl->ok) {
    const char *msg = lua_tostring(t->co, status != 0 ? -1 : 2);
    snprintf(rl->err, sizeof(rl->err), "%s", msg ? msg : "the app did not load");
  }
}

/* Reloads worker 0 at once if the caller is its thread and no Lua runs on
 * it: 1 if that reload ended (rl says how), 0 if it was not possible or is
 * still waiting (the workers then reload on their own). */
static int reload_here(rill_t *r, reload_t *rl) {
  rill_worker_t *w = r->workers[0];
  uv_thread_t self = uv_thread_self();
  if (r->cli || w == NULL || w->graceful || w->stopping ||
      !uv_thread_equal(&self, &r->thread0) || rill__task_current(w) != NULL)
    return 0;
  rill_task_t *t = rill__task_new(w, "reload");
  if (t == NULL) return 0;
  luaL_loadstring(t->co, "return require('rill.app').reload()");
  t->done = reload_done;
  t->done_data = rl;
  RILL_COUNT(w->m->reloads, 1);
  rill__task_start(t, 0);
  if (rl->done) return 1;
  t->done = NULL; /* still running (it waits, or Lua runs already): on its own */
  return 0;
}

int rill_reload(rill_t *r) {
  if (!r->started) {
    rill__set_error(r, "rill_reload: the runtime has not started");
    return RILL_ESTATE;
  }
  /* A file that does not compile is refused here, so the host hears of it;
   * the workers keep the code they run. */
  if (r->app_path) {
    lua_State *L = luaL_newstate();
    if (L == NULL) return UV_ENOMEM;
    int bad = luaL_loadfile(L, r->app_path) != 0;
    if (bad) {
      const char *msg = lua_tostring(L, -1);
      rill__log_host(r->workers[0], RILL_LOG_ERROR, "reload refused: %s", msg);
      rill__set_error(r, "%s", msg ? msg : r->app_path);
    }
    lua_close(L);
    if (bad) return RILL_ELOAD;
  }
  reload_ticket_keys(r->workers[0]);
  /* An app that raises while it loads is found by worker 0 at once when
   * it can (then no worker reloads); else each worker finds it, logs it
   * and keeps its old code. */
  reload_t rl = {0, 0, {0}};
  int here = reload_here(r, &rl);
  if (here && !rl.ok) {
    rill__set_error(r, "%s", rl.err);
    return RILL_ELOAD;
  }
  for (int i = here ? 1 : 0; i < r->nworkers; i++)
    if (r->workers[i]) rill__worker_command(r->workers[i], RILL_CMD_RELOAD);
  return 0;
}

int rill_backend_fd(rill_t *r) {
  if (r->host_loop) return UV_EINVAL;
  if (!r->started || r->workers[0] == NULL) return RILL_ESTATE;
  return uv_backend_fd(r->workers[0]->loop);
}

int rill_backend_timeout(rill_t *r) {
  if (r->host_loop) return UV_EINVAL;
  if (!r->started || r->workers[0] == NULL) return RILL_ESTATE;
  /* Once the stop is done: call rill_run_once now, which says so. */
  if (r->workers[0]->stop_done) return 0;
  return uv_backend_timeout(r->workers[0]->loop);
}

/* A worker's stop has finished (on its thread): its stop hook runs; for
 * worker 0, rill's signal handles go (so that the host's loop is left with
 * nothing of rill's) and the host hears of it. */
static void worker_stopped(rill_worker_t *w) {
  rill_t *r = w->rt;
  if (r == NULL) return;
  worker_stop_hook(r, w->id);
  if (w->id != 0) return;
  control_stop(r);
  if (r->on_stop) r->on_stop(r, r->on_stop_ud);
}

int rill_on_worker(rill_t *r,
                   void (*start)(rill_t *r, int worker, lua_State *L, void *ud),
                   void (*stop)(rill_t *r, int worker, void *ud), void *ud) {
  if (r->started) return RILL_ESTATE;
  r->worker_start = start;
  r->worker_stop = stop;
  r->worker_ud = ud;
  return 0;
}

int rill_on_stop(rill_t *r, void (*cb)(rill_t *r, void *ud), void *ud) {
  if (r->started) return RILL_ESTATE;
  r->on_stop = cb;
  r->on_stop_ud = ud;
  return 0;
}

int rill_stop(rill_t *r) {
  r->stop_requested = 1;
  for (int i = 0; i < r->nworkers; i++)
    if (r->workers[i]) rill__worker_command(r->workers[i], RILL_CMD_STOP);
  return 0;
}

int rill_port(rill_t *r, int index) {
  if (!r->started || index < 0 || index >= r->nlistens) return UV_EINVAL;
  return r->ports[index];
}

void rill_free(rill_t *r) {
  if (r == NULL) return;
  if (r->started && !r->joined) {
    /* Threads still running (rill_run was never called): stop them. */
    for (int i = 1; i < r->nworkers; i++)
      if (r->workers[i]) rill__worker_command(r->workers[i], RILL_CMD_FORCE);
    join_threads(r);
  }
  /* Worker 0 is this thread's: its stop hook runs here if no stop ran it. */
  if (r->started && r->workers[0]) worker_stop_hook(r, 0);
  control_stop(r);
  for (int i = 0; i < r->nworkers; i++)
    if (r->workers[i]) rill__worker_free(r->workers[i]);
  for (int i = 0; i < r->nfns; i++)
    free(r->fns[i].name);
  for (int i = 0; i < r->npres; i++)
    free(r->pres[i].name);
  for (int i = 0; i < r->nlistens; i++)
    listen_spec_free(&r->listens[i]);
  for (adopt_t *a = adopts_take(r, -1), *next; a; a = next) {
    next = a->next;
    close(a->fd); /* never reached worker 0 */
    free(a);
  }
  free(r->fns);
  free(r->pres);
  free(r->listens);
  free(r->ports);
  free(r->slots);
  free(r->app_path);
  free(r->app_code);
  free(r->app_name);
  free(r->lua_path);
  free(r->log_level);
  free(r->metrics);
  free(r->hooked);
  free(r->workers);
  free(r->threads);
  uv_sem_destroy(&r->ready);
  uv_mutex_destroy(&r->lock);
  free(r);
}

/* ---- the command line ---- */

/* The CPUs this process may run on (its affinity mask, as taskset or a
 * container sets it), not the machine's. */
static int cores(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
    return CPU_COUNT(&set);
  uv_cpu_info_t *info;
  int n = 1;
  if (uv_cpu_info(&info, &n) == 0) uv_free_cpu_info(info, n);
  return n > 0 ? n : 1;
}

/* The command line's signals are taken by a thread of their own (every
 * other thread has them blocked), so that a worker that does not yield
 * cannot keep the server from stopping: SIGHUP reloads, the first SIGTERM
 * or SIGINT stops gracefully, a second stops at once. */
static sigset_t cli_signals;

static void *signal_thread(void *arg) {
  rill_t *r = arg;
  int stops = 0;
  for (;;) {
    int sig;
    if (sigwait(&cli_signals, &sig) != 0) continue;
    rill_worker_t *w0 = r->workers[0];
    if (r->run_mode) {
      /* A script's handler (rill.on_signal) runs on worker 0; without one,
       * SIGTERM stops it gracefully (status 0), and the others end it as
       * their default would (130 for Ctrl-C), its threads stopped at once. */
      if (__atomic_load_n(&r->sig_wanted, __ATOMIC_SEQ_CST) & (1u << sig)) {
        __atomic_fetch_or(&r->sig_pending, 1u << sig, __ATOMIC_SEQ_CST);
        rill__worker_command(w0, RILL_CMD_SIGNAL);
        continue;
      }
      /* SIGTERM stops a script that serves gracefully, as `rill serve`. */
      if (sig == SIGTERM) goto stop;
      if (stops++ > 0) _exit(128 + sig);
      r->exit_code = 128 + sig;
      r->stop_requested = 1;
      for (int i = 0; i < r->nworkers; i++)
        if (r->workers[i]) rill__worker_command(r->workers[i], RILL_CMD_FORCE);
      continue;
    }
    if (sig == SIGHUP) {
      rill__log(w0, RILL_LOG_INFO, "SIGHUP: reloading");
      rill_reload(r);
      continue;
    }
  stop:;
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    if (stops++ == 0) {
      rill__log(w0, RILL_LOG_INFO, "%s: stopping", name);
      rill_stop(r);
      continue;
    }
    rill__log(w0, RILL_LOG_WARN, "%s again: stopping now", name);
    for (int i = 0; i < r->nworkers; i++)
      if (r->workers[i]) rill__worker_command(r->workers[i], RILL_CMD_FORCE);
    /* A worker stuck in a handler cannot hear that: give the others a
     * moment to end, then end the process. */
    uv_sleep(2000);
    rill__log(w0, RILL_LOG_ERROR, "a worker does not stop: exiting");
    _exit(1);
  }
  return NULL;
}

/* systemd socket activation (sd_listen_fds(3)): when LISTEN_PID is this
 * process, the LISTEN_FDS descriptors from 3 on are listening sockets to
 * serve. Returns argv with `--listen fd:N` added for each (the default
 * address is then not used), or NULL when not activated. The variables are
 * removed and the descriptors marked close-on-exec, so that the app's
 * children do not take them for their own. */
static char **socket_activation(int argc, char **argv, int *nargc) {
  const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
  if (pid == NULL || fds == NULL) return NULL;
  long n = strtol(fds, NULL, 10);
  int ours = strtol(pid, NULL, 10) == (long)getpid();
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
  if (!ours || n < 1 || n > 1024) return NULL;
  char **a = calloc((size_t)(argc + 2 * n + 1), sizeof(char *));
  if (a == NULL) return NULL;
  memcpy(a, argv, sizeof(char *) * (size_t)argc);
  int k = argc;
  for (int fd = 3; fd < 3 + n; fd++) {
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    char buf[32];
    snprintf(buf, sizeof(buf), "fd:%d", fd);
    a[k++] = "--listen";
    a[k++] = strdup(buf);
  }
  *nargc = k;
  return a;
}

int rill_main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  sigemptyset(&cli_signals);
  sigaddset(&cli_signals, SIGTERM);
  sigaddset(&cli_signals, SIGINT);
  sigaddset(&cli_signals, SIGHUP);
  /* Blocked before any thread starts: every thread inherits it. */
  pthread_sigmask(SIG_BLOCK, &cli_signals, NULL);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  rill_options_t o;
  memset(&o, 0, sizeof(o));
  o.workers = 1;
  /* The options the runtime needs before any Lua runs; rill.cli parses the
   * rest (and checks these too). */
  int serve = argc > 1 && strcmp(argv[1], "serve") == 0;
  int run = argc > 1 && strcmp(argv[1], "run") == 0;
  if (run) {
    /* a script may take these too (rill.on_signal) */
    sigaddset(&cli_signals, SIGUSR1);
    sigaddset(&cli_signals, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &cli_signals, NULL);
  }
  if (serve) o.workers = cores();
  for (int i = 2; serve && i < argc; i++) {
    if (strcmp(argv[i], "--workers") == 0 && i + 1 < argc)
      o.workers = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--grace") == 0 && i + 1 < argc)
      o.grace = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--watch") == 0)
      o.watch = 1;
    else if (strcmp(argv[i], "--pin") == 0)
      o.pin = 1;
  }
  if (o.workers < 1) o.workers = 1;
  char **act = serve ? socket_activation(argc, argv, &argc) : NULL;
  if (act) argv = act;
  rill_t *r;
  if (rill_new(&r, &o) != 0) {
    fprintf(stderr, "rill: out of memory\n");
    return 1;
  }
  r->cli = 1;
  r->run_mode = run;
  r->argc = argc;
  r->argv = argv;
  pthread_t sigs;
  if (pthread_create(&sigs, NULL, signal_thread, r) == 0) pthread_detach(sigs);
  int code = rill_run(r);
  rill_free(r);
  if (act) {
    for (int i = argc - 1; i >= 0 && strncmp(act[i], "fd:", 3) == 0; i -= 2)
      free(act[i]);
    free(act);
  }
  return code;
}
