/* Fuzzes the decompressor (rill__inflate, core/deflate.c): any input, gzip
 * or deflate (zlib or raw), never crashes, never produces more than its
 * limit, and gives the same bytes and verdict fed whole or in pieces.
 *
 * Input: one byte of settings (bit 0: the format, gzip or deflate; bits 1-3:
 * the limit, from 1 byte to 1 MiB; bits 4-5: the output buffer's size), then
 * the compressed bytes. The inflated output is recorded as a hash and a
 * length (a bomb's output would make the record too big to compare). */
#include "deflate.h"
#include "fuzz_common.h"

#define T "fuzz_inflate"

static const uint64_t max_of[] = {1, 7, 100, 4096, 65536, 1 << 20, 333333, 0};
static const size_t cap_of[] = {1, 13, 4096, 16384};

static void run(fz_rec_t *rec, const uint8_t *data, size_t n, uint8_t cfg, int split) {
  int format = cfg & 1 ? RILL_Z_DEFLATE : RILL_Z_GZIP;
  uint64_t max = max_of[(cfg >> 1) & 7];
  size_t cap = cap_of[(cfg >> 4) & 3];
  if (max == 0) max = 1 << 20; /* no limit is never fuzzed: a bomb would run long */
  rill_inflate_t z;
  if (rill__inflate_init(&z, format, max) != 0) abort();
  char *out = malloc(cap);
  fz_rng_t g;
  fz_rng_init(&g, data, n);
  size_t avail = 0, pos = 0;
  uint64_t total = 0, h = 1469598103934665603ull;
  int r = 0;
  for (;;) {
    if (pos == avail && avail < n) avail = split ? avail + fz_piece(&g, n - avail) : n;
    uint8_t *buf = fz_dup(data + pos, avail - pos);
    const char *in = (const char *)buf;
    size_t inlen = avail - pos, made;
    r = rill__inflate(&z, &in, &inlen, out, cap, &made);
    size_t used = (size_t)(in - (const char *)buf);
    free(buf);
    FZ_ASSERT(T, used <= avail - pos, "used %zu of %zu", used, avail - pos);
    FZ_ASSERT(T, made <= cap, "made %zu into %zu", made, cap);
    pos += used;
    for (size_t i = 0; i < made; i++) {
      h ^= (uint8_t)out[i];
      h *= 1099511628211ull;
    }
    total += made;
    FZ_ASSERT(T, total <= max, "%llu bytes past the limit %llu", (unsigned long long)total,
              (unsigned long long)max);
    if (r < 0 && r != RILL_EOF) break;
    if (r == RILL_EOF && (pos == n || format == RILL_Z_DEFLATE)) break;
    /* No progress and nothing more to give: the input ended mid-stream. */
    if (used == 0 && made == 0 && avail == n) {
      r = 1;
      break;
    }
  }
  if (r == RILL_EOF && format == RILL_Z_DEFLATE && pos < n) {
    /* Trailing bytes after a zlib stream are refused when looked at. */
    const char *in = (const char *)data + pos;
    size_t inlen = n - pos, made;
    int r2 = rill__inflate(&z, &in, &inlen, out, cap, &made);
    FZ_ASSERT(T, r2 == RILL_EPROTO, "data after the end gave %d", r2);
  }
  fz_put_tag(rec, 'i');
  /* The verdict at bytes after a gzip member's end (the end, or garbage
   * refused) may depend on where the pieces were cut: only "too large" is
   * compared, with the output. */
  fz_put_u64(rec, r == RILL_EBODY);
  fz_put_u64(rec, total);
  fz_put_u64(rec, h);
  rill__inflate_end(&z);
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fz_whole_and_split(T, run, data, size);
}
