/* A server-side HTTP/2 connection over any rill stream (TCP for h2c with
 * prior knowledge, or TLS that chose "h2" by ALPN), with nghttp2 for the
 * framing and HPACK. No Lua: the layer above starts a handler per request
 * stream in on_request and reports its end with
 * rill__h2_stream_handler_done().
 *
 * rill owns the I/O. Input goes from the transport's buffer straight into
 * nghttp2_session_mem_recv (no copy); output is taken with
 * nghttp2_session_send, whose frames are gathered into one write per burst
 * (the connection joins the worker's flush list, as a transport does), DATA
 * by reference to the stream's queue (NGHTTP2_DATA_FLAG_NO_COPY).
 *
 * Flow control is backpressure: the connection's window is granted as DATA
 * arrives (a stream's bytes are bounded by its own window), a stream's only
 * as its reader consumes them, so a handler that does not read stalls its
 * own stream alone. A response write waits (RILL_EAGAIN, then on_drained)
 * while the stream's queue is above a high-water mark, which it stays at
 * while the peer's window is closed.
 *
 * Ownership: the connection owns the transport and every stream object; a
 * stream object lives until nghttp2 closed the stream, the handler (if
 * one started) ended and its tunnel (an Extended CONNECT's, if one was
 * made) was closed; the connection's memory lives until its last stream
 * object went. */
#ifndef RILL_H2_CONN_H
#define RILL_H2_CONN_H

#include "http_conn.h"
#include "stream.h"

typedef struct {
  unsigned max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS */
  size_t max_header_bytes;    /* a request's header list (name + value + 32 each); 431 */
  unsigned max_headers;       /* fields in a request; 431 past it */
  uint32_t header_table_size; /* SETTINGS_HEADER_TABLE_SIZE (our HPACK decoder) */
  uint32_t stream_window;     /* SETTINGS_INITIAL_WINDOW_SIZE: a stream's unread bytes */
  size_t max_continuations;   /* CONTINUATION frames after a HEADERS frame */
  unsigned reset_budget; /* streams the peer may reset before their response ends ... */
  unsigned reset_window_ms;    /* ... per this much time; then GOAWAY ENHANCE_YOUR_CALM */
  unsigned idle_timeout_ms;    /* no stream open: GOAWAY and close */
  unsigned header_timeout_ms;  /* a request head begun and not ended; the preface */
  unsigned body_timeout_ms;    /* a body reader's wait for bytes: "timeout", then 408 */
  uint64_t min_body_rate;      /* bytes/s a body's reader must get once past ... */
  unsigned body_rate_grace_ms; /* ... this much waiting (as on HTTP/1.1); 0: no rate */
  unsigned send_timeout_ms; /* every handler ended, answers waiting for the peer's window:
                               the connection goes if nothing leaves for this long */
  size_t write_high;        /* a stream's queued response bytes: RILL_EAGAIN above */
  uint64_t max_body_bytes;  /* a request body; 413 (or "too large" to the reader) past it;
                               0: no limit */
  unsigned tunnel_linger_ms; /* a closed tunnel's unsent bytes wait this long for the
                                peer's window; then RST_STREAM */
} rill_h2_limits_t;

/* Defaults; max_header_bytes and max_headers from the HTTP/1.1 limits. */
void rill__h2_limits_default(rill_h2_limits_t *l, const rill_http_limits_t *http);

typedef struct rill_h2_server_s rill_h2_server_t;
typedef struct rill_h2_conn_s rill_h2_conn_t;
typedef struct rill_h2_stream_s rill_h2_stream_t;

struct rill_h2_server_s {
  rill_worker_t *w;
  rill_h2_limits_t limits;
  /* The client role (h2_client.c): connections made with this speak to a
   * server, and streams are made by rill__h2_request(). */
  int client;
  /* A request head arrived on st: start a handler. Client role: st's
   * response head arrived, or st ended without one (st->got_head is 0);
   * called once per stream, never after rill__h2_request_done(). */
  void (*on_request)(rill_h2_stream_t *st);
  /* A response write that returned RILL_EAGAIN may go on (0), or the stream
   * can take no more (< 0: reset by the peer, the connection closed). */
  void (*on_drained)(rill_h2_stream_t *st, int status);
  /* Optional: the connection is going (its streams are told through their
   * body and on_drained). */
  void (*on_close)(rill_h2_conn_t *c);
  /* Optional: the client reset st, or the connection went, before the
   * response's end left, while st's handler runs (once per stream). */
  void (*on_gone)(rill_h2_stream_t *st);
  void *data;
};

/* The request head, valid while the stream object lives. Names are lower
 * case (HTTP/2 requires it); the pseudo-headers are taken out. */
typedef struct {
  const char *method, *path, *scheme, *authority; /* NUL-terminated; authority may be
                                                     Host's value, or "" */
  size_t method_len, path_len, scheme_len, authority_len;
  /* An Extended CONNECT's :protocol (RFC 8441: "websocket"), or "" */
  const char *protocol;
  size_t protocol_len;
  const rill_hdr_t *hdrs; /* the regular fields, in order */
  size_t nhdrs;
  int64_t content_length; /* -1: none given */
  unsigned is_head : 1;
} rill_h2_head_t;

enum { RILL_H2_RESP_NONE, RILL_H2_RESP_STREAMING, RILL_H2_RESP_DONE };

struct rill_h2_stream_s {
  rill_stream_t body; /* the request body: peek / consume / fill; close() is a no-op */
  rill_h2_conn_t *c;  /* never NULL; c->session is NULL once the connection closed */
  int32_t id;
  rill_h2_head_t head;
  void *data; /* the layer above's */
  /* Optional, set by the layer above: the worker's teardown ended the
   * handler's task unreported, and the stream goes now. */
  void (*abandon)(rill_h2_stream_t *st);

  /* request head being received */
  char *arena; /* names and values, NUL-terminated each */
  size_t alen, acap;
  size_t *hoff; /* per field: name offset, name len, value offset, value len */
  size_t nh, hcap;
  size_t hbytes;
  int bad_head;                       /* 431 (too large) or 400 */
  int expect_continue, continue_sent; /* Expect: 100-continue; its 100 went */
  /* request trailers (a HEADERS frame after the body): "name\0value\0" each */
  char *tr;
  size_t trlen, trcap;
  unsigned ntr;
  int got_head;  /* client role: the final response head is in head, status */
  int head_told; /* client role: on_request was called */

  /* request body: bytes received and not consumed */
  char *in;
  size_t in_r, in_len, in_cap;
  int in_eof, in_err, in_want;
  uv_timer_t *in_timer; /* body_timeout while the reader waits; NULL until then */
  uint64_t in_wait_since, in_waited; /* the reader's waits: this one's start, all (ms) */
  uint64_t in_read, in_total;        /* bytes the reader took; bytes that came */
  uint64_t
      max_body; /* this request's body limit, lower than the server's; 0: the server's */

  /* response */
  int resp;
  int status;
  struct h2_chunk_s *q_head, *q_tail; /* queued DATA payload */
  size_t queued;
  int q_eof;      /* nothing more will be queued */
  char *trailers; /* packed trailer fields to send at the end, or NULL */
  size_t ntrailers;
  int data_deferred;          /* the data provider said DEFERRED: resume on write */
  int write_waiting;          /* a write returned RILL_EAGAIN: tell on_drained */
  int nobody;                 /* HEAD, 204, 304: no DATA */
  int end_sent;               /* our END_STREAM went */
  int zformat, zlevel;        /* compression asked (rill__h2_compress) */
  struct rill_deflate_s *zip; /* the compressor while the body streams */
  int zip_dirty;              /* bytes went in since its last sync flush */

  /* an Extended CONNECT's tunnel (rill__h2_tunnel) */
  int tunnel;         /* RILL_H2_TUNNEL_*: the body is a duplex stream */
  uv_timer_t *linger; /* bytes still queued once the tunnel closed (tunnel_linger_ms)
                         or the handler ended (send_timeout_ms, again as bytes go) */

  /* life */
  int closed; /* nghttp2 closed the stream (or the connection went) */
  int reset_by_peer;
  uint32_t close_error;
  int handler_running;
  int dispatched;
  int head_pending; /* its request head begun and not ended */
  int pend;         /* events to deliver after nghttp2 returns: P_* bits (h2_conn.c) */
  rill_h2_stream_t *pend_next;
  rill_h2_stream_t *prev, *next; /* in the connection's list */
};

struct rill_h2_conn_s {
  rill_obj_t obj;
  rill_h2_server_t *srv;
  rill_worker_t *w;
  rill_stream_t *t; /* the transport, owned; NULL once gone */
  rill_binding_t tb;
  struct nghttp2_session *session; /* NULL once closed */
  rill_flush_t fl;                 /* listed while frames may be waiting to be sent */
  uv_timer_t *timer;               /* idle and header timeouts */
  int timer_kind;
  int sent_progress; /* DATA left since the last timer_update (restarts the send timer) */
  int in_block;      /* nghttp2 is inside a header block (a head or trailers) */
  rill_h2_stream_t *streams; /* every stream object */
  unsigned nstreams;         /* of them, open in nghttp2 */
  unsigned heads_pending;    /* of them, with head_pending */
  unsigned zip_dirty;        /* of them, with zip_dirty set (at most) */
  rill_h2_stream_t *pend_head, *pend_tail;
  int in_recv, in_send, processing;
  int t_waiting; /* the transport said RILL_EAGAIN: send nothing until drained */
  int reading;   /* a fill() is pending on the transport */
  int stopping;  /* a graceful stop: GOAWAY sent, finishing in-flight streams */
  int closing, tearing;
  int unlinked; /* off the worker's object list */
  int werr;
  int refs; /* 1 while open, plus one per stream object */
  /* gathered output: segments in order, copied bytes or references */
  char *out;
  size_t olen, ocap;
  struct h2_seg_s *segs;
  unsigned nsegs, segcap;
  struct h2_chunk_s *sent; /* queue chunks referenced by segs, freed after the write */
  /* rapid reset */
  uint64_t reset_window_start;
  unsigned resets;
  /* figures, for tests and metrics */
  uint64_t writes, frames_in, heads; /* writes made, frames and request heads received */
  uint32_t goaway_error;
  int goaway_sent;
  int goaway_received; /* client role: the server takes no new stream */
  uint32_t goaway_received_error;
  void *data;
};

/* Takes over t (binds to it, owns it), sends the server's SETTINGS and
 * reads the client's preface. Returns NULL on allocation failure (t is then
 * still the caller's). */
rill_h2_conn_t *rill__h2_conn_new(rill_h2_server_t *srv, rill_stream_t *t);
/* Sends what the session has ready now rather than at the burst's end. */
void rill__h2_conn_flush(rill_h2_conn_t *c);
/* A graceful stop: GOAWAY with the last stream id taken; streams in flight
 * finish; then the connection closes. */
void rill__h2_conn_shutdown(rill_h2_conn_t *c);
/* Closes now: GOAWAY with error_code (if the session can still send), every
 * stream is told, the transport closes. */
void rill__h2_conn_close(rill_h2_conn_t *c, uint32_t error_code);

/* ---- a stream's response (h2_stream.c) ----
 * status and h are used only while the head is unsent; names are sent in
 * lower case; connection-specific fields (Connection, Keep-Alive,
 * Transfer-Encoding, Upgrade, Proxy-Connection) are dropped. Each returns 0,
 * RILL_EAGAIN (taken, but the stream's queue is above its high-water mark:
 * wait for on_drained), RILL_HTTP_NOBODY (data a bodiless response cannot
 * carry: dropped), UV_EBUSY (the response ended), UV_EINVAL (a bad field),
 * RILL_EPROTO (a 2xx to an Extended CONNECT: only rill__h2_tunnel sends
 * one), RILL_ECLOSED (the stream was reset or the connection closed) or
 * UV_ENOMEM. A handler that ends without answering an Extended CONNECT gets
 * 501 sent. */
int rill__h2_respond(rill_h2_stream_t *st, int status, const rill_hdr_t *h, size_t nh,
                     const char *body, size_t len);
int rill__h2_write(rill_h2_stream_t *st, int status, const rill_hdr_t *h, size_t nh,
                   const char *data, size_t len);
/* Queues buf (a worker's pooled buffer, rill__buf_get; taken over in every
 * case) holding len body bytes, by reference, on a response that streams
 * (rill__h2_write started it) and is not compressed: a file's bytes read
 * in the pool go out as DATA without a copy. Returns as rill__h2_write;
 * UV_EINVAL for a response not in that state. */
int rill__h2_write_buf(rill_h2_stream_t *st, char *buf, size_t len);
/* Ends the response, with trailer fields (nt may be 0). */
int rill__h2_finish(rill_h2_stream_t *st, int status, const rill_hdr_t *h, size_t nh,
                    const rill_hdr_t *trailers, size_t nt);
/* Compresses the response about to start (format RILL_Z_GZIP or
 * RILL_Z_DEFLATE, level 1-9): its body goes through a compressor, flushed
 * (Z_SYNC_FLUSH) once per burst, before the connection sends, so that what
 * was written arrives whole (as HTTP/1.1's), Z_FINISH at the end; no
 * content-length is sent. The layer above sets Content-Encoding.
 * Returns 0, UV_EBUSY (started) or UV_EINVAL. */
int rill__h2_compress(rill_h2_stream_t *st, int format, int level);
/* Answers an Extended CONNECT (RFC 8441; head.protocol set) with status
 * (2xx) and h, and turns the body into a duplex byte stream, returned:
 * reads are the request's DATA (WINDOW_UPDATE as they are consumed, no
 * body limit), writes queue DATA (RILL_EAGAIN above the high-water mark,
 * then the body's drained()), shutdown() sends END_STREAM, close() ends the
 * stream (END_STREAM after what is queued; RST_STREAM NO_ERROR if the peer's
 * side is still open), abort() resets it (CANCEL). Whoever holds the stream
 * owns it: the stream object lives, past its handler's end, until it is
 * closed. NULL (nothing sent) without :protocol, once the response or the
 * body's reading began, or on a closed stream. */
rill_stream_t *rill__h2_tunnel(rill_h2_stream_t *st, int status, const rill_hdr_t *h,
                               size_t nh);
enum { RILL_H2_TUNNEL_NONE, RILL_H2_TUNNEL_OPEN, RILL_H2_TUNNEL_CLOSED };
/* Flushes the compressors written to since their last flush (the
 * connection calls it before it sends). */
void rill__h2_zip_flush(rill_h2_conn_t *c);
/* Resets the stream (RST_STREAM error_code); the body's reader is told. */
void rill__h2_reset(rill_h2_stream_t *st, uint32_t error_code);
/* The handler of st ended; ok is 0 if it raised: with no response a 500
 * goes, a response begun is reset; an unfinished one is finished. */
void rill__h2_stream_handler_done(rill_h2_stream_t *st, int ok);

/* ---- the client role (h2_client.c) ----
 * A connection made by rill__h2_conn_new() with srv->client set sends the
 * client preface and SETTINGS; requests are streams of it. */

/* Submits a request: req's method, scheme, authority and path (authority may
 * be ""), its fields (connection-specific ones, Host and TE dropped, names
 * sent in lower case) and content_length (>= 0: a content-length field unless
 * one is given). With with_body, the body is written with rill__h2_write()
 * (status and fields ignored) and ended with rill__h2_finish(); else the
 * request ends with its head. On success *out is the stream: its head and
 * status become the response's (on_request tells when), its body stream the
 * response body; it lives until rill__h2_request_done(). Returns 0,
 * UV_EINVAL (a bad field), RILL_ECLOSED (the connection is closing, or the
 * server sent GOAWAY) or UV_ENOMEM. Requests past the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS wait in nghttp2's queue. */
int rill__h2_request(rill_h2_conn_t *c, const rill_h2_head_t *req, int with_body,
                     rill_h2_stream_t **out);
/* The requester is done with st: a stream still open is reset (CANCEL), and
 * the stream object goes once nghttp2 is done with it. */
void rill__h2_request_done(rill_h2_stream_t *st);
/* How many more streams the server takes now (its
 * SETTINGS_MAX_CONCURRENT_STREAMS less the streams open); 0 once the
 * connection closes or the server sent GOAWAY. */
unsigned rill__h2_capacity(rill_h2_conn_t *c);
/* Client role callbacks, for h2_conn.c's session callbacks. */
struct nghttp2_session_callbacks;
void rill__h2_client_callbacks(struct nghttp2_session_callbacks *cbs);
/* Submits a request head with st as its stream's data (h2_stream.c): the
 * data provider takes st's queue. Returns the stream id or an nghttp2 error. */
int32_t rill__h2_submit_request(rill_h2_stream_t *st, const void *nv, size_t n,
                                int with_body);

/* ---- for h2_stream.c and h2_conn.c ---- */
enum {
  RILL_H2_P_REQUEST = 1,
  RILL_H2_P_READABLE = 2,
  RILL_H2_P_DRAINED = 4,
  RILL_H2_P_GONE = 8
};
void rill__h2_pend(rill_h2_stream_t *st, int what);
void rill__h2_want_send(rill_h2_conn_t *c);
void rill__h2_stream_init(rill_h2_stream_t *st, rill_h2_conn_t *c, int32_t id);
void rill__h2_stream_free(rill_h2_stream_t *st);
/* Takes a torn-down connection off the worker's list once no handler runs. */
void rill__h2_conn_maybe_unlink(rill_h2_conn_t *c);
/* Frees the stream object if nghttp2 and the handler are both done with it. */
void rill__h2_stream_maybe_free(rill_h2_stream_t *st);
/* A field of a head, kept in the stream's arena (st->hbytes counted by the
 * caller): past max_header_bytes or max_headers it is dropped and
 * st->bad_head is 431. Returns 0 or an nghttp2 callback failure. */
int rill__h2_field_put(rill_h2_stream_t *st, const uint8_t *name, size_t namelen,
                       const uint8_t *value, size_t valuelen);
/* Request bytes arrived (copied into the stream's buffer). */
int rill__h2_stream_in(rill_h2_stream_t *st, const uint8_t *p, size_t n);
/* Queued response chunks: bytes copied into data, or a pooled buffer
 * referenced (ext, given back to w's pool when the chunk is freed). */
typedef struct h2_chunk_s {
  struct h2_chunk_s *next;
  size_t off, len;
  char *ext;
  rill_worker_t *w;
  char data[];
} h2_chunk_t;
static inline const char *rill__h2_chunk_bytes(const h2_chunk_t *ch) {
  return ch->ext ? ch->ext : ch->data;
}
void rill__h2_chunks_free(h2_chunk_t *ch);

/* ---- the HTTP/1.1 Upgrade to h2c (RFC 7540 3.2) ----
 * Decodes an HTTP2-Settings value (base64url, padded or not) into out (cap
 * bytes) and checks it as nghttp2 will: whole 6-byte entries, 32 at
 * most, known settings within their ranges. Returns the payload's length, or UV_EINVAL
 * (not base64url, a bad length or value, more than cap bytes). */
int rill__h2_upgrade_settings(const char *v, size_t n, uint8_t *out, size_t cap);
/* As rill__h2_conn_new, on a transport whose 101 Switching Protocols went:
 * our SETTINGS go first, then stream 1 is the upgraded request (settings:
 * the decoded HTTP2-Settings payload), half-closed (remote), its handler
 * started as any request's. head gives method, path, scheme, authority and
 * the fields (connection-specific ones and Host taken out by the caller;
 * names in any case), copied; is_head is passed to nghttp2. Returns NULL on
 * allocation failure (t is then still the caller's); a stream 1 that cannot
 * start closes the connection from its first flush. */
rill_h2_conn_t *rill__h2_conn_new_upgraded(rill_h2_server_t *srv, rill_stream_t *t,
                                           const uint8_t *settings, size_t slen,
                                           const rill_h2_head_t *head);

#endif /* RILL_H2_CONN_H */
