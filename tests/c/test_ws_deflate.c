/* permessage-deflate (RFC 7692) in the WebSocket layer, linked without
 * LuaJIT and driven through the in-memory transport: the RFC's examples as
 * test vectors, a client and a server exchanging messages of every shape
 * (with and without context takeover, small windows, fragments, a ping
 * inside a compressed message), a message sent uncompressed when the peer
 * asked for window bits 8, the errors (RSV1 where it may not be, bad
 * deflate data, bad UTF-8 once inflated) and a decompression bomb, which
 * ends with 1009 having never held more than one buffer of output. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memstream.h"
#include "ws_conn.h"

#include "check.h"

static rill_worker_t *W;

static void settle(void) {
  for (int i = 0; i < 8; i++) {
    memstream_run();
    uv_run(W->loop, UV_RUN_NOWAIT);
  }
}

static const rill_ws_ops_t ops = {0};

static rill_ws_opts_t opts(int server, int own_bits, int peer_bits, int reset) {
  rill_ws_opts_t o = {.server = server, .max_frame = 1 << 30, .max_message = 1 << 30};
  o.deflate = 1;
  o.z_own_bits = own_bits;
  o.z_peer_bits = peer_bits;
  o.z_own_reset = o.z_peer_reset = reset;
  o.z_level = 1;
  o.z_mem_level = 8;
  return o;
}

/* A masked client frame with mask 0 (XOR nothing): first byte b0. */
static size_t frame(uint8_t *out, int b0, const void *p, size_t n) {
  size_t h =
      rill__ws_header_write(out, b0 >> 7, b0 & 0x7f, n, (const uint8_t *)"\0\0\0\0");
  memcpy(out + h, p, n);
  return h + n;
}

/* Reads ws's next message whole into buf (cap bytes at most). Returns its
 * length, or -1 with *err the connection's error (*code its close code). */
static long read_message(rill_websocket_t *ws, char *buf, size_t cap, int *type) {
  int r = RILL_EAGAIN;
  for (int i = 0; i < 1000 && r == RILL_EAGAIN; i++) {
    r = rill__ws_next(ws);
    if (r == RILL_EAGAIN) settle();
  }
  if (r != RILL_WS_MESSAGE) return -1;
  if (type) *type = ws->msg_type;
  size_t got = 0;
  for (int rounds = 0; rounds < 100000; rounds++) {
    const char *p;
    size_t k;
    int e = ws->msg.vt->peek(&ws->msg, &p, &k);
    if (e == RILL_EOF) return (long)got;
    if (e < 0) return -1;
    if (k == 0) {
      if (ws->msg.vt->fill(&ws->msg) < 0) return -1;
      settle();
      continue;
    }
    CHECK(!ws->from_z || k <= RILL_BUF_SIZE, "an inflated slice of %zu bytes", k);
    if (got + k <= cap) memcpy(buf + got, p, k);
    got += k;
    ws->msg.vt->consume(&ws->msg, k);
  }
  return -1;
}

/* A server fed frames, one reader; returns it and its transport. */
static rill_websocket_t *server(memstream_t **m, rill_ws_opts_t o) {
  *m = memstream_new(W);
  return rill__ws_new(W, &(*m)->base, &o, &ops, NULL);
}

static void done(rill_websocket_t *ws, memstream_t *m) {
  rill__ws_free(ws);
  settle();
  memstream_free(m);
}

/* The examples of RFC 7692 §7.2.3, as a client would send them (masked). */
static void test_rfc_vectors(void) {
  static const struct {
    const char *name;
    const char *frames[3];
    size_t lens[3];
    const char *want[2];
  } cases[] = {
      {"one frame", {"\xc1\xf2\x48\xcd\xc9\xc9\x07\x00"}, {7}, {"Hello"}},
      {"two fragments", {"\x41\xf2\x48\xcd", "\x80\xc9\xc9\x07\x00"}, {3, 4}, {"Hello"}},
      {"no compression (a stored block)",
       {"\xc1\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00"},
       {11},
       {"Hello"}},
      {"a final block", {"\xc1\xf3\x48\xcd\xc9\xc9\x07\x00\x00"}, {8}, {"Hello"}},
      {"two messages sharing a window",
       {"\xc1\xf2\x48\xcd\xc9\xc9\x07\x00", "\xc1\xf2\x00\x11\x00\x00"},
       {7, 5},
       {"Hello", "Hello"}},
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    memstream_t *m;
    rill_websocket_t *ws = server(&m, opts(1, 15, 15, 0));
    uint8_t f[64];
    for (int i = 0; i < 3 && cases[c].frames[i]; i++) {
      const char *fr = cases[c].frames[i];
      memstream_feed(m, f, frame(f, (uint8_t)fr[0], fr + 1, cases[c].lens[i]));
    }
    settle();
    for (int k = 0; k < 2 && cases[c].want[k]; k++) {
      char buf[64];
      long n = read_message(ws, buf, sizeof(buf), NULL);
      CHECK(n == 5 && memcmp(buf, cases[c].want[k], 5) == 0, "%s: message %d: %ld",
            cases[c].name, k, n);
    }
    done(ws, m);
  }
}

/* A ping between the fragments of a compressed message is answered, and
 * the message reads whole. */
static void test_ping_inside(void) {
  memstream_t *m;
  rill_websocket_t *ws = server(&m, opts(1, 15, 15, 0));
  uint8_t f[64];
  memstream_feed(m, f, frame(f, 0x41, "\xf2\x48\xcd", 3));
  memstream_feed(m, f, frame(f, 0x89, "hi", 2));
  memstream_feed(m, f, frame(f, 0x80, "\xc9\xc9\x07\x00", 4));
  settle();
  char buf[16];
  long n = read_message(ws, buf, sizeof(buf), NULL);
  CHECK(n == 5 && memcmp(buf, "Hello", 5) == 0, "ping inside: %ld", n);
  char out[16];
  size_t k = memstream_take(m, out, sizeof(out));
  CHECK(k == 4 && (uint8_t)out[0] == 0x8a && memcmp(out + 2, "hi", 2) == 0, "pong: %zu",
        k);
  done(ws, m);
}

typedef struct {
  const char *name;
  int deflate;
  const char *in;
  size_t n;
  unsigned code;
} bad_t;

static void test_errors(void) {
  static const bad_t cases[] = {
      {"RSV1 without the extension", 0, "\xc1\xf2\x48\xcd\xc9\xc9\x07\x00", 8, 1002},
      {"RSV1 on a ping", 1, "\xc9\x00", 2, 1002},
      {"RSV1 on a continuation", 1, "\x41\xf2\x48\xcd\xc0\xc9\xc9\x07\x00", 9, 1002},
      {"not deflate (block type 3)", 1, "\xc1\xff\xff\xff", 4, 1007},
      /* "\xff\xfe" stored: not UTF-8 once inflated */
      {"bad UTF-8 inflated", 1, "\xc1\x00\x02\x00\xfd\xff\xff\xfe", 8, 1007},
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    memstream_t *m;
    rill_ws_opts_t o = opts(1, 15, 15, 0);
    o.deflate = cases[c].deflate;
    rill_websocket_t *ws = server(&m, o);
    /* the frames: first byte, then payload, split as the case says */
    const uint8_t *p = (const uint8_t *)cases[c].in;
    uint8_t f[64];
    if (c == 2) {
      memstream_feed(m, f, frame(f, p[0], p + 1, 3));
      memstream_feed(m, f, frame(f, p[4], p + 5, 4));
    } else {
      memstream_feed(m, f, frame(f, p[0], p + 1, cases[c].n - 1));
    }
    settle();
    char buf[64];
    read_message(ws, buf, sizeof(buf), NULL);
    CHECK(ws->state == RILL_WS_CLOSED && ws->close_code == cases[c].code,
          "%s: state %d, code %u", cases[c].name, ws->state, ws->close_code);
    done(ws, m);
  }
}

/* Compresses n bytes of src into a fresh buffer with zlib, as a peer would
 * (raw deflate, a sync flush, the tail dropped). */
static uint8_t *compress_raw(const uint8_t *src, size_t n, size_t *outn) {
  z_stream z;
  memset(&z, 0, sizeof(z));
  deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY);
  size_t cap = deflateBound(&z, n) + 64;
  uint8_t *out = malloc(cap);
  z.next_in = (Bytef *)src;
  z.avail_in = (uInt)n;
  z.next_out = out;
  z.avail_out = (uInt)cap;
  deflate(&z, Z_SYNC_FLUSH);
  *outn = cap - z.avail_out - 4;
  deflateEnd(&z);
  return out;
}

/* 64 MiB of zeros in 64 KiB of deflate: the reader is cut off with 1009
 * just past max_message (1 MiB), and no slice it saw was more than a
 * buffer. */
static void test_bomb(void) {
  size_t n = 64u << 20, cn;
  uint8_t *zeros = calloc(1, n);
  uint8_t *c = compress_raw(zeros, n, &cn);
  free(zeros);
  CHECK(cn < 100000, "the bomb is %zu bytes", cn);
  memstream_t *m;
  rill_ws_opts_t o = opts(1, 15, 15, 0);
  o.max_message = 1 << 20;
  rill_websocket_t *ws = server(&m, o);
  uint8_t hdr[RILL_WS_HEADER_MAX];
  size_t h = rill__ws_header_write(hdr, 1, RILL_WS_BINARY | RILL_WS_RSV1, cn,
                                   (const uint8_t *)"\0\0\0\0");
  memstream_feed(m, hdr, h);
  memstream_feed(m, c, cn);
  free(c);
  settle();
  static char buf[2 << 20];
  long got = read_message(ws, buf, sizeof(buf), NULL);
  CHECK(got < 0 && ws->close_code == 1009, "bomb: %ld, code %u", got, ws->close_code);
  done(ws, m);
}

/* A client and a server joined: each message goes one way and back (the
 * server echoes it in fragments of its own), compressed both ways. */
static void exchange(const char *name, rill_ws_opts_t co, rill_ws_opts_t so) {
  memstream_t *a = memstream_new(W), *b = memstream_new(W);
  memstream_join(a, b);
  rill_websocket_t *cw = rill__ws_new(W, &a->base, &co, &ops, NULL);
  rill_websocket_t *sw = rill__ws_new(W, &b->base, &so, &ops, NULL);
  static char msg[300000], got[300000];
  for (size_t i = 0; i < sizeof(msg); i++)
    msg[i] = (char)(i < 150000 ? (int)('a' + (i * 7 + i / 251) % 26) : rand());
  static const size_t sizes[] = {0, 1, 5, 200, 70000, 300000};
  for (int round = 0; round < 2; round++) {
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
      size_t n = sizes[s];
      int r = rill__ws_send(cw, RILL_WS_BINARY, 1, msg, n);
      CHECK(r == 0 || r == RILL_EAGAIN, "%s: send %zu: %d", name, n, r);
      settle();
      int type = 0;
      long k = read_message(sw, got, sizeof(got), &type);
      CHECK(k == (long)n && memcmp(got, msg, n) == 0 && type == RILL_WS_BINARY,
            "%s: %zu bytes in, %ld out", name, n, k);
      /* back in three fragments: text while it is UTF-8 */
      size_t third = n / 3;
      int back = n <= 150000 ? (int)RILL_WS_TEXT : (int)RILL_WS_BINARY;
      rill__ws_send(sw, back, 0, msg, third);
      rill__ws_send(sw, RILL_WS_PING, 1, "p", 1);
      rill__ws_send(sw, RILL_WS_CONT, 0, msg + third, third);
      rill__ws_send(sw, RILL_WS_CONT, 1, msg + 2 * third, n - 2 * third);
      settle();
      k = read_message(cw, got, sizeof(got), &type);
      CHECK(k == (long)n && memcmp(got, msg, n) == 0 && type == back,
            "%s: %zu bytes back, %ld (%u %s / %u %s)", name, n, k, cw->close_code,
            cw->errmsg ? cw->errmsg : "", sw->close_code, sw->errmsg ? sw->errmsg : "");
    }
  }
  rill__ws_free(cw);
  rill__ws_free(sw);
  settle();
  memstream_free(a);
  memstream_free(b);
}

static void test_exchange(void) {
  exchange("takeover", opts(0, 15, 15, 0), opts(1, 15, 15, 0));
  exchange("no takeover", opts(0, 15, 15, 1), opts(1, 15, 15, 1));
  exchange("small windows", opts(0, 9, 10, 0), opts(1, 10, 9, 0));
  /* A server whose window must be 8 sends uncompressed: the client reads
   * it all the same. */
  exchange("window 8", opts(0, 15, 8, 0), opts(1, 8, 15, 0));
}

/* What leaves, seen raw: RSV1 on a compressed message's first frame only,
 * the tail dropped, short messages and window-8 senders uncompressed, the
 * state released between messages without context takeover. */
static void test_wire(void) {
  memstream_t *m;
  rill_ws_opts_t o = opts(1, 15, 15, 1);
  o.z_min_size = 4;
  rill_websocket_t *ws = server(&m, o);
  char out[64];
  CHECK(rill__ws_send(ws, RILL_WS_TEXT, 1, "Hi!", 3) == 0, "send");
  size_t k = memstream_take(m, out, sizeof(out));
  CHECK(k == 5 && (uint8_t)out[0] == 0x81, "under min_size: plain: %zu %02x", k,
        (uint8_t)out[0]);
  CHECK(rill__ws_send(ws, RILL_WS_TEXT, 1, "Hello", 5) == 0, "send");
  k = memstream_take(m, out, sizeof(out));
  CHECK(k == 9 && memcmp(out, "\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00", 9) == 0,
        "Hello as RFC 7692 has it: %zu", k);
  CHECK(ws->outz == NULL, "no context takeover: the deflater is gone");
  CHECK(rill__ws_send(ws, RILL_WS_TEXT, 0, "Hel", 3) == 0, "fragment");
  CHECK(rill__ws_send(ws, RILL_WS_CONT, 1, "lo", 2) == 0, "fragment");
  k = memstream_take(m, out, sizeof(out));
  CHECK(k > 4 && (uint8_t)out[0] == 0x41 && (uint8_t)out[out[1] + 2] == 0x80,
        "RSV1 on the first fragment only: %02x %02x", (uint8_t)out[0],
        (uint8_t)out[out[1] + 2]);
  CHECK(rill__ws_send(ws, RILL_WS_TEXT, 1, "", 0) == 0 &&
            memstream_take(m, out, 64) == 2 && (uint8_t)out[0] == 0x81,
        "empty: plain");
  done(ws, m);

  o = opts(1, 8, 15, 0);
  ws = server(&m, o);
  CHECK(rill__ws_send(ws, RILL_WS_TEXT, 1, "Hello Hello Hello", 17) == 0, "send");
  k = memstream_take(m, out, sizeof(out));
  CHECK(k == 19 && (uint8_t)out[0] == 0x81, "window 8: plain: %zu", k);
  done(ws, m);

  /* An empty compressed message is one 0x00 byte. */
  o = opts(1, 15, 15, 0);
  ws = server(&m, o);
  CHECK(rill__ws_send(ws, RILL_WS_TEXT, 1, "", 0) == 0, "send");
  k = memstream_take(m, out, sizeof(out));
  CHECK(k == 3 && memcmp(out, "\xc1\x01\x00", 3) == 0, "empty compressed: %zu", k);
  CHECK(ws->outz != NULL, "context takeover: the deflater stays");
  done(ws, m);
}

int main(void) {
  W = rill__worker_new(NULL);
  test_rfc_vectors();
  test_ping_inside();
  test_errors();
  test_bomb();
  test_exchange();
  test_wire();
  rill__worker_free(W);
  printf("ws_deflate: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
