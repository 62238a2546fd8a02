/* HTTP/1.1 message syntax (RFC 9112): heads parsed by llhttp and checked for
 * the shapes that enable request smuggling; the chunked transfer coding;
 * pieces of response heads. No I/O and no Lua: usable and testable alone. */
#ifndef RILL_HTTP1_H
#define RILL_HTTP1_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <llhttp.h>

/* A field line, as offsets into the head (or trailer section) it came from. */
typedef struct {
  uint32_t name_off, name_len, value_off, value_len;
} rill_http_field_t;

enum {
  RILL_HTTP_CHUNKED = 1 << 0,
  RILL_HTTP_LENGTH = 1 << 1,    /* Content-Length given */
  RILL_HTTP_KEEPALIVE = 1 << 2, /* the connection may carry another message */
  RILL_HTTP_CONTINUE = 1 << 3,  /* Expect: 100-continue */
  RILL_HTTP_UPGRADE = 1 << 4,   /* Connection: upgrade with Upgrade: */
  RILL_HTTP_EOF_BODY = 1 << 5,  /* response body delimited by close */
};

#define RILL_HTTP_INLINE_FIELDS 12

typedef struct {
  llhttp_t parser;
  const char *base;                /* the head's first byte, during a parse call */
  size_t fed;                      /* bytes llhttp has seen */
  uint32_t url_off, url_len;       /* request target */
  uint32_t reason_off, reason_len; /* response reason phrase */
  rill_http_field_t *fields;
  unsigned nfields, cap, max;
  rill_http_field_t inline_fields[RILL_HTTP_INLINE_FIELDS];
  int cur; /* what the last span was: 0 none, 1 name, 2 value, 3 a name past max */
  int url_done;
  int type; /* HTTP_REQUEST or HTTP_RESPONSE */
  /* results */
  int method, major, minor, status;
  unsigned flags;
  uint64_t content_length;
  size_t head_len;
  /* on error: the status to answer with and why */
  int err_status;
  const char *err_reason;
} rill_http_head_t;

/* type is HTTP_REQUEST or HTTP_RESPONSE; max_fields bounds the field count. */
void rill__http_head_init(rill_http_head_t *h, int type, unsigned max_fields);
void rill__http_head_free(rill_http_head_t *h);
/* Prepares for the next message on the same connection. */
void rill__http_head_reset(rill_http_head_t *h);

/* Parses a head at buf[0..len), of which the first h->fed bytes were given
 * before (unchanged, though buf may have moved). Returns the head's length
 * once complete, 0 when it needs more bytes, or -1 with h->err_status (400,
 * 414, 431, 501, 505, 417) and h->err_reason. The head may not exceed
 * max_bytes. For requests it rejects: Content-Length with Transfer-Encoding,
 * repeated Content-Length, a Transfer-Encoding other than "chunked", any
 * Transfer-Encoding in HTTP/1.0, obs-fold, whitespace before a colon, control
 * bytes in fields, a CR not followed by LF, a missing or repeated Host in
 * HTTP/1.1, bad targets. */
ssize_t rill__http_head_parse(rill_http_head_t *h, const char *buf, size_t len,
                             size_t max_bytes);

/* Case-insensitive comparison of a field name with a lower-case name. */
int rill__http_name_is(const char *name, size_t len, const char *lower);

/* 1 if c is a token character (RFC 9110 tchar). */
int rill__http_tchar(unsigned char c);

/* ---- the chunked transfer coding ---- */

enum {
  RILL_CHUNK_SIZE,
  RILL_CHUNK_SIZE_WS,
  RILL_CHUNK_EXT,
  RILL_CHUNK_SIZE_LF,
  RILL_CHUNK_DATA,
  RILL_CHUNK_DATA_CR,
  RILL_CHUNK_DATA_LF,
  RILL_CHUNK_TRAILER,
  RILL_CHUNK_DONE,
  RILL_CHUNK_ERROR,
};

/* The decoder's whole state: nothing in it depends on another field being
 * kept in step (the trailer bytes are output, not state). */
typedef struct {
  int state;
  uint64_t remaining; /* payload bytes left in the current chunk */
  unsigned digits;
  unsigned cr;      /* TRAILER: the last byte was a CR */
  unsigned tname;   /* TRAILER: in a field's name (before its colon) */
  unsigned tfields; /* TRAILER: field lines so far */
  size_t line;      /* bytes in the current line */
  char *trailers; /* the trailer section, raw (CRLF line ends), once DONE */
  size_t tlen, tcap, tmax;
  const char *error;
} rill_chunked_t;

/* The most field lines a trailer section may have. */
#define RILL_CHUNK_TRAILERS_MAX 100

/* max_trailer bounds the trailer section's size. The trailer section's
 * lines are checked as they come (a token, a colon, a value without control
 * bytes; no obs-fold, no bare CR or LF), so a section that ends is one
 * rill__chunked_trailers splits. */
void rill__chunked_init(rill_chunked_t *c, size_t max_trailer);
void rill__chunked_free(rill_chunked_t *c);
/* Reads framing from p[0..n): returns how many bytes it consumed, stopping
 * when a chunk's payload starts (state DATA, remaining > 0) or the body ends
 * (state DONE). Returns -1 on a framing error (c->error says which). */
ssize_t rill__chunked_frame(rill_chunked_t *c, const char *p, size_t n);
/* The caller took n bytes of payload. */
void rill__chunked_took(rill_chunked_t *c, uint64_t n);
/* Splits the trailer section into fields. Returns the count, or -1 if a line
 * is malformed. */
int rill__chunked_trailers(const rill_chunked_t *c, rill_http_field_t *out, unsigned max);

/* ---- response heads ---- */

/* The reason phrase for status, or "Unknown". */
const char *rill__http_reason(int status);
/* Writes "HTTP/1.1 <status> <reason>\r\n" to out (64 bytes suffice). */
size_t rill__http_status_line(char *out, int status);
/* Writes v in decimal / hexadecimal; out needs 20 / 16 bytes. */
size_t rill__http_u64(char *out, uint64_t v);
size_t rill__http_hex(char *out, uint64_t v);

#endif
