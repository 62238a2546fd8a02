/* gzip and zlib ("deflate") as bounded streams over zlib: a compressor that
 * hands its output to a callback one buffer at a time, and a decompressor
 * that inflates into the caller's buffer and stops at a limit on the total
 * it produced. No I/O and no Lua: the HTTP response path (http_conn.c) and
 * decoded request bodies (inflate_stream.c) are built on it.
 *
 * Memory: a compressor holds zlib's state, (1 << (wbits + 2)) + (1 <<
 * (memlevel + 9)) bytes plus about 6 KiB (256 KiB at wbits 15, memlevel 8),
 * and its output buffer; a decompressor (1 << wbits) plus about 7 KiB (39
 * KiB at 15) and no buffer of its own. */
#ifndef RILL_DEFLATE_H
#define RILL_DEFLATE_H

#include <zlib.h>

#include "rill_int.h"

enum { RILL_Z_NONE, RILL_Z_GZIP, RILL_Z_DEFLATE };

#define RILL_Z_OUT 16384 /* a compressor's output buffer */

typedef struct rill_deflate_s rill_deflate_t;
/* Takes n compressed bytes (valid only during the call). Returns 0,
 * RILL_EAGAIN (taken, but the consumer is above its high-water mark) or an
 * error (the compressor stops and returns it). */
typedef int (*rill_deflate_emit_cb)(void *arg, const char *p, size_t n);

struct rill_deflate_s {
  z_stream zs;
  int format;
  int level, wbits, memlevel;
  int ended;      /* Z_FINISH done */
  int pending;    /* input taken since the last flush */
  uint64_t in, out; /* totals */
  char buf[RILL_Z_OUT];
};

/* Starts a compressor for format (RILL_Z_GZIP or RILL_Z_DEFLATE) at level
 * 1-9, with a window of wbits (9-15) and memlevel (1-9). Returns 0,
 * UV_EINVAL or UV_ENOMEM (nothing to end then). */
int rill__deflate_init(rill_deflate_t *d, int format, int level, int wbits, int memlevel);
/* The window bits worth keeping for a body of len bytes (0: unknown): 15,
 * or fewer for a small body, as nginx chooses (the window need not exceed
 * the body). *memlevel gets the matching hash size. */
int rill__deflate_wbits(uint64_t len, int *memlevel);
/* Compresses len bytes, then flushes as flush says (Z_NO_FLUSH,
 * Z_SYNC_FLUSH: everything so far decodable by the peer; Z_FINISH: the
 * end). Output goes to emit each time the buffer fills, and at a flush.
 * Returns 0, RILL_EAGAIN (some emit asked the writer to wait: all was
 * taken), or the first error of emit or zlib. */
int rill__deflate_put(rill_deflate_t *d, const char *p, size_t len, int flush,
                      rill_deflate_emit_cb emit, void *arg);
/* Sets d back to the start of a new stream at level (state kept). */
int rill__deflate_reset(rill_deflate_t *d, int level);
void rill__deflate_end(rill_deflate_t *d);

typedef struct {
  z_stream zs;
  int format;
  int ended;     /* the stream's end was seen */
  int err;       /* sticky: RILL_EPROTO, RILL_EBODY */
  uint64_t max;  /* output bytes allowed; 0: no limit */
  uint64_t out;  /* output so far */
  const char *msg; /* what was wrong with the input */
} rill_inflate_t;

/* Starts a decompressor for format (RILL_Z_GZIP: gzip, several members
 * allowed, as gunzip does; RILL_Z_DEFLATE: the zlib format, as RFC 9110
 * defines "deflate") that produces at most max bytes (0: no limit).
 * Returns 0, UV_EINVAL or UV_ENOMEM. */
int rill__inflate_init(rill_inflate_t *z, int format, uint64_t max);
/* Inflates from *in (*inlen bytes) into out (cap bytes): advances *in and
 * *inlen past what it used and sets *produced. Returns 0 (call again with
 * more input or more room), RILL_EOF once the stream has ended (input after
 * the end is left unused, except more gzip members), RILL_EBODY once the
 * output would pass max (*produced then counts the bytes up to max, so the
 * total given is exactly max), or RILL_EPROTO for corrupt input (z->msg
 * says why; *produced counts what came before it). Errors stay. */
int rill__inflate(rill_inflate_t *z, const char **in, size_t *inlen, char *out, size_t cap,
                  size_t *produced);
void rill__inflate_end(rill_inflate_t *z);

/* The format named by a Content-Encoding token ("gzip", "x-gzip",
 * "deflate"), RILL_Z_NONE for "identity", or -1 for anything else. */
int rill__z_format(const char *name, size_t len);

#endif /* RILL_DEFLATE_H */
