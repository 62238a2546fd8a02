/* Fuzzes a whole WebSocket connection (ws_conn.c over ws_frame.c) over an
 * in-memory transport, with a C handler in place of a Lua one.
 *
 * Input: two bytes of settings, then the bytes of the peer. The first:
 *   bit 0      0: a server (frames in are masked, frames out are not);
 *              1: a client (the other way round; our masks are random, so
 *              the output is unmasked before it is compared)
 *   bits 1-2   max_frame (none, 125, 1000, 65536)
 *   bits 3-4   max_message (none, 200, 1, 5000)
 *   bits 5-6   the transport's write limit above which writes say "wait"
 *              (none, 50, 300, 3000 bytes)
 *   bit 7      0: the handler takes messages (rill__ws_next and the message
 *              stream ws->msg) and echoes each whole, or fragment by fragment
 *              when it starts with "frag"; "close" starts the close
 *              handshake, "fail" fails the connection (1011), "ping" sends
 *              a ping, "skip" goes to the next message unread.
 *              1: the handler reads every payload as one byte stream
 *              (ws->bytes, ws:as_stream()) and writes each slice back
 *              through that stream (a binary message per write); at its
 *              end it closes the stream.
 * and a second byte:
 *   bit 0      the input ends with a reset (ECONNRESET) rather than an end
 *   bit 1      from the middle of the input on, writes fail
 *   bit 2      the websocket lives on a worker of its own, torn down
 *              (rill__worker_free) once all input is in, instead of the
 *              input's end: the owner is told it is gone, nothing leaks
 *   bit 3      permessage-deflate negotiated: frames in may carry RSV1 and
 *              arbitrary deflate data, inflated as read; what we send is
 *              compressed (read back through zlib here)
 *   bits 4-5   its parameters: window bits 15 both ways with context
 *              takeover; the same without (both ways); window 9 both ways
 *              (data with longer distances fails with 1007); our window 8
 *              (we send uncompressed) and a min_size of 10
 * Pings are answered and closes handled by the connection itself.
 *
 * The result: what was written, read back frame by frame by a decoder of
 * this file's own (which also checks that every frame written is valid:
 * minimal lengths, the mask bit, control frames short and whole, text that
 * is UTF-8, nothing after a close, RSV1 only on a message's first frame and
 * only with deflate, a compressed message that inflates), as whole messages
 * (inflated) and control frames,
 * a message cut short by the end dropped; then how the connection ended
 * (close code and reason, error, closes sent and received, transport closed
 * or reset). After each run: the connection closed, its handler ended, and
 * once freed nothing of it left on the loop.
 *
 * Split check: once with the input fed whole, once in pieces (callbacks
 * delivered until none is due after each); the results must be the same. */
#include <zlib.h>

#include "fuzz_common.h"
#include "memstream.h"
#include "ws_conn.h"

#define T "fuzz_ws_conn"

static rill_worker_t *W;

static const uint64_t max_frame_of[] = {0, 125, 1000, 65536};
static const uint64_t max_message_of[] = {0, 200, 1, 5000};
static const size_t out_limit_of[] = {0, 50, 300, 3000};

/* ---- the handler, run as the scheduler runs tasks ---- */

enum { W_NONE, W_NEXT, W_MSG, W_DRAIN, W_CLOSE, W_BYTES };
enum { S_NEXT, S_READ, S_SEND, S_AFTER, S_DONE };

typedef struct {
  rill_websocket_t *ws;
  int bytes_mode;
  int state, wait, queued, running, done;
  rill_binding_t mb; /* bound to ws->msg or ws->bytes while reading */
  int msg_gone;
  int type;
  uint8_t *buf; /* the message (or byte stream) read */
  size_t len, cap;
  size_t peek_n; /* head of buf the command checks look at */
  int frag;      /* echoing fragment by fragment: frames sent so far */
  int end;       /* how the handler's last call ended */
  int gone;      /* the websocket was freed under the handler */
} handler_t;

static handler_t H;
static int draining;

static void step(handler_t *hd);

/* Runs the handler now, or after the step that is running (never inside it). */
static void run_handler(handler_t *hd) {
  hd->queued = 1;
  if (draining) return;
  draining = 1;
  while (hd->queued) {
    hd->queued = 0;
    step(hd);
  }
  draining = 0;
}

/* The handler waited for why: it goes on. */
static void wake(handler_t *hd, int why) {
  if (hd->done || hd->wait != why || hd->ws->w->stopping) return;
  hd->wait = W_NONE;
  run_handler(hd);
}

static void buf_put(handler_t *hd, const char *p, size_t n) {
  if (hd->len + n > hd->cap) {
    size_t cap = hd->cap ? hd->cap : 256;
    while (cap < hd->len + n)
      cap *= 2;
    if ((hd->buf = realloc(hd->buf, cap)) == NULL) abort();
    hd->cap = cap;
  }
  memcpy(hd->buf + hd->len, p, n);
  hd->len += n;
}

static void on_next(rill_websocket_t *ws) {
  wake(ws->data, W_NEXT);
}
static void on_closed(rill_websocket_t *ws) {
  wake(ws->data, W_CLOSE);
}
static void on_drained(rill_websocket_t *ws, int status) {
  wake(ws->data, W_DRAIN);
}
/* A worker's teardown frees the websocket: the handler's task dies too. */
static void on_gone(rill_websocket_t *ws) {
  handler_t *hd = ws->data;
  FZ_ASSERT(T, ws->w->stopping, "the websocket was freed under its owner");
  hd->gone = 1;
  hd->done = 1;
}

static const rill_ws_ops_t ops = {
    .next = on_next, .closed = on_closed, .drained = on_drained, .gone = on_gone};

static void msg_readable(rill_binding_t *b, int status) {
  handler_t *hd = rill__container_of(b, handler_t, mb);
  wake(hd, hd->bytes_mode ? W_BYTES : W_MSG);
}

static void msg_drained(rill_binding_t *b, int status) {
  handler_t *hd = rill__container_of(b, handler_t, mb);
  wake(hd, W_DRAIN);
}

static void msg_gone(rill_binding_t *b) {
  handler_t *hd = rill__container_of(b, handler_t, mb);
  hd->msg_gone = 1;
  wake(hd, hd->bytes_mode ? W_BYTES : W_MSG);
}

static const rill_binding_ops_t msg_ops = {
    .readable = msg_readable, .drained = msg_drained, .gone = msg_gone};

static int starts(const handler_t *hd, const char *word) {
  size_t n = strlen(word);
  return hd->type == RILL_WS_TEXT && hd->peek_n >= n && memcmp(hd->buf, word, n) == 0;
}

/* Sends a frame; 1 to go on, 0 when the handler waits for the drain. */
static int send_frame(handler_t *hd, int opcode, int fin, const void *p, size_t n) {
  int r = rill__ws_send(hd->ws, opcode, fin, p, n);
  if (r == RILL_EAGAIN) {
    hd->wait = W_DRAIN;
    return 0;
  }
  return 1;
}

/* Messages: next, read (echoing fragments as they come, if asked), echo. */
static void step_messages(handler_t *hd) {
  rill_websocket_t *ws = hd->ws;
  for (;;) {
    switch (hd->state) {
    case S_NEXT: {
      int r = rill__ws_next(ws);
      if (r == RILL_EAGAIN) {
        hd->wait = W_NEXT;
        return;
      }
      if (r != RILL_WS_MESSAGE) {
        hd->end = r;
        hd->state = S_DONE;
        break;
      }
      FZ_ASSERT(T, ws->msg_type == RILL_WS_TEXT || ws->msg_type == RILL_WS_BINARY,
                "a message of type %d", ws->msg_type);
      hd->type = ws->msg_type;
      hd->len = hd->peek_n = 0;
      hd->frag = 0;
      hd->msg_gone = 0;
      rill__stream_bind(&ws->msg, &hd->mb, &msg_ops);
      hd->state = S_READ;
      break;
    }
    case S_READ: {
      rill_stream_t *s = &ws->msg;
      if (hd->msg_gone) {
        hd->state = S_NEXT;
        break;
      }
      const char *p;
      size_t n;
      int r = s->vt->peek(s, &p, &n);
      if (r == 0 && n > 0) {
        size_t before = hd->len;
        buf_put(hd, p, n);
        if (hd->peek_n < 5) hd->peek_n = hd->len < 5 ? hd->len : 5;
        s->vt->consume(s, n);
        if (starts(hd, "skip")) {
          rill__stream_unbind(&hd->mb);
          hd->state = S_NEXT; /* the rest is dropped by next() */
          break;
        }
        if (hd->peek_n >= 4 && starts(hd, "frag")) {
          /* Echo what has come since the last fragment (all of it, the
           * first time: the check needed the first bytes). */
          int op = hd->frag++ ? RILL_WS_CONT : hd->type;
          const uint8_t *q = hd->buf + (hd->frag == 1 ? 0 : before);
          size_t k = hd->len - (size_t)(q - hd->buf);
          if (!send_frame(hd, op, 0, q, k)) return;
        }
        continue;
      }
      if (r == RILL_EOF) {
        rill__stream_unbind(&hd->mb);
        hd->state = S_SEND;
        break;
      }
      if (r < 0) {
        rill__stream_unbind(&hd->mb);
        hd->state = S_NEXT; /* next() says how the connection ended */
        break;
      }
      r = s->vt->fill(s);
      if (r < 0 && r != RILL_EOF) {
        rill__stream_unbind(&hd->mb);
        hd->state = S_NEXT;
        break;
      }
      r = s->vt->peek(s, &p, &n);
      if (r == 0 && n == 0) {
        hd->wait = W_MSG;
        return;
      }
      break;
    }
    case S_SEND: {
      hd->state = S_AFTER;
      if (starts(hd, "close")) {
        int r = rill__ws_close(ws, 1000, "bye", 3);
        if (r == RILL_EAGAIN) {
          hd->wait = W_CLOSE;
          return;
        }
        break;
      }
      if (starts(hd, "fail")) {
        rill__ws_fail(ws, 1011, "handler failed");
        break;
      }
      if (starts(hd, "ping")) {
        if (!send_frame(hd, RILL_WS_PING, 1, hd->buf, hd->len > 125 ? 125 : hd->len))
          return;
        break;
      }
      if (hd->frag) {
        if (!send_frame(hd, RILL_WS_CONT, 1, NULL, 0)) return;
        break;
      }
      if (!send_frame(hd, hd->type, 1, hd->buf, hd->len)) return;
      break;
    }
    case S_AFTER:
      hd->state = S_NEXT;
      break;
    case S_DONE:
      hd->done = 1;
      return;
    }
  }
}

/* The byte stream: each slice read is written back (one binary message per
 * write); at its end the stream is closed (a close 1000 unless one was
 * exchanged already). */
static void step_bytes(handler_t *hd) {
  rill_websocket_t *ws = hd->ws;
  rill_stream_t *s = &ws->bytes;
  for (;;) {
    switch (hd->state) {
    case S_NEXT:
      hd->state = S_READ;
      rill__stream_bind(s, &hd->mb, &msg_ops);
      break;
    case S_READ: {
      if (hd->msg_gone) {
        hd->end = RILL_ECLOSED;
        hd->state = S_DONE;
        break;
      }
      const char *p;
      size_t n;
      int r = s->vt->peek(s, &p, &n);
      if (r == 0 && n > 0) {
        uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
        r = s->vt->write(s, &b, 1);
        s->vt->consume(s, n);
        if (r == RILL_EAGAIN) {
          hd->wait = W_DRAIN;
          return;
        }
        continue;
      }
      if (r == RILL_EOF) {
        hd->state = S_AFTER;
        break;
      }
      if (r < 0) {
        hd->end = r;
        hd->state = S_DONE;
        break;
      }
      r = s->vt->fill(s);
      if (r == RILL_EOF) {
        hd->state = S_AFTER;
        break;
      }
      if (r < 0) {
        hd->end = r;
        hd->state = S_DONE;
        break;
      }
      r = s->vt->peek(s, &p, &n);
      if (r == 0 && n == 0) {
        hd->wait = W_BYTES;
        return;
      }
      break;
    }
    case S_AFTER:
      /* Closing the byte stream closes the websocket (1000). */
      hd->end = RILL_EOF;
      if (!hd->msg_gone) s->vt->close(s);
      hd->state = S_DONE;
      break;
    default:
      rill__stream_unbind(&hd->mb);
      hd->done = 1;
      return;
    }
  }
}

static void step(handler_t *hd) {
  if (hd->done) return;
  if (hd->bytes_mode)
    step_bytes(hd);
  else
    step_messages(hd);
}

/* ---- reading back what was written ---- */

/* Inflates a compressed message we wrote (p[0..n), the tail appended) with
 * zs; returns a new buffer of *outn bytes. */
static uint8_t *inflate_back(z_stream *zs, const uint8_t *p, size_t n, size_t *outn) {
  uint8_t *in = malloc(n + 4);
  size_t cap = n * 4 + 1024, len = 0;
  uint8_t *out = malloc(cap);
  if (in == NULL || out == NULL) abort();
  if (n) memcpy(in, p, n);
  memcpy(in + n, rill__wsz_tail, 4);
  zs->next_in = in;
  zs->avail_in = (uInt)(n + 4);
  for (;;) {
    zs->next_out = out + len;
    zs->avail_out = (uInt)(cap - len);
    int r = inflate(zs, Z_SYNC_FLUSH);
    len = cap - zs->avail_out;
    FZ_ASSERT(T, r == Z_OK || (r == Z_BUF_ERROR && zs->avail_in == 0),
              "a compressed message we wrote does not inflate: %d", r);
    if (zs->avail_in == 0 && zs->avail_out > 0) break;
    if (zs->avail_out == 0 && (out = realloc(out, cap *= 2)) == NULL) abort();
  }
  free(in);
  *outn = len;
  return out;
}

/* Decodes out[0..n) as the frames we wrote (masked if we are a client) into
 * rec: control frames as they come, data as whole messages. Aborts on a
 * frame we should not have written. */
static void read_back(fz_rec_t *rec, uint8_t *out, size_t n, int masked, int bytes_mode,
                      int drop_data, const rill_ws_opts_t *o) {
  size_t i = 0;
  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  if (o->deflate && inflateInit2(&zs, -15) != Z_OK) abort();
  int mz = 0; /* the message being read back is compressed */
  fz_rec_t stream = {0}; /* bytes mode: the binary messages, joined */
  uint8_t *msg = NULL;
  size_t mlen = 0, mcap = 0;
  int mtype = 0, closed = 0;
  while (i < n) {
    FZ_ASSERT(T, !closed, "a frame written after a close");
    FZ_ASSERT(T, n - i >= 2, "a frame header cut short at the end of the output");
    uint8_t b0 = out[i], b1 = out[i + 1];
    unsigned fin = b0 >> 7, op = b0 & 15;
    FZ_ASSERT(T, (b0 & 0x70) == 0 || (o->deflate && o->z_own_bits >= 9 && (b0 & 0x70) == 0x40 &&
                                      (op == 1 || op == 2)),
              "RSV bits written: %02x", b0);
    FZ_ASSERT(T, (b1 >> 7) == (unsigned)masked, "mask bit %u written", b1 >> 7);
    FZ_ASSERT(T, op <= 2 || (op >= 8 && op <= 10), "opcode %u written", op);
    uint64_t len = b1 & 0x7f;
    size_t h = 2;
    if (len == 126) {
      FZ_ASSERT(T, n - i >= 4, "a header cut short");
      len = (uint64_t)out[i + 2] << 8 | out[i + 3];
      FZ_ASSERT(T, len >= 126, "a 16-bit length of %llu written",
                (unsigned long long)len);
      h = 4;
    } else if (len == 127) {
      FZ_ASSERT(T, n - i >= 10, "a header cut short");
      len = 0;
      for (int k = 0; k < 8; k++)
        len = len << 8 | out[i + 2 + k];
      FZ_ASSERT(T, len >= 65536 && !(len >> 63), "a 64-bit length of %llu written",
                (unsigned long long)len);
      h = 10;
    }
    uint8_t mask[4] = {0};
    if (masked) {
      FZ_ASSERT(T, n - i >= h + 4, "a mask cut short");
      memcpy(mask, out + i + h, 4);
      h += 4;
    }
    FZ_ASSERT(T, n - i - h >= len, "a payload cut short: %llu of %zu",
              (unsigned long long)len, n - i - h);
    uint8_t *p = out + i + h;
    for (uint64_t k = 0; k < len; k++)
      p[k] ^= mask[k & 3];
    i += h + (size_t)len;
    if (op >= 8) {
      if (stream.len) {
        fz_put_tag(rec, 'B');
        fz_put_bytes(rec, stream.p, stream.len);
        stream.len = 0;
      }
      FZ_ASSERT(T, fin && len <= 125, "control frame %u: fin %u, %llu bytes", op, fin,
                (unsigned long long)len);
      fz_put_tag(rec, 'C');
      fz_put_u64(rec, op);
      fz_put_bytes(rec, p, (size_t)len);
      if (op == 8) {
        unsigned code;
        const uint8_t *reason;
        size_t rlen;
        FZ_ASSERT(T, rill__ws_close_parse(p, (size_t)len, &code, &reason, &rlen) == 0,
                  "an invalid close frame written (%llu bytes)", (unsigned long long)len);
        closed = 1;
      }
      continue;
    }
    if (op == 0) {
      FZ_ASSERT(T, mtype != 0, "a continuation written outside a message");
    } else {
      FZ_ASSERT(T, mtype == 0, "a new message written inside a fragmented one");
      mtype = (int)op;
      mlen = 0;
      mz = (b0 & 0x40) != 0;
    }
    if (mlen + len > mcap) {
      mcap = (mlen + (size_t)len) * 2 + 64;
      if ((msg = realloc(msg, mcap)) == NULL) abort();
    }
    if (len) memcpy(msg + mlen, p, (size_t)len);
    mlen += (size_t)len;
    if (fin && mz) {
      size_t k;
      uint8_t *plain = inflate_back(&zs, msg, mlen, &k);
      free(msg);
      msg = plain;
      mlen = k;
      mcap = k;
      if (o->z_own_reset) inflateReset(&zs);
    }
    if (fin) {
      if (mtype == RILL_WS_TEXT)
        FZ_ASSERT(T, rill__utf8_valid(msg, mlen),
                  "a text message written that is not UTF-8");
      if (bytes_mode) {
        FZ_ASSERT(T, mtype == RILL_WS_BINARY,
                  "a text message written to the byte stream");
        if (!drop_data) fz_put(&stream, msg, mlen);
      } else {
        fz_put_tag(rec, 'M');
        fz_put_u64(rec, (uint64_t)mtype);
        fz_put_bytes(rec, msg, mlen);
      }
      mtype = 0;
    }
  }
  if (stream.len) {
    fz_put_tag(rec, 'B');
    fz_put_bytes(rec, stream.p, stream.len);
  }
  fz_rec_free(&stream);
  if (o->deflate) inflateEnd(&zs);
  /* A message cut short (the connection failed while it was echoed piece by
   * piece) is dropped: how much of it went out depends on the cut. */
  free(msg);
}

/* ---- one run ---- */

static size_t take_output(fz_rec_t *out, memstream_t *m) {
  size_t n = m->out_len;
  if (n == 0) return 0;
  fz_put(out, m->out, n);
  memstream_take(m, NULL, 0);
  return n;
}

static void settle(fz_rec_t *out, memstream_t *m) {
  for (int i = 0;; i++) {
    FZ_ASSERT(T, i < 100000, "callbacks without end");
    int did = memstream_run();
    size_t k = take_output(out, m);
    if (!did && !k) break;
  }
}

static void run(fz_rec_t *rec, const uint8_t *data, size_t n, uint8_t cfg, uint8_t cfg2,
                int split) {
  fz_rng_t g;
  fz_rng_init(&g, data, n);
  int tear = cfg2 & 4;
  rill_worker_t *w = tear ? rill__worker_new(NULL) : W;
  if (w == NULL) abort();
  w->log_level = RILL_LOG_ERROR;
  memstream_t *m = memstream_new(w);
  if (m == NULL) abort();
  m->out_limit = out_limit_of[(cfg >> 5) & 3];
  rill_ws_opts_t o = {
      .server = !(cfg & 1),
      .max_frame = max_frame_of[(cfg >> 1) & 3],
      .max_message = max_message_of[(cfg >> 3) & 3],
  };
  if (cfg2 & 8) {
    static const int own[] = {15, 15, 9, 8}, peer[] = {15, 15, 9, 15};
    int mode = (cfg2 >> 4) & 3;
    o.deflate = 1;
    o.z_own_bits = own[mode];
    o.z_peer_bits = peer[mode];
    o.z_own_reset = o.z_peer_reset = mode == 1;
    o.z_level = 1;
    o.z_mem_level = 8;
    o.z_min_size = mode == 3 ? 10 : 0;
  }
  handler_t *hd = &H;
  memset(hd, 0, sizeof(*hd));
  hd->bytes_mode = (cfg >> 7) & 1;
  hd->ws = rill__ws_new(w, &m->base, &o, &ops, hd);
  FZ_ASSERT(T, hd->ws != NULL, "no websocket");
  rill_websocket_t *ws = hd->ws;
  fz_rec_t out = {0};
  run_handler(hd);
  settle(&out, m);
  size_t half = (cfg2 & 2) ? n / 2 : n;
  for (size_t pos = 0; pos < n;) {
    size_t end = pos < half ? half : n;
    size_t k = split ? fz_piece(&g, end - pos) : end - pos;
    memstream_feed(m, data + pos, k);
    pos += k;
    settle(&out, m);
    if (pos == half && half < n) m->shut = 1; /* writes say RILL_ECLOSED */
  }
  if (tear) {
    /* How it stood, then the teardown: the websocket is destroyed under its
     * owner (told by ops->gone), its transport reset, its memory freed. */
    fz_put_tag(rec, 't');
    fz_put_u64(rec, (uint64_t)ws->state);
    fz_put_u64(rec, ws->close_code);
    fz_put_u64(rec, (uint64_t)hd->done);
    int closed_before = ws->state == RILL_WS_CLOSED;
    int drop = hd->bytes_mode && (ws->close_code == RILL_WS_INVALID_DATA ||
                                  (o.deflate && ws->close_code == RILL_WS_TOO_BIG));
    rill__worker_free(w);
    take_output(&out, m);
    FZ_ASSERT(T, hd->gone, "the teardown did not tell the websocket's owner");
    FZ_ASSERT(T, m->closed, "the transport is open after the teardown");
    FZ_ASSERT(T, m->base.top == NULL, "a binding left on the transport");
    read_back(rec, out.p, out.len, !o.server, hd->bytes_mode, drop, &o);
    fz_put_u64(rec, (uint64_t)(m->aborted && !closed_before));
  } else {
    if (cfg2 & 1) m->read_err = UV_ECONNRESET;
    memstream_eof(m);
    settle(&out, m);
    FZ_ASSERT(T, hd->done, "the handler still waits (%d) after the end of the input",
              hd->wait);
    FZ_ASSERT(T, ws->state == RILL_WS_CLOSED,
              "the websocket is in state %d after the end of its input", ws->state);
    FZ_ASSERT(T, m->closed, "the transport is open after the websocket closed");
    FZ_ASSERT(T, m->base.top == NULL, "a binding left on the closed transport");
    FZ_ASSERT(T, ws->msg.top == NULL && ws->bytes.top == NULL,
              "a binding left on a message stream");
    /* A text message that turns out not to be UTF-8 fails the connection at
     * the slice that holds the bad byte; the valid bytes before it in that
     * slice are not handed out. So how much of it went through the byte
     * stream (written back slice by slice) depends on the cut: the data is
     * not compared then, only the frames around it. */
    int drop = hd->bytes_mode && (ws->close_code == RILL_WS_INVALID_DATA ||
                                  (o.deflate && ws->close_code == RILL_WS_TOO_BIG));
    read_back(rec, out.p, out.len, !o.server, hd->bytes_mode, drop, &o);
    fz_put_tag(rec, 'e');
    fz_put_u64(rec, (uint64_t)hd->end);
    fz_put_u64(rec, ws->close_code);
    fz_put_str(rec, ws->close_reason);
    fz_put_u64(rec, (uint64_t)ws->err);
    fz_put_str(rec, ws->errmsg);
    fz_put_u64(rec, (uint64_t)ws->close_sent);
    fz_put_u64(rec, (uint64_t)ws->close_received);
    fz_put_u64(rec, (uint64_t)m->aborted);
    rill__ws_free(ws);
    for (int i = 0; i < 4 && uv_loop_alive(W->loop); i++)
      uv_run(W->loop, UV_RUN_NOWAIT);
    FZ_ASSERT(T, !uv_loop_alive(W->loop),
              "the freed websocket left something on the loop");
  }
  free(hd->buf);
  fz_rec_free(&out);
  memstream_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (W == NULL) {
    W = rill__worker_new(NULL);
    if (W == NULL) abort();
    W->log_level = RILL_LOG_ERROR;
  }
  if (size < 2) return 0;
  fz_rec_t whole = {0}, split = {0};
  run(&whole, data + 2, size - 2, data[0], data[1], 0);
  run(&split, data + 2, size - 2, data[0], data[1], 1);
  fz_check_split(T, &whole, &split);
  fz_rec_free(&whole);
  fz_rec_free(&split);
  return 0;
}
