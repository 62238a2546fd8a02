/* permessage-deflate's zlib state. See ws_deflate.h. */
#include <stdlib.h>

#include "ws_deflate.h"

const uint8_t rill__wsz_tail[4] = {0x00, 0x00, 0xff, 0xff};

/* Where no input points (zlib and pointer arithmetic want an address). */
static const uint8_t no_input[1];

/* ---- the per-worker cache of released state ----
 *
 * A service of the worker (worker.h), made on first use and found again by
 * its close function: it holds what no connection holds between messages,
 * and frees it when the worker ends. */

#define CACHE_MAX 8

typedef struct {
  rill_service_t svc;
  rill_wsz_t *z[CACHE_MAX];
  int n;
} cache_t;

static void cache_close(rill_service_t *svc, rill_worker_t *w) {
  (void)svc;
  (void)w;
}

static void cache_free(rill_service_t *svc, rill_worker_t *w) {
  (void)w;
  cache_t *c = (cache_t *)svc;
  while (c->n > 0)
    rill__wsz_free(c->z[--c->n]);
  free(c);
}

/* w's cache; made when make is set (NULL when out of memory or not made). */
static cache_t *cache_of(rill_worker_t *w, int make) {
  for (rill_service_t *svc = w->services; svc; svc = svc->next)
    if (svc->close == cache_close) return (cache_t *)svc;
  if (!make) return NULL;
  cache_t *c = calloc(1, sizeof(*c));
  if (c == NULL) return NULL;
  c->svc.close = cache_close;
  c->svc.free = cache_free;
  rill__worker_add_service(w, &c->svc);
  return c;
}

/* Takes a cached deflater (deflating 1) or inflater (0) that fits. */
static rill_wsz_t *cache_take(rill_worker_t *w, int deflating, int bits, int level,
                              int mem_level) {
  cache_t *c = cache_of(w, 0);
  for (int i = c ? c->n - 1 : -1; i >= 0; i--) {
    rill_wsz_t *z = c->z[i];
    if (z->deflating != deflating) continue;
    if (deflating && (z->bits != bits || z->level != level || z->mem_level != mem_level))
      continue;
    c->z[i] = c->z[--c->n];
    return z;
  }
  return NULL;
}

void rill__wsz_release(rill_worker_t *w, rill_wsz_t *z) {
  if (z == NULL) return;
  rill__wsz_reset(z);
  cache_t *c = cache_of(w, 1);
  if (c == NULL || c->n == CACHE_MAX) {
    rill__wsz_free(z);
    return;
  }
  c->z[c->n++] = z;
}

/* ---- making and freeing ---- */

rill_wsz_t *rill__wsz_inflater(rill_worker_t *w, int bits) {
  /* Every peer is inflated with a 32 KiB window, whatever it was asked to
   * use. A larger window reads anything a smaller one made (zlib's deflate,
   * asked for 8, in fact makes 9). And zlib checks a distance only against
   * the bytes it has, counting those written in the current call: with a
   * smaller window, data that reaches past it would pass or fail depending
   * on how the frames were cut into reads. With 32 KiB (deflate's largest
   * distance) the answer is the same however the bytes come. */
  (void)bits;
  bits = 15;
  rill_wsz_t *z = cache_take(w, 0, bits, 0, 0);
  if (z) return z;
  if ((z = calloc(1, sizeof(*z))) == NULL) return NULL;
  if (inflateInit2(&z->z, -bits) != Z_OK) {
    free(z);
    return NULL;
  }
  z->bits = bits;
  return z;
}

rill_wsz_t *rill__wsz_deflater(rill_worker_t *w, int bits, int level, int mem_level) {
  /* zlib refuses a raw deflate with window bits 8 (its 256-byte window has
   * a bug it avoids by using 9, which a peer that asked for 8 could not
   * inflate). The layer above never compresses when the peer asked for 8:
   * it sends its messages uncompressed, which RFC 7692 allows. */
  if (bits < 9 || bits > 15) return NULL;
  rill_wsz_t *z = cache_take(w, 1, bits, level, mem_level);
  if (z) return z;
  if ((z = calloc(1, sizeof(*z))) == NULL) return NULL;
  if (deflateInit2(&z->z, level, Z_DEFLATED, -bits, mem_level, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    free(z);
    return NULL;
  }
  z->deflating = 1;
  z->bits = bits;
  z->level = level;
  z->mem_level = mem_level;
  return z;
}

void rill__wsz_free(rill_wsz_t *z) {
  if (z == NULL) return;
  if (z->deflating)
    deflateEnd(&z->z);
  else
    inflateEnd(&z->z);
  free(z);
}

void rill__wsz_reset(rill_wsz_t *z) {
  if (z->deflating)
    deflateReset(&z->z);
  else
    inflateReset(&z->z);
  z->ended = 0;
}

int rill__wsz_inflate(rill_wsz_t *z, const uint8_t *in, size_t n, size_t *used,
                      uint8_t *out, size_t cap, size_t *made) {
  *used = *made = 0;
  if (in == NULL) in = no_input;
  if (z->ended && n > 0) rill__wsz_reset(z);
  z->z.next_in = (Bytef *)in;
  z->z.avail_in = n > UINT32_MAX ? UINT32_MAX : (uInt)n;
  z->z.next_out = out;
  z->z.avail_out = cap > UINT32_MAX ? UINT32_MAX : (uInt)cap;
  int r = inflate(&z->z, Z_SYNC_FLUSH);
  *used = (size_t)(z->z.next_in - in);
  *made = (size_t)(z->z.next_out - out);
  z->z.next_in = z->z.next_out = NULL;
  if (r == Z_STREAM_END) {
    z->ended = 1;
    return 0;
  }
  if (r == Z_OK || r == Z_BUF_ERROR) return 0; /* BUF_ERROR: no progress possible */
  return -1; /* Z_DATA_ERROR, Z_NEED_DICT (no dictionary in raw deflate), ... */
}

int rill__wsz_deflate(rill_wsz_t *z, const uint8_t *in, size_t n, size_t *used,
                      uint8_t *out, size_t cap, size_t *made, int flush) {
  *used = *made = 0;
  if (in == NULL) in = no_input;
  z->z.next_in = (Bytef *)in;
  z->z.avail_in = n > UINT32_MAX ? UINT32_MAX : (uInt)n;
  z->z.next_out = out;
  z->z.avail_out = cap > UINT32_MAX ? UINT32_MAX : (uInt)cap;
  int r = deflate(&z->z, flush ? Z_SYNC_FLUSH : Z_NO_FLUSH);
  *used = (size_t)(z->z.next_in - in);
  *made = (size_t)(z->z.next_out - out);
  int all_in = z->z.avail_in == 0 && *used == n;
  int room = z->z.avail_out > 0;
  z->z.next_in = z->z.next_out = NULL;
  /* Z_BUF_ERROR: nothing to do (a second flush with no new input). */
  if (r == Z_BUF_ERROR) return all_in ? 1 : 0;
  if (r != Z_OK) return -1;
  return all_in && (room || !flush) ? 1 : 0;
}
