/* rill's Lua modules as librill carries them: LuaJIT bytecode compiled at
 * build time (tools/embed_lua.c writes the table), and the Lua-state setup
 * that finds them (lua_modules.c). */
#ifndef RILL_LUA_MODULES_H
#define RILL_LUA_MODULES_H

#include <stddef.h>

typedef struct {
  const char *name;  /* "rill.http" */
  const char *chunk; /* "@rill/http.lua": errors read "rill/http.lua:12:" */
  const unsigned char *code;
  size_t len;
} rill_lua_module_t;

/* Sorted by name (strcmp). Generated: lua_modules_data.c in the build tree. */
extern const rill_lua_module_t rill__lua_modules[];
extern const int rill__lua_nmodules;

/* The embedded module called name, or NULL. */
const rill_lua_module_t *rill__lua_module(const char *name);

#endif
