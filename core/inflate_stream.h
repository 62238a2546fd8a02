/* A decoded message body: a stream that inflates a gzip or deflate stream
 * read from another stream (a request body sent with Content-Encoding) as
 * its reader pulls, with a limit on the inflated size. No Lua.
 *
 * It is bound to the stream below for its whole life, and reads it only
 * when its own reader asks (fill). Memory: zlib's inflate state (about 39
 * KiB) and one output buffer of RILL_INFLATE_BUF bytes. Errors: RILL_EBODY
 * past the limit, RILL_EPROTO for corrupt or truncated data (strerror says
 * what), and the errors of the stream below. */
#ifndef RILL_INFLATE_STREAM_H
#define RILL_INFLATE_STREAM_H

#include "deflate.h"
#include "stream.h"

#define RILL_INFLATE_BUF 16384

typedef struct rill_inflate_stream_s rill_inflate_stream_t;

struct rill_inflate_stream_s {
  rill_stream_t base;
  rill_binding_t bb;  /* bound to below */
  rill_stream_t *below; /* not owned; NULL once it is gone */
  rill_inflate_t z;
  int err;
  size_t pos, len; /* the inflated bytes not yet taken: buf[pos, len) */
  /* Optional: told once when the stream fails with err (the owner of the
   * message answers 413 or 400 for it). */
  void (*on_error)(rill_inflate_stream_t *s, int err);
  void *data;
  char buf[RILL_INFLATE_BUF];
};

/* A stream of below's bytes inflated as format (RILL_Z_GZIP or
 * RILL_Z_DEFLATE), failing with RILL_EBODY past max inflated bytes (0: no
 * limit). It binds to below (which must have nothing bound that reads it
 * meanwhile). Closing it unbinds and frees it; below is not closed. Returns
 * NULL when out of memory. When below goes (a request's body at the end of
 * the request), reads fail with RILL_ECLOSED (or end, if the compressed
 * stream had ended); the reader still closes it. */
rill_inflate_stream_t *rill__inflate_stream_new(rill_worker_t *w, rill_stream_t *below,
                                                int format, uint64_t max);

#endif
