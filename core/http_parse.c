/* HTTP/1.1 message syntax. See http_parse.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_parse.h"

/* ---- character classes ---- */

static const char tchars[] = "!#$%&'*+-.^_`|~";

int rill__http_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c != 0 && strchr(tchars, c) != NULL);
}

static unsigned char lower(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

int rill__http_name_is(const char *name, size_t len, const char *lo) {
  size_t i = 0;
  for (; i < len; i++)
    if (lo[i] == 0 || lower((unsigned char)name[i]) != (unsigned char)lo[i]) return 0;
  return lo[i] == 0;
}

static int value_is(const char *v, size_t len, const char *lo) {
  while (len && (*v == ' ' || *v == '\t'))
    v++, len--;
  while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
    len--;
  return rill__http_name_is(v, len, lo);
}

/* ---- head parsing ---- */

#define H(p) ((rill_http_head_t *)(p)->data)

static int on_url(llhttp_t *p, const char *at, size_t len) {
  rill_http_head_t *h = H(p);
  if (h->url_len == 0) h->url_off = (uint32_t)(at - h->base);
  h->url_len += (uint32_t)len;
  return 0;
}

static int on_url_complete(llhttp_t *p) {
  H(p)->url_done = 1;
  return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len) {
  rill_http_head_t *h = H(p);
  if (h->reason_len == 0) h->reason_off = (uint32_t)(at - h->base);
  h->reason_len += (uint32_t)len;
  return 0;
}

static int on_status_complete(llhttp_t *p) {
  H(p)->url_done = 1;
  return 0;
}

static int on_field(llhttp_t *p, const char *at, size_t len) {
  rill_http_head_t *h = H(p);
  uint32_t off = (uint32_t)(at - h->base);
  if (h->cur == 3) return 0;
  if (h->cur != 1) {
    if (h->nfields == h->max) {
      /* One field too many: refused once its name is complete (llhttp has
       * checked it then), so that a bad byte in it gives 400 whether the
       * name came in one piece or several. */
      h->cur = 3;
      return 0;
    }
    if (h->nfields == h->cap) {
      unsigned cap = h->cap * 2 > h->max ? h->max : h->cap * 2;
      rill_http_field_t *f = malloc(sizeof(*f) * cap);
      if (f == NULL) return -1;
      memcpy(f, h->fields, sizeof(*f) * h->nfields);
      if (h->fields != h->inline_fields) free(h->fields);
      h->fields = f;
      h->cap = cap;
    }
    rill_http_field_t *f = &h->fields[h->nfields++];
    f->name_off = off;
    f->name_len = (uint32_t)len;
    f->value_off = off;
    f->value_len = 0;
    h->cur = 1;
  } else {
    h->fields[h->nfields - 1].name_len += (uint32_t)len;
  }
  return 0;
}

static int on_field_complete(llhttp_t *p) {
  rill_http_head_t *h = H(p);
  if (h->cur != 3) return 0;
  h->err_status = 431;
  h->err_reason = "too many header fields";
  return -1;
}

static int on_value(llhttp_t *p, const char *at, size_t len) {
  rill_http_head_t *h = H(p);
  rill_http_field_t *f = &h->fields[h->nfields - 1];
  if (h->cur != 2) {
    f->value_off = (uint32_t)(at - h->base);
    f->value_len = (uint32_t)len;
    h->cur = 2;
  } else {
    f->value_len += (uint32_t)len;
  }
  return 0;
}

static int on_value_complete(llhttp_t *p) {
  rill_http_head_t *h = H(p);
  rill_http_field_t *f = &h->fields[h->nfields - 1];
  if (h->cur != 2) f->value_len = 0; /* an empty value: no span was seen */
  /* llhttp leaves trailing whitespace in; it is not part of the value. */
  while (f->value_len > 0) {
    char ch = h->base[f->value_off + f->value_len - 1];
    if (ch != ' ' && ch != '\t') break;
    f->value_len--;
  }
  h->cur = 0;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  return HPE_PAUSED;
}

static llhttp_settings_t settings;
static int settings_ready;

void rill__http_head_init(rill_http_head_t *h, int type, unsigned max_fields) {
  if (!settings_ready) {
    llhttp_settings_init(&settings);
    settings.on_url = on_url;
    settings.on_url_complete = on_url_complete;
    settings.on_status = on_status;
    settings.on_status_complete = on_status_complete;
    settings.on_header_field = on_field;
    settings.on_header_field_complete = on_field_complete;
    settings.on_header_value = on_value;
    settings.on_header_value_complete = on_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings_ready = 1;
  }
  memset(h, 0, sizeof(*h));
  h->type = type;
  h->max = max_fields ? max_fields : 100;
  h->fields = h->inline_fields;
  h->cap = RILL_HTTP_INLINE_FIELDS < h->max ? RILL_HTTP_INLINE_FIELDS : h->max;
  llhttp_init(&h->parser, (llhttp_type_t)type, &settings);
  h->parser.data = h;
}

void rill__http_head_free(rill_http_head_t *h) {
  if (h->fields != h->inline_fields) free(h->fields);
  h->fields = h->inline_fields;
  h->cap = RILL_HTTP_INLINE_FIELDS < h->max ? RILL_HTTP_INLINE_FIELDS : h->max;
}

void rill__http_head_reset(rill_http_head_t *h) {
  llhttp_reset(&h->parser);
  h->fed = 0;
  h->url_off = h->url_len = h->reason_off = h->reason_len = 0;
  h->nfields = 0;
  h->cur = 0;
  h->url_done = 0;
  h->flags = 0;
  h->content_length = 0;
  h->head_len = 0;
  h->err_status = 0;
  h->err_reason = NULL;
}

static ssize_t fail(rill_http_head_t *h, int status, const char *reason) {
  h->err_status = status;
  h->err_reason = reason;
  return -1;
}

/* 1 if a CR in buf is not the first half of a line's end. */
static int bare_cr(const char *buf, size_t len) {
  for (const char *p = buf, *end = buf + len; (p = memchr(p, '\r', (size_t)(end - p)));)
    if (++p == end || *p != '\n') return 1;
  return 0;
}

/* The checks llhttp leaves to us; buf holds the whole head. */
static ssize_t check_request(rill_http_head_t *h, const char *buf) {
  unsigned pf = h->parser.flags;
  if (h->major != 1) return fail(h, 505, "HTTP version not supported");

  if (bare_cr(buf, h->head_len)) return fail(h, 400, "bare CR in the head");

  /* obs-fold: a line of the head that starts with whitespace. */
  for (const char *p = buf, *end = buf + h->head_len;
       (p = memchr(p, '\n', (size_t)(end - p)));) {
    p++;
    if (p < end && (*p == ' ' || *p == '\t'))
      return fail(h, 400, "obsolete line folding");
  }

  int hosts = 0, tes = 0, te_ok = 1;
  for (unsigned i = 0; i < h->nfields; i++) {
    const rill_http_field_t *f = &h->fields[i];
    const char *name = buf + f->name_off, *value = buf + f->value_off;
    if (f->name_len == 0) return fail(h, 400, "empty header name");
    for (uint32_t j = 0; j < f->name_len; j++)
      if (!rill__http_tchar((unsigned char)name[j]))
        return fail(h, 400, "invalid character in header name");
    switch (lower((unsigned char)name[0])) {
    case 'h':
      if (rill__http_name_is(name, f->name_len, "host")) hosts++;
      break;
    case 't':
      if (rill__http_name_is(name, f->name_len, "transfer-encoding")) {
        tes++;
        if (!value_is(value, f->value_len, "chunked")) te_ok = 0;
      }
      break;
    case 'e':
      if (rill__http_name_is(name, f->name_len, "expect")) {
        if (!value_is(value, f->value_len, "100-continue"))
          return fail(h, 417, "unsupported expectation");
        if (h->minor >= 1) h->flags |= RILL_HTTP_CONTINUE;
      }
      break;
    }
  }
  if (h->minor >= 1 ? hosts != 1 : hosts > 1)
    return fail(h, 400, hosts ? "more than one Host" : "missing Host");

  if (pf & F_TRANSFER_ENCODING) {
    if (h->minor == 0) return fail(h, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (!(pf & F_CHUNKED))
      return fail(h, 400, "Transfer-Encoding does not end in chunked");
    if (!te_ok || tes != 1) return fail(h, 501, "unsupported transfer coding");
    h->flags |= RILL_HTTP_CHUNKED;
  } else if (pf & F_CONTENT_LENGTH) {
    h->flags |= RILL_HTTP_LENGTH;
    h->content_length = h->parser.content_length;
  }

  /* The request target: origin-form, absolute-form, or the two special ones. */
  const char *u = buf + h->url_off;
  size_t ul = h->url_len;
  if (h->method == HTTP_CONNECT) {
    if (ul == 0 || u[0] == '/') return fail(h, 400, "bad CONNECT target");
  } else if (ul == 1 && u[0] == '*') {
    if (h->method != HTTP_OPTIONS) return fail(h, 400, "bad request target");
  } else if (ul == 0 || (u[0] != '/' && !(ul > 7 && rill__http_name_is(u, 7, "http://")) &&
                         !(ul > 8 && rill__http_name_is(u, 8, "https://")))) {
    return fail(h, 400, "bad request target");
  }
  if ((pf & F_UPGRADE) && (pf & F_CONNECTION_UPGRADE)) h->flags |= RILL_HTTP_UPGRADE;
  return (ssize_t)h->head_len;
}

static ssize_t check_response(rill_http_head_t *h, const char *buf) {
  unsigned pf = h->parser.flags;
  if (h->major != 1) return fail(h, 502, "bad HTTP version");
  /* status-code = 3DIGIT (RFC 9112 4); llhttp takes one to three. */
  if (h->status < 100 || h->status > 999) return fail(h, 502, "bad status code");
  if (bare_cr(buf, h->head_len)) return fail(h, 502, "bare CR in the head");
  for (unsigned i = 0; i < h->nfields; i++) {
    const rill_http_field_t *f = &h->fields[i];
    for (uint32_t j = 0; j < f->name_len; j++)
      if (!rill__http_tchar((unsigned char)buf[f->name_off + j]))
        return fail(h, 502, "invalid character in header name");
  }
  if (pf & F_CHUNKED)
    h->flags |= RILL_HTTP_CHUNKED;
  else if (pf & F_TRANSFER_ENCODING)
    h->flags |= RILL_HTTP_EOF_BODY;
  else if (pf & F_CONTENT_LENGTH) {
    h->flags |= RILL_HTTP_LENGTH;
    h->content_length = h->parser.content_length;
  } else if (llhttp_message_needs_eof(&h->parser))
    h->flags |= RILL_HTTP_EOF_BODY;
  return (ssize_t)h->head_len;
}

ssize_t rill__http_head_parse(rill_http_head_t *h, const char *buf, size_t len,
                             size_t max_bytes) {
  if (len <= h->fed) return 0;
  size_t end = len < max_bytes ? len : max_bytes;
  h->base = buf;
  llhttp_errno_t e = HPE_OK;
  if (end > h->fed) e = llhttp_execute(&h->parser, buf + h->fed, end - h->fed);
  if (e == HPE_OK) {
    h->fed = end;
    if (end >= max_bytes) {
      if (!h->url_done && h->type == HTTP_REQUEST)
        return fail(h, 414, "request target too long");
      return fail(h, 431, "header section too large");
    }
    return 0;
  }
  if (e != HPE_PAUSED) {
    if (h->err_status) return -1; /* ours, from a callback */
    return fail(h, 400, llhttp_get_error_reason(&h->parser));
  }
  h->head_len = (size_t)(llhttp_get_error_pos(&h->parser) - buf);
  h->fed = h->head_len;
  h->method = h->parser.method;
  h->major = h->parser.http_major;
  h->minor = h->parser.http_minor;
  h->status = h->parser.status_code;
  if (llhttp_should_keep_alive(&h->parser)) h->flags |= RILL_HTTP_KEEPALIVE;
  return h->type == HTTP_REQUEST ? check_request(h, buf) : check_response(h, buf);
}

/* ---- chunked ---- */

void rill__chunked_init(rill_chunked_t *c, size_t max_trailer) {
  memset(c, 0, sizeof(*c));
  c->tmax = max_trailer;
}

void rill__chunked_free(rill_chunked_t *c) {
  free(c->trailers);
  c->trailers = NULL;
  c->tlen = c->tcap = 0;
}

static int hexval(unsigned char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  ch = lower(ch);
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  return -1;
}

#define CHUNK_LINE_MAX 4096

static ssize_t chunk_error(rill_chunked_t *c, const char *why) {
  c->state = RILL_CHUNK_ERROR;
  c->error = why;
  return -1;
}

static int trailer_put(rill_chunked_t *c, char ch) {
  if (c->tlen == c->tcap) {
    if (c->tlen >= c->tmax) return -1;
    size_t cap = c->tcap ? c->tcap * 2 : 256;
    if (cap > c->tmax) cap = c->tmax;
    char *t = realloc(c->trailers, cap);
    if (t == NULL) return -1;
    c->trailers = t;
    c->tcap = cap;
  }
  c->trailers[c->tlen++] = ch;
  return 0;
}

ssize_t rill__chunked_frame(rill_chunked_t *c, const char *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char ch = (unsigned char)p[i];
    switch (c->state) {
    case RILL_CHUNK_SIZE: {
      int v = hexval(ch);
      if (v >= 0) {
        if (c->remaining >> 59) return chunk_error(c, "chunk size too large");
        c->remaining = (c->remaining << 4) | (uint64_t)v;
        c->digits++;
      } else if (c->digits == 0) {
        return chunk_error(c, "invalid chunk size");
      } else if (ch == '\r') {
        c->state = RILL_CHUNK_SIZE_LF;
      } else if (ch == ';') {
        c->state = RILL_CHUNK_EXT;
      } else if (ch == ' ' || ch == '\t') {
        c->state = RILL_CHUNK_SIZE_WS;
      } else {
        return chunk_error(c, "invalid chunk size");
      }
      break;
    }
    case RILL_CHUNK_SIZE_WS:
      /* Whitespace after the size is allowed only before an extension. */
      if (ch == ';')
        c->state = RILL_CHUNK_EXT;
      else if (ch != ' ' && ch != '\t')
        return chunk_error(c, "invalid chunk size");
      break;
    case RILL_CHUNK_EXT:
      if (ch == '\r')
        c->state = RILL_CHUNK_SIZE_LF;
      else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
        return chunk_error(c, "invalid chunk extension");
      break;
    case RILL_CHUNK_SIZE_LF:
      if (ch != '\n') return chunk_error(c, "missing LF after chunk size");
      c->line = 0;
      if (c->remaining == 0) {
        c->state = RILL_CHUNK_TRAILER;
        c->cr = 0;
        c->tname = 1;
        c->tfields = 0;
      } else {
        c->state = RILL_CHUNK_DATA;
        return (ssize_t)(i + 1);
      }
      i++;
      continue;
    case RILL_CHUNK_DATA:
      return (ssize_t)i;
    case RILL_CHUNK_DATA_CR:
      if (ch != '\r') return chunk_error(c, "missing CRLF after chunk data");
      c->state = RILL_CHUNK_DATA_LF;
      break;
    case RILL_CHUNK_DATA_LF:
      if (ch != '\n') return chunk_error(c, "missing CRLF after chunk data");
      c->state = RILL_CHUNK_SIZE;
      c->digits = 0;
      c->remaining = 0;
      c->line = 0;
      i++;
      continue;
    case RILL_CHUNK_TRAILER:
      /* Field lines, each ending in CRLF, then an empty line (RFC 9112 7.1.2). */
      if (ch == '\n') {
        if (!c->cr) return chunk_error(c, "bare LF in trailer section");
        c->cr = 0;
        if (c->line == 1) { /* the empty line: the end (its CR is not kept) */
          c->tlen--;
          c->state = RILL_CHUNK_DONE;
          return (ssize_t)(i + 1);
        }
        if (c->tname) return chunk_error(c, "trailer field without a colon");
        if (++c->tfields > RILL_CHUNK_TRAILERS_MAX)
          return chunk_error(c, "too many trailer fields");
        if (trailer_put(c, (char)ch)) return chunk_error(c, "trailer section too large");
        c->line = 0;
        c->tname = 1;
      } else {
        if (c->cr) return chunk_error(c, "bare CR in trailer section");
        if (c->line == 0 && (ch == ' ' || ch == '\t'))
          return chunk_error(c, "obsolete line folding in trailer section");
        if (ch == '\r') {
          /* the line's end */
        } else if (c->tname) {
          if (ch == ':') {
            if (c->line == 0) return chunk_error(c, "empty trailer field name");
            c->tname = 0;
          } else if (!rill__http_tchar(ch)) {
            return chunk_error(c, "invalid character in trailer field name");
          }
        } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
          return chunk_error(c, "invalid byte in trailer section");
        }
        if (trailer_put(c, (char)ch)) return chunk_error(c, "trailer section too large");
        c->cr = ch == '\r';
        c->line++;
      }
      i++;
      continue;
    case RILL_CHUNK_DONE:
      return (ssize_t)i;
    default:
      return -1;
    }
    i++;
    if (++c->line > CHUNK_LINE_MAX) return chunk_error(c, "chunk size line too long");
  }
  return (ssize_t)i;
}

void rill__chunked_took(rill_chunked_t *c, uint64_t n) {
  c->remaining -= n;
  if (c->remaining == 0) c->state = RILL_CHUNK_DATA_CR;
}

int rill__chunked_trailers(const rill_chunked_t *c, rill_http_field_t *out, unsigned max) {
  const char *t = c->trailers;
  size_t n = c->tlen, i = 0;
  unsigned count = 0;
  while (i < n) {
    const char *eol = memchr(t + i, '\n', n - i);
    size_t end = eol ? (size_t)(eol - t) - 1 : n; /* before the CR */
    size_t j = i;
    while (j < end && rill__http_tchar((unsigned char)t[j]))
      j++;
    if (j == i || j >= end || t[j] != ':') return -1;
    if (count == max) return -1;
    rill_http_field_t *f = &out[count++];
    f->name_off = (uint32_t)i;
    f->name_len = (uint32_t)(j - i);
    j++;
    while (j < end && (t[j] == ' ' || t[j] == '\t'))
      j++;
    size_t vend = end;
    while (vend > j && (t[vend - 1] == ' ' || t[vend - 1] == '\t'))
      vend--;
    for (size_t k = j; k < vend; k++) {
      unsigned char ch = (unsigned char)t[k];
      if ((ch < 0x20 && ch != '\t') || ch == 0x7f) return -1;
    }
    f->value_off = (uint32_t)j;
    f->value_len = (uint32_t)(vend - j);
    i = eol ? (size_t)(eol - t) + 1 : n;
  }
  return (int)count;
}

/* ---- response heads ---- */

/* The reason phrases of IANA's HTTP Status Code Registry (RFC 9110 and the
 * RFCs it cites; 418 as user agents know it). */
static const struct {
  short status;
  const char *reason;
} reasons[] = {
  {100, "Continue"},
  {101, "Switching Protocols"},
  {102, "Processing"},
  {103, "Early Hints"},
  {200, "OK"},
  {201, "Created"},
  {202, "Accepted"},
  {203, "Non-Authoritative Information"},
  {204, "No Content"},
  {205, "Reset Content"},
  {206, "Partial Content"},
  {207, "Multi-Status"},
  {208, "Already Reported"},
  {226, "IM Used"},
  {300, "Multiple Choices"},
  {301, "Moved Permanently"},
  {302, "Found"},
  {303, "See Other"},
  {304, "Not Modified"},
  {305, "Use Proxy"},
  {307, "Temporary Redirect"},
  {308, "Permanent Redirect"},
  {400, "Bad Request"},
  {401, "Unauthorized"},
  {402, "Payment Required"},
  {403, "Forbidden"},
  {404, "Not Found"},
  {405, "Method Not Allowed"},
  {406, "Not Acceptable"},
  {407, "Proxy Authentication Required"},
  {408, "Request Timeout"},
  {409, "Conflict"},
  {410, "Gone"},
  {411, "Length Required"},
  {412, "Precondition Failed"},
  {413, "Content Too Large"},
  {414, "URI Too Long"},
  {415, "Unsupported Media Type"},
  {416, "Range Not Satisfiable"},
  {417, "Expectation Failed"},
  {418, "I'm a teapot"},
  {421, "Misdirected Request"},
  {422, "Unprocessable Content"},
  {423, "Locked"},
  {424, "Failed Dependency"},
  {425, "Too Early"},
  {426, "Upgrade Required"},
  {428, "Precondition Required"},
  {429, "Too Many Requests"},
  {431, "Request Header Fields Too Large"},
  {451, "Unavailable For Legal Reasons"},
  {500, "Internal Server Error"},
  {501, "Not Implemented"},
  {502, "Bad Gateway"},
  {503, "Service Unavailable"},
  {504, "Gateway Timeout"},
  {505, "HTTP Version Not Supported"},
  {506, "Variant Also Negotiates"},
  {507, "Insufficient Storage"},
  {508, "Loop Detected"},
  {510, "Not Extended"},
  {511, "Network Authentication Required"},
};

const char *rill__http_reason(int status) {
  size_t lo = 0, hi = sizeof(reasons) / sizeof(reasons[0]);
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (reasons[mid].status == status) return reasons[mid].reason;
    if (reasons[mid].status < status)
      lo = mid + 1;
    else
      hi = mid;
  }
  return "Unknown";
}

size_t rill__http_status_line(char *out, int status) {
  if (status < 100 || status > 999) status = 500;
  const char *reason = rill__http_reason(status);
  size_t rl = strlen(reason);
  memcpy(out, "HTTP/1.1 ", 9);
  out[9] = (char)('0' + status / 100);
  out[10] = (char)('0' + status / 10 % 10);
  out[11] = (char)('0' + status % 10);
  out[12] = ' ';
  memcpy(out + 13, reason, rl);
  memcpy(out + 13 + rl, "\r\n", 2);
  return 15 + rl;
}

size_t rill__http_u64(char *out, uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++)
    out[i] = tmp[n - 1 - i];
  return n;
}

size_t rill__http_hex(char *out, uint64_t v) {
  static const char digits[] = "0123456789abcdef";
  char tmp[16];
  size_t n = 0;
  do {
    tmp[n++] = digits[v & 15];
    v >>= 4;
  } while (v);
  for (size_t i = 0; i < n; i++)
    out[i] = tmp[n - 1 - i];
  return n;
}
