/* Opening the rill.core module and the pieces other files add to it. */
#ifndef RILL_LUA_CORE_H
#define RILL_LUA_CORE_H

#include <lauxlib.h>
#include <lua.h>

#include "rill_int.h"
#include "tcp.h"

/* luaopen for rill.core; its first upvalue is the worker. */
int rill__open_core(lua_State *L);
/* Sets funcs into the table on top, each with w as its upvalue. */
void rill__register(lua_State *L, rill_worker_t *w, const luaL_Reg *funcs);
/* Makes the metatable name for userdata of a class: __name, __gc (if gc),
 * and __index, a table of methods. luaL_getmetatable(L, name) reaches it. */
void rill__new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc);
/* The number at t[k], def when nil; raises if it is not a number. */
lua_Number rill__opt_number(lua_State *L, int t, const char *k, lua_Number def);
/* t.port, def when nil; raises unless it is an integer 0-65535. */
int rill__opt_port(lua_State *L, int t, int def);
/* Where a listener's options at t say to listen: host= and port= (port
 * default def), or unix= (a socket file's path), or fd= (a listening
 * descriptor); more than one raises. name gets "host:port", "unix:PATH" or
 * "fd N" for messages. Strings stay anchored by the options table. */
void rill__opt_listen_at(lua_State *L, int t, int def, rill_listen_at_t *at, char *name,
                         size_t namelen);
/* The options proxy_protocol (boolean) and proxy_from (a list of "addr" or
 * "addr/bits") of the table at t, into from[RILL_PROXY_FROM_MAX]. Returns
 * -1 when proxy_protocol is off, else the number of sources (0: the
 * default, loopback). Raises on a bad option. */
#define RILL_PROXY_FROM_MAX 64
int rill__opt_proxy(lua_State *L, int t, rill_cidr_t *from);
/* Pushes a "rill.listener" userdata for l. */
int rill__push_listener(lua_State *L, rill_listener_t *l);
void rill__listener_forget_ud(rill_listener_t *l);

/* Creates w's Lua state (lua_modules.c): libraries, rill.core preloaded,
 * rill's modules from the bytecode librill carries (or from RILL_LUA_DIR),
 * package.path with extra first, then RILL_LUA_PATH. */
int rill__lua_setup(rill_worker_t *w, const char *extra_path);
/* The runtime around a worker (rill.c): watch a directory for *.lua changes
 * (worker 0 only), reload every worker, end the run with a status. */
int rill__runtime_watch(rill_worker_t *w, const char *dir);
int rill__runtime_reload(rill_worker_t *w);
/* Reads the counters of every worker of w's runtime (or w's alone) into
 * out[0..max); returns how many. Safe from any worker at any time. */
int rill__runtime_metrics(rill_worker_t *w, rill_metrics_t *out, int max);
void rill__runtime_exit(rill_worker_t *w, int code);
/* `rill run`: whether worker 0's script takes signal sig itself (on) or
 * leaves it to its default; UV_ENOTSUP outside `rill run`'s worker 0,
 * UV_EINVAL for a signal a script may not take. */
int rill__runtime_on_signal(rill_worker_t *w, int sig, int on);

void rill__open_http(lua_State *L, rill_worker_t *w);
void rill__open_tls(lua_State *L, rill_worker_t *w);
void rill__open_ws(lua_State *L, rill_worker_t *w);
void rill__open_h2_client(lua_State *L, rill_worker_t *w);
void rill__open_multipart(lua_State *L, rill_worker_t *w);

struct rill_tls_conf_s;
/* A TLS configuration from the Lua options at idx (see lua_tls.c), or NULL
 * with a message in err. */
struct rill_tls_conf_s *rill__ltls_conf(lua_State *L, rill_worker_t *w, int idx,
                                        int server, const char *const *default_alpn,
                                        char *err, size_t errlen);
/* Pushes {subject =, issuer =, dns =, email =, sha256 =, verified = true}
 * (rill_tls_peer_t) for the verified client certificate of a server TLS
 * stream and returns 1; 0 (nothing pushed) when there is none. */
int rill__ltls_push_client(lua_State *L, rill_stream_t *s);
void rill__open_process(lua_State *L, rill_worker_t *w);
void rill__open_fs(lua_State *L, rill_worker_t *w);
void rill__open_shared(lua_State *L, rill_worker_t *w);
void rill__open_crypto(lua_State *L, rill_worker_t *w);

/* lua_fs.c: the open file of a "rill.file" at idx (raises if it is not one,
 * or closed). */
typedef struct rill_file_s rill_file_t;
rill_file_t *rill__lfile_check(lua_State *L, int idx);

/* lua_host.c: lets rill_suspend() and rill_loop() find w from any of its
 * Lua states' threads (a registry entry). */
void rill__host_bind(lua_State *L, rill_worker_t *w);

/* The signal at idx: a number, or a name with or without "SIG" ("TERM",
 * "SIGKILL"); def when absent. Raises for another. */
int rill__signal_number(lua_State *L, int idx, int def);

#endif
