/* A WebSocket connection over a rill stream. See ws_conn.h.
 *
 * The reader is one loop, pump(): it parses frame headers from the
 * transport, reads control frames (at most 125 bytes) into ctl and acts on
 * them, and stops at the payload of a data frame, which it unmasks in place
 * and checks (UTF-8 for text) as it hands it out. The message stream, the
 * byte stream, next() and a close waiting for the peer's are four ways of
 * driving that loop; the W_* bits say which of them wait for it to go on.
 *
 * permessage-deflate (RFC 7692) sits between that loop and its drivers: a
 * compressed message's payload is inflated into a pooled buffer as it is
 * pulled, and a compressed message's frames are deflated as they are sent
 * (ws_pmd.c). Checks that apply to a message's content (UTF-8,
 * max_message) then apply to the inflated bytes.
 *
 * Replies the reader sends by itself (pongs) obey the transport's high-water
 * mark like any write: while the transport is above it, the reader stops at
 * a ping and reads nothing more until the transport drains. So a peer that
 * sends pings and never reads fills its own socket, not our memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws_conn.h"
#include "ws_int.h"

enum { R_HEADER, R_DATA, R_CONTROL, R_CONTROL_READY };
/* Who waits for the reader to go on (bits: a close may wait while a reader
 * does). */
enum { W_NONE = 0, W_NEXT = 1, W_MSG = 2, W_BYTES = 4, W_CLOSE = 8 };

#define PIECE 65536 /* a client masks its payload through a buffer this big */

static void close_transport(rill_websocket_t *ws);
static void transport_drained(rill_binding_t *b, int status);

/* ---- sending ---- */

/* The transport's answer to a write: RILL_EAGAIN means it is above its
 * high-water mark until it drains. */
static int sent(rill_websocket_t *ws, int r) {
  if (r == RILL_EAGAIN) ws->wblocked = 1;
  return r;
}

/* The client's masked copy of payload bytes at offset off of a frame with
 * mask key, through the scratch buffer. Returns as a write. */
static int write_masked(rill_websocket_t *ws, const uint8_t *p, size_t left,
                        const uint8_t mask[4], uint64_t off) {
  rill_stream_t *t = ws->t;
  uint8_t *buf = (uint8_t *)ws->w->scratch;
  int last = 0;
  while (left > 0) {
    size_t k = left < PIECE ? left : PIECE;
    rill__ws_mask_copy(buf, p, k, mask, off);
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)k);
    int r = t->vt->write(t, &b, 1);
    if (r < 0 && r != RILL_EAGAIN) return r;
    if (r == RILL_EAGAIN) last = r;
    p += k;
    off += k;
    left -= k;
  }
  return last;
}

/* A control frame due while a frame is being streamed waits for its end
 * (only the latest pong: RFC 6455 §5.5.3). */
static int hold_control(rill_websocket_t *ws, int opcode, const uv_buf_t *bufs,
                        unsigned nbufs, uint64_t total) {
  if (total > RILL_WS_CONTROL_MAX || (opcode != RILL_WS_PONG && opcode != RILL_WS_CLOSE))
    return RILL_ESTATE;
  uint8_t *dst = opcode == RILL_WS_PONG ? ws->pend_pong : ws->pend_close;
  size_t off = 0;
  for (unsigned i = 0; i < nbufs; i++) {
    memcpy(dst + off, bufs[i].base, bufs[i].len);
    off += bufs[i].len;
  }
  if (opcode == RILL_WS_PONG) {
    ws->pend_pong_len = off;
    ws->pend_pong_set = 1;
  } else {
    ws->pend_close_len = off;
    ws->pend_close_set = 1;
  }
  return 0;
}

/* Writes one frame: header and payload bufs. */
int rill__ws_send_frame(rill_websocket_t *ws, int opcode, int fin, const uv_buf_t *bufs,
                        unsigned nbufs) {
  rill_stream_t *t = ws->t;
  if (t == NULL) return RILL_ECLOSED;
  uint64_t total = 0;
  for (unsigned i = 0; i < nbufs; i++)
    total += bufs[i].len;
  if (ws->out_open) return hold_control(ws, opcode, bufs, nbufs, total);
  uint8_t hdr[RILL_WS_HEADER_MAX];
  if (ws->o.server) {
    uv_buf_t small[9], *v = small;
    if (nbufs + 1 > 9 && (v = malloc(sizeof(*v) * (nbufs + 1))) == NULL) return UV_ENOMEM;
    v[0] = uv_buf_init((char *)hdr,
                       (unsigned)rill__ws_header_write(hdr, fin, opcode, total, NULL));
    for (unsigned i = 0; i < nbufs; i++)
      v[i + 1] = bufs[i];
    int r = t->vt->write(t, v, nbufs + 1);
    if (v != small) free(v);
    return sent(ws, r);
  }
  /* A client masks with a fresh key per frame, into a buffer: the caller's
   * bytes (Lua strings) cannot change. The transport copies what it cannot
   * send at once, so the buffer is free again after each write. */
  uint8_t mask[4];
  if (rill__random(ws->w, mask, 4) != 0) return UV_EIO;
  uv_buf_t hb = uv_buf_init(
      (char *)hdr, (unsigned)rill__ws_header_write(hdr, fin, opcode, total, mask));
  int r = t->vt->write(t, &hb, 1), last = r;
  if (r < 0 && r != RILL_EAGAIN) return r;
  uint64_t off = 0;
  for (unsigned i = 0; i < nbufs; i++) {
    r = write_masked(ws, (const uint8_t *)bufs[i].base, bufs[i].len, mask, off);
    if (r < 0) {
      if (r != RILL_EAGAIN) return r;
      last = r;
    }
    off += bufs[i].len;
  }
  return sent(ws, last);
}

/* A data frame (or, opcode >= 8, a control frame): deflated when it belongs
 * to a compressed message. Whether a message is compressed is decided at its
 * first frame: when permessage-deflate was negotiated, our window can be
 * honoured (bits 8 cannot: see ws_deflate.c), and the message is longer than
 * z_min_size or comes in several frames. */
static int send_data(rill_websocket_t *ws, int opcode, int fin, const uv_buf_t *bufs,
                     unsigned nbufs) {
  if (ws->o.deflate && opcode < 8 && !ws->out_open) {
    if (opcode != RILL_WS_CONT) {
      uint64_t total = 0;
      for (unsigned i = 0; i < nbufs; i++)
        total += bufs[i].len;
      ws->out_z = ws->o.z_own_bits >= 9 && (!fin || total >= ws->o.z_min_size);
      ws->out_z_bytes = 0;
    }
    if (ws->out_z) return rill__ws_send_deflated(ws, opcode, fin, bufs, nbufs);
  }
  return rill__ws_send_frame(ws, opcode, fin, bufs, nbufs);
}

int rill__ws_send(rill_websocket_t *ws, int opcode, int fin, const char *p, size_t len) {
  if (ws->close_sent || ws->state == RILL_WS_CLOSED) return RILL_ECLOSED;
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
  return send_data(ws, opcode, fin, &b, len ? 1 : 0);
}

/* The streamed frame's last byte went: what waited follows. */
static int frame_done(rill_websocket_t *ws) {
  ws->out_open = 0;
  int r = 0;
  if (ws->pend_pong_set) {
    ws->pend_pong_set = 0;
    uv_buf_t b = uv_buf_init((char *)ws->pend_pong, (unsigned)ws->pend_pong_len);
    r = rill__ws_send_frame(ws, RILL_WS_PONG, 1, &b, b.len ? 1 : 0);
  }
  if (ws->pend_close_set && (r == 0 || r == RILL_EAGAIN)) {
    ws->pend_close_set = 0;
    uv_buf_t b = uv_buf_init((char *)ws->pend_close, (unsigned)ws->pend_close_len);
    int c = rill__ws_send_frame(ws, RILL_WS_CLOSE, 1, &b, b.len ? 1 : 0);
    if (c != 0) r = c;
  }
  return r;
}

int rill__ws_send_begin(rill_websocket_t *ws, int opcode, int fin, uint64_t len) {
  if (ws->close_sent || ws->state == RILL_WS_CLOSED || ws->t == NULL) return RILL_ECLOSED;
  if (ws->out_open) return RILL_ESTATE;
  uint8_t hdr[RILL_WS_HEADER_MAX];
  const uint8_t *mask = NULL;
  if (!ws->o.server) {
    if (rill__random(ws->w, ws->mask, 4) != 0) return UV_EIO;
    mask = ws->mask;
  }
  uv_buf_t b = uv_buf_init((char *)hdr,
                           (unsigned)rill__ws_header_write(hdr, fin, opcode, len, mask));
  int r = ws->t->vt->write(ws->t, &b, 1);
  if (r < 0 && r != RILL_EAGAIN) return r;
  ws->out_left = len;
  ws->out_off = 0;
  ws->out_open = 1;
  if (len == 0) {
    int d = frame_done(ws);
    if (d != 0) r = d;
  }
  return sent(ws, r);
}

int rill__ws_send_part(rill_websocket_t *ws, const char *p, size_t n) {
  rill_stream_t *t = ws->t;
  if (!ws->out_open || n > ws->out_left) return UV_EINVAL;
  if (t == NULL || ws->state == RILL_WS_CLOSED) return RILL_ECLOSED;
  if (n == 0) return 0;
  int r;
  if (ws->o.server) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    r = t->vt->write(t, &b, 1);
  } else {
    r = write_masked(ws, (const uint8_t *)p, n, ws->mask, ws->out_off);
  }
  if (r < 0 && r != RILL_EAGAIN) return r;
  ws->out_left -= n;
  ws->out_off += n;
  if (ws->out_left == 0) {
    int d = frame_done(ws);
    if (d != 0) r = d;
  }
  return sent(ws, r);
}

static void send_close(rill_websocket_t *ws, unsigned code, const char *reason,
                       size_t rlen) {
  if (ws->close_sent || ws->t == NULL) return;
  uint8_t payload[RILL_WS_CONTROL_MAX];
  ssize_t n = rill__ws_close_write(payload, code, (const uint8_t *)reason, rlen);
  if (n < 0) n = rill__ws_close_write(payload, RILL_WS_NORMAL, NULL, 0);
  ws->close_sent = 1;
  if (!ws->close_received) ws->closed_here = 1;
  uv_buf_t b = uv_buf_init((char *)payload, (unsigned)n);
  rill__ws_send_frame(ws, RILL_WS_CLOSE, 1, &b, n ? 1 : 0);
}

/* ---- failing and closing ---- */

/* Tells everyone waiting for the reader that it may go on. */
static void notify(rill_websocket_t *ws, int who, int status) {
  if ((who & W_CLOSE) && ws->ops->closed) ws->ops->closed(ws);
  if ((who & W_NEXT) && ws->ops->next) ws->ops->next(ws);
  if (who & W_MSG) rill__stream_readable(&ws->msg, status);
  if (who & W_BYTES) rill__stream_readable(&ws->bytes, status);
}

static void finish_close(rill_websocket_t *ws) {
  close_transport(ws);
  ws->state = RILL_WS_CLOSED;
  ws->obj.done = 1;
  uv_timer_stop(&ws->timer);
  int who = ws->waiting;
  ws->waiting = W_NONE;
  notify(ws, who, RILL_ECLOSED);
  /* A writer waiting for the transport to drain waits no more. */
  if (ws->wblocked) transport_drained(&ws->tb, RILL_ECLOSED);
}

void rill__ws_fail(rill_websocket_t *ws, unsigned code, const char *why) {
  if (ws->err) return;
  ws->err = RILL_EPROTO;
  ws->errmsg = why;
  ws->close_code = code;
  snprintf(ws->close_reason, sizeof(ws->close_reason), "%s", why ? why : "");
  rill__log(ws->w, RILL_LOG_DEBUG, "websocket: failing with %u: %s", code,
            why ? why : "");
  send_close(ws, code, why, why ? strlen(why) : 0);
  finish_close(ws);
}

/* The transport ended or failed under us. */
static int transport_end(rill_websocket_t *ws, int r) {
  if (r == RILL_EOF || r == RILL_ECLOSED) {
    if (!ws->close_received && !ws->err) {
      ws->close_code = 1006; /* closed without a close frame */
      ws->err = RILL_ECLOSED;
    }
    finish_close(ws);
    return P_CLOSED;
  }
  if (!ws->err) ws->err = r;
  finish_close(ws);
  return P_ERROR;
}

static int on_close_frame(rill_websocket_t *ws) {
  unsigned code;
  const uint8_t *reason;
  size_t rlen;
  if (rill__ws_close_parse(ws->ctl, ws->ctl_len, &code, &reason, &rlen) != 0) {
    rill__ws_fail(ws, code,
                  code == RILL_WS_INVALID_DATA ? "invalid UTF-8 in a close reason"
                                               : "invalid close frame");
    return P_ERROR;
  }
  ws->close_received = 1;
  ws->close_code = code;
  if (rlen > 0) memcpy(ws->close_reason, reason, rlen);
  ws->close_reason[rlen] = 0;
  /* Answer with the same code (RFC 6455 §5.5.1), then end the connection. */
  send_close(ws, code == RILL_WS_NO_STATUS ? 0 : code, NULL, 0);
  finish_close(ws);
  return P_CLOSED;
}

/* ---- reading ---- */

/* Advances the frame reader as far as it can without waiting. See the top.
 * For a compressed message it gives the compressed payload. */
int rill__ws_frames(rill_websocket_t *ws, const char **pp, size_t *pn) {
  rill_ws_header_t *h = &ws->h;
  for (;;) {
    if (ws->err) return ws->err == RILL_ECLOSED ? P_CLOSED : P_ERROR;
    if (ws->t == NULL) return P_CLOSED;
    rill_stream_t *t = ws->t;
    const char *p;
    size_t n;
    if (ws->rstate == R_DATA && h->pos == h->len) {
      int fin = h->fin;
      rill__ws_header_reset(h);
      ws->rstate = R_HEADER;
      ws->unmasked = 0;
      if (fin) {
        if (ws->msg_type == RILL_WS_TEXT && !ws->msg_z &&
            !rill__utf8_complete(&ws->utf8)) {
          rill__ws_fail(ws, RILL_WS_INVALID_DATA, "invalid UTF-8 in a text message");
          return P_ERROR;
        }
        return P_MSGEND;
      }
      continue;
    }
    if (ws->rstate == R_CONTROL_READY) {
      /* A whole control frame (perhaps empty): act on it now. */
      if (ws->ctl_op == RILL_WS_CLOSE) {
        ws->rstate = R_HEADER;
        return on_close_frame(ws);
      }
      if (ws->ctl_op == RILL_WS_PING && !ws->close_sent) {
        if (ws->wblocked) {
          ws->rblocked = 1; /* go on when the transport drains */
          return P_AGAIN;
        }
        uv_buf_t b = uv_buf_init((char *)ws->ctl, (unsigned)ws->ctl_len);
        int r = rill__ws_send_frame(ws, RILL_WS_PONG, 1, &b, ws->ctl_len ? 1 : 0);
        if (r < 0 && r != RILL_EAGAIN) return transport_end(ws, r);
      }
      ws->rstate = R_HEADER;
      continue;
    }
    if (ws->rstate == R_HEADER && ws->close_received) return P_CLOSED;
    int r = t->vt->peek(t, &p, &n);
    if (r < 0) return transport_end(ws, r);
    if (n == 0) return P_AGAIN;
    if (ws->rstate == R_DATA) {
      uint64_t left = h->len - h->pos;
      size_t avail = n < left ? n : (size_t)left;
      if (ws->unmasked < avail) {
        /* The payload is transformed where it lies: this layer is the
         * transport's only reader. */
        uint8_t *q = (uint8_t *)p + ws->unmasked;
        size_t k = avail - (size_t)ws->unmasked;
        if (h->masked) rill__ws_mask(q, k, h->mask, h->pos + ws->unmasked);
        if (ws->msg_type == RILL_WS_TEXT && !ws->msg_z &&
            rill__utf8_feed(&ws->utf8, q, k) != 0) {
          rill__ws_fail(ws, RILL_WS_INVALID_DATA, "invalid UTF-8 in a text message");
          return P_ERROR;
        }
        ws->unmasked = avail;
      }
      *pp = p;
      *pn = avail;
      return P_DATA;
    }
    if (ws->rstate == R_CONTROL) {
      size_t k = h->len - ws->ctl_len < n ? (size_t)(h->len - ws->ctl_len) : n;
      memcpy(ws->ctl + ws->ctl_len, p, k);
      if (h->masked) rill__ws_mask(ws->ctl + ws->ctl_len, k, h->mask, ws->ctl_len);
      ws->ctl_len += k;
      t->vt->consume(t, k);
      if (ws->ctl_len < h->len) continue;
      rill__ws_header_reset(h);
      ws->rstate = R_CONTROL_READY;
      continue;
    }
    /* R_HEADER */
    int done = 0;
    ssize_t k = rill__ws_header_parse(h, (const uint8_t *)p, n, &done);
    if (k < 0) {
      rill__ws_fail(ws, h->close_code, h->error);
      return P_ERROR;
    }
    t->vt->consume(t, (size_t)k);
    if (!done) continue;
    if (h->opcode >= 8) {
      ws->ctl_op = (int)h->opcode;
      ws->ctl_len = 0;
      if (h->len > 0) {
        ws->rstate = R_CONTROL;
      } else {
        rill__ws_header_reset(h);
        ws->rstate = R_CONTROL_READY;
      }
      continue;
    }
    ws->rstate = R_DATA;
    ws->unmasked = 0;
    if (h->opcode != RILL_WS_CONT) {
      ws->msg_type = (int)h->opcode;
      ws->msg_z = (h->rsv & RILL_WS_RSV1) != 0;
      ws->z_fin = 0;
      ws->z_tail = 0;
      ws->z_in = ws->z_out = 0;
      /* A compressed message's length is known only once inflated. */
      ws->msg_len = h->fin && !ws->msg_z ? (int64_t)h->len : -1;
      rill__utf8_init(&ws->utf8);
      return P_NEWMSG;
    }
  }
}

/* Takes n payload bytes of the current frame. */
void rill__ws_take_frame(rill_websocket_t *ws, size_t n) {
  ws->t->vt->consume(ws->t, n);
  ws->h.pos += n;
  ws->unmasked -= n;
}

/* Advances the reader: frames(), and inflating() inside a compressed
 * message. */
static int pump(rill_websocket_t *ws, const char **pp, size_t *pn) {
  if (ws->msg_z) return rill__ws_inflating(ws, pp, pn);
  ws->from_z = 0;
  return rill__ws_frames(ws, pp, pn);
}

/* Takes n bytes of what pump() gave. */
static void take(rill_websocket_t *ws, size_t n) {
  if (ws->from_z)
    ws->zpos += n;
  else
    rill__ws_take_frame(ws, n);
}

/* Records that who waits for the reader to go on, and asks the transport
 * for bytes unless the reader stopped for the transport to drain. Returns 0
 * (a callback follows), 1 (bytes are there at once: pump again), or an error
 * (the connection ended). */
static int want(rill_websocket_t *ws, int who) {
  if (ws->t == NULL) return ws->err ? ws->err : RILL_ECLOSED;
  ws->waiting |= who;
  if (ws->rblocked) return 0; /* the drain wakes us */
  int r = rill__stream_fill(ws->t);
  if (r < 0) {
    ws->waiting &= ~who;
    transport_end(ws, r);
    return ws->err ? ws->err : RILL_ECLOSED;
  }
  const char *p;
  size_t n;
  if (ws->t && ws->t->vt->peek(ws->t, &p, &n) == 0 && n > 0) {
    ws->waiting &= ~who;
    return 1;
  }
  return 0;
}

int rill__ws_next(rill_websocket_t *ws) {
  rill__stream_gone(&ws->msg); /* the current message's readers let go */
  for (;;) {
    const char *p;
    size_t n;
    int r;
    if (ws->msg_active && !ws->msg_eof) {
      r = pump(ws, &p, &n);
      if (r == P_DATA) {
        take(ws, n); /* the rest of the current message is dropped */
        continue;
      }
      if (r == P_MSGEND) {
        ws->msg_eof = 1;
        continue;
      }
    } else {
      ws->msg_active = 0;
      r = pump(ws, &p, &n);
      if (r == P_NEWMSG) {
        ws->msg_active = 1;
        ws->msg_eof = 0;
        return RILL_WS_MESSAGE;
      }
    }
    if (r == P_AGAIN) {
      int w = want(ws, W_NEXT);
      if (w == 1) continue;
      if (w == 0) return RILL_EAGAIN;
      continue; /* the connection ended: pump says how */
    }
    if (r == P_CLOSED) return RILL_ECLOSED;
    return ws->err ? ws->err : RILL_EPROTO;
  }
}

void rill__ws_next_cancel(rill_websocket_t *ws) {
  ws->waiting &= ~W_NEXT;
}

/* ---- the message stream ---- */

static int msg_peek(rill_stream_t *s, const char **p, size_t *n) {
  rill_websocket_t *ws = rill__container_of(s, rill_websocket_t, msg);
  *p = NULL;
  *n = 0;
  if (!ws->msg_active || ws->msg_eof) return RILL_EOF;
  switch (pump(ws, p, n)) {
  case P_DATA:
  case P_AGAIN:
    return 0;
  case P_MSGEND:
    ws->msg_eof = 1;
    return RILL_EOF;
  case P_CLOSED:
    return RILL_ECLOSED; /* the connection ended inside the message */
  default:
    return ws->err ? ws->err : RILL_EPROTO;
  }
}

static void msg_consume(rill_stream_t *s, size_t n) {
  take(rill__container_of(s, rill_websocket_t, msg), n);
}

static int msg_fill(rill_stream_t *s) {
  rill_websocket_t *ws = rill__container_of(s, rill_websocket_t, msg);
  if (!ws->msg_active || ws->msg_eof) return RILL_EOF;
  int r = want(ws, W_MSG);
  return r > 0 ? 0 : r;
}

static const char *ws_strerror(rill_websocket_t *ws, int err) {
  if (err == RILL_EPROTO && ws->errmsg) return ws->errmsg;
  return NULL;
}

static const char *msg_strerror(rill_stream_t *s, int err) {
  return ws_strerror(rill__container_of(s, rill_websocket_t, msg), err);
}

static void msg_close(rill_stream_t *s) {
  rill__stream_gone(s); /* the reader lets go; the message stays the websocket's */
}

static const rill_stream_vt msg_vt = {
    .name = "websocket message",
    .peek = msg_peek,
    .consume = msg_consume,
    .fill = msg_fill,
    .close = msg_close,
    .strerror = msg_strerror,
};

/* ---- binary messages as one byte stream ---- */

static int bytes_peek(rill_stream_t *s, const char **p, size_t *n) {
  rill_websocket_t *ws = rill__container_of(s, rill_websocket_t, bytes);
  *p = NULL;
  *n = 0;
  for (;;) {
    int r = pump(ws, p, n);
    switch (r) {
    case P_DATA:
    case P_AGAIN:
      return 0;
    case P_NEWMSG:
      ws->msg_active = 1;
      ws->msg_eof = 0;
      continue;
    case P_MSGEND:
      ws->msg_active = 0;
      continue;
    case P_CLOSED:
      /* The peer's close is the end of the byte stream; ours closes it. */
      return ws->closed_here ? RILL_ECLOSED : RILL_EOF;
    default:
      return ws->err ? ws->err : RILL_EPROTO;
    }
  }
}

static void bytes_consume(rill_stream_t *s, size_t n) {
  take(rill__container_of(s, rill_websocket_t, bytes), n);
}

static int bytes_fill(rill_stream_t *s) {
  rill_websocket_t *ws = rill__container_of(s, rill_websocket_t, bytes);
  if (ws->closed_here) return RILL_ECLOSED;
  if (ws->close_received) return RILL_EOF;
  int r = want(ws, W_BYTES);
  if (r == RILL_ECLOSED) return RILL_EOF;
  return r > 0 ? 0 : r;
}

/* Each write is one binary message. */
static int bytes_write(rill_stream_t *s, const uv_buf_t *bufs, unsigned nbufs) {
  rill_websocket_t *ws = rill__container_of(s, rill_websocket_t, bytes);
  if (ws->close_sent || ws->state == RILL_WS_CLOSED) return RILL_ECLOSED;
  return send_data(ws, RILL_WS_BINARY, 1, bufs, nbufs);
}

static int bytes_shutdown(rill_stream_t *s) {
  rill_websocket_t *ws = rill__container_of(s, rill_websocket_t, bytes);
  send_close(ws, RILL_WS_NORMAL, NULL, 0);
  return 0;
}

static void bytes_close(rill_stream_t *s) {
  rill_websocket_t *ws = rill__container_of(s, rill_websocket_t, bytes);
  rill__stream_gone(s);
  if (ws->state != RILL_WS_CLOSED) {
    send_close(ws, RILL_WS_NORMAL, NULL, 0);
    finish_close(ws);
  }
}

static const char *bytes_strerror(rill_stream_t *s, int err) {
  return ws_strerror(rill__container_of(s, rill_websocket_t, bytes), err);
}

static int bytes_addr(rill_stream_t *s, int peer, char *host, size_t hostlen) {
  rill_websocket_t *ws = rill__container_of(s, rill_websocket_t, bytes);
  return ws->t ? rill__stream_addr(ws->t, peer, host, hostlen) : RILL_ECLOSED;
}

static const rill_stream_vt bytes_vt = {
    .name = "websocket stream",
    .peek = bytes_peek,
    .consume = bytes_consume,
    .fill = bytes_fill,
    .write = bytes_write,
    .shutdown = bytes_shutdown,
    .close = bytes_close,
    .strerror = bytes_strerror,
    .addr = bytes_addr,
};

/* ---- the transport's callbacks ---- */

static int close_pump(rill_websocket_t *ws);

static void transport_readable(rill_binding_t *b, int status) {
  rill_websocket_t *ws = rill__container_of(b, rill_websocket_t, tb);
  int who = ws->waiting;
  ws->waiting = W_NONE;
  /* A close in progress reads first; when it ends, finish_close tells the
   * others. */
  if ((who & W_CLOSE) && close_pump(ws) != RILL_EAGAIN && ws->ops->closed)
    ws->ops->closed(ws);
  notify(ws, who & ~W_CLOSE, status);
}

static void transport_drained(rill_binding_t *b, int status) {
  rill_websocket_t *ws = rill__container_of(b, rill_websocket_t, tb);
  ws->wblocked = 0;
  if (ws->ops->drained) ws->ops->drained(ws, status);
  rill__stream_drained(&ws->bytes, status);
  if (ws->rblocked) {
    /* The reader stopped at a ping: it may answer it now. */
    ws->rblocked = 0;
    transport_readable(b, status);
  }
}

/* The transport closed under us (a worker's teardown). */
static void transport_gone(rill_binding_t *b) {
  rill_websocket_t *ws = rill__container_of(b, rill_websocket_t, tb);
  ws->t = NULL;
  transport_end(ws, RILL_ECLOSED);
}

static const rill_binding_ops_t transport_ops = {
    .readable = transport_readable,
    .drained = transport_drained,
    .gone = transport_gone,
};

/* ---- the close handshake ---- */

/* Reads (and drops) until the peer's close arrives. */
static int close_pump(rill_websocket_t *ws) {
  for (;;) {
    const char *p;
    size_t n;
    int r = pump(ws, &p, &n);
    if (r == P_DATA) {
      take(ws, n);
      continue;
    }
    if (r == P_NEWMSG || r == P_MSGEND) continue;
    if (r == P_AGAIN) {
      int w = want(ws, W_CLOSE);
      if (w == 1) continue;
      if (w == 0) return RILL_EAGAIN;
    }
    finish_close(ws);
    return 0;
  }
}

static void close_timeout(uv_timer_t *h) {
  rill_websocket_t *ws = h->data;
  rill__log(ws->w, RILL_LOG_DEBUG, "websocket: no close from the peer in time");
  finish_close(ws);
}

int rill__ws_close(rill_websocket_t *ws, unsigned code, const char *reason, size_t rlen) {
  if (ws->state == RILL_WS_CLOSED) return 0;
  send_close(ws, code, reason, rlen);
  if (ws->state == RILL_WS_OPEN) {
    ws->state = RILL_WS_CLOSING;
    uv_update_time(ws->w->loop);
    uv_timer_start(&ws->timer, close_timeout, ws->o.close_timeout_ms, 0);
  }
  if (ws->close_received) {
    finish_close(ws);
    return 0;
  }
  return close_pump(ws);
}

/* ---- life and death ---- */

static void close_transport(rill_websocket_t *ws) {
  rill_stream_t *t = ws->t;
  if (t == NULL) return;
  ws->t = NULL;
  rill__stream_unbind(&ws->tb);
  t->vt->close(t); /* flushes our last frames, then FIN */
}

static void timer_closed(uv_handle_t *h) {
  free(h->data);
}

void rill__ws_free(rill_websocket_t *ws) {
  RILL_COUNT(ws->w->m->websockets, -1);
  ws->waiting = W_NONE;
  rill__wsz_free(ws->inz);
  rill__wsz_free(ws->outz);
  ws->inz = ws->outz = NULL;
  rill__buf_put(ws->w, ws->zbuf);
  ws->zbuf = NULL;
  rill__stream_gone(&ws->msg);
  rill__stream_gone(&ws->bytes);
  close_transport(ws);
  rill__obj_unlink(&ws->obj);
  uv_close((uv_handle_t *)&ws->timer, timer_closed);
}

/* A graceful stop: close with 1001 at once and tell whoever waits. */
static void ws_shutdown(rill_obj_t *o) {
  rill_websocket_t *ws = rill__container_of(o, rill_websocket_t, obj);
  if (ws->state == RILL_WS_CLOSED) return;
  static const char why[] = "going away";
  send_close(ws, 1001, why, sizeof(why) - 1);
  ws->close_code = 1001;
  snprintf(ws->close_reason, sizeof(ws->close_reason), "%s", why);
  if (!ws->err) ws->err = RILL_ECLOSED;
  finish_close(ws);
}

/* A worker's teardown: the owner lets go, the transport is reset. */
static void ws_destroy(rill_obj_t *o) {
  rill_websocket_t *ws = rill__container_of(o, rill_websocket_t, obj);
  if (ws->ops->gone) ws->ops->gone(ws);
  rill_stream_t *t = ws->t;
  if (t) {
    ws->t = NULL;
    rill__stream_unbind(&ws->tb);
    t->vt->abort(t);
  }
  rill__ws_free(ws);
}

rill_websocket_t *rill__ws_new(rill_worker_t *w, rill_stream_t *t,
                               const rill_ws_opts_t *o, const rill_ws_ops_t *ops,
                               void *data) {
  rill_websocket_t *ws = calloc(1, sizeof(*ws));
  if (ws == NULL) {
    t->vt->abort(t);
    return NULL;
  }
  ws->w = w;
  ws->t = t;
  ws->o = *o;
  ws->msg_len = -1;
  ws->ops = ops;
  ws->data = data;
  if (ws->o.close_timeout_ms == 0) ws->o.close_timeout_ms = 5000;
  rill__ws_header_init(&ws->h, o->server, o->max_frame);
  ws->h.max_message = o->max_message;
  if (o->deflate) ws->h.rsv_allowed = RILL_WS_RSV1;
  rill__stream_init(&ws->msg, &msg_vt, w);
  rill__stream_init(&ws->bytes, &bytes_vt, w);
  rill__stream_bind(t, &ws->tb, &transport_ops);
  uv_timer_init(w->loop, &ws->timer);
  ws->timer.data = ws;
  rill__obj_link(w, &ws->obj, ws_destroy);
  ws->obj.kind = RILL_OBJ_WS;
  ws->obj.shutdown = ws_shutdown;
  RILL_COUNT(w->m->websockets, 1);
  return ws;
}
