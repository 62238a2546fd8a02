/* The WebSocket protocol (RFC 6455). See ws_frame.h. */
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>

#include "ws_frame.h"

/* ---- frame headers ---- */

void rill__ws_header_init(rill_ws_header_t *h, int expect_masked, uint64_t max_frame) {
  memset(h, 0, sizeof(*h));
  h->expect_masked = expect_masked ? 1 : 0;
  h->max_frame = max_frame;
  h->need = 2;
}

void rill__ws_header_reset(rill_ws_header_t *h) {
  h->have = 0;
  h->need = 2;
  h->fin = h->rsv = h->opcode = h->masked = 0;
  h->len = 0;
  memset(h->mask, 0, sizeof(h->mask));
  h->pos = 0;
  h->close_code = 0;
  h->error = NULL;
}

static int fail(rill_ws_header_t *h, unsigned code, const char *why) {
  h->close_code = code;
  h->error = why;
  return -1;
}

/* The first byte: FIN, RSV, opcode, and whether the opcode fits the message
 * state (§5.4: a continuation only inside a fragmented message, a new data
 * frame only outside one). */
static int check_byte0(rill_ws_header_t *h) {
  uint8_t b = h->buf[0];
  h->fin = b >> 7;
  h->rsv = b & 0x70;
  h->opcode = b & 0x0f;
  if (h->rsv & ~h->rsv_allowed) return fail(h, 1002, "reserved bits set");
  /* RSV1 (permessage-deflate) marks a message's first frame only. */
  if ((h->rsv & RILL_WS_RSV1) && (h->opcode == RILL_WS_CONT || (h->opcode & 0x8)))
    return fail(h, 1002,
                h->opcode == RILL_WS_CONT ? "RSV1 on a continuation frame"
                                          : "RSV1 on a control frame");
  switch (h->opcode) {
  case RILL_WS_CONT:
    if (!h->msg_open) return fail(h, 1002, "continuation frame without a message");
    return 0;
  case RILL_WS_TEXT:
  case RILL_WS_BINARY:
    if (h->msg_open) return fail(h, 1002, "new message inside a fragmented message");
    return 0;
  case RILL_WS_CLOSE:
  case RILL_WS_PING:
  case RILL_WS_PONG:
    if (!h->fin) return fail(h, 1002, "fragmented control frame");
    return 0;
  default:
    return fail(h, 1002, "unknown opcode");
  }
}

/* Checks the payload length once it is known, and records the frame in the
 * message state: after this only mask bytes remain, and they cannot fail. */
static int check_length(rill_ws_header_t *h) {
  if (h->max_frame && h->len > h->max_frame) return fail(h, 1009, "frame too big");
  if (h->opcode & 0x8) return 0;
  uint64_t total = h->opcode == RILL_WS_CONT ? h->msg_len : 0;
  total = h->len > UINT64_MAX - total ? UINT64_MAX : total + h->len;
  uint64_t limit = h->max_message;
  unsigned rsv = h->opcode == RILL_WS_CONT ? h->msg_rsv : h->rsv;
  /* A compressed message is held to max_message once inflated (by the
   * layer above); its compressed bytes may pass it by deflate's worst-case
   * growth on incompressible data (5 bytes a stored block, well under 1/1024). */
  if (limit && (rsv & RILL_WS_RSV1) && limit < UINT64_MAX / 2) limit += (limit >> 10) + 1024;
  if (limit && total > limit) return fail(h, 1009, "message too big");
  if (h->opcode != RILL_WS_CONT) {
    h->msg_opcode = h->opcode;
    h->msg_rsv = h->rsv;
  }
  h->msg_len = total;
  h->msg_open = !h->fin;
  return 0;
}

/* The second byte: the mask bit and the 7-bit length. Sets need to the
 * header's full length. */
static int check_byte1(rill_ws_header_t *h) {
  uint8_t b = h->buf[1];
  unsigned len7 = b & 0x7f;
  h->masked = b >> 7;
  if (h->masked != (unsigned)h->expect_masked)
    return fail(h, 1002,
                h->masked ? "masked frame from a server"
                          : "unmasked frame from a client");
  if ((h->opcode & 0x8) && len7 > RILL_WS_CONTROL_MAX)
    return fail(h, 1002, "control frame too long");
  h->need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (h->masked ? 4 : 0);
  if (len7 >= 126) return 0;
  h->len = len7;
  return check_length(h);
}

/* The extended length, complete in buf[2..]. */
static int check_extended(rill_ws_header_t *h) {
  if ((h->buf[1] & 0x7f) == 126) {
    h->len = (uint64_t)h->buf[2] << 8 | h->buf[3];
    if (h->len < 126) return fail(h, 1002, "length not minimally encoded");
  } else {
    if (h->buf[2] & 0x80) return fail(h, 1002, "length with the top bit set");
    h->len = 0;
    for (int i = 2; i < 10; i++)
      h->len = h->len << 8 | h->buf[i];
    if (h->len < 65536) return fail(h, 1002, "length not minimally encoded");
  }
  return check_length(h);
}

ssize_t rill__ws_header_parse(rill_ws_header_t *h, const uint8_t *p, size_t n, int *done) {
  size_t i = 0;
  *done = 0;
  if (h->close_code) return -1;
  while (h->have < h->need) {
    if (i == n) return (ssize_t)i;
    if (h->have < 2) {
      /* One byte at a time, so a bad first byte fails before the second. */
      h->buf[h->have++] = p[i++];
      if ((h->have == 1 ? check_byte0(h) : check_byte1(h)) < 0) return -1;
      continue;
    }
    unsigned len_end = h->masked ? h->need - 4 : h->need;
    size_t take = h->need - h->have;
    if (take > n - i) take = n - i;
    memcpy(h->buf + h->have, p + i, take);
    unsigned before = h->have;
    h->have += (unsigned)take;
    i += take;
    if (before < len_end && h->have >= len_end && check_extended(h) < 0) return -1;
  }
  if (h->masked) memcpy(h->mask, h->buf + h->need - 4, 4);
  *done = 1;
  return (ssize_t)i;
}

size_t rill__ws_payload(rill_ws_header_t *h, uint8_t *p, size_t n) {
  uint64_t left = h->len - h->pos;
  size_t take = n < left ? n : (size_t)left;
  if (h->masked) rill__ws_mask(p, take, h->mask, h->pos);
  h->pos += take;
  return take;
}

size_t rill__ws_header_write(uint8_t out[RILL_WS_HEADER_MAX], int fin, int opcode,
                            uint64_t len, const uint8_t *mask) {
  size_t n = 2;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x7f));
  if (len < 126) {
    out[1] = (uint8_t)len;
  } else if (len < 65536) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    n = 4;
  } else {
    out[1] = 127;
    for (int i = 0; i < 8; i++)
      out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    n = 10;
  }
  if (mask) {
    out[1] |= 0x80;
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

/* ---- masking ---- */

void rill__ws_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4],
                       uint64_t offset) {
  unsigned k = (unsigned)(offset & 3);
  size_t i = 0;
  /* Bytes up to an 8-byte boundary of dst, then words: a word is two whole
   * mask periods, so the phase k is the same at every word. memcpy keeps the
   * loads and stores legal at any alignment of src. */
  while (i < n && ((uintptr_t)(dst + i) & 7)) {
    dst[i] = src[i] ^ mask[k];
    i++;
    k = (k + 1) & 3;
  }
  if (n - i >= 8) {
    uint8_t m8[8];
    for (unsigned j = 0; j < 8; j++)
      m8[j] = mask[(k + j) & 3];
    uint64_t m;
    memcpy(&m, m8, 8);
    for (; n - i >= 32; i += 32) {
      uint64_t w[4];
      memcpy(w, src + i, 32);
      w[0] ^= m;
      w[1] ^= m;
      w[2] ^= m;
      w[3] ^= m;
      memcpy(dst + i, w, 32);
    }
    for (; n - i >= 8; i += 8) {
      uint64_t w;
      memcpy(&w, src + i, 8);
      w ^= m;
      memcpy(dst + i, &w, 8);
    }
  }
  for (; i < n; i++) {
    dst[i] = src[i] ^ mask[k];
    k = (k + 1) & 3;
  }
}

void rill__ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], uint64_t offset) {
  rill__ws_mask_copy(p, p, n, mask, offset);
}

/* ---- UTF-8 ----
 *
 * RFC 3629 §4 lists the well-formed sequences by their bytes:
 *
 *   00-7F
 *   C2-DF 80-BF
 *   E0    A0-BF 80-BF        E1-EC 80-BF 80-BF
 *   ED    80-9F 80-BF        EE-EF 80-BF 80-BF
 *   F0    90-BF 80-BF 80-BF  F1-F3 80-BF 80-BF 80-BF
 *   F4    80-8F 80-BF 80-BF
 *
 * So a lead byte fixes how many continuation bytes follow and the range of the
 * first of them (the narrow ranges exclude overlongs, surrogates and code points
 * past U+10FFFF); every later one is 80-BF. The state is just that: bytes still
 * to come and the range of the next. C0, C1 and F5-FF never appear, nor does a
 * continuation byte without a lead. */

void rill__utf8_init(rill_utf8_t *u) {
  memset(u, 0, sizeof(*u));
}

/* Sets the state for lead byte c (>= 0x80). Returns -1 if c cannot start a
 * sequence. */
static int utf8_lead(rill_utf8_t *u, uint8_t c) {
  u->lo = 0x80;
  u->hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    u->need = 1;
  } else if (c >= 0xe0 && c <= 0xef) {
    u->need = 2;
    if (c == 0xe0) u->lo = 0xa0;
    if (c == 0xed) u->hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    u->need = 3;
    if (c == 0xf0) u->lo = 0x90;
    if (c == 0xf4) u->hi = 0x8f;
  } else {
    return -1;
  }
  return 0;
}

static int utf8_fail(rill_utf8_t *u, size_t at) {
  u->bad = 1;
  u->need = 0;
  u->err_at = at;
  return -1;
}

int rill__utf8_feed(rill_utf8_t *u, const uint8_t *p, size_t n) {
  size_t i = 0;
  if (u->bad) return utf8_fail(u, 0);
  for (;;) {
    /* Continuation bytes of the current character, maybe begun last call. */
    while (u->need) {
      if (i == n) return 0;
      if (p[i] < u->lo || p[i] > u->hi) return utf8_fail(u, i);
      u->lo = 0x80;
      u->hi = 0xbf;
      u->need--;
      i++;
    }
    /* At a character boundary: skip ASCII a word at a time. */
    while (n - i >= 8) {
      uint64_t w;
      memcpy(&w, p + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    while (i < n && p[i] < 0x80)
      i++;
    if (i == n) return 0;
    if (utf8_lead(u, p[i]) < 0) return utf8_fail(u, i);
    i++;
  }
}

int rill__utf8_complete(const rill_utf8_t *u) {
  return !u->bad && u->need == 0;
}

int rill__utf8_valid(const uint8_t *p, size_t n) {
  rill_utf8_t u;
  rill__utf8_init(&u);
  return rill__utf8_feed(&u, p, n) == 0 && rill__utf8_complete(&u);
}

/* ---- close frames ---- */

int rill__ws_close_code_valid(unsigned code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

int rill__ws_close_parse(const uint8_t *p, size_t n, unsigned *code,
                        const uint8_t **reason, size_t *rlen) {
  *reason = NULL;
  *rlen = 0;
  if (n == 0) {
    *code = RILL_WS_NO_STATUS;
    return 0;
  }
  if (n == 1) {
    *code = RILL_WS_PROTOCOL_ERROR;
    return -1;
  }
  unsigned c = (unsigned)p[0] << 8 | p[1];
  if (!rill__ws_close_code_valid(c)) {
    *code = RILL_WS_PROTOCOL_ERROR;
    return -1;
  }
  if (!rill__utf8_valid(p + 2, n - 2)) {
    *code = RILL_WS_INVALID_DATA;
    return -1;
  }
  *code = c;
  *reason = p + 2;
  *rlen = n - 2;
  return 0;
}

ssize_t rill__ws_close_write(uint8_t out[RILL_WS_CONTROL_MAX], unsigned code,
                            const uint8_t *reason, size_t rlen) {
  if (code == 0) return 0;
  if (!rill__ws_close_code_valid(code)) return -1;
  if (rlen > RILL_WS_REASON_MAX) {
    /* Cut before the character that straddles the limit. */
    rlen = RILL_WS_REASON_MAX;
    while (rlen > 0 && (reason[rlen] & 0xc0) == 0x80)
      rlen--;
  }
  out[0] = (uint8_t)(code >> 8);
  out[1] = (uint8_t)code;
  if (rlen) memcpy(out + 2, reason, rlen);
  return (ssize_t)(2 + rlen);
}

/* ---- the opening handshake ---- */

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int b64char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '+' || c == '/';
}

int rill__ws_accept(const char *key, size_t klen, char out[29]) {
  /* 16 bytes in base64: 21 characters of 6 bits, one more whose last 4 bits
   * are padding, then "==". Non-zero padding bits still decode to 16 bytes,
   * so they are accepted, as lenient decoders do. */
  out[0] = 0;
  if (klen != 24 || key[22] != '=' || key[23] != '=') return -1;
  for (size_t i = 0; i < 22; i++)
    if (!b64char(key[i])) return -1;

  unsigned char in[24 + sizeof(ws_guid) - 1], digest[20];
  memcpy(in, key, 24);
  memcpy(in + 24, ws_guid, sizeof(ws_guid) - 1);
  if (mbedtls_sha1_ret(in, sizeof(in), digest) != 0) return -1;
  size_t olen;
  if (mbedtls_base64_encode((unsigned char *)out, 29, &olen, digest, 20) != 0) {
    out[0] = 0;
    return -1;
  }
  return 0;
}

void rill__ws_key(const uint8_t nonce[16], char out[25]) {
  size_t olen;
  mbedtls_base64_encode((unsigned char *)out, 25, &olen, nonce, 16);
}
