/* The Lua face of HTTP/2 request streams (lua_h2.c), for lua_http.c. */
#ifndef RILL_LUA_H2_H
#define RILL_LUA_H2_H

#include <lua.h>

#include "h2_conn.h"

/* Starts a handler task for st: dispatch(handler, face, stream id).
 * gone_ref (or LUA_NOREF): gone(face, stream id), run in a task of its own
 * when the client resets the stream or leaves while the handler runs. */
void rill__lh2_start(rill_h2_stream_t *st, int dispatch_ref, int handler_ref,
                     int gone_ref, unsigned send_timeout_ms);
/* The h2 server's on_gone: what waits is told, and gone runs. */
void rill__lh2_gone(rill_h2_stream_t *st);
/* The h2 server's on_drained: ends a response write's wait. */
void rill__lh2_drained(rill_h2_stream_t *st, int status);
/* Reads {name, value, ...} at idx into small, or into a userdata pushed on
 * the stack when there are more than nsmall (lua_http.c; both faces use it). */
size_t rill__lhttp_get_hdrs(lua_State *L, int idx, rill_hdr_t *small, size_t nsmall,
                            rill_hdr_t **out);
/* Registers the face's class. */
void rill__open_h2(lua_State *L, rill_worker_t *w);

#endif
