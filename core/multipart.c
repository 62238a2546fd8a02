/* multipart/form-data as a stream of part streams. See multipart.h. */
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

#define M(s) rill__container_of((s), rill_multipart_t, base)

enum {
  MP_PREAMBLE, /* looking for the first delimiter */
  MP_DELIM,    /* after a delimiter: "--", or padding and CRLF */
  MP_CLOSE2,   /* after "--boundary-" */
  MP_PAD,      /* transport padding (spaces, tabs) before the CRLF */
  MP_LF,       /* the CR of the delimiter line seen */
  MP_HEADERS,  /* a part's header section */
  MP_DATA,     /* a part's data, up to the next delimiter */
  MP_DONE      /* after the close delimiter */
};

static int fail(rill_multipart_t *m, int err, const char *why) {
  if (m->err == 0) {
    m->err = err;
    m->errmsg = why;
  }
  return m->err;
}

static int bad(rill_multipart_t *m, const char *why) {
  return fail(m, RILL_EPROTO, why);
}

/* An error or the end from the stream below: the end is too early, since
 * only the close delimiter ends a multipart body. */
static int fail_below(rill_multipart_t *m, int r) {
  if (r == RILL_EOF)
    return bad(m, "bad multipart: the body ended before the close delimiter");
  return fail(m, r, NULL);
}

/* RFC 2046's bchars, so that the delimiter has no CR but its first byte. */
static int bchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c != 0 && strchr("'()+_,-./:=? ", c) != NULL);
}

/* ---- a part's data ---- */

/* The part's bytes available now, as peek(). Takes from t what could begin
 * a delimiter (remembered in k), and the delimiter itself at the part's end. */
static int data_peek(rill_multipart_t *m, const char **p, size_t *n) {
  *p = NULL;
  *n = 0;
  for (;;) {
    if (m->err) return m->err;
    if (m->held > 0) {
      *p = m->delim + m->held_off;
      *n = m->held;
      return 0;
    }
    if (m->state != MP_DATA) return RILL_EOF;
    if (m->t == NULL) return fail(m, RILL_ECLOSED, NULL);
    const char *tp;
    size_t tn;
    int r = m->t->vt->peek(m->t, &tp, &tn);
    if (r < 0) return fail_below(m, r);
    if (tn == 0) return 0;
    if (m->k > 0) {
      /* Go on with a match begun before these bytes. */
      size_t i = 0;
      while (i < tn && m->k + i < m->dlen && tp[i] == m->delim[m->k + i])
        i++;
      if (i > 0) m->t->vt->consume(m->t, i);
      if (m->k + i == m->dlen) {
        m->k = 0;
        m->state = MP_DELIM;
        return RILL_EOF;
      }
      if (i == tn) {
        m->k += i;
        continue;
      }
      /* No delimiter: what matched is data. The byte that did not match
       * stays below; it may begin a delimiter of its own (a CR). */
      m->held_off = 0;
      m->held = m->k + i;
      m->k = 0;
      continue;
    }
    /* Data runs up to the first CR that begins the delimiter, or the part
     * of it these bytes have (the delimiter holds no other CR). */
    size_t j = 0;
    for (;;) {
      const char *cr = memchr(tp + j, '\r', tn - j);
      if (cr == NULL) {
        j = tn;
        break;
      }
      j = (size_t)(cr - tp);
      size_t cmp = tn - j < m->dlen ? tn - j : m->dlen;
      if (memcmp(tp + j, m->delim, cmp) == 0) break;
      j++;
    }
    if (j > 0) {
      *p = tp;
      *n = j;
      return 0;
    }
    size_t cmp = tn < m->dlen ? tn : m->dlen;
    m->t->vt->consume(m->t, cmp);
    if (cmp == m->dlen) {
      m->state = MP_DELIM;
      return RILL_EOF;
    }
    m->k = cmp;
  }
}

static void data_consume(rill_multipart_t *m, size_t n) {
  if (n == 0) return;
  if (m->held > 0) {
    assert(n <= m->held && "a part's reader takes no more than it was shown");
    m->held -= n;
    m->held_off += n;
    return;
  }
  if (m->t) m->t->vt->consume(m->t, n);
}

static int vt_peek(rill_stream_t *s, const char **p, size_t *n) {
  return data_peek(M(s), p, n);
}

static void vt_consume(rill_stream_t *s, size_t n) {
  data_consume(M(s), n);
}

static int vt_fill(rill_stream_t *s) {
  rill_multipart_t *m = M(s);
  if (m->err) return m->err;
  if (m->held > 0 || m->state != MP_DATA) return RILL_EOF;
  if (m->t == NULL) return fail(m, RILL_ECLOSED, NULL);
  int r = rill__stream_fill(m->t);
  if (r < 0) return fail_below(m, r);
  m->filling = 1;
  return 0;
}

static const char *vt_strerror(rill_stream_t *s, int err) {
  return rill__mp_errmsg(M(s), err);
}

/* A part's stream is the layer's: closing it only lets its reader go. */
static void vt_close(rill_stream_t *s) {}

static const rill_stream_vt part_vt = {
    .name = "multipart part",
    .peek = vt_peek,
    .consume = vt_consume,
    .fill = vt_fill,
    .close = vt_close,
    .strerror = vt_strerror,
};

/* ---- delimiters and header sections ---- */

/* Whether the header section ends with its empty line. */
static int headers_end(const rill_multipart_t *m) {
  const char *h = m->hbuf;
  return (m->hlen == 2 && h[0] == '\r') ||
         (m->hlen >= 4 && memcmp(h + m->hlen - 4, "\r\n\r\n", 4) == 0);
}

static int is_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Splits the header section into fields (name, value without the spaces
 * around it). Each line ends with CRLF (checked as it came); no obs-fold,
 * no CR or NUL inside. */
static int parse_headers(rill_multipart_t *m) {
  const char *h = m->hbuf;
  size_t end = m->hlen - 2, at = 0; /* the last line is the empty one */
  m->nfields = 0;
  while (at < end) {
    const char *lf = memchr(h + at, '\n', end - at);
    size_t eol = (size_t)(lf - h) - 1; /* at the CR */
    if (h[at] == ' ' || h[at] == '\t')
      return bad(m, "bad multipart: a folded part header line");
    size_t colon = at;
    while (colon < eol && is_tchar((unsigned char)h[colon]))
      colon++;
    if (colon == at || colon == eol || h[colon] != ':')
      return bad(m, "bad multipart: a part header line without a name and a colon");
    size_t v = colon + 1, ve = eol;
    while (v < ve && (h[v] == ' ' || h[v] == '\t'))
      v++;
    while (ve > v && (h[ve - 1] == ' ' || h[ve - 1] == '\t'))
      ve--;
    for (size_t i = v; i < ve; i++)
      if (h[i] == '\r' || h[i] == 0)
        return bad(m, "bad multipart: a CR or NUL in a part header");
    if (m->nfields == RILL_MP_FIELDS_MAX)
      return fail(m, RILL_EBODY, "too large: too many part header fields");
    rill_mp_field_t *f = &m->fields[m->nfields++];
    f->name_off = (uint32_t)at;
    f->name_len = (uint32_t)(colon - at);
    f->value_off = (uint32_t)v;
    f->value_len = (uint32_t)(ve - v);
    at = eol + 2;
  }
  return 0;
}

static int hbuf_append(rill_multipart_t *m, const char *p, size_t n) {
  if (m->hlen + n > m->hcap) {
    size_t cap = m->hcap ? m->hcap : 256;
    while (cap < m->hlen + n)
      cap *= 2;
    char *b = realloc(m->hbuf, cap);
    if (b == NULL) return fail(m, UV_ENOMEM, NULL);
    m->hbuf = b;
    m->hcap = cap;
  }
  memcpy(m->hbuf + m->hlen, p, n);
  m->hlen += n;
  return 0;
}

/* Runs the states between parts over p[0..n): the preamble, a delimiter's
 * line, a header section. Sets *used to the bytes taken; returns
 * RILL_EAGAIN for more bytes, 0 when a part's data begins, RILL_EOF after
 * the close delimiter, or an error. Takes nothing past what it needs. */
static int step(rill_multipart_t *m, const char *p, size_t n, size_t *used) {
  size_t i = 0;
  int r = RILL_EAGAIN;
  while (i < n && r == RILL_EAGAIN) {
    unsigned char c = (unsigned char)p[i];
    switch (m->state) {
    case MP_PREAMBLE:
      if (m->k == 0 && c != '\r') {
        const char *cr = memchr(p + i, '\r', n - i);
        i = cr ? (size_t)(cr - p) : n;
        break;
      }
      i++;
      if (c == (unsigned char)m->delim[m->k]) {
        if (++m->k == m->dlen) {
          m->k = 0;
          m->state = MP_DELIM;
        }
      } else {
        m->k = c == '\r';
      }
      break;
    case MP_DELIM:
      i++;
      if (c == '-')
        m->state = MP_CLOSE2;
      else if (c == ' ' || c == '\t')
        m->state = MP_PAD;
      else if (c == '\r')
        m->state = MP_LF;
      else
        r = bad(m, "bad multipart: a boundary followed by other bytes");
      break;
    case MP_CLOSE2:
      if (c != '-') {
        r = bad(m, "bad multipart: a boundary followed by other bytes");
        break;
      }
      i++;
      m->state = MP_DONE;
      r = RILL_EOF;
      break;
    case MP_PAD:
      i++;
      if (c == '\r')
        m->state = MP_LF;
      else if (c != ' ' && c != '\t')
        r = bad(m, "bad multipart: a boundary followed by other bytes");
      break;
    case MP_LF:
      i++;
      if (c != '\n') {
        r = bad(m, "bad multipart: a boundary line not ended by CRLF");
      } else if (m->nparts == m->max_parts) {
        r = fail(m, RILL_EBODY, "too large: too many parts");
      } else {
        m->nparts++;
        m->hlen = 0;
        m->state = MP_HEADERS;
      }
      break;
    case MP_HEADERS: {
      const char *lf = memchr(p + i, '\n', n - i);
      size_t take = lf ? (size_t)(lf - (p + i)) + 1 : n - i;
      if (m->hlen + take > m->max_header_bytes) {
        r = fail(m, RILL_EBODY, "too large: a part's header section");
        break;
      }
      if ((r = hbuf_append(m, p + i, take)) != 0) break;
      r = RILL_EAGAIN;
      i += take;
      if (lf == NULL) break;
      if (m->hlen < 2 || m->hbuf[m->hlen - 2] != '\r') {
        r = bad(m, "bad multipart: a part header line not ended by CRLF");
      } else if (headers_end(m)) {
        r = parse_headers(m);
        if (r == 0) m->state = MP_DATA;
      }
      break;
    }
    default:
      assert(0 && "step() runs between parts only");
      r = fail(m, RILL_ESTATE, NULL);
    }
  }
  *used = i;
  return r;
}

/* Asks below for more; RILL_EAGAIN when on_next() will follow. */
static int wait_more(rill_multipart_t *m) {
  int r = rill__stream_fill(m->t);
  if (r < 0) return fail_below(m, r);
  m->waiting = 1;
  return RILL_EAGAIN;
}

int rill__mp_next(rill_multipart_t *m) {
  m->waiting = 0;
  if (m->err) return m->err;
  if (m->state == MP_DONE) return RILL_EOF;
  if (m->t == NULL) return fail(m, RILL_ECLOSED, NULL);
  /* The rest of the current part is not wanted. */
  while (m->state == MP_DATA || m->held > 0) {
    const char *p;
    size_t n;
    int r = data_peek(m, &p, &n);
    if (r == RILL_EOF) break;
    if (r < 0) return r;
    if (n == 0) return wait_more(m);
    data_consume(m, n);
  }
  if (m->part_open) {
    m->part_open = 0;
    rill__stream_gone(&m->base);
  }
  for (;;) {
    const char *p;
    size_t n, used;
    int r = m->t->vt->peek(m->t, &p, &n);
    if (r < 0) return fail_below(m, r);
    if (n == 0) return wait_more(m);
    r = step(m, p, n, &used);
    if (used > 0) m->t->vt->consume(m->t, used);
    if (r == 0) m->part_open = 1;
    if (r != RILL_EAGAIN) return r;
  }
}

const char *rill__mp_errmsg(rill_multipart_t *m, int err) {
  if (err == m->err && m->errmsg) return m->errmsg;
  if (m->t) return rill__stream_errmsg(m->t, err);
  return rill__errmsg(err);
}

/* ---- the stream below ---- */

/* Bytes (or the end) below: for whoever asked, the waiting next() or the
 * part's reader; or, when neither did, for a reader bound under us (a
 * handler that left the parts and reads the body itself). */
static void below_readable(rill_binding_t *tb, int status) {
  rill_multipart_t *m = rill__container_of(tb, rill_multipart_t, tb);
  if (m->waiting) {
    m->waiting = 0;
    if (m->on_next) m->on_next(m);
  } else if (m->filling) {
    m->filling = 0;
    rill__stream_readable(&m->base, m->err ? m->err : status);
  } else {
    for (rill_binding_t *b = tb->below; b; b = b->below)
      if (b->ops->readable) {
        b->ops->readable(b, status);
        return;
      }
  }
}

/* The stream below is going: so are the parts. */
static void below_gone(rill_binding_t *tb) {
  rill_multipart_t *m = rill__container_of(tb, rill_multipart_t, tb);
  m->t = NULL;
  if (m->state != MP_DONE) fail(m, RILL_ECLOSED, NULL);
  if (m->waiting) {
    m->waiting = 0;
    if (m->on_next) m->on_next(m);
  }
  m->filling = 0;
  rill__stream_readable(&m->base, RILL_ECLOSED);
}

static const rill_binding_ops_t below_ops = {
    .readable = below_readable,
    .gone = below_gone,
};

int rill__mp_init(rill_multipart_t *m, rill_worker_t *w, rill_stream_t *t,
                  const char *boundary, size_t blen, unsigned max_parts,
                  size_t max_header_bytes) {
  if (blen == 0 || blen > RILL_MP_BOUNDARY_MAX || boundary[blen - 1] == ' ')
    return UV_EINVAL;
  for (size_t i = 0; i < blen; i++)
    if (!bchar((unsigned char)boundary[i])) return UV_EINVAL;
  memset(m, 0, sizeof(*m));
  rill__stream_init(&m->base, &part_vt, w);
  memcpy(m->delim, "\r\n--", 4);
  memcpy(m->delim + 4, boundary, blen);
  m->dlen = 4 + blen;
  m->state = MP_PREAMBLE;
  m->k = 2; /* the first delimiter may open the body: as if after a CRLF */
  m->max_parts = max_parts;
  m->max_header_bytes = max_header_bytes < 2 ? 2 : max_header_bytes;
  m->t = t;
  rill__stream_bind(t, &m->tb, &below_ops);
  return 0;
}

void rill__mp_release(rill_multipart_t *m) {
  rill__stream_unbind(&m->tb);
  m->t = NULL;
  if (m->err == 0 && m->state != MP_DONE) m->err = RILL_ECLOSED;
  m->part_open = 0;
  rill__stream_gone(&m->base);
  free(m->hbuf);
  m->hbuf = NULL;
  m->hlen = m->hcap = 0;
}
