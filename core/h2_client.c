/* The client role of an HTTP/2 connection (h2_conn.h): a request is a
 * stream whose outgoing head and body use the server role's queue (the
 * request body goes by reference, as a response's does), and whose received
 * head and body are the response. The connection's I/O, flow control and
 * teardown are h2_conn.c's; only the callbacks that read heads differ. */
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "h2_conn.h"

/* ---- the request ---- */

static int dropped(const rill_hdr_t *x) {
  static const char *const names[] = {
      "connection", "keep-alive", "transfer-encoding", "upgrade",
      "host",       "te",         "proxy-connection",  NULL};
  for (size_t i = 0; names[i]; i++)
    if (rill__http_name_is(x->name, x->nlen, names[i])) return 1;
  return 0;
}

/* Packs the request head for nghttp2: the pseudo-headers, then the fields
 * (names in lower case), in one allocation. */
static int pack_request(const rill_h2_head_t *h, nghttp2_nv **out, size_t *nout) {
  size_t bytes = 32, n = 5;
  for (size_t i = 0; i < h->nhdrs; i++) {
    const rill_hdr_t *x = &h->hdrs[i];
    if (x->nlen == 0) return UV_EINVAL;
    for (size_t j = 0; j < x->nlen; j++)
      if (!rill__http_tchar((unsigned char)x->name[j])) return UV_EINVAL;
    for (size_t j = 0; j < x->vlen; j++) {
      unsigned char ch = (unsigned char)x->value[j];
      if (ch == '\r' || ch == '\n' || ch == 0) return UV_EINVAL;
    }
    bytes += x->nlen;
    n++;
  }
  if (h->method_len == 0 || h->path_len == 0 || h->scheme_len == 0) return UV_EINVAL;
  nghttp2_nv *nv = malloc(n * sizeof(*nv) + bytes);
  if (nv == NULL) return UV_ENOMEM;
  char *b = (char *)(nv + n);
  size_t k = 0;
#define NV(name, v, vl)                                                                  \
  nv[k++] = (nghttp2_nv){(uint8_t *)(name), (uint8_t *)(v), sizeof(name) - 1, (vl),      \
                         NGHTTP2_NV_FLAG_NONE}
  NV(":method", h->method, h->method_len);
  NV(":scheme", h->scheme, h->scheme_len);
  if (h->authority_len > 0) NV(":authority", h->authority, h->authority_len);
  NV(":path", h->path, h->path_len);
  int has_len = 0;
  for (size_t i = 0; i < h->nhdrs; i++) {
    const rill_hdr_t *x = &h->hdrs[i];
    if (dropped(x)) continue;
    if (rill__http_name_is(x->name, x->nlen, "content-length")) has_len = 1;
    char *nm = b;
    for (size_t j = 0; j < x->nlen; j++) {
      char ch = x->name[j];
      nm[j] = ch >= 'A' && ch <= 'Z' ? (char)(ch | 0x20) : ch;
    }
    b += x->nlen;
    nv[k++] = (nghttp2_nv){(uint8_t *)nm, (uint8_t *)x->value, x->nlen, x->vlen,
                           NGHTTP2_NV_FLAG_NONE};
  }
  if (h->content_length >= 0 && !has_len) {
    int len = snprintf(b, 24, "%lld", (long long)h->content_length);
    NV("content-length", b, (size_t)len);
  }
#undef NV
  *out = nv;
  *nout = k;
  return 0;
}

int rill__h2_request(rill_h2_conn_t *c, const rill_h2_head_t *req, int with_body,
                     rill_h2_stream_t **out) {
  assert(c->srv->client);
  if (c->session == NULL || c->closing || c->stopping || c->goaway_received)
    return RILL_ECLOSED;
  nghttp2_nv *nv;
  size_t n;
  int r = pack_request(req, &nv, &n);
  if (r) return r;
  rill_h2_stream_t *st = calloc(1, sizeof(*st));
  if (st == NULL) {
    free(nv);
    return UV_ENOMEM;
  }
  rill__h2_stream_init(st, c, 0);
  int32_t id = rill__h2_submit_request(st, nv, n, with_body); /* nghttp2 copied nv */
  free(nv);
  if (id < 0) {
    st->closed = 1;
    rill__h2_stream_free(st);
    return id == NGHTTP2_ERR_NOMEM ? UV_ENOMEM : RILL_ECLOSED;
  }
  st->id = id;
  st->dispatched = 1;      /* response bytes are kept for the reader */
  st->handler_running = 1; /* the requester holds it */
  st->head.content_length = -1;
  st->head.method = st->head.path = st->head.scheme = st->head.authority = "";
  if (with_body) {
    st->resp = RILL_H2_RESP_STREAMING;
  } else {
    st->resp = RILL_H2_RESP_DONE;
    st->q_eof = 1;
  }
  c->nstreams++;
  rill__h2_want_send(c);
  *out = st;
  return 0;
}

void rill__h2_request_done(rill_h2_stream_t *st) {
  assert(st->handler_running);
  st->handler_running = 0;
  st->data = NULL;
  st->head_told = 1; /* nobody listens any more */
  rill_h2_conn_t *c = st->c;
  if (!st->closed && c->session && !c->closing) {
    /* A response not read to its end, or a request body not sent whole:
     * neither side needs the rest. */
    nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    rill__h2_want_send(c);
  }
  rill__h2_stream_maybe_free(st);
}

unsigned rill__h2_capacity(rill_h2_conn_t *c) {
  if (c->session == NULL || c->closing || c->stopping || c->goaway_received) return 0;
  uint32_t max = nghttp2_session_get_remote_settings(
      c->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  if (!nghttp2_session_check_request_allowed(c->session)) return 0;
  return max > c->nstreams ? max - c->nstreams : 0;
}

/* ---- the response head ---- */

/* A field of a response head (1xx heads included; trailers are not kept),
 * within the limits: past them the stream is reset (bad_head). */
static int header_cb(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user) {
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  rill_h2_stream_t *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
  if (st == NULL || st->got_head || st->bad_head) return 0;
  st->hbytes += namelen + valuelen + 32;
  return rill__h2_field_put(st, name, namelen, value, valuelen);
}

/* A head is whole: a 1xx is dropped (returns 1); the final one becomes
 * st->status and st->head (returns 0). nghttp2 checked :status and
 * content-length. */
static int head_done(rill_h2_stream_t *st) {
  int status = 0;
  rill_hdr_t *hd = malloc((st->nh ? st->nh : 1) * sizeof(*hd));
  if (hd == NULL) return UV_ENOMEM;
  size_t n = 0;
  for (size_t i = 0; i < st->nh; i++) {
    const size_t *e = &st->hoff[i * 4];
    const char *nm = st->arena + e[0], *v = st->arena + e[2];
    if (nm[0] == ':') {
      if (e[1] == 7 && memcmp(nm, ":status", 7) == 0 && e[3] == 3)
        status = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
      continue;
    }
    if (e[1] == 14 && memcmp(nm, "content-length", 14) == 0) {
      int64_t x = 0;
      for (size_t j = 0; j < e[3] && j < 19; j++)
        x = x * 10 + (v[j] - '0');
      st->head.content_length = x;
    }
    hd[n++] = (rill_hdr_t){nm, e[1], v, e[3]};
  }
  if (status < 200) { /* interim: the final head follows */
    free(hd);
    st->nh = st->alen = st->hbytes = 0;
    st->head.content_length = -1;
    return 1;
  }
  st->status = status;
  st->head.hdrs = hd;
  st->head.nhdrs = n;
  st->got_head = 1;
  return 0;
}

static int frame_recv_cb(nghttp2_session *s, const nghttp2_frame *frame, void *user) {
  rill_h2_conn_t *c = user;
  c->frames_in++;
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    /* Streams past its last id are closed by nghttp2 (REFUSED_STREAM);
     * the ones below finish. */
    c->goaway_received = 1;
    c->goaway_received_error = frame->goaway.error_code;
    return 0;
  }
  rill_h2_stream_t *st =
      frame->hd.stream_id ? nghttp2_session_get_stream_user_data(s, frame->hd.stream_id)
                          : NULL;
  if (st == NULL) return 0;
  switch (frame->hd.type) {
  case NGHTTP2_HEADERS:
    if (!st->got_head && st->bad_head) {
      rill__log(c->w, RILL_LOG_DEBUG, "h2: a response head past the limits");
      nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
      st->in_err = RILL_EPROTO;
      return 0;
    }
    if (!st->got_head) {
      int r = head_done(st);
      if (r < 0) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      if (r == 0) rill__h2_pend(st, RILL_H2_P_REQUEST);
    }
    break;
  case NGHTTP2_DATA:
    break;
  case NGHTTP2_RST_STREAM:
    st->reset_by_peer = 1;
    return 0;
  default:
    return 0;
  }
  /* END_STREAM on a head, on trailers or on DATA */
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
    st->in_eof = 1;
    rill__h2_pend(st, RILL_H2_P_READABLE);
  }
  return 0;
}

/* A request head that could not go (the server sent GOAWAY first): nghttp2
 * never opened its stream, so it will not close it either. */
static int not_send_cb(nghttp2_session *s, const nghttp2_frame *frame, int error,
                       void *user) {
  rill_h2_conn_t *c = user;
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  for (rill_h2_stream_t *st = c->streams; st; st = st->next) {
    if (st->id != frame->hd.stream_id || st->closed) continue;
    st->closed = 1;
    st->close_error = NGHTTP2_REFUSED_STREAM;
    c->nstreams--;
    if (!st->in_eof && st->in_err == 0) st->in_err = RILL_ECLOSED;
    rill__h2_chunks_free(st->q_head); /* no DATA of it went */
    st->q_head = st->q_tail = NULL;
    st->queued = 0;
    rill__h2_pend(st, RILL_H2_P_READABLE | RILL_H2_P_DRAINED);
    break;
  }
  return 0;
}

void rill__h2_client_callbacks(nghttp2_session_callbacks *cbs) {
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, NULL);
  nghttp2_session_callbacks_set_on_header_callback(cbs, header_cb);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, frame_recv_cb);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, not_send_cb);
}
