/* rill.exec: child processes whose stdio pipes are rill streams, so a script
 * (or a spec driving curl) talks to them without blocking the loop.
 *
 *   local p = rill.exec{"curl", "-s", url, stdout = "pipe"}
 *   local out = p.stdout:read_all(1e6); local code, sig = p:wait()
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_core.h"
#include "lua_stream.h"
#include "lua_sched.h"
#include "uvstream.h"

#define PROCESS_MT "rill.process"

typedef struct {
  rill_obj_t obj;
  uv_process_t h;
  rill_worker_t *w;
  rill_waitq_t waits; /* p:wait() */
  int64_t status;
  int signal;
  int exited;
  int refs; /* the handle and the userdata */
} lproc_t;

typedef struct {
  lproc_t *p;
} lproc_ud;

static void proc_unref(lproc_t *p) {
  if (--p->refs == 0) free(p);
}

static void proc_closed(uv_handle_t *h) {
  proc_unref(h->data);
}

static void push_status(lua_State *L, lproc_t *p) {
  if (p->signal) {
    lua_pushnil(L);
    lua_pushinteger(L, p->signal);
  } else {
    lua_pushinteger(L, (lua_Integer)p->status);
    lua_pushnil(L);
  }
}

static void exit_cb(uv_process_t *h, int64_t status, int sig) {
  lproc_t *p = h->data;
  p->exited = 1;
  p->status = status;
  p->signal = sig;
  rill__obj_unlink(&p->obj);
  uv_close((uv_handle_t *)h, proc_closed);
  rill_wait_t *wt = p->waits.head;
  if (wt) {
    push_status(rill__wait_task(wt)->co, p);
    rill__wait_done(wt, 2);
  }
}

static void proc_destroy(rill_obj_t *o) {
  lproc_t *p = rill__container_of(o, lproc_t, obj);
  rill__waitq_cancel_all(&p->waits, RILL_ECLOSED);
  uv_process_kill(&p->h, SIGKILL);
  uv_close((uv_handle_t *)&p->h, proc_closed);
}

static int stdio_mode(lua_State *L, const char *k, const char *def) {
  static const char *const modes[] = {"null", "pipe", "inherit", NULL};
  lua_getfield(L, 1, k);
  int m = luaL_checkoption(L, -1, def, modes);
  lua_pop(L, 1);
  return m;
}

static int l_exec(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  int argc = (int)lua_objlen(L, 1);
  luaL_argcheck(L, argc >= 1, 1, "no command");
  char **args = lua_newuserdata(L, sizeof(char *) * (size_t)(argc + 1));
  for (int i = 0; i < argc; i++) {
    lua_rawgeti(L, 1, i + 1);
    args[i] = (char *)luaL_checkstring(L, -1);
    lua_pop(L, 1); /* still referenced by the table */
  }
  args[argc] = NULL;

  char **env = NULL;
  lua_getfield(L, 1, "env");
  int envt = lua_gettop(L);
  if (lua_istable(L, envt)) {
    int n = 0;
    for (lua_pushnil(L); lua_next(L, envt); lua_pop(L, 1))
      n++;
    lua_newtable(L); /* anchors the "K=V" strings */
    int anchor = lua_gettop(L);
    env = lua_newuserdata(L, sizeof(char *) * (size_t)(n + 1));
    int i = 0;
    for (lua_pushnil(L); lua_next(L, envt); lua_pop(L, 1)) {
      luaL_argcheck(L, lua_type(L, -2) == LUA_TSTRING, 1, "env keys must be strings");
      lua_pushvalue(L, -2);
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -1), luaL_checkstring(L, -2));
      env[i++] = (char *)lua_tostring(L, -1);
      lua_rawseti(L, anchor, i);
      lua_pop(L, 1);
    }
    env[i] = NULL;
  }
  const char *cwd = NULL;
  lua_getfield(L, 1, "cwd");
  if (!lua_isnil(L, -1)) cwd = luaL_checkstring(L, -1);

  static const char *names[3] = {"stdin", "stdout", "stderr"};
  int modes[3];
  modes[0] = stdio_mode(L, "stdin", "null");
  modes[1] = stdio_mode(L, "stdout", "inherit");
  modes[2] = stdio_mode(L, "stderr", "inherit");

  uv_stdio_container_t stdio[3];
  rill_uvstream_t *pipes[3] = {NULL, NULL, NULL};
  for (int i = 0; i < 3; i++) {
    if (modes[i] == 1) {
      pipes[i] = rill__uvstream_new(w, UV_NAMED_PIPE);
      if (pipes[i] == NULL) return luaL_error(L, "out of memory");
      stdio[i].flags = UV_CREATE_PIPE | (i == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE);
      stdio[i].data.stream = rill__uvstream_handle(pipes[i]);
    } else if (modes[i] == 2) {
      stdio[i].flags = UV_INHERIT_FD;
      stdio[i].data.fd = i;
    } else {
      stdio[i].flags = UV_IGNORE;
    }
  }

  lproc_t *p = calloc(1, sizeof(*p));
  if (p == NULL) return luaL_error(L, "out of memory");
  p->w = w;
  p->h.data = p;
  uv_process_options_t o;
  memset(&o, 0, sizeof(o));
  o.exit_cb = exit_cb;
  o.file = args[0];
  o.args = args;
  o.env = env;
  o.cwd = cwd;
  o.stdio_count = 3;
  o.stdio = stdio;
  int r = uv_spawn(w->loop, &p->h, &o);
  if (r) {
    for (int i = 0; i < 3; i++)
      if (pipes[i]) rill__uvstream_discard(pipes[i]);
    p->refs = 1;
    uv_close((uv_handle_t *)&p->h, proc_closed);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", args[0], rill__errmsg(r));
    return 2;
  }
  p->refs = 2;
  rill__obj_link(w, &p->obj, proc_destroy);

  lua_createtable(L, 0, 5);
  lua_pushinteger(L, p->h.pid);
  lua_setfield(L, -2, "pid");
  for (int i = 0; i < 3; i++) {
    if (pipes[i] == NULL) continue;
    rill__lstream_push(L, rill__uvstream_stream(pipes[i]), 1, -1);
    lua_setfield(L, -2, names[i]);
  }
  lproc_ud *ud = lua_newuserdata(L, sizeof(*ud));
  ud->p = p;
  luaL_getmetatable(L, PROCESS_MT);
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "_h");
  luaL_getmetatable(L, PROCESS_MT);
  lua_getfield(L, -1, "methods");
  lua_setmetatable(L, -3);
  lua_pop(L, 1);
  return 1;
}

static lproc_t *check_proc(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "_h");
  lproc_ud *ud = luaL_checkudata(L, -1, PROCESS_MT);
  lua_pop(L, 1);
  return ud->p;
}

static int wait_cancel(rill_wait_t *wt, int status) {
  lua_State *co = rill__wait_task(wt)->co;
  lua_pushnil(co);
  lua_pushstring(co, rill__errmsg(status));
  return 2;
}

/* p:wait([timeout_ms]) → exit code, nil; or nil, signal; or nil, "timeout" */
static int proc_wait(lua_State *L) {
  rill_worker_t *w = rill__upworker(L);
  lproc_t *p = check_proc(L);
  lua_Number ms = luaL_optnumber(L, 2, -1);
  if (p->exited) {
    push_status(L, p);
    return 2;
  }
  rill_task_t *t = rill__task_check(w, L);
  if (p->waits.head) return luaL_error(L, "process already has a waiter");
  return rill__task_wait(L, t, &p->waits, 0, p, ms < 0 ? -1 : (int)ms, wait_cancel);
}

/* The signals a script names: "TERM", "SIGTERM" or 15. */
static const struct {
  const char *name;
  int sig;
} signals[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
               {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {"ALRM", SIGALRM},
               {"TERM", SIGTERM}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT}, {"STOP", SIGSTOP},
               {"TSTP", SIGTSTP}, {"WINCH", SIGWINCH}};

int rill__signal_number(lua_State *L, int idx, int def) {
  if (lua_isnoneornil(L, idx)) return def;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    int sig = (int)lua_tointeger(L, idx);
    luaL_argcheck(L, sig >= 0 && sig < 65, idx, "a signal number");
    return sig;
  }
  const char *name = luaL_checkstring(L, idx);
  if (strncmp(name, "SIG", 3) == 0) name += 3;
  for (size_t i = 0; i < sizeof(signals) / sizeof(*signals); i++)
    if (strcasecmp(name, signals[i].name) == 0) return signals[i].sig;
  return luaL_argerror(L, idx, "a signal: a number or a name such as \"TERM\" or \"SIGKILL\"");
}

static int proc_kill(lua_State *L) {
  lproc_t *p = check_proc(L);
  int sig = rill__signal_number(L, 2, SIGTERM);
  if (p->exited) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int r = uv_process_kill(&p->h, sig);
  lua_pushboolean(L, r == 0);
  return 1;
}

static int proc_gc(lua_State *L) {
  lproc_ud *ud = luaL_checkudata(L, 1, PROCESS_MT);
  if (ud->p) proc_unref(ud->p);
  ud->p = NULL;
  return 0;
}

void rill__open_process(lua_State *L, rill_worker_t *w) {
  static const luaL_Reg funcs[] = {{"exec", l_exec}, {NULL, NULL}};
  static const luaL_Reg methods[] = {
      {"wait", proc_wait}, {"kill", proc_kill}, {NULL, NULL}};
  rill__register(L, w, funcs);
  luaL_newmetatable(L, PROCESS_MT);
  lua_pushcfunction(L, proc_gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L); /* the metatable of the process table */
  lua_newtable(L);
  rill__register(L, w, methods);
  lua_setfield(L, -2, "__index");
  lua_setfield(L, -2, "methods");
  lua_pop(L, 1);
}
