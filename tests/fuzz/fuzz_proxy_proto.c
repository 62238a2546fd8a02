/* Fuzzes the PROXY protocol parser (proxy_proto.c) the way a listener reads
 * a header: rill__proxy_parse over what has arrived so far, until it says
 * the header is whole or cannot be one.
 *
 * Input: one byte of settings (unused but for the split's seed), then the
 * bytes the balancer sent.
 *
 * Besides the split check it checks what the parser promises: it never
 * takes more than it was given, a v1 header is at most 107 bytes and a v2
 * one at most 16 + RILL_PROXY_V2_MAX, and the bytes after the header are
 * never looked at (an input cut right after the header parses the same).
 *
 * Split check: once with every byte at once; once with them arriving in
 * pieces (each call gets a fresh copy of all that has arrived). The result
 * (length or error, version, family, addresses) must be the same. */
#include "fuzz_common.h"
#include "proxy_proto.h"

#define T "fuzz_proxy_proto"

static void record(fz_rec_t *rec, int r, const rill_proxy_hdr_t *h) {
  fz_put_tag(rec, 'R');
  fz_put_u64(rec, (uint64_t)(int64_t)r);
  if (r <= 0) return;
  fz_put_u64(rec, (uint64_t)h->version);
  fz_put_u64(rec, (uint64_t)h->family);
  fz_put_u64(rec, (uint64_t)h->local);
  if (h->family == AF_INET || h->family == AF_INET6) {
    fz_put(rec, &h->src, sizeof(h->src));
    fz_put(rec, &h->dst, sizeof(h->dst));
  }
}

static int parse_copy(const uint8_t *data, size_t n, rill_proxy_hdr_t *h) {
  uint8_t *p = fz_dup(data, n);
  memset(h, 0, sizeof(*h));
  int r = rill__proxy_parse((const char *)p, n, h);
  free(p);
  FZ_ASSERT(T, r <= (int)n, "took %d of %zu bytes", r, n);
  FZ_ASSERT(T, r <= 16 + RILL_PROXY_V2_MAX, "a header of %d bytes", r);
  if (r > 0 && h->version == 1) FZ_ASSERT(T, r <= RILL_PROXY_V1_MAX, "v1 of %d bytes", r);
  return r;
}

static void run(fz_rec_t *rec, const uint8_t *data, size_t n, uint8_t cfg, int split) {
  (void)cfg;
  rill_proxy_hdr_t h;
  int r = 0;
  if (!split) {
    r = parse_copy(data, n, &h);
    if (r > 0) {
      /* What follows the header does not change it. */
      rill_proxy_hdr_t h2;
      int r2 = parse_copy(data, (size_t)r, &h2);
      FZ_ASSERT(T, r2 == r, "cut after the header: %d, not %d", r2, r);
    }
  } else {
    fz_rng_t g;
    fz_rng_init(&g, data, n);
    size_t have = 0;
    while (have < n) {
      have += fz_piece(&g, n - have);
      r = parse_copy(data, have, &h);
      if (r != 0) break;
    }
  }
  record(rec, r, &h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fz_whole_and_split(T, run, data, size);
}
