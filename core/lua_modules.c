/* A worker's Lua state and where its modules come from.
 *
 * rill's own modules (every file under lua/rill) are compiled into librill as LuaJIT
 * bytecode at build time (tools/embed_lua.c), so the binary and a host,
 * static or not, need no Lua file on disk. A searcher placed right after
 * package.preload answers require for them, ahead of package.path.
 *
 * The development override: when the environment variable RILL_LUA_DIR names
 * a directory, that searcher is not installed and rill's modules come from
 * RILL_LUA_DIR/rill/... like any module on package.path, so lua/ can be
 * edited without a rebuild. The embedder's lua_path and RILL_LUA_PATH come
 * first on package.path, for the app's own modules. */

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lua_core.h"
#include "lua_modules.h"
#include "lua_sched.h"

static int by_name(const void *key, const void *m) {
  return strcmp(key, ((const rill_lua_module_t *)m)->name);
}

const rill_lua_module_t *rill__lua_module(const char *name) {
  return bsearch(name, rill__lua_modules, (size_t)rill__lua_nmodules,
                 sizeof(*rill__lua_modules), by_name);
}

/* A package.loaders entry (Lua 5.1's searcher protocol): the loaded chunk of
 * an embedded module, or a string saying it is not one, which require adds
 * to its "module not found" message. A chunk that does not load (it cannot,
 * short of a broken build) raises, as the file searcher does. */
static int embedded_searcher(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const rill_lua_module_t *m = rill__lua_module(name);
  if (m == NULL) {
    lua_pushfstring(L, "\n\tno module '%s' in librill", name);
    return 1;
  }
  if (luaL_loadbuffer(L, (const char *)m->code, m->len, m->chunk) != 0)
    return luaL_error(L, "error loading module '%s' from librill:\n\t%s", name,
                      lua_tostring(L, -1));
  return 1;
}

/* Puts embedded_searcher into package.loaders at index 2, right after the
 * preload searcher. package is on top of the stack. */
static void add_searcher(lua_State *L) {
  lua_getfield(L, -1, "loaders");
  int n = (int)lua_objlen(L, -1);
  for (int i = n; i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushcfunction(L, embedded_searcher);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 1);
}

int rill__lua_setup(rill_worker_t *w, const char *extra_path) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return UV_ENOMEM;
  w->L = L;
  if (rill__sched_init(w) != 0) {
    lua_close(L);
    w->L = NULL;
    return UV_ENOMEM;
  }
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushlightuserdata(L, w);
  lua_pushcclosure(L, rill__open_core, 1);
  lua_setfield(L, -2, "rill.core");
  lua_pop(L, 1);
  const char *dir = getenv("RILL_LUA_DIR");
  if (dir && *dir == 0) dir = NULL;
  if (dir == NULL) add_searcher(L);
  const char *env = getenv("RILL_LUA_PATH");
  lua_getfield(L, -1, "path");
  const char *e = extra_path ? extra_path : "", *v = env ? env : "", *d = dir ? dir : "";
  lua_pushfstring(L, "%s%s%s%s%s%s%s%s%s", e, *e ? ";" : "", v, *v ? ";" : "", d,
                  dir ? "/?.lua;" : "", d, dir ? "/?/init.lua;" : "",
                  lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
  return 0;
}
