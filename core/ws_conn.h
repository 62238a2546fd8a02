/* A WebSocket connection over any rill stream (RFC 6455; frames from ws_frame.h).
 *
 * Received messages are streams: their payload is handed out as slices of the
 * transport's buffer, unmasked in place, frame by frame, and nothing is
 * assembled. Control frames are handled as they come between and inside
 * messages: pings are answered, a close is answered and ends the connection.
 * Sending writes a frame header and the payload as one vectored write. No Lua:
 * the layer above waits on the callbacks. */
#ifndef RILL_WEBSOCKET_H
#define RILL_WEBSOCKET_H

#include "stream.h"
#include "ws_deflate.h"
#include "ws_frame.h"

typedef struct rill_websocket_s rill_websocket_t;

/* What the owner (the Lua face) is told. */
typedef struct {
  void (*next)(rill_websocket_t *ws);   /* a rill__ws_next() that waits may go on */
  void (*closed)(rill_websocket_t *ws); /* the close handshake ended */
  /* A send that returned RILL_EAGAIN may go on (0), or the connection ended. */
  void (*drained)(rill_websocket_t *ws, int status);
  /* The websocket is being freed under its owner (a worker's teardown). */
  void (*gone)(rill_websocket_t *ws);
} rill_ws_ops_t;

typedef struct {
  int server;                /* 1: frames in are masked, frames out are not */
  uint64_t max_frame;        /* 1009 past it; 0: no limit */
  uint64_t max_message;      /* 1009 past it; 0: no limit */
  unsigned close_timeout_ms; /* how long a close waits for the peer's */
  /* permessage-deflate (RFC 7692) as the handshake negotiated it; 0: off.
   * max_message then holds for the inflated size of a message. */
  int deflate;
  int z_own_bits, z_peer_bits;    /* window bits, 8..15: ours (8: we send
                                     every message uncompressed, see
                                     ws_deflate.c) and the peer's */
  int z_own_reset, z_peer_reset;  /* no context takeover: ours, the peer's */
  int z_level, z_mem_level;       /* zlib's, for our messages (0..9, 1..9) */
  uint64_t z_min_size;            /* messages shorter go uncompressed */
} rill_ws_opts_t;

enum { RILL_WS_OPEN, RILL_WS_CLOSING, RILL_WS_CLOSED };

struct rill_websocket_s {
  rill_obj_t obj;
  rill_worker_t *w;
  rill_stream_t *t;  /* the transport, owned; NULL once closed */
  rill_binding_t tb; /* bound to t */
  rill_ws_opts_t o;
  int state;

  /* reading */
  rill_ws_header_t h;
  int rstate;
  uint64_t unmasked; /* payload bytes at the front of t unmasked already */
  rill_utf8_t utf8;
  uint8_t ctl[RILL_WS_CONTROL_MAX];
  size_t ctl_len;
  int ctl_op; /* the control frame read into ctl */

  /* the current message, as a stream */
  rill_stream_t msg;
  int msg_type; /* RILL_WS_TEXT or RILL_WS_BINARY, 0 when none */
  int msg_active, msg_eof;

  /* permessage-deflate, reading: the current message is compressed
   * (msg_z); its payload is inflated into zbuf (a pooled buffer, held while
   * it has bytes) as far as the reader pulls. z_fin: its compressed bytes
   * have all been read, and z_tail bytes of the 00 00 ff ff tail fed after
   * them. from_z: the slice pump() last gave is zbuf's. z_in, z_out: the
   * message's compressed and inflated bytes so far. The inflater exists
   * from the first compressed message on, and only between messages
   * without context takeover (z_peer_reset). */
  rill_wsz_t *inz;
  char *zbuf;
  size_t zpos, zlen;
  unsigned msg_z : 1, z_fin : 1, from_z : 1, z_bad : 1; /* z_bad: bad data follows
                                                          what zbuf holds */
  unsigned z_tail;
  uint64_t z_in, z_out;
  /* sending: the message being sent is compressed (out_z); out_z_bytes of
   * it have gone. The deflater lives as the inflater does. */
  rill_wsz_t *outz;
  int out_z;
  uint64_t out_z_bytes;
  /* The last bytes deflated, held back from a frame that was not the
   * message's last: they may be the tail its last frame must drop. */
  uint8_t zcarry[4];
  size_t zcarry_len;

  /* all binary payload as one byte stream (ws:as_stream()) */
  rill_stream_t bytes;

  /* who waits for the reader to go on (W_* bits in ws_conn.c) */
  int waiting;
  /* The transport is above its high-water mark (a write returned
   * RILL_EAGAIN); rblocked: the reader stopped at a ping until it drains, so
   * that replies to a peer that does not read cannot pile up. */
  unsigned wblocked : 1, rblocked : 1;

  /* how it ended */
  unsigned close_code; /* the peer's close code, or ours on failure */
  char close_reason[RILL_WS_REASON_MAX + 1];
  int close_sent, close_received;
  int closed_here; /* our close went first (not an answer to the peer's) */
  int err; /* RILL_EPROTO when the connection failed, a transport error, ... */
  const char *errmsg;

  /* sending: a frame whose payload goes out as it comes (send_begin/part);
   * clients mask it with one key, at the running offset. Until its last
   * byte nothing else may go out: a pong or a close due meanwhile waits in
   * pend_* and follows it. */
  uint8_t mask[4];
  uint64_t out_left, out_off;
  int out_open;
  uint8_t pend_pong[RILL_WS_CONTROL_MAX], pend_close[RILL_WS_CONTROL_MAX];
  size_t pend_pong_len, pend_close_len;
  unsigned pend_pong_set : 1, pend_close_set : 1;
  int64_t msg_len; /* the current message's length, if it came in one frame; else -1 */

  uv_timer_t timer; /* close timeout */
  const rill_ws_ops_t *ops;
  void *data; /* the owner's */
};

/* Takes over t (binds to it and owns it); ops tells the owner. Returns NULL
 * when out of memory (t is then closed). */
rill_websocket_t *rill__ws_new(rill_worker_t *w, rill_stream_t *t, const rill_ws_opts_t *o,
                               const rill_ws_ops_t *ops, void *data);

enum { RILL_WS_MESSAGE = 1 };

/* Moves to the next data message, discarding what is left of the current one
 * (whoever is bound to the message stream is told it is gone). Returns
 * RILL_WS_MESSAGE (ws->msg is its stream, ws->msg_type its type),
 * RILL_EAGAIN (ops->next follows), RILL_ECLOSED once closed (close_code and
 * close_reason say how), or another error when the connection failed. */
int rill__ws_next(rill_websocket_t *ws);
void rill__ws_next_cancel(rill_websocket_t *ws);

/* Sends a whole frame. Returns 0, RILL_EAGAIN (wait for ops->drained), or an
 * error. A client masks it: len bytes go through a copy, 64 KiB at a time.
 * With permessage-deflate, a data frame of a compressed message (one whose
 * first frame was not final or had z_min_size bytes or more) is deflated
 * first and may leave as several frames. */
int rill__ws_send(rill_websocket_t *ws, int opcode, int fin, const char *p, size_t len);

/* Starts a frame whose len payload bytes follow through rill__ws_send_part()
 * as they come: a message relayed as it arrives keeps its one frame (never
 * compressed: its length is known before its bytes). Until
 * the last byte nothing else goes out (whole frames fail with RILL_ESTATE; a
 * pong or a close due meanwhile follows the frame). Returns as
 * rill__ws_send. */
int rill__ws_send_begin(rill_websocket_t *ws, int opcode, int fin, uint64_t len);
/* The next n payload bytes of that frame; more than are left: UV_EINVAL. */
int rill__ws_send_part(rill_websocket_t *ws, const char *p, size_t n);

/* Starts the close handshake with code (0: none) and reason. Returns 0 once
 * the close is done, RILL_EAGAIN while it waits for the peer's close
 * (ops->closed follows), or an error. */
int rill__ws_close(rill_websocket_t *ws, unsigned code, const char *reason, size_t rlen);

/* Fails at once: sends a close with code (unless one was sent) and closes. */
void rill__ws_fail(rill_websocket_t *ws, unsigned code, const char *why);

/* Frees it (closing the transport at once if still open); the owner is not
 * told (ops->gone is for frees it did not ask for). */
void rill__ws_free(rill_websocket_t *ws);

#endif
