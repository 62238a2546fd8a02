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
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
} named_fn_t;

typedef struct {
  char *host, *cert, *key;
  int port;
} listen_spec_t;

struct rill_s {
  rill_options_t o;
  char *lua_path, *log_level;
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
  char *app_path, *app_code, *app_name;
  int *slots; /* per listen call of a worker, in order: the port bound */
  void (*on_stop)(rill_t *r, void *ud); /* rill_on_stop */
  void *on_stop_ud;
  int nslots;
  /* the command line: each worker runs rill.cli.main(argv...) */
  int cli, argc;
  char **argv;
  /* on worker 0's loop */
  uv_signal_t sigs[3];
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
    lua_pushcfunction(L, r->fns[i].fn);
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

static void on_command(rill_worker_t *w, int cmds) {
  if (cmds & RILL_CMD_FORCE) {
    rill__worker_stop_now(w);
    return;
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
    if (status == 0 && lua_isstring(t->co, 2))
      rill__log(w, RILL_LOG_ERROR, "%s", lua_tostring(t->co, 2));
    r->boot_error = RILL_ELOAD;
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
    listen_spec_t *ls = &r->listens[i];
    lua_createtable(L, 0, 3);
    lua_pushstring(L, ls->host);
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, ls->port);
    lua_setfield(L, -2, "port");
    if (ls->cert) {
      lua_createtable(L, 0, 2);
      lua_pushstring(L, ls->cert);
      lua_setfield(L, -2, "cert");
      lua_pushstring(L, ls->key);
      lua_setfield(L, -2, "key");
      lua_setfield(L, -2, "tls");
    }
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "listens");
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
static void worker0_stopped(rill_worker_t *w);

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
  w->log_level = level_of(r->log_level ? r->log_level : getenv("RILL_LOG"));
  w->on_command = on_command;
  if (id == 0) w->on_stopped = worker0_stopped;
  /* Signals are watched before the bootstrap logs its ports: whoever reads
   * them may send SIGTERM at once (it is handled when the loop first runs). */
  if (id == 0 && !r->host_loop && !r->cli) control_start(r);
  if (rill__lua_setup(w, r->lua_path) != 0) return UV_ENOMEM;
  rill__host_bind(w->L, w);
  add_host(r, w->L);
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

/* A write to a socket whose peer has gone must not raise SIGPIPE in the
 * host's process (the write fails with EPIPE instead). rill's own threads
 * keep it blocked; the thread in rill_run() blocks it while it runs the
 * loop, and takes any that came before it restores the host's mask. Only
 * these threads' masks change: the process's disposition is the host's. */
static void sigpipe_block(sigset_t *old) {
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, old);
}

static void sigpipe_restore(const sigset_t *old) {
  if (sigismember(old, SIGPIPE)) return; /* it was blocked before: nothing to do */
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  struct timespec zero = {0, 0};
  while (sigtimedwait(&pipe, NULL, &zero) == SIGPIPE) {
  }
  pthread_sigmask(SIG_SETMASK, old, NULL);
}

static void worker_thread(void *arg) {
  thread_arg_t *ta = arg;
  rill_t *r = ta->r;
  int id = ta->id;
  free(ta);
  sigpipe_block(NULL);
  pin(r, id);
  int err = boot(r, id, NULL);
  if (err && r->boot_error == 0) r->boot_error = err;
  uv_sem_post(&r->ready);
  if (err == 0) uv_run(r->workers[id]->loop, UV_RUN_DEFAULT);
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

static void control_start(rill_t *r) {
  uv_loop_t *loop = r->workers[0]->loop;
  static const int signums[] = {SIGTERM, SIGINT, SIGHUP};
  for (int i = 0; i < 3; i++) {
    uv_signal_init(loop, &r->sigs[i]);
    r->sigs[i].data = r;
    uv_signal_start(&r->sigs[i], signal_cb, signums[i]);
    uv_unref((uv_handle_t *)&r->sigs[i]);
  }
  r->nsigs = 3;
}

static void control_stop(rill_t *r) {
  for (int i = 0; i < r->nsigs; i++)
    uv_close((uv_handle_t *)&r->sigs[i], handle_closed);
  r->nsigs = 0;
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
  if (r->workers == NULL || r->threads == NULL || r->metrics == NULL) {
    free(r->workers);
    free(r->threads);
    free(r->metrics);
    free(r);
    return UV_ENOMEM;
  }
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

static int add_fn(named_fn_t **list, int *n, const char *name, lua_CFunction fn) {
  named_fn_t *l = realloc(*list, sizeof(**list) * (size_t)(*n + 1));
  if (l == NULL) return UV_ENOMEM;
  l[*n].name = strdup(name);
  l[*n].fn = fn;
  *list = l;
  (*n)++;
  return 0;
}

int rill_register(rill_t *r, const char *name, lua_CFunction fn) {
  if (r->started) return RILL_ESTATE;
  if (name == NULL || fn == NULL) return UV_EINVAL;
  return add_fn(&r->fns, &r->nfns, name, fn);
}

int rill_preload(rill_t *r, const char *name, lua_CFunction open) {
  if (r->started) return RILL_ESTATE;
  if (name == NULL || open == NULL) return UV_EINVAL;
  return add_fn(&r->pres, &r->npres, name, open);
}

int rill_listen(rill_t *r, const char *host, int port, const rill_listen_options_t *o) {
  if (r->started) return RILL_ESTATE;
  if (port < 0 || port > 65535) return UV_EINVAL;
  if (o && (o->tls_cert == NULL) != (o->tls_key == NULL)) return UV_EINVAL;
  listen_spec_t *l = realloc(r->listens, sizeof(*l) * (size_t)(r->nlistens + 1));
  if (l == NULL) return UV_ENOMEM;
  r->listens = l;
  l[r->nlistens].host = strdup(host ? host : "127.0.0.1");
  l[r->nlistens].port = port;
  l[r->nlistens].cert = o ? strdup_or_null(o->tls_cert) : NULL;
  l[r->nlistens].key = o ? strdup_or_null(o->tls_key) : NULL;
  r->nlistens++;
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
  if (!r->cli && r->app_path == NULL && r->app_code == NULL) return RILL_ELOAD;
  r->started = 1;
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
  sigset_t old;
  sigpipe_block(&old);
  int more = uv_run(r->workers[0]->loop, UV_RUN_NOWAIT) != 0;
  sigpipe_restore(&old);
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
      rill__log(r->workers[0], RILL_LOG_ERROR, "rill: %s", rill_strerror(err));
      return 1;
    }
  }
  if (r->host_loop) return RILL_ESTATE; /* the host runs its loop */
  sigset_t old;
  sigpipe_block(&old);
  uv_run(r->workers[0]->loop, UV_RUN_DEFAULT);
  sigpipe_restore(&old);
  /* Worker 0 is done: so are the others. */
  for (int i = 1; i < r->nworkers; i++)
    if (r->workers[i]) rill__worker_command(r->workers[i], RILL_CMD_STOP);
  join_threads(r);
  return r->exit_code;
}

int rill_reload(rill_t *r) {
  if (!r->started) return RILL_ESTATE;
  /* A file that does not compile is refused here, so the host hears of it;
   * the workers keep the code they run. (An error the app raises while it
   * loads is found by each worker, which logs it and keeps its old code.) */
  if (r->app_path) {
    lua_State *L = luaL_newstate();
    if (L == NULL) return UV_ENOMEM;
    int bad = luaL_loadfile(L, r->app_path) != 0;
    if (bad)
      rill__log(r->workers[0], RILL_LOG_ERROR, "reload refused: %s", lua_tostring(L, -1));
    lua_close(L);
    if (bad) return RILL_ELOAD;
  }
  reload_ticket_keys(r->workers[0]);
  for (int i = 0; i < r->nworkers; i++)
    if (r->workers[i]) rill__worker_command(r->workers[i], RILL_CMD_RELOAD);
  return 0;
}

/* Worker 0's stop has finished: the host hears it. */
static void worker0_stopped(rill_worker_t *w) {
  rill_t *r = w->rt;
  if (r && r->on_stop) r->on_stop(r, r->on_stop_ud);
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
  control_stop(r);
  for (int i = 0; i < r->nworkers; i++)
    if (r->workers[i]) rill__worker_free(r->workers[i]);
  for (int i = 0; i < r->nfns; i++)
    free(r->fns[i].name);
  for (int i = 0; i < r->npres; i++)
    free(r->pres[i].name);
  for (int i = 0; i < r->nlistens; i++) {
    free(r->listens[i].host);
    free(r->listens[i].cert);
    free(r->listens[i].key);
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
    if (sig == SIGHUP) {
      rill__log(w0, RILL_LOG_INFO, "SIGHUP: reloading");
      rill_reload(r);
      continue;
    }
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
  rill_t *r;
  if (rill_new(&r, &o) != 0) {
    fprintf(stderr, "rill: out of memory\n");
    return 1;
  }
  r->cli = 1;
  r->argc = argc;
  r->argv = argv;
  pthread_t sigs;
  if (pthread_create(&sigs, NULL, signal_thread, r) == 0) pthread_detach(sigs);
  int code = rill_run(r);
  rill_free(r);
  return code;
}
