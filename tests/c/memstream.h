/* An in-memory transport for tests and fuzzers: a rill stream whose input
 * the test feeds and whose output the test takes, with the contract's
 * callbacks delivered by memstream_run() (never from inside a call). Two can
 * be joined so that one's writes are the other's input (TLS client and
 * server in one process). No Lua, no sockets. */
#ifndef RILL_MEMSTREAM_H
#define RILL_MEMSTREAM_H

#include "stream.h"

typedef struct memstream_s memstream_t;

struct memstream_s {
  rill_stream_t base;
  memstream_t *peer;      /* our writes go to its input; NULL: to out */
  memstream_t *next_due;  /* in the list of streams with events to deliver */
  char *in;               /* bytes for the reader: in[in_r..in_len) */
  size_t in_len, in_r, in_cap;
  char *out; /* what the layer wrote (no peer): out[0..out_len) */
  size_t out_len, out_cap;
  size_t out_limit; /* unread output above which write says RILL_EAGAIN (0: none) */
  int in_eof;       /* the peer will send no more */
  int want, drain_wait, due_readable, due_drained, due;
  int closed, aborted, shut;
  int read_err; /* an error fill() reports once the input is used up */
};

memstream_t *memstream_new(rill_worker_t *w);
/* Joins a and b: a's writes are b's input and the other way round. */
void memstream_join(memstream_t *a, memstream_t *b);
void memstream_free(memstream_t *m);
/* Adds input (the peer sent it). */
void memstream_feed(memstream_t *m, const void *p, size_t n);
/* The peer ends its side. */
void memstream_eof(memstream_t *m);
/* Takes up to max bytes of output (max 0: all); returns how many. Output
 * taken may let a waiting writer go on. */
size_t memstream_take(memstream_t *m, char *buf, size_t max);
/* Delivers the callbacks that are due, until none is; returns how many. */
int memstream_run(void);

#endif
