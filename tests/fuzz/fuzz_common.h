/* What every fuzz target shares: a growable record of results, the PRNG that
 * cuts an input into pieces for the split check, and the check itself.
 *
 * The split check: a target runs its input once fed whole and once fed in
 * pieces, recording what the code under test did (bytes out, fields parsed,
 * errors) in an fz_rec_t each time; the two records must be equal. The piece
 * sizes come from a PRNG seeded by a hash of the input, so a run is
 * reproducible from the input alone. */
#ifndef RILL_FUZZ_COMMON_H
#define RILL_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the record ---- */

typedef struct {
  uint8_t *p;
  size_t len, cap;
} fz_rec_t;

static inline void fz_put(fz_rec_t *r, const void *p, size_t n) {
  if (r->len + n > r->cap) {
    size_t cap = r->cap ? r->cap : 1024;
    while (cap < r->len + n)
      cap *= 2;
    uint8_t *q = realloc(r->p, cap);
    if (q == NULL) abort();
    r->p = q;
    r->cap = cap;
  }
  if (n) memcpy(r->p + r->len, p, n);
  r->len += n;
}

static inline void fz_put_u64(fz_rec_t *r, uint64_t v) {
  fz_put(r, &v, sizeof(v));
}

/* A tag, so that records of different shapes never compare equal by chance. */
static inline void fz_put_tag(fz_rec_t *r, char tag) {
  fz_put(r, &tag, 1);
}

/* Bytes with their length in front. */
static inline void fz_put_bytes(fz_rec_t *r, const void *p, size_t n) {
  fz_put_u64(r, n);
  fz_put(r, p, n);
}

static inline void fz_put_str(fz_rec_t *r, const char *s) {
  fz_put_bytes(r, s ? s : "(null)", s ? strlen(s) : 6);
}

static inline void fz_rec_free(fz_rec_t *r) {
  free(r->p);
  r->p = NULL;
  r->len = r->cap = 0;
}

/* ---- pieces ---- */

static inline uint64_t fz_hash(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

typedef struct {
  uint64_t s;
} fz_rng_t;

static inline uint64_t fz_next(fz_rng_t *g) { /* splitmix64 */
  uint64_t z = (g->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline void fz_rng_init(fz_rng_t *g, const uint8_t *p, size_t n) {
  g->s = fz_hash(p, n);
}

/* The next piece's size, 1..left: mostly small pieces (single bytes cut
 * every field and frame header apart), some larger ones. */
static inline size_t fz_piece(fz_rng_t *g, size_t left) {
  static const size_t scale[] = {1, 2, 3, 7, 16, 61, 300, 4096};
  uint64_t r = fz_next(g);
  size_t k = 1 + (size_t)((r >> 8) % scale[r & 7]);
  return k < left ? k : left;
}

/* ---- the check ---- */

static inline void fz_hexdump(const char *what, const uint8_t *p, size_t n, size_t at) {
  size_t from = at > 48 ? at - 48 : 0, to = at + 48 < n ? at + 48 : n;
  fprintf(stderr, "  %s (%zu bytes), from offset %zu:\n    ", what, n, from);
  for (size_t i = from; i < to; i++)
    fprintf(stderr, "%s%02x", i == at ? "[" : "", p[i]);
  fprintf(stderr, "%s\n    ", to == at ? "[" : "");
  for (size_t i = from; i < to; i++)
    fputc(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.', stderr);
  fputc('\n', stderr);
}

/* Prints a record, bytes escaped (FZ_DUMP=1 in the environment). */
static inline void fz_dump(const char *target, const fz_rec_t *r) {
  fprintf(stderr, "==%s== record (%zu bytes): ", target, r->len);
  for (size_t i = 0; i < r->len; i++) {
    uint8_t c = r->p[i];
    if (c >= 0x20 && c < 0x7f && c != '\\')
      fputc(c, stderr);
    else
      fprintf(stderr, "\\x%02x", c);
  }
  fputc('\n', stderr);
}

/* Aborts, with where the records part, unless whole and split are equal. */
static inline void fz_check_split(const char *target, const fz_rec_t *whole,
                                  const fz_rec_t *split) {
  static int dump = -1;
  if (dump < 0) dump = getenv("FZ_DUMP") != NULL;
  if (dump) fz_dump(target, whole);
  if (whole->len == split->len &&
      (whole->len == 0 || memcmp(whole->p, split->p, whole->len) == 0))
    return;
  size_t at = 0;
  while (at < whole->len && at < split->len && whole->p[at] == split->p[at])
    at++;
  fprintf(stderr,
          "\n==%s== SPLIT MISMATCH: the input fed whole and fed in pieces gave "
          "different results (first difference at byte %zu of the record)\n",
          target, at);
  fz_hexdump("fed whole", whole->p, whole->len, at);
  fz_hexdump("fed in pieces", split->p, split->len, at);
  abort();
}

/* The entry point of a target whose run(rec, input, n, cfg, split) records
 * what the code did: the first byte configures the run, the rest is the
 * input, fed whole (split 0) and in pieces (split 1); the records must agree. */
typedef void (*fz_run_t)(fz_rec_t *rec, const uint8_t *data, size_t n, uint8_t cfg, int split);
static inline int fz_whole_and_split(const char *target, fz_run_t run, const uint8_t *data,
                                     size_t size) {
  if (size < 1) return 0;
  fz_rec_t whole = {0}, split = {0};
  run(&whole, data + 1, size - 1, data[0], 0);
  run(&split, data + 1, size - 1, data[0], 1);
  fz_check_split(target, &whole, &split);
  fz_rec_free(&whole);
  fz_rec_free(&split);
  return 0;
}

/* Aborts with a message: an invariant of the code under test does not hold. */
#define FZ_ASSERT(target, cond, ...)                                                     \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      fprintf(stderr, "\n==%s== INVARIANT BROKEN (%s:%d): %s: ", target, __FILE__,       \
              __LINE__, #cond);                                                          \
      fprintf(stderr, __VA_ARGS__);                                                      \
      fprintf(stderr, "\n");                                                             \
      abort();                                                                           \
    }                                                                                    \
  } while (0)

/* Known bugs of the code under test that a long run may be told to step
 * over, so that it can look for others: FZ_ALLOW=tag[,tag...] in the
 * environment (the tags are listed in tests/fuzz/README.md). With nothing
 * allowed, the default, a target aborts on each of them. */
static inline int fz_allow(const char *tag) {
  static const char *allow;
  static int read;
  if (!read) {
    allow = getenv("FZ_ALLOW");
    read = 1;
  }
  size_t n = strlen(tag);
  for (const char *p = allow; p && *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len == n && memcmp(p, tag, n) == 0) return 1;
    p = end ? end + 1 : NULL;
  }
  return 0;
}

/* A copy of p[0..n) in a buffer of exactly n bytes, so that AddressSanitizer
 * catches a read past what was given (and the bytes have moved, as the
 * parsers allow). */
static inline uint8_t *fz_dup(const uint8_t *p, size_t n) {
  uint8_t *q = malloc(n ? n : 1);
  if (q == NULL) abort();
  if (n) memcpy(q, p, n);
  return q;
}

#endif
