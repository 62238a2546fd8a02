/* A file as part of a response body, by sendfile(2). See http_conn.h.
 *
 * Why this shape. The response head (and any body bytes before the file) is
 * gathered in the transport's buffer: it must leave before the file's bytes,
 * so the transport flushes and reports when its queue is empty
 * (vt->sendfile_fd). sendfile itself runs in libuv's thread pool (file.c),
 * since a file not in the page cache would hold the loop while the disk
 * reads; the socket is non-blocking, so a pool thread never waits for the
 * client: it sends what the socket buffer takes and comes back. Then, when
 * the socket is full, the sender waits on the loop for it to be writable
 * (a uv_poll on a duplicate of the socket's descriptor: libuv keeps one
 * watcher per descriptor, and the socket's own belongs to the stream).
 *
 * The duplicate is also what the pool writes to, so that a connection
 * closed meanwhile (the client left, a deadline) never has its descriptor
 * number reused under a sendfile still running: the duplicate is closed only
 * after the last operation using it is done.
 *
 * Each rill__http_sendfile call makes progress (one or more bytes) and calls
 * back once (on_file); the caller calls again for the rest. So each wait of
 * the handler's has the connection's send_timeout as its deadline, as a
 * write's does, and a slow reader costs no memory: the file never passes
 * through a buffer of ours. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "file.h"
#include "http_conn.h"

#define SEND_MAX (8u << 20) /* the most one pool operation sends */

struct rill_http_file_s {
  rill_http_conn_t *c;
  int sock;   /* a duplicate of the socket, or -1 */
  uv_poll_t poll;
  unsigned poll_init : 1, polling : 1, waiting_empty : 1, full : 1, busy : 1;
  rill_fsop_t *op; /* in the pool */
  rill_file_t *f;  /* the file of the call in progress */
  int64_t off;
  uint64_t len;    /* what the call may send */
};

static void step(rill_http_file_t *sf);

/* Ends the call in progress with result (bytes sent, or an error). */
static void call_done(rill_http_file_t *sf, int64_t result) {
  rill_http_conn_t *c = sf->c;
  sf->busy = 0;
  rill__file_unref(sf->f);
  sf->f = NULL;
  if (result < 0 && c->werr == 0) c->werr = (int)result; /* cut: not whole */
  if (c->srv->on_file) c->srv->on_file(c, result);
}

static void poll_cb(uv_poll_t *p, int status, int events) {
  rill_http_file_t *sf = p->data;
  uv_poll_stop(p);
  sf->polling = 0;
  /* An error here shows in the next sendfile's own (EPIPE, ECONNRESET). */
  (void)status;
  (void)events;
  step(sf);
}

static void sent_cb(rill_fsop_t *op) {
  rill_http_file_t *sf = op->data;
  sf->op = NULL;
  size_t sent = op->sent;
  int r = op->result;
  rill__fsop_free(op);
  if (sent > 0) {
    rill__http_piece_sent(sf->c, sent);
    /* Less than asked: the socket is full (or the file ended, which the
     * next call finds). */
    sf->full = sent < sf->len;
    call_done(sf, (int64_t)sent);
    return;
  }
  if (r == UV_EAGAIN) {
    sf->full = 1;
    step(sf);
  } else {
    call_done(sf, r == 0 ? RILL_EFILE : r);
  }
}

/* Goes on with the call in progress: wait for the queue to empty or for the
 * socket to be writable, or send. */
static void step(rill_http_file_t *sf) {
  rill_http_conn_t *c = sf->c;
  if (c->t == NULL) {
    call_done(sf, c->werr ? c->werr : RILL_ECLOSED);
    return;
  }
  int fd = c->t->vt->sendfile_fd(c->t);
  if (fd == RILL_EAGAIN) {
    sf->waiting_empty = 1; /* rill__http_file_drained goes on */
    return;
  }
  if (fd < 0) {
    call_done(sf, fd);
    return;
  }
  if (sf->sock < 0 && (sf->sock = fcntl(fd, F_DUPFD_CLOEXEC, 3)) < 0) {
    call_done(sf, -errno);
    return;
  }
  if (sf->full) {
    sf->full = 0;
    int r = 0;
    if (!sf->poll_init) {
      r = uv_poll_init_socket(c->w->loop, &sf->poll, sf->sock);
      if (r == 0) {
        sf->poll_init = 1;
        sf->poll.data = sf;
      }
    }
    if (r == 0) r = uv_poll_start(&sf->poll, UV_WRITABLE, poll_cb);
    if (r < 0) {
      call_done(sf, r);
      return;
    }
    sf->polling = 1;
    return;
  }
  size_t len = sf->len > SEND_MAX ? SEND_MAX : (size_t)sf->len;
  int r = rill__fs_sendfile(c->w, sf->sock, sf->f, sf->off, len, sent_cb, sf, &sf->op);
  if (r < 0) call_done(sf, r);
}

int rill__http_sendfile(rill_http_conn_t *c, int status, const rill_hdr_t *h, size_t nh,
                        rill_file_t *f, int64_t off, uint64_t len) {
  /* The hook for a body transform (compression): a response whose bytes
   * must pass through the write path returns UV_ENOTSUP here, before the
   * head is sent, and its caller writes the file through rill__http_write. */
  if (c->t == NULL) return c->werr ? c->werr : RILL_ECLOSED;
  if (c->t->vt->sendfile_fd == NULL || c->zformat) return UV_ENOTSUP;
  if (len == 0 || off < 0) return UV_EINVAL;
  rill_http_file_t *sf = c->file;
  if (sf && sf->busy) return UV_EBUSY;
  int r = rill__http_piece_begin(c, status, h, nh, len);
  if (r) return r;
  if (sf == NULL) {
    if ((sf = calloc(1, sizeof(*sf))) == NULL) return UV_ENOMEM;
    sf->c = c;
    sf->sock = -1;
    c->file = sf;
  }
  sf->busy = 1;
  sf->f = rill__file_ref(f);
  sf->off = off;
  sf->len = len;
  step(sf);
  return 0;
}

void rill__http_file_drained(rill_http_conn_t *c, int status) {
  rill_http_file_t *sf = c->file;
  sf->waiting_empty = 0;
  if (status < 0)
    call_done(sf, status);
  else
    step(sf);
}

int rill__http_file_waiting(const rill_http_conn_t *c) {
  return c->file != NULL && c->file->waiting_empty;
}

static void poll_closed(uv_handle_t *h) {
  rill_http_file_t *sf = h->data;
  if (sf->sock >= 0) close(sf->sock);
  free(sf);
}

void rill__http_file_free(rill_http_conn_t *c) {
  rill_http_file_t *sf = c->file;
  if (sf == NULL) return;
  c->file = NULL;
  if (sf->busy && c->werr == 0) c->werr = RILL_ECLOSED; /* cut short */
  rill__file_unref(sf->f);
  if (sf->op) {
    /* The pool still sends to the duplicate: it closes it when done. */
    sf->op->close_fd = sf->sock;
    sf->sock = -1;
    rill__fsop_abandon(sf->op);
  }
  if (sf->poll_init) {
    uv_close((uv_handle_t *)&sf->poll, poll_closed);
    return;
  }
  if (sf->sock >= 0) close(sf->sock);
  free(sf);
}
