/* The process around a worker: Lua state set-up, signals, the main task, and
 * rill_main() for the command line. */
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
#include "rill_sched.h"

typedef struct {
  rill_obj_t obj;
  uv_signal_t h;
  rill_worker_t *w;
} lsignal_t;

static void signal_closed(uv_handle_t *h) {
  free(h->data);
}

static void signal_destroy(rill_obj_t *o) {
  lsignal_t *s = rill__container_of(o, lsignal_t, obj);
  uv_close((uv_handle_t *)&s->h, signal_closed);
}

static void signal_cb(uv_signal_t *h, int signum) {
  lsignal_t *s = h->data;
  rill__log(s->w, RILL_LOG_INFO, "%s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
  s->w->exit_code = 0;
  uv_stop(s->w->loop);
}

static void watch_signal(rill_worker_t *w, int signum) {
  lsignal_t *s = calloc(1, sizeof(*s));
  if (s == NULL) return;
  s->w = w;
  uv_signal_init(w->loop, &s->h);
  s->h.data = s;
  uv_signal_start(&s->h, signal_cb, signum);
  uv_unref((uv_handle_t *)&s->h);
  rill__obj_link(w, &s->obj, signal_destroy);
}

static int file_exists(const char *path) {
  return access(path, R_OK) == 0;
}

/* Finds lua/rill/init.lua next to the executable (a build tree or an install
 * prefix), else at the configured install directory. */
static void lua_dir(char *out, size_t len) {
  char exe[4096];
  size_t n = sizeof(exe);
  if (uv_exepath(exe, &n) == 0) {
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    const char *cands[] = {"%s/../lua", "%s/../share/rill/lua", "%s/lua"};
    for (size_t i = 0; i < sizeof(cands) / sizeof(*cands); i++) {
      char probe[4200];
      snprintf(out, len, cands[i], exe);
      snprintf(probe, sizeof(probe), "%s/rill/init.lua", out);
      if (file_exists(probe)) return;
    }
  }
  snprintf(out, len, "%s", RILL_LUA_INSTALL_DIR);
}

/* Sets up a worker's Lua state: standard libraries, rill.core preloaded, the
 * module path, and `arg`. */
int rill__lua_setup(rill_worker_t *w, const char *luadir) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return UV_ENOMEM;
  w->L = L;
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushlightuserdata(L, w);
  lua_pushcclosure(L, rill__open_core, 1);
  lua_setfield(L, -2, "rill.core");
  lua_pop(L, 1);
  const char *extra = getenv("RILL_LUA_PATH");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s%s%s/?.lua;%s/?/init.lua;%s", extra ? extra : "",
                  extra ? ";" : "", luadir, luadir, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  return 0;
}

static void main_done(rill_task_t *t, int status) {
  rill_worker_t *w = t->w;
  if (status != 0) {
    w->exit_code = 1;
    uv_stop(w->loop);
  } else if (lua_type(t->co, 1) == LUA_TNUMBER) {
    w->exit_code = (int)lua_tointeger(t->co, 1);
    if (w->exit_code != 0) uv_stop(w->loop);
  }
}

int rill_main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  rill_worker_t *w = rill__worker_new(NULL);
  if (w == NULL) {
    fprintf(stderr, "rill: out of memory\n");
    return 1;
  }
  const char *lvl = getenv("RILL_LOG");
  if (lvl) {
    const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
      if (strcmp(lvl, names[i]) == 0) w->log_level = i;
  }
  char dir[4096];
  lua_dir(dir, sizeof(dir));
  if (rill__lua_setup(w, dir) != 0) {
    fprintf(stderr, "rill: cannot create a Lua state\n");
    rill__worker_free(w);
    return 1;
  }
  lua_State *L = w->L;
  lua_createtable(L, argc, 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_setglobal(L, "arg");

  watch_signal(w, SIGINT);
  watch_signal(w, SIGTERM);

  rill_task_t *t = rill__task_new(w, "main");
  if (luaL_loadstring(t->co, "return require('rill.cli').main(...)") != 0) {
    fprintf(stderr, "rill: %s\n", lua_tostring(t->co, -1));
    rill__worker_free(w);
    return 1;
  }
  for (int i = 1; i < argc; i++)
    lua_pushstring(t->co, argv[i]);
  t->done = main_done;
  rill__task_start(t, argc - 1);
  uv_run(w->loop, UV_RUN_DEFAULT);
  int code = w->exit_code;
  rill__worker_free(w);
  return code;
}
