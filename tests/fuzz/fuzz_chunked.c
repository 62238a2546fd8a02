/* Fuzzes the chunked decoder (rill__chunked_frame, rill__chunked_took,
 * rill__chunked_trailers): the payload it lets through, the trailer section
 * and its fields, where the body ends, and the errors.
 *
 * Input: one byte of settings (the trailer section's limit, the field count
 * rill__chunked_trailers may return), then the body as sent on the wire.
 *
 * Split check: once with all the bytes available at once; once with them
 * arriving in pieces, each framing call given a fresh copy of what has
 * arrived and not been consumed, and payload taken as far as each piece
 * reaches (as http_body.c takes it). The payload, the trailers, the error
 * and the bytes left after the body must be the same. */
#include "fuzz_common.h"
#include "http_parse.h"

#define T "fuzz_chunked"

static const size_t tmax_of[] = {16384, 1, 2, 3, 16, 64, 255, 256};
static const unsigned fmax_of[] = {64, 0, 1, 2};

static void run(fz_rec_t *rec, const uint8_t *data, size_t n, size_t tmax, unsigned fmax,
                int split) {
  fz_rng_t g;
  fz_rng_init(&g, data, n);
  rill_chunked_t c;
  rill__chunked_init(&c, tmax);
  size_t pos = 0, avail = 0;
  uint64_t payload = 0;
  fz_put_tag(rec, 'p');
  for (;;) {
    if (c.state == RILL_CHUNK_DONE || c.state == RILL_CHUNK_ERROR) break;
    if (pos == avail) {
      if (avail == n) break;
      avail = split ? avail + fz_piece(&g, n - avail) : n;
    }
    if (c.state == RILL_CHUNK_DATA) {
      FZ_ASSERT(T, c.remaining > 0, "DATA with nothing remaining");
      size_t take = avail - pos < c.remaining ? avail - pos : (size_t)c.remaining;
      fz_put(rec, data + pos, take);
      payload += take;
      pos += take;
      uint64_t before = c.remaining;
      rill__chunked_took(&c, take);
      FZ_ASSERT(T, c.remaining == before - take, "took %zu of %llu", take,
                (unsigned long long)before);
      FZ_ASSERT(T, c.state == (c.remaining ? RILL_CHUNK_DATA : RILL_CHUNK_DATA_CR),
                "state %d after taking payload", c.state);
      continue;
    }
    uint8_t *buf = fz_dup(data + pos, avail - pos);
    ssize_t k = rill__chunked_frame(&c, (const char *)buf, avail - pos);
    free(buf);
    if (k < 0) {
      FZ_ASSERT(T, c.state == RILL_CHUNK_ERROR && c.error, "an error without its state");
      break;
    }
    FZ_ASSERT(T, (size_t)k <= avail - pos, "consumed %zd of %zu", k, avail - pos);
    /* It stops only where it must: at a payload, at the end, or when it
     * has taken every byte given. */
    FZ_ASSERT(T,
              (size_t)k == avail - pos || c.state == RILL_CHUNK_DATA ||
                  c.state == RILL_CHUNK_DONE,
              "stopped at %zd of %zu in state %d", k, avail - pos, c.state);
    if (c.state == RILL_CHUNK_DATA) FZ_ASSERT(T, c.remaining > 0, "DATA of 0 bytes");
    pos += (size_t)k;
  }
  fz_put_tag(rec, 'e');
  fz_put_u64(rec, payload);
  fz_put_u64(rec, (uint64_t)c.state);
  fz_put_str(rec, c.state == RILL_CHUNK_ERROR ? c.error : NULL);
  /* Bytes after the body. (A failed call reports nothing it took, so after
   * an error the position depends on the cut.) */
  if (c.state != RILL_CHUNK_ERROR) fz_put_u64(rec, n - pos);
  if (c.state == RILL_CHUNK_DONE) {
    FZ_ASSERT(T, c.tlen <= tmax, "a trailer section of %zu bytes, limit %zu", c.tlen,
              tmax);
    fz_put_bytes(rec, c.trailers, c.tlen);
    for (size_t i = 0; i < c.tlen; i++) {
      uint8_t ch = (uint8_t)c.trailers[i];
      FZ_ASSERT(T,
                ch != 0 && (ch != '\r' || (i + 1 < c.tlen && c.trailers[i + 1] == '\n')),
                "byte %02x at %zu of the trailer section", ch, i);
    }
    rill_http_field_t f[64];
    int nf = rill__chunked_trailers(&c, f, fmax);
    FZ_ASSERT(T, nf <= (int)fmax, "%d fields, max %u", nf, fmax);
    fz_put_u64(rec, (uint64_t)nf);
    for (int i = 0; i < nf; i++) {
      FZ_ASSERT(T, f[i].name_len > 0, "an empty trailer name");
      FZ_ASSERT(T,
                (uint64_t)f[i].name_off + f[i].name_len <= c.tlen &&
                    (uint64_t)f[i].value_off + f[i].value_len <= c.tlen,
                "trailer %d past the section", i);
      for (uint32_t j = 0; j < f[i].name_len; j++)
        FZ_ASSERT(T, rill__http_tchar((unsigned char)c.trailers[f[i].name_off + j]),
                  "trailer %d: name byte %02x", i,
                  (uint8_t)c.trailers[f[i].name_off + j]);
      fz_put_bytes(rec, c.trailers + f[i].name_off, f[i].name_len);
      fz_put_bytes(rec, c.trailers + f[i].value_off, f[i].value_len);
    }
  }
  rill__chunked_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t tmax = tmax_of[data[0] & 7];
  unsigned fmax = fmax_of[(data[0] >> 3) & 3];
  fz_rec_t whole = {0}, split = {0};
  run(&whole, data + 1, size - 1, tmax, fmax, 0);
  run(&split, data + 1, size - 1, tmax, fmax, 1);
  fz_check_split(T, &whole, &split);
  fz_rec_free(&whole);
  fz_rec_free(&split);
  return 0;
}
