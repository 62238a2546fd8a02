/* Fuzzes what the HTTP client does with a response: the head parser on
 * HTTP_RESPONSE (rill__http_head_parse), interim 1xx heads skipped, the body
 * mode chosen as core.http_parse_response chooses it, then the body read as
 * a stream (rill__body_new over an in-memory transport: Content-Length,
 * chunked with trailers, or delimited by the end of the connection), and
 * what is left in the transport after the body.
 *
 * Input: one byte of settings (the request method the response answers, the
 * limits, a body size limit), then the bytes a server would send.
 *
 * Split check: once with all the bytes at once; once in pieces: each head
 * parse call gets a fresh copy of what has arrived, and the body's transport
 * gets the rest piece by piece, the body being read as each arrives. Heads,
 * body bytes, trailers, errors and the bytes left must be the same. */
#include "fuzz_common.h"
#include "http_body.h"
#include "http_parse.h"
#include "memstream.h"

#define T "fuzz_http_response"

static rill_worker_t *W;

static const char *const methods[] = {"GET", "HEAD", "CONNECT", "POST"};

/* ---- the body's reader ---- */

typedef struct {
  rill_binding_t b;
  rill_body_t *body;
  fz_rec_t *rec;
  int end;      /* 0 reading; 1 at the end; < 0 the error */
  int gone;     /* the body's stream went away */
  uint64_t got; /* payload bytes */
  int waiting;
} reader_t;

static void read_some(reader_t *rd) {
  rill_stream_t *s = &rd->body->base;
  rd->waiting = 0;
  while (rd->end == 0) {
    const char *p;
    size_t n;
    int r = s->vt->peek(s, &p, &n);
    if (r == RILL_EOF) {
      rd->end = 1;
      break;
    }
    if (r < 0) {
      rd->end = r;
      break;
    }
    if (n > 0) {
      fz_put(rd->rec, p, n); /* payload bytes, however they were cut */
      rd->got += n;
      s->vt->consume(s, n);
      continue;
    }
    r = s->vt->fill(s);
    if (r == RILL_EOF) {
      rd->end = 1;
      break;
    }
    if (r < 0) {
      rd->end = r;
      break;
    }
    r = s->vt->peek(s, &p, &n);
    if (r == 0 && n == 0) {
      rd->waiting = 1; /* readable() follows */
      return;
    }
  }
}

static void reader_readable(rill_binding_t *b, int status) {
  reader_t *rd = rill__container_of(b, reader_t, b);
  FZ_ASSERT(T, rd->waiting, "readable() with no fill() pending");
  read_some(rd);
}

static void reader_gone(rill_binding_t *b) {
  reader_t *rd = rill__container_of(b, reader_t, b);
  rd->gone = 1;
}

static const rill_binding_ops_t reader_ops = {.readable = reader_readable,
                                              .gone = reader_gone};

/* ---- one run ---- */

static void record_head(fz_rec_t *rec, const rill_http_head_t *h, ssize_t r,
                        const uint8_t *buf, size_t len) {
  fz_put_u64(rec, (uint64_t)r);
  if (r < 0) {
    FZ_ASSERT(T, h->err_status >= 400 && h->err_status <= 599, "status %d",
              h->err_status);
    fz_put_u64(rec, (uint64_t)h->err_status);
    fz_put_str(rec, h->err_reason);
    return;
  }
  size_t hl = (size_t)r;
  FZ_ASSERT(T, hl <= len && hl == h->head_len, "head_len %zu of %zu", hl, len);
  FZ_ASSERT(T, (uint64_t)h->reason_off + h->reason_len <= hl, "reason past the head");
  /* RFC 9112 4: status-code = 3DIGIT (llhttp 8 takes one to three). */
  FZ_ASSERT(T, h->status >= 100 && h->status <= 999, "status %d accepted", h->status);
  fz_put_u64(rec, (uint64_t)h->status);
  fz_put_u64(rec, (uint64_t)h->major);
  fz_put_u64(rec, (uint64_t)h->minor);
  fz_put_u64(rec, h->flags);
  fz_put_u64(rec, h->content_length);
  fz_put_bytes(rec, buf + h->reason_off, h->reason_len);
  fz_put_u64(rec, h->nfields);
  for (unsigned i = 0; i < h->nfields; i++) {
    const rill_http_field_t *f = &h->fields[i];
    FZ_ASSERT(T, (uint64_t)f->name_off + f->name_len <= hl, "field %u name past the head",
              i);
    FZ_ASSERT(T, (uint64_t)f->value_off + f->value_len <= hl,
              "field %u value past the head", i);
    fz_put_bytes(rec, buf + f->name_off, f->name_len);
    fz_put_bytes(rec, buf + f->value_off, f->value_len);
  }
}

static void settle(void) {
  for (int i = 0; memstream_run() > 0; i++)
    FZ_ASSERT(T, i < 100000, "callbacks without end");
}

static void run(fz_rec_t *rec, const uint8_t *data, size_t n, uint8_t cfg, int split) {
  fz_rng_t g;
  fz_rng_init(&g, data, n);
  const char *method = methods[cfg & 3];
  size_t max_bytes = (cfg & 4) ? 120 : 65536 + 4;
  unsigned max_fields = (cfg & 4) ? 3 : 256;
  uint64_t body_max = (cfg & 8) ? 40 : 0;

  /* The heads: interim ones (1xx but 101) are skipped, as the client does. */
  rill_http_head_t h;
  rill__http_head_init(&h, HTTP_RESPONSE, max_fields);
  size_t off = 0, avail = 0;
  int more = 1, final = 0;
  for (int heads = 0; heads < 8 && !final;) {
    if (more) {
      if (avail == n) break;
      avail = split ? avail + fz_piece(&g, n - avail) : n;
    }
    more = 1;
    uint8_t *buf = fz_dup(data + off, avail - off);
    ssize_t r = rill__http_head_parse(&h, (const char *)buf, avail - off, max_bytes);
    if (r == 0) {
      free(buf);
      continue;
    }
    fz_put_tag(rec, 'h');
    record_head(rec, &h, r, buf, avail - off);
    free(buf);
    if (r < 0) break;
    off += (size_t)r;
    heads++;
    if (h.status >= 200 || h.status == 101) {
      final = 1;
    } else {
      rill__http_head_reset(&h);
      more = avail == off;
    }
  }
  if (!final) {
    fz_put_tag(rec, 'i');
    rill__http_head_free(&h);
    return;
  }

  /* The body mode, as core.http_parse_response sets it. */
  int mode = RILL_BODY_NONE;
  int nobody = strcmp(method, "HEAD") == 0 || h.status < 200 || h.status == 204 ||
               h.status == 304 || (strcmp(method, "CONNECT") == 0 && h.status < 300);
  if (!nobody) {
    if (h.flags & RILL_HTTP_CHUNKED)
      mode = RILL_BODY_CHUNKED;
    else if (h.flags & RILL_HTTP_LENGTH)
      mode = h.content_length > 0 ? RILL_BODY_LENGTH : RILL_BODY_NONE;
    else
      mode = RILL_BODY_EOF;
  }
  fz_put_tag(rec, 'm');
  fz_put_u64(rec, (uint64_t)mode);
  uint64_t clen = h.content_length;
  rill__http_head_free(&h);

  /* The body over the transport; the bytes after the head have arrived up
   * to avail, the rest comes in pieces. */
  memstream_t *m = memstream_new(W);
  if (m == NULL) abort();
  rill_binding_t owner = {0}; /* the connection's reader, under the body */
  static const rill_binding_ops_t owner_ops = {0};
  rill__stream_bind(&m->base, &owner, &owner_ops);
  memstream_feed(m, data + off, avail - off);
  reader_t rd = {.rec = rec};
  rd.body = rill__body_new(W, &m->base, mode, clen, body_max);
  if (rd.body == NULL) abort();
  rill__stream_bind(&rd.body->base, &rd.b, &reader_ops);
  fz_put_tag(rec, 'b');
  read_some(&rd);
  settle();
  while (avail < n) {
    size_t k = split ? fz_piece(&g, n - avail) : n - avail;
    memstream_feed(m, data + avail, k);
    avail += k;
    settle();
  }
  memstream_eof(m);
  settle();
  FZ_ASSERT(T, rd.end != 0, "the body neither ended nor failed at the end of its input");
  fz_put_tag(rec, 'e');
  fz_put_u64(rec, (uint64_t)rd.end);
  fz_put_u64(rec, rd.got);
  if (body_max && rd.end == 1)
    FZ_ASSERT(T, rd.got <= body_max, "a %s body of %llu bytes read whole, its limit %llu",
              mode == RILL_BODY_LENGTH ? "Content-Length" : "close-delimited",
              (unsigned long long)rd.got, (unsigned long long)body_max);
  if (mode == RILL_BODY_LENGTH && rd.end == 1)
    FZ_ASSERT(T, rd.got == clen, "a body of %llu bytes ended after %llu",
              (unsigned long long)clen, (unsigned long long)rd.got);
  const rill_chunked_t *ch = rill__body_trailers(rd.body);
  if (ch) {
    rill_http_field_t f[64];
    int k = rill__chunked_trailers(ch, f, 64);
    fz_put_tag(rec, 't');
    fz_put_bytes(rec, ch->trailers, ch->tlen);
    fz_put_u64(rec, (uint64_t)k);
    for (int i = 0; i < k; i++) {
      FZ_ASSERT(T,
                (uint64_t)f[i].name_off + f[i].name_len <= ch->tlen &&
                    (uint64_t)f[i].value_off + f[i].value_len <= ch->tlen,
                "trailer %d past the section", i);
      fz_put_bytes(rec, ch->trailers + f[i].name_off, f[i].name_len);
      fz_put_bytes(rec, ch->trailers + f[i].value_off, f[i].value_len);
    }
  }
  /* A body that ended let go of the transport; what it did not take is the
   * next message's. */
  if (rd.end == 1)
    FZ_ASSERT(T, rd.body->t == NULL, "an ended body still holds its transport");
  rd.body->base.vt->close(&rd.body->base); /* frees it */
  FZ_ASSERT(T, rd.gone && rd.b.s == NULL, "closing the body did not let its reader go");
  FZ_ASSERT(T, m->base.top == &owner, "the body left a binding on its transport");
  /* What the body left is the next message's. (After a framing error it
   * depends on the cut: the decoder takes the bytes it was given before the
   * bad one. The connection is not used again then.) */
  if (rd.end == 1) {
    const char *p;
    size_t left;
    m->base.vt->peek(&m->base, &p, &left);
    fz_put_tag(rec, 'r');
    fz_put_bytes(rec, p, left);
  }
  rill__stream_unbind(&owner);
  memstream_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (W == NULL) {
    W = rill__worker_new(NULL);
    if (W == NULL) abort();
    W->log_level = RILL_LOG_ERROR;
  }
  return fz_whole_and_split(T, run, data, size);
}
