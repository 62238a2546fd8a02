/* A server-side HTTP/2 connection. See h2_conn.h.
 *
 * nghttp2's callbacks never call the layer above: what they find (a request
 * head, body bytes, a stream gone) is marked on the stream and delivered by
 * process() once nghttp2 has returned, so a handler never runs inside the
 * session and may submit frames freely. Teardown likewise waits until no
 * nghttp2 call is on the stack (after()). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

#include "h2_conn.h"

enum { TK_NONE, TK_IDLE, TK_HEADER, TK_SEND };

typedef struct h2_seg_s {
  const char *p; /* referenced bytes, or NULL: out + off */
  size_t off, len;
} h2_seg_t;

void rill__h2_limits_default(rill_h2_limits_t *l, const rill_http_limits_t *http) {
  l->max_concurrent_streams = 128;
  l->max_header_bytes = http ? http->max_header_bytes : 16384;
  l->max_headers = http ? http->max_headers : 100;
  l->header_table_size = 4096;
  l->stream_window = 65535;
  l->max_continuations = 8;
  l->reset_budget = 256;
  l->reset_window_ms = 10000;
  l->idle_timeout_ms = http ? http->keepalive_timeout_ms : 60000;
  l->header_timeout_ms = http ? http->header_timeout_ms : 30000;
  l->body_timeout_ms = http ? http->body_timeout_ms : 60000;
  l->send_timeout_ms = http ? http->send_timeout_ms : 60000;
  l->min_body_rate = http ? http->min_body_rate : 500;
  l->body_rate_grace_ms = http ? http->body_rate_grace_ms : 20000;
  l->write_high = RILL_WRITE_HIGH;
  l->max_body_bytes = http ? http->max_body_bytes : (uint64_t)1 << 30;
  l->tunnel_linger_ms = 5000;
}

static void conn_read(rill_h2_conn_t *c);
static void conn_send(rill_h2_conn_t *c);
static void after(rill_h2_conn_t *c);
static void conn_unref(rill_h2_conn_t *c);

/* ---- gathered output ---- */

static int seg_add(rill_h2_conn_t *c, const char *p, const void *copy, size_t len) {
  if (c->nsegs == c->segcap) {
    unsigned cap = c->segcap ? c->segcap * 2 : 16;
    h2_seg_t *s = realloc(c->segs, cap * sizeof(*s));
    if (s == NULL) return UV_ENOMEM;
    c->segs = s;
    c->segcap = cap;
  }
  h2_seg_t *s = &c->segs[c->nsegs];
  if (p) {
    s->p = p;
    s->off = 0;
    s->len = len;
    c->nsegs++;
    return 0;
  }
  if (c->olen + len > c->ocap) {
    size_t cap = c->ocap ? c->ocap : 4096;
    while (cap < c->olen + len)
      cap *= 2;
    char *o = realloc(c->out, cap);
    if (o == NULL) return UV_ENOMEM;
    c->out = o;
    c->ocap = cap;
  }
  memcpy(c->out + c->olen, copy, len);
  /* Consecutive copied bytes make one segment. */
  if (c->nsegs > 0 && c->segs[c->nsegs - 1].p == NULL) {
    c->segs[c->nsegs - 1].len += len;
  } else {
    s->p = NULL;
    s->off = c->olen;
    s->len = len;
    c->nsegs++;
  }
  c->olen += len;
  return 0;
}

/* Writes what the session produced as one write; frees the queue chunks it
 * referenced (the transport copied what it could not send). */
static void write_out(rill_h2_conn_t *c) {
  if (c->nsegs > 0 && c->t && !c->werr) {
    uv_buf_t stackbufs[32], *bufs = stackbufs;
    if (c->nsegs > 32 && (bufs = malloc(c->nsegs * sizeof(*bufs))) == NULL) {
      c->werr = UV_ENOMEM;
    } else {
      for (unsigned i = 0; i < c->nsegs; i++) {
        const h2_seg_t *s = &c->segs[i];
        bufs[i] = uv_buf_init((char *)(s->p ? s->p : c->out + s->off), (unsigned)s->len);
      }
      int r = c->t->vt->write(c->t, bufs, c->nsegs);
      c->writes++;
      if (bufs != stackbufs) free(bufs);
      if (r == RILL_EAGAIN)
        c->t_waiting = 1;
      else if (r < 0)
        c->werr = r;
    }
  }
  c->nsegs = 0;
  c->olen = 0;
  rill__h2_chunks_free(c->sent);
  c->sent = NULL;
  if (c->werr && !c->closing) rill__h2_conn_close(c, NGHTTP2_INTERNAL_ERROR);
}

/* ---- nghttp2's callbacks ---- */

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
                       void *user) {
  rill_h2_conn_t *c = user;
  if (seg_add(c, NULL, data, len)) return NGHTTP2_ERR_CALLBACK_FAILURE;
  return (ssize_t)len;
}

/* A DATA frame: its header copied, its payload by reference to the head of
 * the stream's queue (the read callback gave no more than that chunk). */
static int send_data_cb(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t length, nghttp2_data_source *source, void *user) {
  rill_h2_conn_t *c = user;
  rill_h2_stream_t *st = source->ptr;
  if (seg_add(c, NULL, framehd, 9)) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (frame->data.padlen > 0) {
    uint8_t pad[256] = {0};
    pad[0] = (uint8_t)(frame->data.padlen - 1);
    if (seg_add(c, NULL, pad, 1)) return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  if (length > 0) {
    h2_chunk_t *ch = st->q_head;
    assert(ch && ch->len - ch->off >= length);
    if (seg_add(c, rill__h2_chunk_bytes(ch) + ch->off, NULL, length))
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    ch->off += length;
    st->queued -= length;
    if (st->linger && !st->tunnel) uv_timer_again(st->linger); /* bytes go: not stuck */
    c->sent_progress = 1;
    if (ch->off == ch->len) {
      st->q_head = ch->next;
      if (st->q_head == NULL) st->q_tail = NULL;
      ch->next = c->sent; /* referenced until the write */
      c->sent = ch;
    }
    if (st->write_waiting && st->queued <= c->srv->limits.write_high / 4)
      rill__h2_pend(st, RILL_H2_P_DRAINED);
  }
  if (frame->data.padlen > 1) {
    uint8_t pad[256] = {0};
    if (seg_add(c, NULL, pad, frame->data.padlen - 1))
      return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

static int begin_headers_cb(nghttp2_session *s, const nghttp2_frame *frame, void *user) {
  rill_h2_conn_t *c = user;
  c->in_block = 1; /* until its frame_recv_cb: the header timeout runs */
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  rill_h2_stream_t *st = calloc(1, sizeof(*st));
  if (st == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  rill__h2_stream_init(st, c, frame->hd.stream_id);
  nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, st);
  c->nstreams++; /* nghttp2 opened it (it refuses those past the limit unopened) */
  st->head_pending = 1;
  c->heads_pending++;
  return 0;
}

/* st's request head ended, or st closed before it did. */
static void head_done(rill_h2_conn_t *c, rill_h2_stream_t *st) {
  if (!st->head_pending) return;
  st->head_pending = 0;
  c->heads_pending--;
}

static int is_name(const uint8_t *p, size_t n, const char *lit) {
  return strlen(lit) == n && memcmp(p, lit, n) == 0;
}

static int arena_put(rill_h2_stream_t *st, const uint8_t *p, size_t n, size_t *off) {
  if (st->alen + n + 1 > st->acap) {
    size_t cap = st->acap ? st->acap : 512;
    while (cap < st->alen + n + 1)
      cap *= 2;
    char *a = realloc(st->arena, cap);
    if (a == NULL) return UV_ENOMEM;
    st->arena = a;
    st->acap = cap;
  }
  *off = st->alen;
  memcpy(st->arena + st->alen, p, n);
  st->arena[st->alen + n] = 0;
  st->alen += n + 1;
  return 0;
}

/* A trailer field (a HEADERS frame after the body; nghttp2 has checked
 * it; header_cb counted its bytes with the head's): kept for the reader,
 * within the head's limits.
 * Past them the body's reader is told "too large" (and the answer is 413,
 * if none began). */
static int trailer_put(rill_h2_stream_t *st, const uint8_t *name, size_t namelen,
                       const uint8_t *value, size_t valuelen) {
  const rill_h2_limits_t *l = &st->c->srv->limits;
  if (!st->dispatched || st->in_err) return 0;
  if (st->hbytes > l->max_header_bytes || st->nh + st->ntr >= l->max_headers) {
    st->in_err = RILL_EBODY;
    rill__h2_pend(st, RILL_H2_P_READABLE);
    return 0;
  }
  size_t need = st->trlen + namelen + valuelen + 2;
  if (need > st->trcap) {
    size_t cap = st->trcap ? st->trcap : 256;
    while (cap < need)
      cap *= 2;
    char *b = realloc(st->tr, cap);
    if (b == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->tr = b;
    st->trcap = cap;
  }
  memcpy(st->tr + st->trlen, name, namelen);
  st->tr[st->trlen + namelen] = 0;
  memcpy(st->tr + st->trlen + namelen + 1, value, valuelen);
  st->tr[need - 1] = 0;
  st->trlen = need;
  st->ntr++;
  return 0;
}

/* A field of a request head: kept in the stream's arena, within the limits
 * (past them the rest is decoded, as HPACK needs, and dropped: 431). */
static int header_cb(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user) {
  rill_h2_conn_t *c = user;
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  rill_h2_stream_t *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
  if (st == NULL) return 0;
  st->hbytes += namelen + valuelen + 32;
  /* Far past the limit, head and trailers together (an HPACK bomb: a big
   * table entry named over and over, each copy checked by nghttp2): the
   * stream is reset, and the rest of the block decoded without fields. */
  if (st->hbytes > 4 * c->srv->limits.max_header_bytes)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (frame->headers.cat == NGHTTP2_HCAT_HEADERS)
    return trailer_put(st, name, namelen, value, valuelen);
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST || st->bad_head) return 0;
  return rill__h2_field_put(st, name, namelen, value, valuelen);
}

int rill__h2_field_put(rill_h2_stream_t *st, const uint8_t *name, size_t namelen,
                       const uint8_t *value, size_t valuelen) {
  const rill_h2_limits_t *l = &st->c->srv->limits;
  if (st->hbytes > l->max_header_bytes || st->nh >= l->max_headers) {
    st->bad_head = 431;
    return 0;
  }
  if (st->nh == st->hcap) {
    size_t cap = st->hcap ? st->hcap * 2 : 16;
    size_t *h = realloc(st->hoff, cap * 4 * sizeof(size_t));
    if (h == NULL) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    st->hoff = h;
    st->hcap = cap;
  }
  size_t *e = &st->hoff[st->nh * 4];
  if (arena_put(st, name, namelen, &e[0]) || arena_put(st, value, valuelen, &e[2]))
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  e[1] = namelen;
  e[3] = valuelen;
  st->nh++;
  return 0;
}

/* The head is whole: pseudo-headers taken out, the rest as rill_hdr_t. */
static int head_finish(rill_h2_stream_t *st) {
  rill_h2_head_t *h = &st->head;
  rill_hdr_t *hd = malloc((st->nh ? st->nh : 1) * sizeof(*hd));
  if (hd == NULL) return UV_ENOMEM;
  size_t n = 0;
  const char *host = NULL;
  size_t host_len = 0;
  h->content_length = -1;
  h->method = h->path = h->scheme = h->authority = h->protocol = "";
  for (size_t i = 0; i < st->nh; i++) {
    const size_t *e = &st->hoff[i * 4];
    const char *nm = st->arena + e[0], *v = st->arena + e[2];
    const uint8_t *un = (const uint8_t *)nm;
    if (nm[0] == ':') {
      if (is_name(un, e[1], ":method")) {
        h->method = v;
        h->method_len = e[3];
      } else if (is_name(un, e[1], ":path")) {
        h->path = v;
        h->path_len = e[3];
      } else if (is_name(un, e[1], ":scheme")) {
        h->scheme = v;
        h->scheme_len = e[3];
      } else if (is_name(un, e[1], ":authority")) {
        h->authority = v;
        h->authority_len = e[3];
      } else if (is_name(un, e[1], ":protocol")) {
        h->protocol = v; /* nghttp2 let it through on a CONNECT only */
        h->protocol_len = e[3];
      }
      continue;
    }
    if (is_name(un, e[1], "host")) {
      host = v;
      host_len = e[3];
    } else if (is_name(un, e[1], "content-length")) {
      int64_t x = 0;
      for (size_t j = 0; j < e[3] && j < 19; j++)
        x = x * 10 + (v[j] - '0'); /* nghttp2 checked the digits */
      h->content_length = x;
    } else if (is_name(un, e[1], "expect") && e[3] == 12 &&
               strncasecmp(v, "100-continue", 12) == 0) {
      st->expect_continue = 1;
    }
    hd[n++] = (rill_hdr_t){nm, e[1], v, e[3]};
  }
  if (h->authority_len == 0 && host) {
    h->authority = host;
    h->authority_len = host_len;
  } else if (host && (host_len != h->authority_len ||
                      strncasecmp(host, h->authority, host_len) != 0)) {
    /* Host naming another server than :authority: malformed (RFC 9113
     * 8.3.1), else a proxy in front routes by one and the app by the other. */
    if (!st->bad_head) st->bad_head = 400;
  }
  h->hdrs = hd;
  h->nhdrs = n;
  h->is_head = h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0;
  return 0;
}

/* Counts a stream the peer reset before its response ended; past the
 * budget in one window, the connection goes (CVE-2023-44487). */
static void count_reset(rill_h2_conn_t *c) {
  uint64_t now = uv_now(c->w->loop);
  if (now - c->reset_window_start >= c->srv->limits.reset_window_ms) {
    c->reset_window_start = now;
    c->resets = 0;
  }
  if (++c->resets > c->srv->limits.reset_budget && !c->closing) {
    rill__log(c->w, RILL_LOG_DEBUG, "h2: %u streams reset by the peer: closing",
              c->resets);
    c->goaway_error = NGHTTP2_ENHANCE_YOUR_CALM;
    c->closing = 1;
  }
}

static int frame_recv_cb(nghttp2_session *s, const nghttp2_frame *frame, void *user) {
  rill_h2_conn_t *c = user;
  c->frames_in++;
  if (frame->hd.type == NGHTTP2_HEADERS) c->in_block = 0;
  rill_h2_stream_t *st =
      frame->hd.stream_id ? nghttp2_session_get_stream_user_data(s, frame->hd.stream_id)
                          : NULL;
  if (st == NULL) return 0;
  switch (frame->hd.type) {
  case NGHTTP2_HEADERS:
    if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
      c->heads++;
      head_done(c, st);
      if (head_finish(st)) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      uint64_t max = c->srv->limits.max_body_bytes;
      if (!st->bad_head && max && st->head.content_length > 0 &&
          (uint64_t)st->head.content_length > max)
        st->bad_head = 413;
      if (st->bad_head) {
        rill__log(c->w, RILL_LOG_DEBUG, "h2: %d: %s", st->bad_head,
                  st->bad_head == 413   ? "request body too large"
                  : st->bad_head == 431 ? "request head too large"
                                        : "Host differs from :authority");
        rill__h2_respond(st, st->bad_head, NULL, 0, "", 0);
      } else if (!c->stopping) {
        st->dispatched = 1;
        st->handler_running = 1;
        rill__h2_pend(st, RILL_H2_P_REQUEST);
      }
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
      st->in_eof = 1;
      rill__h2_pend(st, RILL_H2_P_READABLE);
    }
    break;
  case NGHTTP2_DATA:
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
      st->in_eof = 1;
      rill__h2_pend(st, RILL_H2_P_READABLE);
    }
    break;
  case NGHTTP2_RST_STREAM:
    st->reset_by_peer = 1;
    /* Before its handler ended the response: what the attack costs us
     * (whether the bytes had left yet does not matter). */
    if (st->resp != RILL_H2_RESP_DONE) count_reset(c);
    break;
  }
  return 0;
}

static int data_chunk_cb(nghttp2_session *s, uint8_t flags, int32_t id,
                         const uint8_t *data, size_t len, void *user) {
  rill_h2_stream_t *st = nghttp2_session_get_stream_user_data(s, id);
  /* The connection's window is ours to grant at once: a stream's unread
   * bytes are bounded by its own window, which only its reader opens. */
  nghttp2_session_consume_connection(s, len);
  if (st == NULL) return 0;
  st->in_total += len;
  uint64_t max = st->max_body ? st->max_body : st->c->srv->limits.max_body_bytes;
  if (st->tunnel) max = 0; /* a byte stream (a websocket): its own limits apply */
  if (max && st->in_total > max && st->in_err == 0) {
    /* The reader is told "too large"; its handler's answer becomes a 413. */
    st->in_err = RILL_EBODY;
    rill__h2_pend(st, RILL_H2_P_READABLE);
  }
  if (!st->dispatched || st->in_err) {
    nghttp2_session_consume_stream(s, id, len); /* nobody will read them */
    return 0;
  }
  if (rill__h2_stream_in(st, data, len)) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  rill__h2_pend(st, RILL_H2_P_READABLE);
  return 0;
}

/* We sent the response's end while the request is still open: the peer
 * need not send the rest of a body nobody will read (RFC 9113 8.1). */
static int frame_send_cb(nghttp2_session *s, const nghttp2_frame *frame, void *user) {
  if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
    rill_h2_stream_t *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (st) st->end_sent = 1;
    if (st && !st->in_eof &&
        (st->tunnel ? st->tunnel == RILL_H2_TUNNEL_CLOSED : !st->handler_running))
      nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                NGHTTP2_NO_ERROR);
  }
  return 0;
}

static int stream_close_cb(nghttp2_session *s, int32_t id, uint32_t error_code,
                           void *user) {
  rill_h2_conn_t *c = user;
  rill_h2_stream_t *st = nghttp2_session_get_stream_user_data(s, id);
  if (st == NULL) return 0;
  nghttp2_session_set_stream_user_data(s, id, NULL);
  st->closed = 1;
  st->close_error = error_code;
  c->nstreams--;
  head_done(c, st);
  /* Reset by nghttp2 for the peer's error (a window past 2^31-1, DATA past
   * content-length) while its handler runs: as costly as the peer's own
   * RST_STREAM, and not held by the concurrency limit either
   * (CVE-2025-8671). The handler's own resets end its response first. */
  if (error_code != NGHTTP2_NO_ERROR && !st->reset_by_peer && st->handler_running &&
      st->resp != RILL_H2_RESP_DONE)
    count_reset(c);
  if (!st->in_eof && st->in_err == 0) st->in_err = RILL_ECLOSED;
  /* The client reset it before our end left (not our own reset). */
  if (st->handler_running && !st->end_sent && st->reset_by_peer)
    rill__h2_pend(st, RILL_H2_P_GONE);
  /* Unsent response bytes will never go: free them after the write that
   * may still reference the first one. */
  if (st->q_head) {
    st->q_tail->next = c->sent;
    c->sent = st->q_head;
    st->q_head = st->q_tail = NULL;
    st->queued = 0;
  }
  rill__h2_pend(st, RILL_H2_P_READABLE | RILL_H2_P_DRAINED);
  return 0;
}

/* A frame nghttp2 found malformed (a stream error): if it was a request
 * head, its header block is over all the same. */
static int invalid_frame_cb(nghttp2_session *s, const nghttp2_frame *frame, int lib_error,
                            void *user) {
  rill_h2_conn_t *c = user;
  if (frame->hd.type == NGHTTP2_HEADERS) c->in_block = 0;
  return 0;
}

static int error_cb(nghttp2_session *s, int code, const char *msg, size_t len,
                    void *user) {
  rill_h2_conn_t *c = user;
  rill__log(c->w, RILL_LOG_DEBUG, "h2: %.*s", (int)len, msg);
  return 0;
}

static nghttp2_session_callbacks *callbacks(int client) {
  static nghttp2_session_callbacks *roles[2];
  nghttp2_session_callbacks *cbs = roles[client];
  if (cbs) return cbs;
  if (nghttp2_session_callbacks_new(&cbs)) return NULL;
  nghttp2_session_callbacks_set_send_callback(cbs, send_cb);
  nghttp2_session_callbacks_set_send_data_callback(cbs, send_data_cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, begin_headers_cb);
  nghttp2_session_callbacks_set_on_header_callback(cbs, header_cb);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, frame_recv_cb);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, data_chunk_cb);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, frame_send_cb);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, stream_close_cb);
  nghttp2_session_callbacks_set_error_callback2(cbs, error_cb);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, invalid_frame_cb);
  if (client) rill__h2_client_callbacks(cbs); /* the head and frame callbacks */
  roles[client] = cbs;
  return cbs;
}

/* ---- events for the layer above ---- */

void rill__h2_pend(rill_h2_stream_t *st, int what) {
  rill_h2_conn_t *c = st->c;
  if (st->pend == 0) {
    st->pend_next = NULL;
    if (c->pend_tail)
      c->pend_tail->pend_next = st;
    else
      c->pend_head = st;
    c->pend_tail = st;
  }
  st->pend |= what;
}

#define P_BUSY 0x100

/* Delivers what nghttp2's callbacks found: a request to on_request, bytes
 * or an end to the body's reader, room (or the end) to a waiting writer. */
static void process(rill_h2_conn_t *c) {
  if (c->processing) return;
  c->processing = 1;
  c->refs++;
  rill__worker_hold(c->w); /* the handlers started here run together, after */
  rill_h2_stream_t *st;
  while ((st = c->pend_head) != NULL) {
    c->pend_head = st->pend_next;
    if (c->pend_head == NULL) c->pend_tail = NULL;
    int what = st->pend;
    st->pend = P_BUSY;
    if (c->srv->client) {
      /* The response head, or the end of a stream that had none. */
      if (!st->head_told && (st->got_head || st->closed)) {
        st->head_told = 1;
        c->srv->on_request(st);
      }
    } else if ((what & RILL_H2_P_REQUEST) && !st->closed)
      c->srv->on_request(st);
    else if (what & RILL_H2_P_REQUEST)
      st->handler_running = 0; /* reset before it could start */
    if ((what & RILL_H2_P_READABLE) && st->in_want) {
      st->in_want = 0;
      st->in_waited += uv_now(c->w->loop) - st->in_wait_since;
      if (st->in_timer) uv_timer_stop(st->in_timer);
      rill__stream_readable(&st->body, st->in_r < st->in_len ? 0 : st->in_err);
    }
    if ((what & RILL_H2_P_DRAINED) && st->write_waiting) {
      st->write_waiting = 0;
      if (st->tunnel) /* its writer is bound to the stream */
        rill__stream_drained(&st->body, st->closed ? RILL_ECLOSED : 0);
      else if (c->srv->on_drained)
        c->srv->on_drained(st, st->closed ? RILL_ECLOSED : 0);
    }
    if ((what & RILL_H2_P_GONE) && st->handler_running && c->srv->on_gone)
      c->srv->on_gone(st);
    /* What the callbacks marked meanwhile goes round again. */
    int again = st->pend & ~P_BUSY;
    st->pend = 0;
    if (again)
      rill__h2_pend(st, again);
    else
      rill__h2_stream_maybe_free(st);
  }
  c->processing = 0;
  rill__worker_release(c->w);
  conn_unref(c);
}

/* ---- I/O ---- */

static void flush_cb(rill_flush_t *f) {
  rill_h2_conn_t *c = rill__container_of(f, rill_h2_conn_t, fl);
  c->refs++;
  conn_read(c); /* the first time: bytes the transport held already */
  conn_send(c);
  conn_unref(c);
}

void rill__h2_want_send(rill_h2_conn_t *c) {
  if (c->session && !c->in_send) rill__flush_add(c->w, &c->fl);
}

void rill__h2_conn_flush(rill_h2_conn_t *c) {
  rill__flush_remove(c->w, &c->fl);
  conn_send(c);
}

static void timer_update(rill_h2_conn_t *c);

/* Runs the session's output into one write. */
static void conn_send(rill_h2_conn_t *c) {
  rill__flush_remove(c->w, &c->fl);
  if (c->session == NULL || c->in_recv || c->in_send) return;
  if (c->t_waiting) {
    /* The peer takes none of our bytes: the send timeout may be due (a
     * handler ended meanwhile), though nothing can leave. */
    timer_update(c);
    return;
  }
  c->refs++;
  rill__h2_zip_flush(c); /* what the burst wrote through compressors */
  c->in_send = 1;
  int rv = nghttp2_session_send(c->session);
  c->in_send = 0;
  write_out(c);
  if (rv < 0 && !c->closing) {
    rill__log(c->w, RILL_LOG_DEBUG, "h2: sending: %s", nghttp2_strerror(rv));
    c->closing = 1;
  }
  process(c);
  timer_update(c); /* the last stream may have ended with this write */
  after(c);
  conn_unref(c);
}

static void conn_read(rill_h2_conn_t *c) {
  if (c->session == NULL || c->t == NULL || c->reading || c->in_recv) return;
  c->refs++;
  for (;;) {
    const char *p;
    size_t n;
    int r = c->t->vt->peek(c->t, &p, &n);
    if (r < 0) {
      /* The peer is gone (or ended): nothing can be answered. */
      rill__log(c->w, RILL_LOG_DEBUG, "h2: the peer ended: %s", rill__errmsg(r));
      c->goaway_error = NGHTTP2_NO_ERROR;
      c->werr = c->werr ? c->werr : RILL_ECLOSED;
      c->closing = 1;
      break;
    }
    if (n > 0) {
      c->in_recv = 1;
      ssize_t rv = nghttp2_session_mem_recv(c->session, (const uint8_t *)p, n);
      c->in_recv = 0;
      if (rv < 0) {
        rill__log(c->w, RILL_LOG_DEBUG, "h2: %s", nghttp2_strerror((int)rv));
        if (!c->closing) {
          c->goaway_error =
              rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS
                  ? NGHTTP2_ENHANCE_YOUR_CALM
                  : NGHTTP2_PROTOCOL_ERROR;
          if (rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC) c->werr = RILL_EPROTO; /* not h2 */
          c->closing = 1;
        }
        break;
      }
      c->t->vt->consume(c->t, (size_t)rv);
      process(c);
      if (c->closing || c->session == NULL || c->t == NULL) break;
      continue;
    }
    if (!nghttp2_session_want_read(c->session) || c->t_waiting) break;
    r = rill__stream_fill(c->t);
    if (r == 0) {
      c->reading = 1;
    } else {
      c->werr = c->werr ? c->werr : r;
      c->closing = 1;
    }
    break;
  }
  rill__h2_want_send(c);
  timer_update(c);
  after(c);
  conn_unref(c);
}

static void t_readable(rill_binding_t *b, int status) {
  rill_h2_conn_t *c = rill__container_of(b, rill_h2_conn_t, tb);
  c->reading = 0;
  conn_read(c);
}

static void t_drained(rill_binding_t *b, int status) {
  rill_h2_conn_t *c = rill__container_of(b, rill_h2_conn_t, tb);
  c->t_waiting = 0;
  if (status < 0) {
    if (!c->werr) c->werr = status;
    rill__h2_conn_close(c, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  conn_send(c);
  conn_read(c); /* reading stopped while the peer did not take our bytes */
}

static void t_gone(rill_binding_t *b) {
  rill_h2_conn_t *c = rill__container_of(b, rill_h2_conn_t, tb);
  c->t = NULL;
  if (!c->werr) c->werr = RILL_ECLOSED;
  rill__h2_conn_close(c, NGHTTP2_NO_ERROR);
}

static const rill_binding_ops_t t_ops = {
    .readable = t_readable, .drained = t_drained, .gone = t_gone};

/* ---- timers ---- */

static void timer_cb(uv_timer_t *h) {
  rill_h2_conn_t *c = h->data;
  rill__log(c->w, RILL_LOG_DEBUG, "h2: closing a connection: %s timeout",
            c->timer_kind == TK_IDLE   ? "idle"
            : c->timer_kind == TK_SEND ? "send"
                                       : "header");
  c->timer_kind = TK_NONE;
  /* A peer that takes none of our bytes gets no GOAWAY either: what is
   * queued for it is dropped, the connection reset. */
  if (c->t_waiting && !c->werr) c->werr = UV_ETIMEDOUT;
  rill__h2_conn_close(c, NGHTTP2_NO_ERROR);
}

/* Idle: no stream open. Header: the preface, or a header block (a request
 * head, or trailers) begun and not ended. Send: no handler runs and
 * the peer takes none of our bytes (the transport is full): restarted
 * whenever DATA leaves. (A stream whose window the peer keeps shut is reset
 * on its own, at send_timeout: stuck_cb in h2_stream.c.) */
static void timer_update(rill_h2_conn_t *c) {
  if (c->timer == NULL) return;
  int kind = TK_NONE, busy = 0;
  if (c->session && !c->closing) {
    if (c->frames_in == 0 || c->in_block || c->heads_pending > 0)
      kind = TK_HEADER;
    else if (c->nstreams == 0)
      kind = TK_IDLE;
    /* The peer takes none of our bytes (the transport is full) and no
     * handler runs (a running one ends at its own write's send_timeout):
     * send_timeout for the connection, whatever else it waits for. A
     * client's connection waits under the requester's timeouts. */
    if (c->t_waiting &&
        !c->srv->client) { /* (the first stream found running, or a
                            * tunnel its owner keeps open, ends the walk) */
      for (rill_h2_stream_t *st = c->streams; st && !busy; st = st->next)
        busy = !st->closed && (st->handler_running || st->tunnel == RILL_H2_TUNNEL_OPEN);
      if (!busy) kind = TK_SEND;
    }
  }
  int progress = c->sent_progress;
  c->sent_progress = 0;
  if (kind == c->timer_kind && !(kind == TK_SEND && progress)) return;
  c->timer_kind = kind;
  if (kind == TK_NONE) {
    uv_timer_stop(c->timer);
    return;
  }
  unsigned ms = kind == TK_IDLE   ? c->srv->limits.idle_timeout_ms
                : kind == TK_SEND ? c->srv->limits.send_timeout_ms
                                  : c->srv->limits.header_timeout_ms;
  if (kind == TK_SEND && ms == 0) {
    uv_timer_stop(c->timer);
    return;
  }
  uv_timer_start(c->timer, timer_cb, ms, 0);
}

static void timer_close_cb(uv_handle_t *h) {
  free(h);
}

/* ---- life ---- */

static void conn_unref(rill_h2_conn_t *c) {
  if (--c->refs > 0) return;
  free(c->out);
  free(c->segs);
  rill__h2_chunks_free(c->sent);
  free(c);
}

/* The stream objects' end once the connection is gone: bodies and writers
 * told through the pending events. */
static void teardown(rill_h2_conn_t *c) {
  rill_h2_server_t *srv = c->srv;
  if (c->session && c->t && !c->werr) {
    if (!c->goaway_sent) {
      nghttp2_session_terminate_session(c->session, c->goaway_error);
      c->goaway_sent = 1;
    }
    c->in_send = 1;
    nghttp2_session_send(c->session);
    c->in_send = 0;
    write_out(c);
  }
  rill__flush_remove(c->w, &c->fl);
  for (rill_h2_stream_t *st = c->streams; st; st = st->next) {
    if (!st->closed) {
      st->closed = 1;
      c->nstreams--;
      head_done(c, st);
      if (!st->in_eof && st->in_err == 0) st->in_err = RILL_ECLOSED;
      if (st->handler_running && !st->end_sent) rill__h2_pend(st, RILL_H2_P_GONE);
    }
    if (st->q_head) {
      st->q_tail->next = c->sent;
      c->sent = st->q_head;
      st->q_head = st->q_tail = NULL;
      st->queued = 0;
    }
    rill__h2_pend(st, RILL_H2_P_READABLE | RILL_H2_P_DRAINED);
  }
  nghttp2_session_del(c->session);
  c->session = NULL;
  if (c->timer) {
    uv_close((uv_handle_t *)c->timer, timer_close_cb);
    c->timer = NULL;
  }
  rill_stream_t *t = c->t;
  if (t) {
    rill__stream_unbind(&c->tb);
    c->t = NULL;
    if (c->werr)
      t->vt->abort(t);
    else
      t->vt->close(t);
  }
  /* Streams whose handlers still run keep the connection on the worker's
   * list (not holding a graceful stop: done), so that a worker's teardown,
   * which ends tasks without their ends being reported, still frees them. */
  c->obj.done = 1;
  rill__h2_conn_maybe_unlink(c);
  process(c);
  /* Last: the server may go with its last connection. */
  if (srv->on_close) srv->on_close(c);
  conn_unref(c); /* the connection's own reference */
}

/* Once no nghttp2 call is on the stack: closes a connection marked closing,
 * or one that has nothing left to read or write. */
static void after(rill_h2_conn_t *c) {
  if (c->session == NULL || c->tearing || c->in_recv || c->in_send || c->processing)
    return;
  if (!c->closing) {
    int done =
        !nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session);
    /* (a client whose server sent GOAWAY has no use for the connection) */
    if ((c->stopping || c->goaway_received) && c->nstreams == 0 &&
        !nghttp2_session_want_write(c->session))
      done = 1;
    if (!done) return;
    rill__log(c->w, RILL_LOG_DEBUG, "h2: nothing more to read or write: closing");
    c->goaway_sent = 1; /* sent already, or no use */
    c->closing = 1;
  }
  c->tearing = 1; /* nothing below may tear down twice */
  teardown(c);
}

void rill__h2_conn_close(rill_h2_conn_t *c, uint32_t error_code) {
  if (c->session == NULL) return;
  if (!c->closing) {
    c->closing = 1;
    c->goaway_error = error_code;
  }
  c->refs++;
  after(c);
  conn_unref(c);
}

void rill__h2_conn_shutdown(rill_h2_conn_t *c) {
  if (c->session == NULL || c->stopping || c->closing) return;
  c->stopping = 1;
  nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(c->session),
                        NGHTTP2_NO_ERROR, NULL, 0);
  rill__h2_want_send(c);
  c->refs++;
  after(c);
  conn_unref(c);
}

static void obj_shutdown(rill_obj_t *o) {
  rill__h2_conn_shutdown(rill__container_of(o, rill_h2_conn_t, obj));
}

void rill__h2_conn_maybe_unlink(rill_h2_conn_t *c) {
  if (c->unlinked) return;
  for (rill_h2_stream_t *st = c->streams; st; st = st->next)
    if (st->handler_running) return;
  c->unlinked = 1;
  rill__obj_unlink(&c->obj);
}

static void obj_destroy(rill_obj_t *o) {
  rill_h2_conn_t *c = rill__container_of(o, rill_h2_conn_t, obj);
  if (!c->werr) c->werr = RILL_ECLOSED; /* a teardown: drop what is queued */
  c->refs++;
  rill__h2_conn_close(c, NGHTTP2_NO_ERROR);
  /* The worker goes: its tasks end unreported. Their streams go now; the
   * layer above is told (abandon) so that it forgets them. */
  rill_h2_stream_t *st = c->streams, *next;
  for (; st; st = next) {
    next = st->next;
    if (!st->handler_running) continue;
    st->handler_running = 0;
    if (st->abandon) st->abandon(st);
    rill__h2_stream_maybe_free(st);
  }
  rill__h2_conn_maybe_unlink(c);
  conn_unref(c);
}

rill_h2_conn_t *rill__h2_conn_new(rill_h2_server_t *srv, rill_stream_t *t) {
  const rill_h2_limits_t *l = &srv->limits;
  nghttp2_session_callbacks *cbs = callbacks(srv->client != 0);
  rill_h2_conn_t *c = calloc(1, sizeof(*c));
  if (c == NULL || cbs == NULL) {
    free(c);
    return NULL;
  }
  nghttp2_option *opt;
  if (nghttp2_option_new(&opt)) {
    free(c);
    return NULL;
  }
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_continuations(opt, l->max_continuations);
  nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
  int rv = srv->client ? nghttp2_session_client_new2(&c->session, cbs, c, opt)
                       : nghttp2_session_server_new2(&c->session, cbs, c, opt);
  nghttp2_option_del(opt);
  if (rv) {
    free(c);
    return NULL;
  }
  c->timer = malloc(sizeof(*c->timer));
  if (c->timer == NULL) {
    nghttp2_session_del(c->session);
    free(c);
    return NULL;
  }
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, l->max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, l->stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)l->max_header_bytes},
      {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, l->header_table_size},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1}, /* RFC 8441: websockets */
  };
  nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
  /* A client's streams are bounded by their own windows: the connection's
   * (65535 bytes, a round trip each) need not hold them back. */
  if (srv->client)
    nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 1 << 24);
  uv_timer_init(srv->w->loop, c->timer);
  c->timer->data = c;
  c->srv = srv;
  c->w = srv->w;
  c->t = t;
  c->refs = 1;
  c->fl.flush = flush_cb;
  c->fl.level = RILL_FLUSH_HTTP;
  c->reset_window_start = uv_now(c->w->loop);
  rill__stream_bind(t, &c->tb, &t_ops);
  rill__obj_link(c->w, &c->obj, obj_destroy);
  c->obj.kind = RILL_OBJ_CONN;
  c->obj.shutdown = obj_shutdown;
  /* Read from the flush (with the SETTINGS going out), not from here: the
   * caller gets c before anything can close it. */
  rill__h2_want_send(c);
  return c;
}

/* ---- the HTTP/1.1 Upgrade to h2c (RFC 7540 3.2) ---- */

static int b64url_value(unsigned char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '-') return 62;
  if (ch == '_') return 63;
  return -1;
}

int rill__h2_upgrade_settings(const char *v, size_t n, uint8_t *out, size_t cap) {
  /* The padding is optional in base64url (RFC 7540 3.2.1 drops it). */
  while (n > 0 && v[n - 1] == '=')
    n--;
  if (n % 4 == 1) return UV_EINVAL;
  size_t len = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int x = b64url_value((unsigned char)v[i]);
    if (x < 0) return UV_EINVAL;
    acc = (acc << 6) | (uint32_t)x;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (len == cap) return UV_EINVAL;
      out[len++] = (uint8_t)(acc >> bits);
    }
  }
  if (acc & ((1u << bits) - 1)) return UV_EINVAL; /* non-zero bits left over */
  /* nghttp2 takes 32 entries at most in a SETTINGS (its max_settings). */
  if (len % 6 != 0 || len / 6 > 32) return UV_EINVAL;
  /* The values nghttp2 would refuse (nghttp2_session_upgrade2). */
  for (size_t i = 0; i < len; i += 6) {
    uint16_t id = (uint16_t)(out[i] << 8 | out[i + 1]);
    uint32_t val = (uint32_t)out[i + 2] << 24 | (uint32_t)out[i + 3] << 16 |
                   (uint32_t)out[i + 4] << 8 | out[i + 5];
    if ((id == NGHTTP2_SETTINGS_ENABLE_PUSH && val > 1) ||
        (id == NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE && val > NGHTTP2_MAX_WINDOW_SIZE) ||
        (id == NGHTTP2_SETTINGS_MAX_FRAME_SIZE &&
         (val < (1 << 14) || val > ((1 << 24) - 1))) ||
        (id == NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL && val > 1))
      return UV_EINVAL;
  }
  return (int)len;
}

/* A field of an upgraded request's head, into the stream's arena as
 * header_cb keeps one (the name in lower case). */
static int field_put(rill_h2_stream_t *st, const char *name, size_t nlen,
                     const char *value, size_t vlen) {
  if (st->nh == st->hcap) {
    size_t cap = st->hcap ? st->hcap * 2 : 16;
    size_t *h = realloc(st->hoff, cap * 4 * sizeof(size_t));
    if (h == NULL) return UV_ENOMEM;
    st->hoff = h;
    st->hcap = cap;
  }
  size_t *e = &st->hoff[st->nh * 4];
  if (arena_put(st, (const uint8_t *)name, nlen, &e[0]) ||
      arena_put(st, (const uint8_t *)value, vlen, &e[2]))
    return UV_ENOMEM;
  for (size_t i = 0; i < nlen; i++) {
    char *ch = &st->arena[e[0] + i];
    if (*ch >= 'A' && *ch <= 'Z') *ch = (char)(*ch + ('a' - 'A'));
  }
  e[1] = nlen;
  e[3] = vlen;
  st->nh++;
  return 0;
}

/* Opens stream 1 as the upgraded request, half-closed (remote), and marks
 * it for its handler as a HEADERS frame with END_STREAM would. */
static int upgrade_stream(rill_h2_conn_t *c, const uint8_t *settings, size_t slen,
                          const rill_h2_head_t *h) {
  int rv = nghttp2_session_upgrade2(c->session, settings, slen, h->is_head, NULL);
  if (rv) {
    rill__log(c->w, RILL_LOG_DEBUG, "h2: upgrade: %s", nghttp2_strerror(rv));
    return rv == NGHTTP2_ERR_NOMEM ? UV_ENOMEM : UV_EINVAL;
  }
  /* nghttp2 took the payload as a SETTINGS frame received: the client's
   * preface is still to come, under the header timeout. */
  c->frames_in = 0;
  rill_h2_stream_t *st = calloc(1, sizeof(*st));
  if (st == NULL) return UV_ENOMEM;
  rill__h2_stream_init(st, c, 1);
  nghttp2_session_set_stream_user_data(c->session, 1, st);
  c->nstreams++;
  c->heads++;
  int r = field_put(st, ":method", 7, h->method, h->method_len);
  if (r == 0) r = field_put(st, ":path", 5, h->path, h->path_len);
  if (r == 0) r = field_put(st, ":scheme", 7, h->scheme, h->scheme_len);
  if (r == 0) r = field_put(st, ":authority", 10, h->authority, h->authority_len);
  for (size_t i = 0; r == 0 && i < h->nhdrs; i++)
    r = field_put(st, h->hdrs[i].name, h->hdrs[i].nlen, h->hdrs[i].value,
                  h->hdrs[i].vlen);
  if (r == 0) r = head_finish(st);
  if (r) return r; /* the stream object goes with the connection */
  st->in_eof = 1;
  st->dispatched = 1;
  st->handler_running = 1;
  rill__h2_pend(st, RILL_H2_P_REQUEST | RILL_H2_P_READABLE);
  return 0;
}

rill_h2_conn_t *rill__h2_conn_new_upgraded(rill_h2_server_t *srv, rill_stream_t *t,
                                           const uint8_t *settings, size_t slen,
                                           const rill_h2_head_t *head) {
  rill_h2_conn_t *c = rill__h2_conn_new(srv, t);
  if (c == NULL) return NULL;
  /* Our SETTINGS were submitted first: they lead the output. */
  int r = upgrade_stream(c, settings, slen, head);
  if (r != 0 && !c->closing) {
    /* Closed from the flush, as the caller must get c first. */
    c->goaway_error = r == UV_EINVAL ? NGHTTP2_PROTOCOL_ERROR : NGHTTP2_INTERNAL_ERROR;
    c->closing = 1;
  }
  return c;
}
