/* Between ws_conn.c and ws_pmd.c (permessage-deflate): the frame reader's
 * results, and the pieces of each that the other calls. Not for other
 * layers. */
#ifndef RILL_WS_INT_H
#define RILL_WS_INT_H

#include "ws_conn.h"

/* What the reader (rill__ws_frames, rill__ws_inflating) says. */
enum { P_DATA, P_NEWMSG, P_MSGEND, P_AGAIN, P_CLOSED, P_ERROR };

/* ws_conn.c: advances the frame reader as far as it can without waiting:
 * P_DATA with the next payload slice at *pp (a compressed message's
 * compressed bytes), or what happened. */
int rill__ws_frames(rill_websocket_t *ws, const char **pp, size_t *pn);
/* ws_conn.c: takes n payload bytes of the current frame. */
void rill__ws_take_frame(rill_websocket_t *ws, size_t n);
/* ws_conn.c: writes one frame, header and payload bufs (masked by a
 * client). Returns 0, RILL_EAGAIN or an error. */
int rill__ws_send_frame(rill_websocket_t *ws, int opcode, int fin, const uv_buf_t *bufs,
                        unsigned nbufs);

/* ws_pmd.c: rill__ws_frames() inside a compressed message (ws->msg_z):
 * the inflated payload, a buffer at a time. Returns as rill__ws_frames(). */
int rill__ws_inflating(rill_websocket_t *ws, const char **pp, size_t *pn);
/* ws_pmd.c: a data frame of a compressed message (ws->out_z), deflated and
 * sent as one frame or several. Returns as rill__ws_send_frame(). */
int rill__ws_send_deflated(rill_websocket_t *ws, int opcode, int fin,
                           const uv_buf_t *bufs, unsigned nbufs);

#endif
