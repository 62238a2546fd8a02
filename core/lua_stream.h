/* The Lua face of streams (lua_stream.c). */
#ifndef RILL_LUA_STREAM_H
#define RILL_LUA_STREAM_H

#include <lua.h>

#include "rill_int.h"

#define RILL_STREAM_MT "rill.stream"

typedef struct {
  rill_stream_t *s; /* NULL once the stream is closed or gone */
  int owns;         /* closing the userdata closes the stream */
} lstream_ud;

void rill__lstream_open(lua_State *L);
/* Pushes a new userdata for s; sets s's fill and drain callbacks to the Lua
 * layer's unless the stream's owner set its own. */
void rill__lstream_push(lua_State *L, rill_stream_t *s, int owns);
rill_stream_t *rill__lstream_check(lua_State *L, int idx);
/* Points the userdata ud at s instead (starttls: the same Lua object now
 * reads and writes through TLS). */
void rill__lstream_rebind(void *ud, rill_stream_t *s);
void rill__lstream_fill_cb(rill_stream_t *s, int status);
void rill__lstream_drain_cb(rill_stream_t *s, int status);
/* For writers of their own (HTTP responses): returns results for a
 * vt->write() outcome r, waiting for the drain on RILL_EAGAIN. */
int rill__lstream_write_result(lua_State *L, rill_task_t *t, rill_stream_t *s, int r);
int rill__lstream_wait_drain(lua_State *L, rill_task_t *t, rill_stream_t *s);

#endif
