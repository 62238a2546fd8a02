/* permessage-deflate's zlib state. See ws_deflate.h. */
#include <stdlib.h>

#include "ws_deflate.h"

const uint8_t rill__wsz_tail[4] = {0x00, 0x00, 0xff, 0xff};

rill_wsz_t *rill__wsz_inflater(int bits) {
  rill_wsz_t *z = calloc(1, sizeof(*z));
  if (z == NULL) return NULL;
  /* Window 8 is inflated with 9: a larger window inflates anything a smaller
   * one made, and zlib's deflate (which some peers use when asked for 8) in
   * fact makes 9 (see rill__wsz_deflater), so 9 is the safe reading. */
  if (bits < 9) bits = 9;
  if (bits > 15) bits = 15;
  if (inflateInit2(&z->z, -bits) != Z_OK) {
    free(z);
    return NULL;
  }
  return z;
}

rill_wsz_t *rill__wsz_deflater(int bits, int level, int mem_level) {
  /* zlib refuses a raw deflate with window bits 8 (its 256-byte window has
   * a bug it avoids by using 9, which a peer that asked for 8 could not
   * inflate). The layer above never compresses when the peer asked for 8:
   * it sends its messages uncompressed, which RFC 7692 allows. */
  if (bits < 9 || bits > 15) return NULL;
  rill_wsz_t *z = calloc(1, sizeof(*z));
  if (z == NULL) return NULL;
  if (deflateInit2(&z->z, level, Z_DEFLATED, -bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
    free(z);
    return NULL;
  }
  z->deflating = 1;
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
