/* Fuzzes the request head parser (rill__http_head_parse on HTTP_REQUEST).
 *
 * Input: one byte of settings (the head's byte limit and field limit), then
 * bytes as a client would send them. Heads are parsed one after another, as
 * on a keep-alive connection whose requests have no body, until one fails,
 * the input ends mid-head, or 8 are done.
 *
 * Split check: once with all the bytes in one call; once with the bytes
 * arriving in pieces, each call given a fresh copy of everything not yet
 * parsed (the parser's contract: the first h->fed bytes were seen before,
 * though the buffer may have moved). The heads, their fields and the errors
 * must be the same. */
#include "fuzz_common.h"
#include "http_parse.h"

#define T "fuzz_http_head"

static const size_t max_bytes_of[] = {16384, 8192, 200, 40};
static const unsigned max_fields_of[] = {100, 0, 1, 2, 12, 13, 24, 5};

/* Records a parsed head (r > 0) or an error (r < 0), checking that every
 * offset lies within the head. */
static void record(fz_rec_t *rec, const rill_http_head_t *h, ssize_t r,
                   const uint8_t *buf, size_t len) {
  fz_put_u64(rec, (uint64_t)r);
  if (r < 0) {
    FZ_ASSERT(T, h->err_status >= 400 && h->err_status <= 599, "status %d",
              h->err_status);
    FZ_ASSERT(T, h->err_reason != NULL, "no reason for %d", h->err_status);
    fz_put_u64(rec, (uint64_t)h->err_status);
    fz_put_str(rec, h->err_reason);
    return;
  }
  if (r == 0) return;
  size_t hl = (size_t)r;
  FZ_ASSERT(T, hl == h->head_len && hl <= len, "head_len %zu, r %zd, len %zu",
            h->head_len, r, len);
  FZ_ASSERT(T, buf[hl - 1] == '\n', "a head that does not end a line");
  FZ_ASSERT(T, (uint64_t)h->url_off + h->url_len <= hl, "target %u+%u past the head %zu",
            h->url_off, h->url_len, hl);
  FZ_ASSERT(T, h->url_len > 0, "an empty target accepted");
  FZ_ASSERT(T, h->major == 1 && (h->minor == 0 || h->minor == 1), "HTTP/%d.%d accepted",
            h->major, h->minor);
  FZ_ASSERT(T, !((h->flags & RILL_HTTP_CHUNKED) && (h->flags & RILL_HTTP_LENGTH)),
            "both chunked and Content-Length");
  fz_put_u64(rec, (uint64_t)h->method);
  fz_put_u64(rec, (uint64_t)h->major);
  fz_put_u64(rec, (uint64_t)h->minor);
  fz_put_u64(rec, h->flags);
  fz_put_u64(rec, h->content_length);
  fz_put_bytes(rec, buf + h->url_off, h->url_len);
  fz_put_u64(rec, h->nfields);
  FZ_ASSERT(T, h->nfields <= h->max, "%u fields, max %u", h->nfields, h->max);
  for (unsigned i = 0; i < h->nfields; i++) {
    const rill_http_field_t *f = &h->fields[i];
    FZ_ASSERT(T, (uint64_t)f->name_off + f->name_len <= hl, "field %u name past the head",
              i);
    FZ_ASSERT(T, (uint64_t)f->value_off + f->value_len <= hl,
              "field %u value past the head", i);
    FZ_ASSERT(T, f->name_len > 0, "field %u: empty name accepted", i);
    for (uint32_t j = 0; j < f->name_len; j++)
      FZ_ASSERT(T, rill__http_tchar(buf[f->name_off + j]), "field %u: name byte %02x", i,
                buf[f->name_off + j]);
    for (uint32_t j = 0; j < f->value_len; j++) {
      uint8_t ch = buf[f->value_off + j];
      FZ_ASSERT(T, ch != '\r' && ch != '\n' && ch != 0, "field %u: value byte %02x", i,
                ch);
    }
    if (f->value_len > 0) {
      uint8_t first = buf[f->value_off], last = buf[f->value_off + f->value_len - 1];
      FZ_ASSERT(T, first != ' ' && first != '\t' && last != ' ' && last != '\t',
                "field %u: value keeps surrounding whitespace", i);
    }
    fz_put_bytes(rec, buf + f->name_off, f->name_len);
    fz_put_bytes(rec, buf + f->value_off, f->value_len);
  }
}

/* Parses heads from data[0..n) fed in pieces (split) or whole. */
static void run(fz_rec_t *rec, const uint8_t *data, size_t n, size_t max_bytes,
                unsigned max_fields, int split) {
  fz_rng_t g;
  fz_rng_init(&g, data, n);
  rill_http_head_t h;
  rill__http_head_init(&h, HTTP_REQUEST, max_fields);
  size_t off = 0;   /* where the current head starts */
  size_t avail = 0; /* bytes arrived so far */
  int more = 1;     /* wait for more bytes before the next call */
  for (int heads = 0; heads < 8;) {
    if (more) {
      if (avail == n) break;
      avail = split ? avail + fz_piece(&g, n - avail) : n;
    }
    more = 1;
    uint8_t *buf = fz_dup(data + off, avail - off);
    size_t fed = h.fed;
    ssize_t r = rill__http_head_parse(&h, (const char *)buf, avail - off, max_bytes);
    if (r == 0) {
      FZ_ASSERT(T, h.fed >= fed && h.fed <= avail - off, "fed %zu -> %zu of %zu", fed,
                h.fed, avail - off);
      free(buf);
      if (avail == n) {
        fz_put_tag(rec, 'i'); /* the input ended mid-head */
        break;
      }
      continue;
    }
    fz_put_tag(rec, 'h');
    record(rec, &h, r, buf, avail - off);
    free(buf);
    if (r < 0) break;
    off += (size_t)r;
    heads++;
    rill__http_head_reset(&h);
    /* The next head may be in the bytes that came with this one. */
    more = avail == off;
  }
  rill__http_head_free(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t cfg = data[0];
  size_t max_bytes = max_bytes_of[cfg & 3];
  unsigned max_fields = max_fields_of[(cfg >> 2) & 7];
  fz_rec_t whole = {0}, split = {0};
  run(&whole, data + 1, size - 1, max_bytes, max_fields, 0);
  run(&split, data + 1, size - 1, max_bytes, max_fields, 1);
  fz_check_split(T, &whole, &split);
  fz_rec_free(&whole);
  fz_rec_free(&split);
  return 0;
}
