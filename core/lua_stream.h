/* The Lua face of streams (lua_stream.c). */
#ifndef RILL_LUA_STREAM_H
#define RILL_LUA_STREAM_H

#include <lua.h>

#include "lua_sched.h"
#include "stream.h"

#define RILL_STREAM_MT "rill.stream"

/* A pending read of the face. */
enum { RILL_ROP_NONE, RILL_ROP_SOME, RILL_ROP_EXACT, RILL_ROP_UNTIL, RILL_ROP_PARSE };

/* A read that a parser ends (RILL_ROP_PARSE): parse(state, L, p, n) looks at
 * all the bytes the stream holds, from the read's start (the same bytes and
 * possibly more on each call). It returns the bytes it used, having pushed
 * its *nres results onto L; 0 for more bytes (pushing nothing); or a
 * negative error, having pushed nothing (the read ends with nil and its
 * message) or *nres > 0 results of its own (nil and why). */
typedef long (*rill_lstream_parse_fn)(void *state, lua_State *L, const char *p, size_t n,
                                      int *nres);

/* The "rill.stream" userdata: bound to its stream while open, with the Lua
 * read state and the waits of the tasks that read and write through it. */
typedef struct {
  rill_binding_t b;
  rill_stream_t *s; /* NULL once closed or gone */
  int owns;         /* collecting the userdata closes the stream */
  int timeout_ms;   /* -1: none */
  uint64_t deadline; /* the loop's time (ms) no wait may pass; 0: none */
  rill_waitq_t waits;
  /* the read in progress */
  int rop;
  size_t rop_n; /* max for SOME and UNTIL, count for EXACT */
  char *sep;    /* UNTIL: the separator (points at sep_small or the heap) */
  size_t seplen;
  char sep_small[16];
  char *acc; /* bytes taken from the stream for a read not yet complete */
  size_t acclen, acccap;
  /* PARSE: the parser, and its state (kept for the next parsed read; freed
   * with the userdata by parse_free) */
  rill_lstream_parse_fn parse;
  void *parse_state;
  void (*parse_free)(void *state);
  size_t parse_seen; /* bytes the parser saw at its last call */
  /* what a callback during a fast path left for later (lua_sched.h) */
  rill_defer_t dfr;
  unsigned dfr_ev;
  int dfr_drain_status;
  rill_worker_t *w;
} lstream_ud;

void rill__lstream_open(lua_State *L);
/* Pushes a new userdata bound to s. owns: collecting it closes s.
 * timeout_ms: the deadline of each wait (-1: none). */
lstream_ud *rill__lstream_push(lua_State *L, rill_stream_t *s, int owns, int timeout_ms);
/* Binds ud, let go of (its stream gone), to s again, as a new userdata of
 * rill__lstream_push(L, s, 0, timeout_ms) would be: a face made once for a
 * stream that comes back (a websocket's next message). -1 if ud is still
 * bound or has waits. */
int rill__lstream_reuse(lstream_ud *ud, rill_stream_t *s, int timeout_ms);
rill_stream_t *rill__lstream_check(lua_State *L, int idx);
/* The timeout of ud's next wait (ms, -1: none): its timeout_ms, cut to what
 * is left before its deadline. */
int rill__lstream_wait_ms(const lstream_ud *ud);
/* The userdata at idx (raises if it is not a stream face). */
lstream_ud *rill__lstream_ud(lua_State *L, int idx);
/* Starts a parsed read on the userdata at idx, with the parser state kept in
 * the userdata (state and free_fn are given on the first parsed read and
 * kept: ud->parse_state, if set, is the one from before). At most max bytes
 * are looked at: past them the read ends "too long". Call from a C function
 * as `return rill__lstream_read_parsed(...)`. */
int rill__lstream_read_parsed(lua_State *L, int idx, rill_lstream_parse_fn parse, size_t max);
/* Binds the userdata at idx to s instead of its stream, which it lets go
 * without closing (starttls: the same Lua object reads through TLS). */
void rill__lstream_rebind(lua_State *L, int idx, rill_stream_t *s);
/* Takes the stream away from the userdata at idx (a layer above takes it
 * over). Raises if a task waits on it. */
rill_stream_t *rill__lstream_take(lua_State *L, int idx);
/* Whether a read waits on whoever is bound to s. */
int rill__lstream_reading(rill_stream_t *s);

/* Results of a write whose outcome was r, for writers of their own (HTTP
 * responses, WebSocket frames): true, or nil and a message. */
int rill__lstream_write_result(lua_State *L, rill_stream_t *s, int r);

#endif
