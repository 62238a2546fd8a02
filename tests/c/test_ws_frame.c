/* Unit tests of the WebSocket protocol layer (core/ws_frame.c), with RFC 6455's own
 * examples as vectors (§5.7 frames, §1.3 handshake). The header parser and the
 * UTF-8 validator are incremental, so every case is fed whole and also split
 * at every byte; masking is checked against a byte-by-byte reference. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

#include "check.h"

/* Byte strings from literals, NULs and all. */
#define B(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static const uint8_t rfc_mask[4] = {0x37, 0xfa, 0x21, 0x3d};

/* ---- frame headers ---- */

/* Feeds in[0..n) to h in pieces: first `first` bytes (none if 0), then pieces of
 * step. Returns the bytes consumed once the header is done, -2 if the input ran
 * out first, -1 on error with *err_pos the offset of the failing piece. Fails
 * the test if the parser stops short of a piece without being done. */
static ssize_t feed_header(rill_ws_header_t *h, const uint8_t *in, size_t n, size_t first,
                           size_t step, size_t *err_pos) {
  size_t pos = 0;
  while (pos < n) {
    size_t piece = pos == 0 && first ? first : step;
    if (piece > n - pos) piece = n - pos;
    int done = 0;
    ssize_t k = rill__ws_header_parse(h, in + pos, piece, &done);
    if (k < 0) {
      *err_pos = pos;
      return -1;
    }
    pos += (size_t)k;
    if (done) return (ssize_t)pos;
    CHECK((size_t)k == piece, "parser stopped at %zu of a %zu-byte piece", (size_t)k,
          piece);
    if ((size_t)k != piece) return -2;
  }
  return -2;
}

/* A parser for one side, with a fragmented message of type `open` in progress
 * (0: none). */
static void setup(rill_ws_header_t *h, int server, unsigned open) {
  rill__ws_header_init(h, server, 0);
  if (open) {
    h->msg_open = 1;
    h->msg_opcode = open;
  }
}

typedef struct {
  const char *name;
  int server;        /* expect masked frames */
  unsigned open;     /* a fragmented message of this type is in progress */
  const uint8_t *in; /* the frame, header and maybe payload */
  size_t n;
  size_t hlen; /* header length */
  unsigned fin, opcode;
  uint64_t len;
  const uint8_t *mask; /* NULL: unmasked */
  const char *payload; /* expected after unmasking, if in holds it */
} frame_case_t;

static void check_parsed(const frame_case_t *c, const rill_ws_header_t *h, ssize_t r,
                         const char *how, size_t a) {
  CHECK(r == (ssize_t)c->hlen, "%s (%s %zu): consumed %zd, want %zu (%s)", c->name, how,
        a, r, c->hlen, h->error ? h->error : "incomplete");
  if (r != (ssize_t)c->hlen) return;
  CHECK(h->fin == c->fin && h->opcode == c->opcode && h->len == c->len &&
            h->masked == (c->mask != NULL) && h->rsv == 0,
        "%s (%s %zu): fin %u opcode %u len %llu masked %u", c->name, how, a, h->fin,
        h->opcode, (unsigned long long)h->len, h->masked);
  if (c->mask)
    CHECK(memcmp(h->mask, c->mask, 4) == 0, "%s (%s %zu): mask", c->name, how, a);
}

/* Parses c's header fed in every step size and split at every byte; then takes
 * its payload, unmasked, in slices of every size. */
static void frame_ok(const frame_case_t *c) {
  rill_ws_header_t h;
  size_t ep = 0;
  for (size_t step = 1; step <= c->n; step++) {
    setup(&h, c->server, c->open);
    check_parsed(c, &h, feed_header(&h, c->in, c->n, 0, step, &ep), "step", step);
  }
  for (size_t split = 1; split < c->n; split++) {
    setup(&h, c->server, c->open);
    check_parsed(c, &h, feed_header(&h, c->in, c->n, split, c->n, &ep), "split", split);
  }
  /* A finished header consumes nothing more. */
  int done = 0;
  CHECK(rill__ws_header_parse(&h, c->in, c->n, &done) == 0 && done, "%s: after done",
        c->name);

  if (!c->payload) return;
  size_t plen = strlen(c->payload);
  CHECK(c->n == c->hlen + plen, "%s: vector length", c->name);
  for (size_t step = 1; step <= plen; step++) {
    uint8_t buf[64];
    memcpy(buf, c->in, c->n);
    setup(&h, c->server, c->open);
    feed_header(&h, buf, c->n, 0, c->n, &ep);
    size_t pos = c->hlen;
    while (h.pos < h.len) {
      size_t avail = c->n - pos < step ? c->n - pos : step;
      pos += rill__ws_payload(&h, buf + pos, avail);
    }
    CHECK(pos == c->n && memcmp(buf + c->hlen, c->payload, plen) == 0,
          "%s (step %zu): payload %.*s", c->name, step, (int)plen, buf + c->hlen);
    CHECK(rill__ws_payload(&h, buf, 1) == 0, "%s: payload past the end", c->name);
  }
}

static void test_rfc_frames(void) {
  /* RFC 6455 §5.7 */
  static const uint8_t hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  static const uint8_t hello_masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                         0x7f, 0x9f, 0x4d, 0x51, 0x58};
  static const uint8_t hel[] = {0x01, 0x03, 0x48, 0x65, 0x6c};
  static const uint8_t lo[] = {0x80, 0x02, 0x6c, 0x6f};
  static const uint8_t ping[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  static const uint8_t pong_masked[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                        0x7f, 0x9f, 0x4d, 0x51, 0x58};
  static const uint8_t bin256[] = {0x82, 0x7e, 0x01, 0x00};
  static const uint8_t bin64k[] = {0x82, 0x7f, 0x00, 0x00, 0x00,
                                   0x00, 0x00, 0x01, 0x00, 0x00};
  const frame_case_t cases[] = {
      {"unmasked Hello", 0, 0, hello, sizeof(hello), 2, 1, RILL_WS_TEXT, 5, NULL,
       "Hello"},
      {"masked Hello", 1, 0, hello_masked, sizeof(hello_masked), 6, 1, RILL_WS_TEXT, 5,
       rfc_mask, "Hello"},
      {"fragment Hel", 0, 0, hel, sizeof(hel), 2, 0, RILL_WS_TEXT, 3, NULL, "Hel"},
      {"fragment lo", 0, RILL_WS_TEXT, lo, sizeof(lo), 2, 1, RILL_WS_CONT, 2, NULL, "lo"},
      {"unmasked Ping", 0, 0, ping, sizeof(ping), 2, 1, RILL_WS_PING, 5, NULL, "Hello"},
      {"masked Pong", 1, 0, pong_masked, sizeof(pong_masked), 6, 1, RILL_WS_PONG, 5,
       rfc_mask, "Hello"},
      {"256 bytes binary", 0, 0, bin256, sizeof(bin256), 4, 1, RILL_WS_BINARY, 256, NULL,
       NULL},
      {"64 KiB binary", 0, 0, bin64k, sizeof(bin64k), 10, 1, RILL_WS_BINARY, 65536, NULL,
       NULL},
      /* A ping inside a fragmented message is allowed (§5.4). */
      {"Ping inside a message", 0, RILL_WS_TEXT, ping, sizeof(ping), 2, 1, RILL_WS_PING,
       5, NULL, "Hello"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    frame_ok(&cases[i]);

  /* The writer produces the same headers. */
  uint8_t out[RILL_WS_HEADER_MAX];
  size_t n = rill__ws_header_write(out, 1, RILL_WS_TEXT, 5, NULL);
  CHECK(n == 2 && memcmp(out, hello, 2) == 0, "write unmasked Hello");
  n = rill__ws_header_write(out, 1, RILL_WS_TEXT, 5, rfc_mask);
  CHECK(n == 6 && memcmp(out, hello_masked, 6) == 0, "write masked Hello");
  n = rill__ws_header_write(out, 0, RILL_WS_TEXT, 3, NULL);
  CHECK(n == 2 && memcmp(out, hel, 2) == 0, "write Hel");
  n = rill__ws_header_write(out, 1, RILL_WS_CONT, 2, NULL);
  CHECK(n == 2 && memcmp(out, lo, 2) == 0, "write lo");
  n = rill__ws_header_write(out, 1, RILL_WS_PING, 5, NULL);
  CHECK(n == 2 && memcmp(out, ping, 2) == 0, "write Ping");
  n = rill__ws_header_write(out, 1, RILL_WS_PONG, 5, rfc_mask);
  CHECK(n == 6 && memcmp(out, pong_masked, 6) == 0, "write Pong");
  n = rill__ws_header_write(out, 1, RILL_WS_BINARY, 256, NULL);
  CHECK(n == 4 && memcmp(out, bin256, 4) == 0, "write 256");
  n = rill__ws_header_write(out, 1, RILL_WS_BINARY, 65536, NULL);
  CHECK(n == 10 && memcmp(out, bin64k, 10) == 0, "write 64 KiB");

  /* And a masked payload made by the client side matches §5.7's bytes. */
  uint8_t pay[5];
  rill__ws_mask_copy(pay, (const uint8_t *)"Hello", 5, rfc_mask, 0);
  CHECK(memcmp(pay, hello_masked + 6, 5) == 0, "mask_copy Hello");
}

/* Lengths at the encoding boundaries survive write then parse, both sides. */
static void test_header_write(void) {
  static const uint64_t lens[] = {0,
                                  1,
                                  125,
                                  126,
                                  127,
                                  65535,
                                  65536,
                                  65537,
                                  1u << 31,
                                  0xffffffffull,
                                  0x7fffffffffffffffull};
  static const size_t sizes[] = {2, 2, 2, 4, 4, 4, 10, 10, 10, 10, 10};
  for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
    for (int server = 0; server <= 1; server++) {
      uint8_t out[RILL_WS_HEADER_MAX];
      size_t n =
          rill__ws_header_write(out, 1, RILL_WS_BINARY, lens[i], server ? rfc_mask : NULL);
      CHECK(n == sizes[i] + (server ? 4 : 0), "len %llu: header size %zu",
            (unsigned long long)lens[i], n);
      for (size_t step = 1; step <= n; step++) {
        rill_ws_header_t h;
        size_t ep;
        setup(&h, server, 0);
        ssize_t r = feed_header(&h, out, n, 0, step, &ep);
        CHECK(r == (ssize_t)n && h.len == lens[i] && h.fin == 1 &&
                  h.opcode == RILL_WS_BINARY,
              "len %llu step %zu: round trip %zd, %llu (%s)", (unsigned long long)lens[i],
              step, r, (unsigned long long)h.len, h.error ? h.error : "");
      }
    }
  }
  /* RSV bits ride on the opcode; an extension that allows them gets them back. */
  uint8_t out[RILL_WS_HEADER_MAX];
  size_t n = rill__ws_header_write(out, 1, RILL_WS_TEXT | RILL_WS_RSV1, 3, NULL);
  CHECK(n == 2 && out[0] == 0xc1 && out[1] == 3, "write RSV1: %02x", out[0]);
  rill_ws_header_t h;
  size_t ep;
  setup(&h, 0, 0);
  h.rsv_allowed = RILL_WS_RSV1;
  CHECK(feed_header(&h, out, n, 0, n, &ep) == 2 && h.rsv == RILL_WS_RSV1 &&
            h.opcode == RILL_WS_TEXT,
        "RSV1 allowed: rsv %x", h.rsv);
  n = rill__ws_header_write(out, 0, RILL_WS_BINARY, 0, NULL);
  CHECK(n == 2 && out[0] == 0x02 && out[1] == 0, "write FIN 0, empty");
}

typedef struct {
  const char *name;
  int server;
  unsigned open;
  uint64_t max_frame, max_message;
  unsigned rsv_allowed;
  const uint8_t *in;
  size_t n;
  unsigned code;
  size_t fail_at; /* the byte whose arrival must make the parser fail */
} bad_case_t;

/* c is rejected with its close code whatever the pieces, and byte by byte it
 * fails on the byte that breaks the rule, not later. */
static void frame_bad(const bad_case_t *c) {
  for (size_t step = 1; step <= c->n; step++) {
    for (size_t first = 0; first < (step == c->n ? c->n : 1); first++) {
      rill_ws_header_t h;
      size_t ep = 0;
      setup(&h, c->server, c->open);
      h.max_frame = c->max_frame;
      h.max_message = c->max_message;
      h.rsv_allowed = c->rsv_allowed;
      ssize_t r = feed_header(&h, c->in, c->n, first, step, &ep);
      CHECK(r == -1 && h.close_code == c->code && h.error != NULL,
            "%s (step %zu, split %zu): got %zd, code %u, want %u", c->name, step, first,
            r, h.close_code, c->code);
      if (step == 1)
        CHECK(ep == c->fail_at, "%s: failed at byte %zu, want %zu", c->name, ep,
              c->fail_at);
      int done = 1;
      CHECK(rill__ws_header_parse(&h, c->in, c->n, &done) == -1 && !done,
            "%s: error not sticky", c->name);
    }
  }
}

static void test_rejections(void) {
  const bad_case_t cases[] = {
      {"RSV1", 0, 0, 0, 0, 0, B("\xc1\x05Hello"), 1002, 0},
      {"RSV2", 0, 0, 0, 0, 0, B("\xa1\x05Hello"), 1002, 0},
      {"RSV3", 0, 0, 0, 0, 0, B("\x91\x05Hello"), 1002, 0},
      {"RSV2 with RSV1 allowed", 0, 0, 0, 0, RILL_WS_RSV1, B("\xa1\x05Hello"), 1002, 0},
      /* RFC 7692 §6.1: RSV1 marks a message's first frame, never another */
      {"RSV1 on a ping", 0, 0, 0, 0, RILL_WS_RSV1, B("\xc9\x00"), 1002, 0},
      {"RSV1 on a close", 0, 0, 0, 0, RILL_WS_RSV1, B("\xc8\x00"), 1002, 0},
      {"RSV1 on a continuation", 0, 1, 0, 0, RILL_WS_RSV1, B("\xc0\x00"), 1002, 0},
      {"RSV1 message past max_message and deflate's growth", 0, 0, 0, 100, RILL_WS_RSV1,
       B("\xc2\x7e\x04\x65"), 1009, 3},
      {"opcode 3", 0, 0, 0, 0, 0, B("\x83\x00"), 1002, 0},
      {"opcode 4", 0, 0, 0, 0, 0, B("\x84\x00"), 1002, 0},
      {"opcode 5", 0, 0, 0, 0, 0, B("\x85\x00"), 1002, 0},
      {"opcode 6", 0, 0, 0, 0, 0, B("\x86\x00"), 1002, 0},
      {"opcode 7", 0, 0, 0, 0, 0, B("\x87\x00"), 1002, 0},
      {"opcode B", 0, 0, 0, 0, 0, B("\x8b\x00"), 1002, 0},
      {"opcode C", 0, 0, 0, 0, 0, B("\x8c\x00"), 1002, 0},
      {"opcode D", 0, 0, 0, 0, 0, B("\x8d\x00"), 1002, 0},
      {"opcode E", 0, 0, 0, 0, 0, B("\x8e\x00"), 1002, 0},
      {"opcode F", 0, 0, 0, 0, 0, B("\x8f\x00"), 1002, 0},
      {"fragmented ping", 0, 0, 0, 0, 0, B("\x09\x05Hello"), 1002, 0},
      {"fragmented close", 0, 0, 0, 0, 0, B("\x08\x00"), 1002, 0},
      {"fragmented pong", 0, 0, 0, 0, 0, B("\x0a\x00"), 1002, 0},
      {"ping of 126", 0, 0, 0, 0, 0, B("\x89\x7e\x00\x7e"), 1002, 1},
      {"close of 127 (64-bit)", 0, 0, 0, 0, 0,
       B("\x88\x7f\x00\x00\x00\x00\x00\x01\x00\x00"), 1002, 1},
      {"masked ping of 126", 1, 0, 0, 0, 0, B("\x89\xfe\x00\x7e\x37\xfa\x21\x3d"), 1002,
       1},
      {"64-bit length, top bit", 0, 0, 0, 0, 0,
       B("\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00"), 1002, 9},
      {"64-bit length, all ones", 0, 0, 0, 0, 0,
       B("\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff"), 1002, 9},
      {"16-bit 125", 0, 0, 0, 0, 0, B("\x82\x7e\x00\x7d"), 1002, 3},
      {"16-bit 0", 0, 0, 0, 0, 0, B("\x82\x7e\x00\x00"), 1002, 3},
      {"64-bit 65535", 0, 0, 0, 0, 0, B("\x82\x7f\x00\x00\x00\x00\x00\x00\xff\xff"), 1002,
       9},
      {"64-bit 5", 0, 0, 0, 0, 0, B("\x82\x7f\x00\x00\x00\x00\x00\x00\x00\x05"), 1002, 9},
      {"masked 16-bit 125", 1, 0, 0, 0, 0, B("\x82\xfe\x00\x7d\x37\xfa\x21\x3d"), 1002,
       3},
      {"unmasked to a server", 1, 0, 0, 0, 0, B("\x81\x05Hello"), 1002, 1},
      {"masked to a client", 0, 0, 0, 0, 0,
       B("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"), 1002, 1},
      {"unmasked close to a server", 1, 0, 0, 0, 0, B("\x88\x00"), 1002, 1},
      {"continuation without a message", 0, 0, 0, 0, 0, B("\x80\x02lo"), 1002, 0},
      {"text inside a message", 0, RILL_WS_TEXT, 0, 0, 0, B("\x81\x02lo"), 1002, 0},
      {"binary inside a message", 0, RILL_WS_BINARY, 0, 0, 0, B("\x02\x02lo"), 1002, 0},
      {"over max_frame (7-bit)", 0, 0, 4, 0, 0, B("\x81\x05Hello"), 1009, 1},
      {"over max_frame (16-bit)", 0, 0, 255, 0, 0, B("\x82\x7e\x01\x00"), 1009, 3},
      {"over max_frame (64-bit)", 1, 0, 65535, 0, 0,
       B("\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00\x37\xfa\x21\x3d"), 1009, 9},
      {"over max_message", 0, 0, 0, 4, 0, B("\x01\x05Hello"), 1009, 1},
      /* A protocol error in the first byte wins over a size in the second. */
      {"RSV1 and too big", 0, 0, 1, 0, 0, B("\xc1\x05Hello"), 1002, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    frame_bad(&cases[i]);

  /* At the limits exactly, frames pass. */
  rill_ws_header_t h;
  size_t ep;
  rill__ws_header_init(&h, 0, 5);
  CHECK(feed_header(&h, B("\x81\x05Hello"), 0, 1, &ep) == 2, "len == max_frame");
  rill__ws_header_init(&h, 0, 0);
  h.max_message = 5;
  CHECK(feed_header(&h, B("\x81\x05Hello"), 0, 1, &ep) == 2, "len == max_message");
  rill__ws_header_init(&h, 0, 0);
  CHECK(feed_header(&h, B("\x89\x7d"), 0, 1, &ep) == 2 && h.len == 125, "ping of 125");
  /* max_frame limits control frames too; max_message does not. */
  rill__ws_header_init(&h, 0, 0);
  h.max_message = 1;
  CHECK(feed_header(&h, B("\x89\x05"), 0, 1, &ep) == 2, "ping under max_message");
  /* reset clears an error. */
  rill__ws_header_init(&h, 0, 0);
  CHECK(feed_header(&h, B("\xc1\x00"), 0, 1, &ep) == -1, "RSV1 rejected");
  rill__ws_header_reset(&h);
  CHECK(feed_header(&h, B("\x81\x00"), 0, 1, &ep) == 2 && h.close_code == 0 &&
            h.error == NULL,
        "after reset");
}

/* ---- frames in sequence, as the WebSocket layer reads them ---- */

typedef struct {
  uint8_t data[70000]; /* data-message payload */
  size_t dlen;
  uint8_t ctl[256]; /* control-frame payloads */
  size_t clen;
  int frames, messages;
  unsigned code; /* on error */
} sink_t;

/* Reads frames from in[0..n), which arrive step bytes at a time, the way the
 * WebSocket layer does: header bytes to the parser, then the payload as slices
 * of the buffer, unmasked in place, text validated across slices and fragments.
 * Returns 0, 1 if the input ends inside a frame, or -1 with s->code. */
static int read_frames(int server, uint8_t *in, size_t n, size_t step, uint64_t max_frame,
                       uint64_t max_message, sink_t *s) {
  rill_ws_header_t h;
  rill_utf8_t u;
  rill__ws_header_init(&h, server, max_frame);
  h.max_message = max_message;
  rill__utf8_init(&u);
  s->dlen = s->clen = 0;
  s->code = 0;
  s->frames = s->messages = 0;
  size_t pos = 0, avail = 0;
  int in_header = 1;
  for (;;) {
    if (pos == avail) {
      if (avail == n) break;
      avail = avail + step < n ? avail + step : n;
    }
    if (in_header) {
      int done;
      ssize_t k = rill__ws_header_parse(&h, in + pos, avail - pos, &done);
      if (k < 0) {
        s->code = h.close_code;
        return -1;
      }
      pos += (size_t)k;
      if (!done) continue;
      in_header = 0;
      if (h.opcode == RILL_WS_TEXT) rill__utf8_init(&u);
    }
    uint8_t *slice = in + pos;
    size_t took = rill__ws_payload(&h, slice, avail - pos);
    pos += took;
    if (h.opcode & 0x8) {
      memcpy(s->ctl + s->clen, slice, took);
      s->clen += took;
    } else {
      memcpy(s->data + s->dlen, slice, took);
      s->dlen += took;
      if (h.msg_opcode == RILL_WS_TEXT && rill__utf8_feed(&u, slice, took) < 0) {
        s->code = RILL_WS_INVALID_DATA;
        return -1;
      }
    }
    if (h.pos < h.len) continue;
    s->frames++;
    if (!(h.opcode & 0x8) && h.fin) {
      if (h.msg_opcode == RILL_WS_TEXT && !rill__utf8_complete(&u)) {
        s->code = RILL_WS_INVALID_DATA;
        return -1;
      }
      s->messages++;
    }
    rill__ws_header_reset(&h);
    in_header = 1;
  }
  return in_header && h.have == 0 ? 0 : 1;
}

static void seq_ok(const char *name, int server, const uint8_t *in, size_t n,
                   const char *data, const char *ctl, int frames, int messages) {
  static sink_t s;
  uint8_t *buf = malloc(n ? n : 1);
  for (size_t step = 1; step <= n; step++) {
    memcpy(buf, in, n);
    int r = read_frames(server, buf, n, step, 0, 0, &s);
    CHECK(r == 0 && s.frames == frames && s.messages == messages,
          "%s (step %zu): r %d, %d frames, %d messages, code %u", name, step, r, s.frames,
          s.messages, s.code);
    CHECK(s.dlen == strlen(data) && memcmp(s.data, data, s.dlen) == 0,
          "%s (step %zu): data %.*s", name, step, (int)s.dlen, s.data);
    CHECK(s.clen == strlen(ctl) && memcmp(s.ctl, ctl, s.clen) == 0,
          "%s (step %zu): control %.*s", name, step, (int)s.clen, s.ctl);
  }
  free(buf);
}

/* Fails with code at every step size; and fed only through fail_by bytes, it
 * has already failed (fail-fast: before the rest arrives). */
static void seq_bad(const char *name, int server, const uint8_t *in, size_t n,
                    uint64_t max_message, unsigned code, size_t fail_by) {
  static sink_t s;
  uint8_t *buf = malloc(n);
  for (size_t step = 1; step <= n; step++) {
    memcpy(buf, in, n);
    int r = read_frames(server, buf, n, step, 0, max_message, &s);
    CHECK(r == -1 && s.code == code, "%s (step %zu): r %d, code %u, want %u", name, step,
          r, s.code, code);
  }
  memcpy(buf, in, n);
  int r = read_frames(server, buf, fail_by, 1, 0, max_message, &s);
  CHECK(r == -1 && s.code == code, "%s: not failed after %zu bytes", name, fail_by);
  if (fail_by > 0) {
    memcpy(buf, in, n);
    r = read_frames(server, buf, fail_by - 1, 1, 0, max_message, &s);
    CHECK(r != -1, "%s: failed before byte %zu", name, fail_by - 1);
  }
  free(buf);
}

static void test_sequences(void) {
  /* §5.7: a fragmented unmasked text message, a ping in the middle of one. */
  seq_ok("Hel + lo", 0, B("\x01\x03Hel\x80\x02lo"), "Hello", "", 2, 1);
  seq_ok("Hel + ping + lo", 0, B("\x01\x03Hel\x89\x05Hello\x80\x02lo"), "Hello", "Hello",
         3, 1);
  seq_ok("masked Hello twice", 1,
         B("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
           "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"),
         "HelloHello", "", 2, 2);
  seq_ok("empty frames", 0, B("\x01\x00\x00\x00\x80\x00\x82\x00"), "", "", 4, 2);
  /* A character split across fragments, and across slices. */
  seq_ok("split character", 0, B("\x01\x01\xce\x80\x01\xba\x01\x01\xcf\x80\x01\x83"),
         "\xce\xba\xcf\x83", "", 4, 2);
  seq_ok("empty close and a ping", 1,
         B("\x89\x80\x01\x02\x03\x04\x88\x80\x01\x02\x03\x04"), "", "", 2, 0);

  seq_bad("invalid UTF-8 in the first fragment", 0, B("\x01\x03\x61\xff\x62\x80\x01\x63"),
          0, 1007, 4);
  seq_bad("surrogate split across fragments", 0, B("\x01\x01\xed\x80\x02\xa0\x80"), 0,
          1007, 6);
  seq_bad("truncated character at message end", 0, B("\x01\x01\xe2\x80\x01\x82"), 0, 1007,
          6);
  seq_bad("continuation without a message", 0, B("\x81\x01x\x80\x01y"), 0, 1002, 4);
  seq_bad("text inside a message", 0, B("\x01\x01x\x81\x01y"), 0, 1002, 4);
  seq_bad("message over max_message", 0, B("\x01\x03Hel\x80\x03loo"), 5, 1009, 7);

  /* A 64 KiB binary frame (§5.7's header), masked, through small slices. */
  static uint8_t big[14 + 65536], want[65536];
  static const uint8_t hdr[] = {0x82, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00,
                                0x01, 0x00, 0x00, 0x37, 0xfa, 0x21, 0x3d};
  static sink_t s;
  for (size_t i = 0; i < sizeof(want); i++)
    want[i] = (uint8_t)(i * 7 + (i >> 8));
  static const size_t steps[] = {1, 3, 7, 100, 4096, 65536, sizeof(big)};
  for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
    memcpy(big, hdr, sizeof(hdr));
    rill__ws_mask_copy(big + sizeof(hdr), want, sizeof(want), rfc_mask, 0);
    int r = read_frames(1, big, sizeof(big), steps[k], 0, 0, &s);
    CHECK(r == 0 && s.frames == 1 && s.dlen == sizeof(want) &&
              memcmp(s.data, want, sizeof(want)) == 0,
          "64 KiB (step %zu): r %d, %zu bytes", steps[k], r, s.dlen);
  }
}

/* ---- masking ---- */

static void naive_mask(uint8_t *p, size_t n, const uint8_t m[4], uint64_t off) {
  for (size_t i = 0; i < n; i++)
    p[i] ^= m[(off + i) % 4];
}

static uint32_t rnd_state = 12345;
static uint8_t rnd(void) {
  rnd_state = rnd_state * 1103515245u + 12345u;
  return (uint8_t)(rnd_state >> 16);
}

static void test_mask(void) {
  const uint8_t m[4] = {0x12, 0x34, 0x56, 0x78};
  _Alignas(16) uint8_t src[96], got[96], ref[96], dst[96];
  for (size_t i = 0; i < sizeof(src); i++)
    src[i] = rnd();

  /* Every offset, length and alignment, in place and copying. */
  for (uint64_t off = 0; off < 16; off++) {
    for (size_t len = 0; len <= 64; len++) {
      int bad_in_place = 0, bad_copy = 0;
      for (size_t al = 0; al < 8; al++) {
        memcpy(ref, src, sizeof(src));
        memcpy(got, src, sizeof(src));
        naive_mask(ref + al, len, m, off);
        rill__ws_mask(got + al, len, m, off);
        bad_in_place += memcmp(got, ref, sizeof(got)) != 0;
        for (size_t dal = 0; dal < 8; dal++) {
          memset(dst, 0xee, sizeof(dst));
          rill__ws_mask_copy(dst + dal, src + al, len, m, off);
          bad_copy += memcmp(dst + dal, ref + al, len) != 0 ||
                      (dal && dst[dal - 1] != 0xee) || dst[dal + len] != 0xee;
        }
      }
      CHECK(bad_in_place == 0, "mask offset %llu len %zu: %d alignments wrong",
            (unsigned long long)off, len, bad_in_place);
      CHECK(bad_copy == 0, "mask_copy offset %llu len %zu: %d alignments wrong",
            (unsigned long long)off, len, bad_copy);
    }
  }

  /* Slices split at every two points continue the phase. */
  for (size_t len = 0; len <= 64; len++) {
    int bad = 0;
    for (uint64_t base = 0; base < 4; base++) {
      memcpy(ref, src, len);
      naive_mask(ref, len, m, base);
      for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
          memcpy(got, src, len);
          rill__ws_mask(got, a, m, base);
          rill__ws_mask(got + a, b - a, m, base + a);
          rill__ws_mask(got + b, len - b, m, base + b);
          bad += memcmp(got, ref, len) != 0;
        }
      }
    }
    CHECK(bad == 0, "mask slices, len %zu: %d splits wrong", len, bad);
  }

  /* Large, at an odd address, and masking twice restores the bytes. */
  size_t n = 1 << 20;
  uint8_t *a = malloc(n + 1), *b = malloc(n + 1);
  for (size_t i = 0; i <= n; i++)
    a[i] = b[i] = rnd();
  rill__ws_mask(a + 1, n, m, 3);
  naive_mask(b + 1, n, m, 3);
  CHECK(memcmp(a, b, n + 1) == 0, "mask 1 MiB");
  rill__ws_mask(a + 1, n, m, 3);
  naive_mask(b + 1, n, m, 3);
  CHECK(memcmp(a, b, n + 1) == 0, "mask 1 MiB twice");
  free(a);
  free(b);
}

/* ---- UTF-8 ---- */

/* Feeds s[0..n) in the pieces [0, a), [a, b), [b, n). Returns the absolute index
 * of the byte that failed, or -1 if none did; *complete as after the last. */
static long feed3(const uint8_t *s, size_t n, size_t a, size_t b, int *complete) {
  rill_utf8_t u;
  rill__utf8_init(&u);
  const size_t cut[4] = {0, a, b, n};
  for (int k = 0; k < 3; k++) {
    if (rill__utf8_feed(&u, s + cut[k], cut[k + 1] - cut[k]) < 0) {
      *complete = rill__utf8_complete(&u);
      return (long)(cut[k] + u.err_at);
    }
  }
  *complete = rill__utf8_complete(&u);
  return -1;
}

/* s is valid (or, if !complete, a valid prefix that is not complete) however
 * it is split. */
static void utf8_ok(const char *name, const uint8_t *s, size_t n, int complete) {
  int bad = 0;
  for (size_t a = 0; a <= n; a++) {
    for (size_t b = a; b <= n; b++) {
      int c;
      long at = feed3(s, n, a, b, &c);
      bad += at != -1 || c != complete;
    }
  }
  CHECK(bad == 0, "%s: %d splits wrong", name, bad);
  CHECK(rill__utf8_valid(s, n) == complete, "%s: rill__utf8_valid", name);
}

/* s fails on byte `at` however it is split. */
static void utf8_bad(const char *name, const uint8_t *s, size_t n, long at) {
  int bad = 0;
  for (size_t a = 0; a <= n; a++) {
    for (size_t b = a; b <= n; b++) {
      int c;
      long got = feed3(s, n, a, b, &c);
      if (got != at || c) {
        if (!bad)
          fprintf(stderr, "%s: split %zu/%zu failed at %ld, want %ld\n", name, a, b, got,
                  at);
        bad++;
      }
    }
  }
  CHECK(bad == 0, "%s: %d splits wrong", name, bad);
  CHECK(!rill__utf8_valid(s, n), "%s: rill__utf8_valid", name);
  /* Byte by byte, and then every later feed fails too. */
  rill_utf8_t u;
  rill__utf8_init(&u);
  long first = -1;
  for (size_t i = 0; i < n && first < 0; i++)
    if (rill__utf8_feed(&u, s + i, 1) < 0) first = (long)i;
  CHECK(first == at, "%s: byte by byte failed at %ld", name, first);
  CHECK(rill__utf8_feed(&u, (const uint8_t *)"a", 1) < 0 && !rill__utf8_complete(&u),
        "%s: error not sticky", name);
}

/* A reference that decodes and checks the code point, the way RFC 3629 §3
 * describes the encoding, rather than by the byte table ws_frame.c uses. */
static int ref_valid(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    } else {
      return 0;
    }
    if (n - i < len) return 0;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (p[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += len;
  }
  return 1;
}

/* Continuation bytes at the edges of every range a validator distinguishes. */
static const uint8_t edges[] = {0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf};

/* 1 if some continuation of p[0..n) by up to 3 bytes is valid. */
static int ref_completable(const uint8_t *p, size_t n) {
  uint8_t buf[16];
  memcpy(buf, p, n);
  if (ref_valid(buf, n)) return 1;
  for (size_t extra = 1; extra <= 3; extra++) {
    size_t combos = 1;
    for (size_t k = 0; k < extra; k++)
      combos *= sizeof(edges);
    for (size_t c = 0; c < combos; c++) {
      size_t x = c;
      for (size_t k = 0; k < extra; k++, x /= sizeof(edges))
        buf[n + k] = edges[x % sizeof(edges)];
      if (ref_valid(buf, n + extra)) return 1;
    }
  }
  return 0;
}

/* The validator against the reference: it accepts what the reference accepts,
 * and it fails on exactly the byte after which no continuation can be valid. */
static int cross_check(const uint8_t *s, size_t n) {
  rill_utf8_t u;
  rill__utf8_init(&u);
  if (rill__utf8_feed(&u, s, n) == 0)
    return rill__utf8_complete(&u) == ref_valid(s, n) && ref_completable(s, n);
  size_t at = u.err_at;
  return at < n && ref_completable(s, at) && !ref_completable(s, at + 1);
}

static size_t encode(uint32_t cp, uint8_t *out) {
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    return 1;
  } else if (cp < 0x800) {
    out[0] = (uint8_t)(0xc0 | cp >> 6);
    out[1] = (uint8_t)(0x80 | (cp & 0x3f));
    return 2;
  } else if (cp < 0x10000) {
    out[0] = (uint8_t)(0xe0 | cp >> 12);
    out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
    out[2] = (uint8_t)(0x80 | (cp & 0x3f));
    return 3;
  }
  out[0] = (uint8_t)(0xf0 | cp >> 18);
  out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
  out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
  out[3] = (uint8_t)(0x80 | (cp & 0x3f));
  return 4;
}

static void test_utf8(void) {
  utf8_ok("empty", B(""), 1);
  utf8_ok("ASCII", B("Hello, world! 0123456789 abcdefghijklmnopqrstuvwxyz"), 1);
  utf8_ok("NUL and DEL", B("a\0b\x7f"), 1);
  utf8_ok("2-byte (kosme)", B("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"), 1);
  utf8_ok("U+0080", B("\xc2\x80"), 1);
  utf8_ok("U+07FF", B("\xdf\xbf"), 1);
  utf8_ok("U+0800", B("\xe0\xa0\x80"), 1);
  utf8_ok("euro sign", B("\xe2\x82\xac"), 1);
  utf8_ok("U+D7FF", B("\xed\x9f\xbf"), 1);
  utf8_ok("U+E000", B("\xee\x80\x80"), 1);
  utf8_ok("U+FFFF", B("\xef\xbf\xbf"), 1);
  utf8_ok("U+10000", B("\xf0\x90\x80\x80"), 1);
  utf8_ok("emoji", B("\xf0\x9f\x98\x80"), 1);
  utf8_ok("U+10FFFF", B("\xf4\x8f\xbf\xbf"), 1);
  utf8_ok("mixed, long ASCII runs",
          B("abcdefghijklmnop\xc3\xa9qrstuvwxyz0123456789\xe2\x82\xac"
            "ABCDEFGHIJKLMNOPQRSTUVWX\xf0\x9f\x98\x80yz"),
          1);
  /* Valid so far, but not ending on a character boundary. */
  utf8_ok("truncated 2-byte", B("\xc2"), 0);
  utf8_ok("truncated 3-byte", B("\xe2\x82"), 0);
  utf8_ok("truncated 4-byte", B("abc\xf0\x9f\x98"), 0);
  utf8_ok("truncated U+10FFFF", B("\xf4\x8f\xbf"), 0);

  utf8_bad("lone continuation", B("\x80"), 0);
  utf8_bad("continuation after ASCII", B("a\xbf"), 1);
  utf8_bad("overlong C0 80", B("\xc0\x80"), 0);
  utf8_bad("overlong C1 BF", B("\xc1\xbf"), 0);
  utf8_bad("overlong E0 80 80", B("\xe0\x80\x80"), 1);
  utf8_bad("overlong E0 9F BF", B("\xe0\x9f\xbf"), 1);
  utf8_bad("overlong F0 80 80 80", B("\xf0\x80\x80\x80"), 1);
  utf8_bad("overlong F0 8F BF BF", B("\xf0\x8f\xbf\xbf"), 1);
  utf8_bad("surrogate U+D800", B("\xed\xa0\x80"), 1);
  utf8_bad("surrogate U+DFFF", B("\xed\xbf\xbf"), 1);
  utf8_bad("U+110000", B("\xf4\x90\x80\x80"), 1);
  utf8_bad("2-byte lead then lead", B("\xc2\xc2\x80"), 1);
  utf8_bad("3-byte cut by ASCII",
           B("\xe2\x82"
             "a"),
           2);
  utf8_bad("4-byte cut by ASCII", B("\xf0\x9f\x98 "), 3);
  utf8_bad("kosme then a surrogate (Autobahn 6.4.x)",
           B("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74"
             "\x65\x64"),
           12);
  utf8_bad("bad byte after a long ASCII run", B("0123456789abcdefghij\xffklmnopqrst"),
           20);
  for (unsigned c = 0xf5; c <= 0xff; c++) {
    uint8_t s[4] = {(uint8_t)c, 0x80, 0x80, 0x80};
    char name[32];
    snprintf(name, sizeof(name), "lead %02X", c);
    utf8_bad(name, s, 4, 0);
  }

  /* Fail-fast position in and around ASCII words: one bad byte at every index
   * of a 40-byte run, and one 3-byte character at every index. */
  int bad = 0;
  for (size_t at = 0; at < 40; at++) {
    uint8_t s[40];
    memset(s, 'x', sizeof(s));
    s[at] = 0xff;
    rill_utf8_t u;
    rill__utf8_init(&u);
    bad += rill__utf8_feed(&u, s, sizeof(s)) != -1 || u.err_at != at;
    memset(s, 'x', sizeof(s));
    if (at + 3 <= sizeof(s)) {
      memcpy(s + at, "\xe2\x82\xac", 3);
      bad += !rill__utf8_valid(s, sizeof(s));
    }
  }
  CHECK(bad == 0, "ASCII runs: %d positions wrong", bad);

  /* Every code point encodes to valid UTF-8, except the surrogates; overlong
   * forms of each are invalid. */
  int wrong = 0;
  for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
    uint8_t s[4];
    size_t n = encode(cp, s);
    int surrogate = cp >= 0xd800 && cp <= 0xdfff;
    wrong += rill__utf8_valid(s, n) == surrogate;
    if (cp < 0x800 && (cp & 0x3f) == 0) {
      uint8_t o[3] = {0xe0, (uint8_t)(0x80 | cp >> 6), (uint8_t)(0x80 | (cp & 0x3f))};
      wrong += rill__utf8_valid(o, 3);
    }
  }
  CHECK(wrong == 0, "code points: %d wrong", wrong);

  /* Against the reference: all strings of 1 and 2 bytes, and strings of 3 and
   * 4 bytes over the bytes where the rules change. */
  wrong = 0;
  for (unsigned x = 0; x < 256; x++) {
    uint8_t s[2] = {(uint8_t)x};
    wrong += !cross_check(s, 1);
    for (unsigned y = 0; y < 256; y++) {
      s[1] = (uint8_t)y;
      wrong += !cross_check(s, 2);
    }
  }
  CHECK(wrong == 0, "1- and 2-byte strings: %d disagree with the reference", wrong);
  static const uint8_t pick[] = {0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee,
                                 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff};
  const size_t np = sizeof(pick);
  wrong = 0;
  for (size_t a = 0; a < np; a++)
    for (size_t b = 0; b < np; b++)
      for (size_t c = 0; c < np; c++) {
        uint8_t s[4] = {pick[a], pick[b], pick[c]};
        wrong += !cross_check(s, 3);
        for (size_t d = 0; d < np; d++) {
          s[3] = pick[d];
          wrong += !cross_check(s, 4);
        }
      }
  CHECK(wrong == 0, "3- and 4-byte strings: %d disagree with the reference", wrong);

  /* A zeroed state is a fresh one. */
  rill_utf8_t z;
  memset(&z, 0, sizeof(z));
  CHECK(rill__utf8_feed(&z, B("\xe2\x82\xac")) == 0 && rill__utf8_complete(&z),
        "zeroed state");
}

/* ---- close frames ---- */

static void test_close(void) {
  static const unsigned valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                   1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
  static const unsigned invalid[] = {0,    1,    999,  1004, 1005, 1006,  1015,
                                     1016, 1100, 2000, 2999, 5000, 65535, 65536};
  for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
    CHECK(rill__ws_close_code_valid(valid[i]), "code %u should be valid", valid[i]);
  for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
    CHECK(!rill__ws_close_code_valid(invalid[i]), "code %u should be invalid", invalid[i]);

  unsigned code;
  const uint8_t *reason;
  size_t rlen;
  CHECK(rill__ws_close_parse(B(""), &code, &reason, &rlen) == 0 && code == 1005 &&
            rlen == 0,
        "empty close: %u", code);
  CHECK(rill__ws_close_parse(B("\x03"), &code, &reason, &rlen) == -1 && code == 1002,
        "1-byte close: %u", code);
  CHECK(rill__ws_close_parse(B("\x03\xe8"), &code, &reason, &rlen) == 0 && code == 1000 &&
            rlen == 0,
        "1000: %u", code);
  const uint8_t bye[] = "\x03\xe9"
                        "bye";
  CHECK(rill__ws_close_parse(bye, 5, &code, &reason, &rlen) == 0 && code == 1001 &&
            rlen == 3 && reason == bye + 2,
        "1001 bye");
  CHECK(rill__ws_close_parse(B("\x0f\xa0\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
                            &code, &reason, &rlen) == 0 &&
            code == 4000 && rlen == 11,
        "4000 with a UTF-8 reason");
  CHECK(rill__ws_close_parse(B("\x03\xed"), &code, &reason, &rlen) == -1 && code == 1002,
        "1005 sent: %u", code);
  CHECK(rill__ws_close_parse(B("\x03\xee"), &code, &reason, &rlen) == -1 && code == 1002,
        "1006 sent: %u", code);
  CHECK(rill__ws_close_parse(B("\x03\xe7"), &code, &reason, &rlen) == -1 && code == 1002,
        "999: %u", code);
  CHECK(rill__ws_close_parse(B("\x13\x88"), &code, &reason, &rlen) == -1 && code == 1002,
        "5000: %u", code);
  CHECK(rill__ws_close_parse(B("\x00\x00"), &code, &reason, &rlen) == -1 && code == 1002,
        "0: %u", code);
  CHECK(rill__ws_close_parse(B("\x03\xe8\xce\xba\xed\xa0\x80"), &code, &reason, &rlen) ==
                -1 &&
            code == 1007,
        "surrogate in reason: %u", code);
  CHECK(rill__ws_close_parse(B("\x03\xe8"
                              "ab\xe2\x82"),
                            &code, &reason, &rlen) == -1 &&
            code == 1007,
        "truncated reason: %u", code);

  uint8_t out[RILL_WS_CONTROL_MAX];
  CHECK(rill__ws_close_write(out, 0, NULL, 0) == 0, "close without status");
  CHECK(rill__ws_close_write(out, 1000, (const uint8_t *)"bye", 3) == 5 &&
            memcmp(out,
                   "\x03\xe8"
                   "bye",
                   5) == 0,
        "close 1000 bye");
  CHECK(rill__ws_close_write(out, 1005, NULL, 0) == -1, "1005 may not be sent");
  CHECK(rill__ws_close_write(out, 999, NULL, 0) == -1, "999 may not be sent");
  uint8_t r[300];
  memset(r, 'a', sizeof(r));
  CHECK(rill__ws_close_write(out, 4000, r, sizeof(r)) == 125, "ASCII reason cut to 123");
  for (size_t i = 0; i < 300; i += 2)
    memcpy(r + i, "\xce\xba", 2);
  ssize_t n = rill__ws_close_write(out, 1000, r, sizeof(r));
  CHECK(n == 124 && rill__ws_close_parse(out, (size_t)n, &code, &reason, &rlen) == 0,
        "2-byte reason cut at a boundary: %zd", n);
  for (size_t i = 0; i + 3 <= 300; i += 3)
    memcpy(r + i, "\xe2\x82\xac", 3);
  n = rill__ws_close_write(out, 1000, r, 300);
  CHECK(n == 125 && rill__ws_close_parse(out, (size_t)n, &code, &reason, &rlen) == 0,
        "3-byte reason cut at a boundary: %zd", n);
  for (size_t i = 0; i + 4 <= 300; i += 4)
    memcpy(r + i, "\xf0\x9f\x98\x80", 4);
  n = rill__ws_close_write(out, 1000, r, 300);
  CHECK(n == 122 && rill__ws_close_parse(out, (size_t)n, &code, &reason, &rlen) == 0,
        "4-byte reason cut at a boundary: %zd", n);
}

/* ---- the opening handshake ---- */

static void test_handshake(void) {
  /* RFC 6455 §1.3 */
  char out[29];
  const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
  CHECK(rill__ws_accept(key, strlen(key), out) == 0 &&
            strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0,
        "accept: %s", out);
  /* The §1.3 key is the base64 of "the sample nonce". */
  char k[25];
  rill__ws_key((const uint8_t *)"the sample nonce", k);
  CHECK(strcmp(k, key) == 0, "key: %s", k);

  static const char *bad[] = {
      "",
      "dGhlIHNhbXBsZSBub25jZQ",       /* no padding */
      "dGhlIHNhbXBsZSBub25jZQ=",      /* half the padding */
      "dGhlIHNhbXBsZSBub25jZQ===",    /* too much */
      "dGhlIHNhbXBsZSBub25jZ===",     /* 15 bytes and a half */
      "dGhl IHNhbXBsZSBub25jZQ=",     /* a space */
      "dGhlIHNhbXBsZSBub25jZQ-=",     /* not base64 */
      "dGhlIHNhbXBsZSBub25j",         /* 15 bytes */
      "dGhlIHNhbXBsZSBub25jZSB4eA==", /* 17 bytes */
      "dGhlIHNhbXBsZSBub25jZS0tLS0t", /* 21 bytes */
      " dGhlIHNhbXBsZSBub25jZQ==",    /* whitespace is the caller's to trim */
      "dGhlIHNhbXBsZSBu\x00\x32\x35jZQ==",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    size_t len = i == sizeof(bad) / sizeof(bad[0]) - 1 ? 24 : strlen(bad[i]);
    CHECK(rill__ws_accept(bad[i], len, out) == -1, "bad key %zu accepted", i);
  }
}

int main(void) {
  test_rfc_frames();
  test_header_write();
  test_rejections();
  test_sequences();
  test_mask();
  test_utf8();
  test_close();
  test_handshake();
  printf("ws: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
