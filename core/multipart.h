/* multipart/form-data (RFC 7578, delimiters as RFC 2046 5.1.1) as a layer
 * over a body stream: the parts come one after another, and each part's data
 * is a stream (m->base) pulled from the body below. No Lua.
 *
 * Nothing is buffered but a part's header section (bounded by
 * max_header_bytes). A part's data is handed up as slices of the stream
 * below (no copy); only bytes that could be the start of a delimiter are
 * held back, and since they are then a prefix of the delimiter itself they
 * are taken from below and remembered as a count: if they prove to be data,
 * they are handed up from the layer's own copy of the delimiter. The layer
 * never over-reads: the bytes after the close delimiter ("--boundary--")
 * stay in the stream below (the epilogue is not looked at).
 *
 * While parts are read the layer is bound to the stream below, above
 * whoever else is (the body's Lua face): the stream's readable() is the
 * layer's. It passes it on to whoever asked: the part's reader (bound to
 * m->base), on_next() while rill__mp_next() waits, or else the binding
 * under it (a reader of the body itself). rill__mp_release() lets go. */
#ifndef RILL_MULTIPART_H
#define RILL_MULTIPART_H

#include "stream.h"

#define RILL_MP_BOUNDARY_MAX 70 /* RFC 2046: 1 to 70 characters */
#define RILL_MP_FIELDS_MAX 32   /* header fields of one part */

typedef struct {
  uint32_t name_off, name_len, value_off, value_len; /* in m->hbuf */
} rill_mp_field_t;

typedef struct rill_multipart_s rill_multipart_t;

struct rill_multipart_s {
  rill_stream_t base;                   /* the current part's data, for its reader */
  rill_binding_t tb;                    /* bound to t until released */
  rill_stream_t *t;                     /* the body below; not owned; NULL once let go */
  char delim[4 + RILL_MP_BOUNDARY_MAX]; /* CRLF "--" boundary */
  size_t dlen;
  int state;
  size_t k;    /* bytes of delim matched so far, taken from t */
  size_t held; /* bytes of delim that proved to be data, from held_off */
  size_t held_off;
  /* The current part's header section (its lines, up to the empty one) and
   * its fields, valid from a rill__mp_next() that returned 0 to the next. */
  char *hbuf;
  size_t hlen, hcap;
  rill_mp_field_t fields[RILL_MP_FIELDS_MAX];
  unsigned nfields;
  unsigned nparts, max_parts;
  size_t max_header_bytes;
  int err;
  const char *errmsg; /* why, for an error of the layer's own */
  unsigned waiting : 1, filling : 1, part_open : 1;
  /* A rill__mp_next() that returned RILL_EAGAIN may be called again. */
  void (*on_next)(rill_multipart_t *m);
  void *data; /* the owner's */
};

/* Starts m over t with the boundary (the Content-Type's parameter, without
 * quotes) and the limits: at most max_parts parts, max_header_bytes bytes of
 * header section each (RILL_EBODY past either). Binds m to t. Returns 0, or
 * UV_EINVAL for a boundary RFC 2046 does not allow (nothing to release). */
int rill__mp_init(rill_multipart_t *m, rill_worker_t *w, rill_stream_t *t,
                  const char *boundary, size_t blen, unsigned max_parts,
                  size_t max_header_bytes);

/* Moves to the next part, discarding what is left of the current one.
 * Returns 0 (the part's fields are in m->fields; m->base is its data, a
 * fresh stream: the last part's readers were told it is gone), RILL_EOF
 * after the close delimiter, RILL_EAGAIN (on_next() follows), or an error:
 * RILL_EPROTO (broken multipart), RILL_EBODY (over a limit; m->errmsg says
 * which), or the error of the stream below. */
int rill__mp_next(rill_multipart_t *m);

/* The message for an error of m (its own, or the stream below's). */
const char *rill__mp_errmsg(rill_multipart_t *m, int err);

/* Lets go of t and tells the part's readers it is gone; frees what m holds
 * (m's own memory is the caller's). */
void rill__mp_release(rill_multipart_t *m);

#endif
