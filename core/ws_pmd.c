/* permessage-deflate (RFC 7692) in a WebSocket connection: a compressed
 * message inflated as it is read, and deflated as it is sent. The zlib
 * state is ws_deflate.c's; the framing and everything else ws_conn.c's
 * (this file reaches it through ws_int.h).
 *
 * Reading: rill__ws_inflating() stands for the frame reader inside a
 * compressed message. It inflates the payload slices the frame reader
 * gives into one pooled buffer, and only once the reader has taken all of
 * it: so the reader's pace drives inflate, and a message that inflates to
 * any size costs one buffer. max_message and UTF-8 are checked on the
 * inflated bytes, the first offending byte deciding which fails.
 *
 * Sending: rill__ws_send_deflated() deflates each data frame's payload
 * with a sync flush (so each write leaves when written) and frames what
 * comes out. */
#include <stdlib.h>
#include <string.h>

#include "ws_conn.h"
#include "ws_int.h"

/* ---- sending ---- */

/* One frame of n bytes at p: the deflater's output. */
static int send_bytes(rill_websocket_t *ws, int opcode, int fin, const uint8_t *p,
                      size_t n) {
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  return rill__ws_send_frame(ws, opcode, fin, &b, n ? 1 : 0);
}

/* Deflates a data frame's payload (bufs) and sends it: as one frame, or as
 * several when the output passes a buffer (RFC 7692 lets a compressed
 * message's fragments cut its bytes anywhere). The message's first frame
 * carries RSV1; its last drops the 00 00 ff ff tail of the sync flush
 * (§7.2.1). Since the frame after may add nothing (a flush with no new
 * input makes no bytes), the last 4 bytes of every frame but the
 * message's last wait in zcarry for the next, so the tail that ends the
 * message is always the one dropped. Memory: a pooled buffer for the call,
 * and the deflater, which without context takeover goes at the message's
 * end. Returns as rill__ws_send_frame(). */
int rill__ws_send_deflated(rill_websocket_t *ws, int opcode, int fin,
                           const uv_buf_t *bufs, unsigned nbufs) {
  if (ws->t == NULL) return RILL_ECLOSED;
  rill_wsz_t *z = ws->outz;
  if (z == NULL &&
      (z = ws->outz = rill__wsz_deflater(ws->w, ws->o.z_own_bits, ws->o.z_level,
                                         ws->o.z_mem_level)) == NULL)
    return UV_ENOMEM;
  uint8_t *out = (uint8_t *)rill__buf_get(ws->w);
  if (out == NULL) return UV_ENOMEM;
  const size_t cap = RILL_BUF_SIZE;
  size_t len = ws->zcarry_len;
  memcpy(out, ws->zcarry, len);
  ws->zcarry_len = 0;
  int op = opcode == RILL_WS_CONT ? RILL_WS_CONT : (opcode | RILL_WS_RSV1);
  int last = 0, r = 0;
  unsigned i = 0;
  const uint8_t *in = nbufs ? (const uint8_t *)bufs[0].base : NULL;
  size_t left = nbufs ? bufs[0].len : 0;
  for (;;) {
    /* The buffers but the last go without a flush: one flush a frame. */
    int flush = i + 1 >= nbufs;
    size_t used, made;
    int d = rill__wsz_deflate(z, in, left, &used, out + len, cap - len, &made, flush);
    if (d < 0 || (d == 0 && used == 0 && made == 0 && len < cap)) {
      r = UV_EIO;
      break;
    }
    if (used) in += used;
    left -= used;
    len += made;
    if (d == 1) {
      if (flush) break;
      i++;
      in = (const uint8_t *)bufs[i].base;
      left = bufs[i].len;
      continue;
    }
    if (len < cap) continue;
    /* Full: all but the last 4 bytes go as a fragment (they may be the
     * tail, which the message's last frame must drop). */
    r = send_bytes(ws, op, 0, out, len - 4);
    if (r < 0 && r != RILL_EAGAIN) break;
    if (r == RILL_EAGAIN) last = r;
    r = 0;
    ws->out_z_bytes += len - 4;
    op = RILL_WS_CONT;
    memmove(out, out + len - 4, 4);
    len = 4;
  }
  if (r == 0) {
    if (fin) {
      if (len >= 4 && memcmp(out + len - 4, rill__wsz_tail, 4) == 0) len -= 4;
      /* An empty compressed message is one 0x00 byte (§7.2.3.6): with the
       * tail, an empty stored block. */
      if (len == 0 && ws->out_z_bytes == 0) out[len++] = 0;
    } else {
      ws->zcarry_len = len < 4 ? len : 4;
      len -= ws->zcarry_len;
      memcpy(ws->zcarry, out + len, ws->zcarry_len);
    }
    r = send_bytes(ws, op, fin, out, len);
    ws->out_z_bytes += len;
    if (r == 0) r = last;
  }
  rill__buf_put(ws->w, (char *)out);
  if (r == UV_EIO) {
    /* A message begun cannot go on. */
    rill__ws_fail(ws, RILL_WS_INTERNAL_ERROR, "compression failed");
    return RILL_ECLOSED;
  }
  if (fin) {
    ws->out_z = 0;
    if (ws->o.z_own_reset) {
      rill__wsz_release(ws->w, ws->outz);
      ws->outz = NULL;
    }
  }
  return r;
}

/* ---- reading ---- */

/* The end of a compressed message: its checks, and what it no longer needs. */
static int inflated_end(rill_websocket_t *ws) {
  ws->msg_z = 0;
  ws->z_bad = 0;
  ws->z_fin = 0;
  rill__buf_put(ws->w, ws->zbuf);
  ws->zbuf = NULL;
  ws->zpos = ws->zlen = 0;
  if (ws->o.z_peer_reset) {
    rill__wsz_release(ws->w, ws->inz);
    ws->inz = NULL;
  }
  if (ws->msg_type == RILL_WS_TEXT && !rill__utf8_complete(&ws->utf8)) {
    rill__ws_fail(ws, RILL_WS_INVALID_DATA, "invalid UTF-8 in a text message");
    return P_ERROR;
  }
  return P_MSGEND;
}

/* rill__ws_frames() for a compressed message: its payload inflated into zbuf, one
 * buffer at a time, only when the last is used up. So the reader's pace
 * drives inflate, and a message that inflates to any size costs one buffer.
 * Returns as rill__ws_frames(). */
int rill__ws_inflating(rill_websocket_t *ws, const char **pp, size_t *pn) {
  for (;;) {
    if (ws->zpos < ws->zlen) {
      *pp = ws->zbuf + ws->zpos;
      *pn = ws->zlen - ws->zpos;
      ws->from_z = 1;
      return P_DATA;
    }
    if (ws->z_bad) {
      rill__ws_fail(ws, RILL_WS_INVALID_DATA, "invalid compressed data");
      return P_ERROR;
    }
    const uint8_t *in = NULL;
    size_t n = 0;
    /* z_more: inflate may hold output it had no room for. */
    int more = ws->zbuf && ws->zlen == RILL_BUF_SIZE;
    if (ws->z_fin) {
      /* The compressed bytes ended: the tail follows them (not after an
       * empty payload, which a lenient reading takes as an empty message,
       * nor after a final block, RFC 7692 §7.2.3.4). */
      if ((ws->z_tail == 4 || ws->z_in == 0 || ws->inz->ended) && !more)
        return inflated_end(ws);
      in = rill__wsz_tail + ws->z_tail;
      n = ws->z_in == 0 ? 0 : 4 - ws->z_tail;
    } else if (!more) {
      const char *p;
      int r = rill__ws_frames(ws, &p, &n);
      if (r == P_MSGEND) {
        ws->z_fin = 1;
        continue;
      }
      if (r != P_DATA) return r;
      in = (const uint8_t *)p;
    }
    if (ws->inz == NULL &&
        (ws->inz = rill__wsz_inflater(ws->w, ws->o.z_peer_bits)) == NULL) {
      rill__ws_fail(ws, RILL_WS_INTERNAL_ERROR, "out of memory");
      return P_ERROR;
    }
    if (ws->zbuf == NULL && (ws->zbuf = rill__buf_get(ws->w)) == NULL) {
      rill__ws_fail(ws, RILL_WS_INTERNAL_ERROR, "out of memory");
      return P_ERROR;
    }
    size_t used, made;
    int bad = rill__wsz_inflate(ws->inz, in, n, &used, (uint8_t *)ws->zbuf, RILL_BUF_SIZE,
                                &made) != 0 ||
              (n > 0 && used == 0 && made == 0);
    if (bad && made == 0) {
      rill__ws_fail(ws, RILL_WS_INVALID_DATA, "invalid compressed data");
      return P_ERROR;
    }
    /* The bytes inflated before bad data go first, so that the failure
     * is the same however the input was cut. */
    ws->z_bad = bad;
    if (ws->z_fin) {
      ws->z_tail += (unsigned)used;
    } else if (used) {
      rill__ws_take_frame(ws, used);
      ws->z_in += used;
    }
    ws->zpos = 0;
    ws->zlen = made;
    if (made == 0) {
      if (ws->z_fin && n == 0) return inflated_end(ws); /* nothing was held */
      continue;
    }
    /* The first byte that breaks a rule decides which: bad UTF-8 within
     * max_message, or the byte past it. */
    size_t within = made;
    if (ws->o.max_message) {
      uint64_t room = ws->z_out < ws->o.max_message ? ws->o.max_message - ws->z_out : 0;
      if (within > room) within = (size_t)room;
    }
    ws->z_out += made;
    if (ws->msg_type == RILL_WS_TEXT &&
        rill__utf8_feed(&ws->utf8, (const uint8_t *)ws->zbuf, within) != 0) {
      rill__ws_fail(ws, RILL_WS_INVALID_DATA, "invalid UTF-8 in a text message");
      return P_ERROR;
    }
    if (within < made) {
      rill__ws_fail(ws, RILL_WS_TOO_BIG, "message too big");
      return P_ERROR;
    }
  }
}
