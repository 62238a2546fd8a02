/* A WebSocket connection over any rill stream (RFC 6455; frames from ws.h).
 *
 * Received messages are streams: their payload is handed out as slices of the
 * transport's buffer, unmasked in place, frame by frame, and nothing is
 * assembled. Control frames are handled as they come between and inside
 * messages: pings are answered, a close is answered and ends the connection.
 * Sending writes a frame header and the payload as one vectored write. No Lua:
 * the layer above waits on the callbacks. */
#ifndef RILL_WEBSOCKET_H
#define RILL_WEBSOCKET_H

#include "rill_int.h"
#include "ws.h"

typedef struct rill_websocket_s rill_websocket_t;

typedef struct {
  int server;                /* 1: frames in are masked, frames out are not */
  uint64_t max_frame;        /* 1009 past it; 0: no limit */
  uint64_t max_message;      /* 1009 past it; 0: no limit */
  unsigned close_timeout_ms; /* how long a close waits for the peer's */
} rill_ws_opts_t;

enum { RILL_WS_OPEN, RILL_WS_CLOSING, RILL_WS_CLOSED };

struct rill_websocket_s {
  rill_obj_t obj;
  rill_worker_t *w;
  rill_stream_t *t; /* the transport, owned */
  rill_ws_opts_t o;
  int state;

  /* reading */
  rill_ws_header_t h;
  int rstate;
  uint64_t unmasked; /* payload bytes at the front of t unmasked already */
  rill_utf8_t utf8;
  uint8_t ctl[RILL_WS_CONTROL_MAX];
  size_t ctl_len;

  /* the current message, as a stream */
  rill_stream_t msg;
  int msg_type; /* RILL_WS_TEXT or RILL_WS_BINARY, 0 when none */
  int msg_active, msg_eof;

  /* all binary payload as one byte stream (ws:as_stream()) */
  rill_stream_t bytes;

  /* who waits for the transport: 1 next(), 2 the message, 3 the byte stream,
   * 4 a close waiting for the peer's */
  int waiting;
  void (*next_cb)(rill_websocket_t *ws);   /* next() may go on */
  void (*closed_cb)(rill_websocket_t *ws); /* the close handshake ended */

  /* how it ended */
  unsigned close_code; /* the peer's close code, or ours on failure */
  char close_reason[RILL_WS_REASON_MAX + 1];
  int close_sent, close_received;
  int err; /* RILL_EPROTO when the connection failed, a transport error, ... */
  const char *errmsg;

  /* sending: the frame being sent in pieces (clients mask per frame) */
  uint8_t mask[4];
  uint64_t out_left, out_off;

  uv_timer_t timer;           /* close timeout */
  void *data;                 /* the layer above's */
  rill_websocket_t **backref; /* set to NULL when freed (the Lua userdata's pointer) */
};

/* Takes over t. Returns NULL when out of memory (t is then closed). */
rill_websocket_t *rill_ws_new(rill_worker_t *w, rill_stream_t *t,
                              const rill_ws_opts_t *o);

enum { RILL_WS_MESSAGE = 1 };

/* Moves to the next data message, discarding what is left of the current one.
 * Returns RILL_WS_MESSAGE (ws->msg is its stream, ws->msg_type its type),
 * RILL_EAGAIN (next_cb follows), RILL_ECLOSED once closed (close_code and
 * close_reason say how), or another error when the connection failed. */
int rill_ws_next(rill_websocket_t *ws);
void rill_ws_next_cancel(rill_websocket_t *ws);

/* Sends a whole frame. Returns 0, RILL_EAGAIN (wait for t's drain), or an
 * error. A client masks it: len bytes go through a copy, 64 KiB at a time. */
int rill_ws_send(rill_websocket_t *ws, int opcode, int fin, const char *p, size_t len);

/* Starts the close handshake with code (0: none) and reason. Returns 0 once
 * the close is done, RILL_EAGAIN while it waits for the peer's close
 * (closed_cb follows), or an error. */
int rill_ws_close(rill_websocket_t *ws, unsigned code, const char *reason, size_t rlen);

/* Fails at once: sends a close with code (unless one was sent) and closes. */
void rill_ws_fail(rill_websocket_t *ws, unsigned code, const char *why);

/* Frees it (closing the transport at once if still open). */
void rill_ws_free(rill_websocket_t *ws);

#endif
