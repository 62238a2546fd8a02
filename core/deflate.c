/* gzip and zlib streams over zlib. See deflate.h. */
#include <string.h>

#include "deflate.h"

/* zlib's windowBits for a format: 16 + for gzip's wrapper. */
static int zlib_wbits(int format, int wbits) {
  return format == RILL_Z_GZIP ? wbits + 16 : wbits;
}

int rill__deflate_init(rill_deflate_t *d, int format, int level, int wbits, int memlevel) {
  if ((format != RILL_Z_GZIP && format != RILL_Z_DEFLATE) || level < 1 || level > 9 ||
      wbits < 9 || wbits > 15 || memlevel < 1 || memlevel > 9)
    return UV_EINVAL;
  memset(&d->zs, 0, sizeof(d->zs));
  d->format = format;
  d->level = level;
  d->wbits = wbits;
  d->memlevel = memlevel;
  d->ended = d->pending = 0;
  d->in = d->out = 0;
  /* zlib takes wbits 8 as 9; 9 is the least we ask for. */
  int r = deflateInit2(&d->zs, level, Z_DEFLATED, zlib_wbits(format, wbits), memlevel,
                       Z_DEFAULT_STRATEGY);
  return r == Z_OK ? 0 : r == Z_MEM_ERROR ? UV_ENOMEM : UV_EINVAL;
}

int rill__deflate_wbits(uint64_t len, int *memlevel) {
  int wbits = 15, mem = 8;
  /* As nginx's gzip filter: halve the window (and the hash with it) while
   * the body still fits in half of it. */
  if (len > 0)
    while (wbits > 9 && len < ((uint64_t)1 << (wbits - 1))) {
      wbits--;
      if (mem > 1) mem--;
    }
  *memlevel = mem;
  return wbits;
}

int rill__deflate_reset(rill_deflate_t *d, int level) {
  if (deflateReset(&d->zs) != Z_OK) return UV_EINVAL;
  if (level != d->level) {
    if (deflateParams(&d->zs, level, Z_DEFAULT_STRATEGY) != Z_OK) return UV_EINVAL;
    d->level = level;
  }
  d->ended = d->pending = 0;
  d->in = d->out = 0;
  return 0;
}

int rill__deflate_put(rill_deflate_t *d, const char *p, size_t len, int flush,
                      rill_deflate_emit_cb emit, void *arg) {
  if (d->ended) return len ? UV_EINVAL : 0;
  if (len == 0 && flush == Z_NO_FLUSH) return 0;
  if (len == 0 && flush == Z_SYNC_FLUSH && !d->pending) return 0;
  int verdict = 0, took = len > 0;
  d->zs.next_in = (Bytef *)p;
  d->in += len;
  /* avail_in is 32 bits: a larger piece goes in several turns. */
  while (len > 0 || flush != Z_NO_FLUSH) {
    uInt take = len > (1u << 30) ? (1u << 30) : (uInt)len;
    d->zs.avail_in = take;
    len -= take;
    int f = len > 0 ? Z_NO_FLUSH : flush;
    int r;
    do {
      d->zs.next_out = (Bytef *)d->buf;
      d->zs.avail_out = sizeof(d->buf);
      r = deflate(&d->zs, f);
      if (r == Z_STREAM_ERROR) return UV_EINVAL;
      size_t n = sizeof(d->buf) - d->zs.avail_out;
      if (n > 0) {
        d->out += n;
        int e = emit(arg, d->buf, n);
        if (e < 0 && e != RILL_EAGAIN) return e;
        if (e) verdict = e;
      }
      /* A full buffer may hide more output; otherwise zlib is done with
       * this input (and with the flush, when it left room). */
    } while (d->zs.avail_out == 0 || (f == Z_FINISH && r != Z_STREAM_END));
    if (len == 0) break;
  }
  if (flush == Z_FINISH) d->ended = 1;
  d->pending = flush == Z_NO_FLUSH && (d->pending || took);
  return verdict;
}

void rill__deflate_end(rill_deflate_t *d) {
  deflateEnd(&d->zs);
}

int rill__inflate_init(rill_inflate_t *z, int format, uint64_t max) {
  if (format != RILL_Z_GZIP && format != RILL_Z_DEFLATE) return UV_EINVAL;
  memset(z, 0, sizeof(*z));
  z->format = format;
  z->max = max;
  int r = inflateInit2(&z->zs, zlib_wbits(format, 15));
  return r == Z_OK ? 0 : r == Z_MEM_ERROR ? UV_ENOMEM : UV_EINVAL;
}

static int bad(rill_inflate_t *z, const char *msg) {
  z->msg = msg;
  return z->err = RILL_EPROTO;
}

int rill__inflate(rill_inflate_t *z, const char **in, size_t *inlen, char *out, size_t cap,
                  size_t *produced) {
  *produced = 0;
  if (z->err) return z->err;
  if (z->ended) {
    if (*inlen == 0) return RILL_EOF;
    /* More after the end: the next gzip member (gunzip reads them all), or
     * garbage after a zlib stream. */
    if (z->format != RILL_Z_GZIP) return bad(z, "data after the end of the deflate stream");
    if (inflateReset(&z->zs) != Z_OK) return bad(z, "inflate reset failed");
    z->ended = 0;
  }
  /* Room for one byte past the limit: producing it proves the limit passed. */
  size_t room = cap;
  if (z->max) {
    uint64_t left = z->max - z->out + 1;
    if (left < room) room = (size_t)left;
  }
  if (room > (1u << 30)) room = 1u << 30;
  uInt avail = *inlen > (1u << 30) ? (1u << 30) : (uInt)*inlen;
  z->zs.next_in = (Bytef *)*in;
  z->zs.avail_in = avail;
  z->zs.next_out = (Bytef *)out;
  z->zs.avail_out = (uInt)room;
  int r = inflate(&z->zs, Z_NO_FLUSH);
  size_t used = avail - z->zs.avail_in;
  size_t n = room - z->zs.avail_out;
  *in += used;
  *inlen -= used;
  z->out += n;
  if (z->max && z->out > z->max) {
    /* The byte past the limit is dropped; those up to it are given. */
    *produced = n - (size_t)(z->out - z->max);
    z->out = z->max;
    return z->err = RILL_EBODY;
  }
  *produced = n;
  switch (r) {
  case Z_OK:
  case Z_BUF_ERROR: /* no progress possible: more input needed */
    return 0;
  case Z_STREAM_END:
    z->ended = 1;
    return n > 0 ? 0 : RILL_EOF;
  case Z_NEED_DICT:
    return bad(z, "a preset dictionary is not supported");
  case Z_MEM_ERROR:
    return z->err = UV_ENOMEM;
  default:
    return bad(z, z->zs.msg ? z->zs.msg : "corrupt compressed data");
  }
}

void rill__inflate_end(rill_inflate_t *z) {
  inflateEnd(&z->zs);
}

static int token_is(const char *p, size_t n, const char *lit) {
  size_t l = strlen(lit);
  if (n != l) return 0;
  for (size_t i = 0; i < n; i++)
    if ((p[i] | 0x20) != lit[i]) return 0;
  return 1;
}

int rill__z_format(const char *name, size_t len) {
  if (token_is(name, len, "gzip") || token_is(name, len, "x-gzip")) return RILL_Z_GZIP;
  if (token_is(name, len, "deflate")) return RILL_Z_DEFLATE;
  if (token_is(name, len, "identity")) return RILL_Z_NONE;
  return -1;
}
