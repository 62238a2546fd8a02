/* libuv streams (TCP sockets, pipes) as rill streams. See uvstream.h.
 *
 * Reading is pulled: the socket is read only after fill() was called. Once a
 * read delivered what was asked, reading stays on until the next read finds
 * nobody asking; then it stops (uv_read_stop). So at most one buffer is read
 * ahead of the reader, and a keep-alive connection does not pay an epoll_ctl
 * per request. The input buffer comes from the worker's pool and goes back to
 * it whenever it is empty.
 *
 * Writing is gathered: a write is copied into the output buffer (from the
 * worker's pool, back to it once sent) and the stream joins the worker's
 * flush list, so the writes a task makes while it runs leave together, in
 * one syscall, when it stops (see worker.h). A write that would pass one
 * buffer sends what is gathered and itself at once, in one sendmsg, by
 * reference. Sending is optimistic: sent at once, and what the kernel did
 * not take is queued (the output buffer itself, or a copy) and sent when
 * the socket is writable. A writer is told to wait (RILL_EAGAIN) while more
 * than RILL_WRITE_HIGH bytes are queued.
 *
 * No write raises SIGPIPE. rill is a guest in its host's process, and a
 * host may keep SIGPIPE at its default (death) on the thread that runs the
 * loop, so the write path is ours rather than libuv's (whose writev(2)
 * raises it when the peer has gone): every write is a sendmsg(2) with
 * MSG_NOSIGNAL (sockets: TCP, unix, and libuv's process pipes, which are
 * socketpairs), or, on a descriptor that is not a socket (a pipe(2)), a
 * writev(2) with SIGPIPE blocked on this thread for that call only (see
 * nosigpipe.h). Nothing changes the process's disposition. Writability of
 * a socket with a queue is watched by a uv_poll on a duplicate of its
 * descriptor (libuv keeps one watcher per descriptor, and the socket's own
 * reads through it), made the first time a write is queued and closed with
 * the stream. A shutdown (our FIN) waits until the queue is sent: libuv's
 * uv_shutdown only waits for libuv's own queue, which is now always empty.
 *
 * Closing goes through one sequence of phases, each entered once:
 *   OPEN → FLUSH (close(): queued bytes go out, then our FIN)
 *        → LINGER (what the peer still sends is read and dropped until it
 *                  closes too, so that a response is not lost to a reset)
 *        → FINAL (uv_close on the handle, the linger timer and the
 *                 writability poll: each handle is closed exactly once, here;
 *                 the memory goes when all are).
 * abort() and a worker's teardown go to FINAL from any phase. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nosigpipe.h"
#include "uvstream.h"

#define SEND_IOV 64 /* the most queued writes one sendmsg takes */

#define LINGER_MS 5000         /* the longest a close waits to flush and linger */
#define LINGER_BYTES (1 << 20) /* the most a close reads and drops */
#define BUF_MAX (1 << 20)      /* the largest an input buffer grows */

enum { P_OPEN, P_FLUSH, P_LINGER, P_FINAL };

struct rill_uvstream_s {
  rill_stream_t base;
  rill_obj_t obj;
  union {
    uv_handle_t handle;
    uv_stream_t stream;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } h;
  struct aux_s *aux;    /* for shutting down and closing, made when needed */
  struct outq_s *oq;    /* the queue and its writability watch, made when needed */
  struct proxied_s *px; /* addresses from a PROXY header, or NULL */
  char *buf;
  uint32_t cap, r, w; /* unread bytes are buf[r..w); cap <= BUF_MAX */
  uint32_t olen;      /* gathered writes: obuf[0..olen) */
  char *obuf;         /* RILL_BUF_SIZE bytes, while it holds any */
  rill_flush_t fl;
  size_t queued; /* bytes in the queue (oq) not yet sent */
  int rerr;      /* sticky: RILL_EOF or a read error */
  int werr;      /* sticky write error */
  uint8_t phase;
  uint8_t closes; /* handles whose close callback is still to come */
  unsigned want : 1, reading : 1, shut_sent : 1, shut_done : 1, drain_wait : 1,
      timer_init : 1, released : 1, empty_wait : 1, shut_wait : 1;
  unsigned char notsock; /* the descriptor is not a socket (nosigpipe.h) */
  void (*on_release)(void *), (*on_free)(void *);
  void *owner_arg;
};

/* What only a stream that shuts down or closes needs: kept apart so that an
 * idle connection does not carry it. */
struct aux_s {
  uv_timer_t linger;
  uv_shutdown_t sreq;
  size_t lingered; /* bytes read and dropped while lingering */
};

/* The addresses a load balancer's PROXY header gave (proxy_proto.h). */
struct proxied_s {
  struct sockaddr_storage src, dst;
};

/* Bytes the kernel did not take, waiting for the socket to be writable:
 * p[0..left) is still to send. */
typedef struct wreq_s {
  struct wreq_s *next;
  char *p;
  size_t left;
  char *pooled; /* an output buffer handed over, back to the pool when sent */
  char data[];
} wreq_t;

/* What only a stream whose writes had to wait needs. The duplicate is what
 * the poll watches; it is closed in the poll's close callback, once. */
struct outq_s {
  uv_poll_t poll;
  int dup;              /* the socket's descriptor, duplicated, or -1 */
  unsigned polling : 1; /* the poll is started */
  wreq_t *head, **tail; /* FIFO */
};

#define U(s) rill__container_of((s), rill_uvstream_t, base)

static void final_close(rill_uvstream_t *u);

static struct aux_s *aux(rill_uvstream_t *u) {
  if (u->aux == NULL) u->aux = calloc(1, sizeof(*u->aux));
  return u->aux;
}

static void release_buf(rill_uvstream_t *u) {
  if (u->buf && u->cap == RILL_BUF_SIZE)
    rill__buf_put(u->base.w, u->buf);
  else
    free(u->buf);
  u->buf = NULL;
  u->cap = u->r = u->w = 0;
}

static int uvs_peek(rill_stream_t *s, const char **p, size_t *n) {
  rill_uvstream_t *u = U(s);
  if (u->r < u->w) {
    *p = u->buf + u->r;
    *n = u->w - u->r;
    return 0;
  }
  *p = NULL;
  *n = 0;
  return u->rerr;
}

static void uvs_consume(rill_stream_t *s, size_t n) {
  rill_uvstream_t *u = U(s);
  assert(n <= u->w - u->r);
  u->r += n;
  if (u->r >= u->w) release_buf(u);
}

/* Makes room for a read: a buffer from the pool, the unread bytes moved to
 * its front, or a larger buffer while a reader wants more than fits. A
 * full buffer that cannot grow gets a read of 0 bytes (UV_ENOBUFS). */
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  rill_uvstream_t *u = h->data;
  if (u->buf == NULL) {
    u->buf = rill__buf_get(u->base.w);
    u->cap = u->buf ? RILL_BUF_SIZE : 0;
    u->r = u->w = 0;
  } else if (u->r > 0 && u->cap - u->w < 4096) {
    /* Pointers from peek() are only good until the next fill(). */
    memmove(u->buf, u->buf + u->r, u->w - u->r);
    u->w -= u->r;
    u->r = 0;
  }
  if (u->buf && u->w == u->cap && u->want && u->cap < BUF_MAX) {
    char *nb = malloc(u->cap * 2);
    if (nb) {
      memcpy(nb, u->buf, u->w);
      char *old = u->buf;
      size_t oldcap = u->cap;
      u->buf = nb;
      u->cap *= 2;
      if (oldcap == RILL_BUF_SIZE)
        rill__buf_put(u->base.w, old);
      else
        free(old);
    }
  }
  *out = uv_buf_init(u->buf ? u->buf + u->w : NULL, (unsigned)(u->cap - u->w));
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  rill_uvstream_t *u = st->data;
  if (nread == 0) return;
  if (nread > 0) {
    u->w += (uint32_t)nread;
    RILL_COUNT(u->base.w->m->bytes_in, (uint64_t)nread);
  } else {
    /* The end, an error, or UV_ENOBUFS: no buffer (out of memory) or a full
     * one a reader still wants more than. Sticky: the reader is told now,
     * and any later fill() fails at once. */
    u->rerr = (int)nread;
    if (u->r >= u->w) release_buf(u);
  }
  if (!u->want || nread < 0) {
    uv_read_stop(st);
    u->reading = 0;
  }
  if (u->want) {
    u->want = 0;
    rill__stream_readable(&u->base, nread < 0 ? (int)nread : 0);
  }
}

static int uvs_fill(rill_stream_t *s) {
  rill_uvstream_t *u = U(s);
  if (u->rerr) return u->rerr;
  if (u->phase != P_OPEN) return RILL_ECLOSED;
  if (u->buf && u->r == 0 && u->w == u->cap && u->cap >= BUF_MAX) {
    /* Full, and the reader asks for more than the most we hold. */
    u->rerr = UV_ENOBUFS;
    return u->rerr;
  }
  u->want = 1;
  if (!u->reading) {
    int r = uv_read_start(&u->h.stream, alloc_cb, read_cb);
    if (r) {
      u->want = 0;
      u->rerr = r;
      return r;
    }
    u->reading = 1;
  }
  return 0;
}

/* ---- sending: no write raises SIGPIPE ---- */

/* Sends as much of bufs as the kernel takes now, in one call, never
 * raising SIGPIPE. Returns the bytes sent (0 when the socket is full) or an
 * error (UV_EPIPE, UV_ECONNRESET, ...). */
static ssize_t sock_send(rill_uvstream_t *u, const uv_buf_t *bufs, unsigned nbufs) {
  uv_os_fd_t fd;
  int r = uv_fileno(&u->h.handle, &fd);
  if (r) return r;
  return rill__writev_nosigpipe(fd, bufs, nbufs, MSG_DONTWAIT, &u->notsock);
}

static void free_wreq(rill_uvstream_t *u, wreq_t *wr) {
  rill__buf_put(u->base.w, wr->pooled);
  free(wr);
}

/* Drops what is queued (the stream failed or is closing). */
static void drop_queue(rill_uvstream_t *u) {
  struct outq_s *q = u->oq;
  if (q == NULL) return;
  while (q->head) {
    wreq_t *wr = q->head;
    q->head = wr->next;
    free_wreq(u, wr);
  }
  q->tail = &q->head;
  u->queued = 0;
}

static void writable_cb(uv_poll_t *p, int status, int events);

/* Watches for the socket to be writable: a poll on a duplicate of its
 * descriptor, made the first time. Returns 0 or an error. */
static int watch_writable(rill_uvstream_t *u) {
  struct outq_s *q = u->oq;
  if (q->polling) return 0;
  if (q->dup < 0) {
    uv_os_fd_t fd;
    int r = uv_fileno(&u->h.handle, &fd);
    if (r) return r;
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (d < 0) return -errno;
    r = uv_poll_init_socket(u->base.w->loop, &q->poll, d);
    if (r) {
      close(d);
      return r;
    }
    q->dup = d;
    q->poll.data = u;
  }
  int r = uv_poll_start(&q->poll, UV_WRITABLE, writable_cb);
  if (r == 0) q->polling = 1;
  return r;
}

static void shut_now(rill_uvstream_t *u);

/* The queue was sent, or dropped on an error: a shutdown that waited for it
 * goes now, and a writer that waited is told. An empty queue keeps its
 * poll until the next writable event finds it still empty (writable_cb):
 * a writer that streams refills it before then, and each stop and start of
 * a poll costs epoll_ctl calls. */
static void queue_done(rill_uvstream_t *u) {
  if (u->werr && u->oq->polling) {
    uv_poll_stop(&u->oq->poll);
    u->oq->polling = 0;
  }
  if (u->werr && u->phase == P_FLUSH) {
    final_close(u); /* closing, and the peer has gone: no FIN, no lingering */
    return;
  }
  if (u->queued == 0 && u->shut_wait) shut_now(u);
  if (u->drain_wait && u->phase == P_OPEN && (u->queued <= RILL_WRITE_LOW || u->werr)) {
    u->drain_wait = 0;
    u->empty_wait = u->empty_wait && u->queued > 0 && !u->werr;
    rill__stream_drained(&u->base, u->werr);
  } else if (u->empty_wait && u->phase == P_OPEN && (u->queued == 0 || u->werr)) {
    u->empty_wait = 0;
    rill__stream_drained(&u->base, u->werr);
  }
}

/* Sends what is queued, SEND_IOV writes per call, until it is all sent or
 * the socket is full. Returns 0 or the write error. */
static int send_queued(rill_uvstream_t *u) {
  struct outq_s *q = u->oq;
  while (q->head) {
    uv_buf_t v[SEND_IOV];
    unsigned n = 0;
    size_t want = 0;
    for (wreq_t *wr = q->head; wr && n < SEND_IOV; wr = wr->next) {
      v[n++] = uv_buf_init(wr->p, (unsigned)wr->left);
      want += wr->left;
    }
    ssize_t sent = sock_send(u, v, n);
    if (sent < 0) return (int)sent;
    u->queued -= (size_t)sent;
    size_t left = (size_t)sent;
    while (q->head && left >= q->head->left) {
      wreq_t *wr = q->head;
      left -= wr->left;
      q->head = wr->next;
      free_wreq(u, wr);
    }
    if (q->head == NULL) q->tail = &q->head;
    if (left) {
      q->head->p += left;
      q->head->left -= left;
    }
    if ((size_t)sent < want) break; /* full */
  }
  return 0;
}

/* The socket is writable (or failed: status < 0, which the send itself
 * names, EPIPE or ECONNRESET). */
static void writable_cb(uv_poll_t *p, int status, int events) {
  rill_uvstream_t *u = p->data;
  (void)events;
  if (status < 0) u->oq->polling = 0; /* libuv stopped the poll */
  if (u->queued == 0) { /* nothing was queued since it emptied */
    if (u->oq->polling) uv_poll_stop(p);
    u->oq->polling = 0;
    return;
  }
  size_t before = u->queued;
  int r = send_queued(u);
  if (r == 0 && status < 0 && u->queued == before && before > 0) r = status;
  if (r) {
    if (u->werr == 0) u->werr = r;
    drop_queue(u);
  } else if (u->queued > 0 && !u->oq->polling && (r = watch_writable(u)) != 0) {
    if (u->werr == 0) u->werr = r;
    drop_queue(u);
  }
  queue_done(u);
}

/* Queues what the kernel did not take of bufs (skipping done bytes): the
 * output buffer itself when that is all it is, else a copy. */
static int queue_rest(rill_uvstream_t *u, const uv_buf_t *bufs, unsigned nbufs, size_t done,
                      size_t rest) {
  if (u->oq == NULL) {
    if ((u->oq = calloc(1, sizeof(*u->oq))) == NULL) return UV_ENOMEM;
    u->oq->dup = -1;
    u->oq->tail = &u->oq->head;
  }
  int own = nbufs == 1 && bufs[0].base == u->obuf;
  wreq_t *wr = malloc(sizeof(*wr) + (own ? 0 : rest));
  if (wr == NULL) return UV_ENOMEM;
  wr->next = NULL;
  wr->left = rest;
  wr->pooled = NULL;
  if (own) {
    wr->pooled = u->obuf;
    wr->p = u->obuf + done;
  } else {
    char *p = wr->data;
    size_t skip = done;
    for (unsigned i = 0; i < nbufs; i++) {
      size_t len = bufs[i].len;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      memcpy(p, bufs[i].base + skip, len - skip);
      p += len - skip;
      skip = 0;
    }
    wr->p = wr->data;
  }
  int r = watch_writable(u);
  if (r) {
    free(wr);
    return r;
  }
  if (own) u->obuf = NULL;
  *u->oq->tail = wr;
  u->oq->tail = &wr->next;
  u->queued += rest;
  return 0;
}

/* The output buffer goes back to the pool; what was in it is dropped. */
static void drop_out(rill_uvstream_t *u) {
  rill__flush_remove(u->base.w, &u->fl);
  rill__buf_put(u->base.w, u->obuf);
  u->obuf = NULL;
  u->olen = 0;
}

/* Sends bufs (total bytes) now: tried at once unless writes are queued. */
static int send_bufs(rill_uvstream_t *u, const uv_buf_t *bufs, unsigned nbufs, size_t total) {
  size_t done = 0;
  if (u->queued == 0) {
    ssize_t n = sock_send(u, bufs, nbufs);
    if (n < 0) return (int)n;
    done = (size_t)n;
    if (done == total) return 0;
  }
  return queue_rest(u, bufs, nbufs, done, total - done);
}

/* Sends what is gathered. */
static int flush_out(rill_uvstream_t *u) {
  if (u->olen == 0) return u->werr;
  rill__flush_remove(u->base.w, &u->fl);
  uv_buf_t b = uv_buf_init(u->obuf, (unsigned)u->olen);
  int r = u->werr ? u->werr : send_bufs(u, &b, 1, u->olen);
  if (r) u->werr = r;
  drop_out(u); /* a no-op on the buffer when a queued write took it */
  return r;
}

static void flush_listed(rill_flush_t *f) {
  flush_out(rill__container_of(f, rill_uvstream_t, fl));
}

static int pressure(rill_uvstream_t *u) {
  if (u->queued <= RILL_WRITE_HIGH) return 0;
  u->drain_wait = 1;
  return RILL_EAGAIN;
}

static int uvs_write(rill_stream_t *s, const uv_buf_t *bufs, unsigned nbufs) {
  rill_uvstream_t *u = U(s);
  if (u->werr) return u->werr;
  if (u->phase != P_OPEN || u->shut_sent) return RILL_ECLOSED;
  size_t total = 0;
  for (unsigned i = 0; i < nbufs; i++)
    total += bufs[i].len;
  if (total == 0) return 0;
  RILL_COUNT(s->w->m->bytes_out, total);
  if (u->olen + total <= RILL_BUF_SIZE) {
    if (u->obuf == NULL && (u->obuf = rill__buf_get(s->w)) == NULL) return UV_ENOMEM;
    for (unsigned i = 0; i < nbufs; i++) {
      if (bufs[i].len == 0) continue;
      memcpy(u->obuf + u->olen, bufs[i].base, bufs[i].len);
      u->olen += bufs[i].len;
    }
    rill__flush_add(s->w, &u->fl);
    return pressure(u);
  }
  /* Past one buffer: what is gathered and these go now, in one sendmsg. */
  uv_buf_t stackv[16], *v = stackv;
  if (nbufs + 1 > 16 && (v = malloc((nbufs + 1) * sizeof(*v))) == NULL) return UV_ENOMEM;
  unsigned n = 0;
  if (u->olen) v[n++] = uv_buf_init(u->obuf, (unsigned)u->olen);
  memcpy(v + n, bufs, nbufs * sizeof(*v));
  int r = send_bufs(u, v, n + nbufs, u->olen + total);
  if (v != stackv) free(v);
  drop_out(u);
  if (r) {
    u->werr = r;
    return r;
  }
  return pressure(u);
}

static int uvs_flush(rill_stream_t *s) {
  return flush_out(U(s));
}

static int uvs_sendfile_fd(rill_stream_t *s) {
  rill_uvstream_t *u = U(s);
  uv_os_fd_t fd;
  if (u->werr) return u->werr;
  if (u->phase != P_OPEN || u->shut_sent) return RILL_ECLOSED;
  int r = flush_out(u);
  if (r) return r;
  if (u->queued > 0) {
    u->empty_wait = 1;
    return RILL_EAGAIN;
  }
  r = uv_fileno(&u->h.handle, &fd);
  return r < 0 ? r : fd;
}

/* ---- closing ---- */

static void handle_closed(uv_handle_t *h) {
  rill_uvstream_t *u = h->data;
  if (--u->closes > 0) return;
  free(u->oq);
  free(u->aux);
  free(u->px);
  release_buf(u);
  if (u->on_free) u->on_free(u->owner_arg);
  free(u);
}

/* The stream is no longer open: its owner may count it gone. */
static void release(rill_uvstream_t *u) {
  if (u->released) return;
  u->released = 1;
  if (u->on_release) u->on_release(u->owner_arg);
}

/* The poll is closed: so is the duplicate it watched, here, once. */
static void poll_closed(uv_handle_t *h) {
  rill_uvstream_t *u = h->data;
  close(u->oq->dup);
  u->oq->dup = -1;
  handle_closed(h);
}

/* Drops what is queued and closes the writability watch, counting it in
 * closes. Called once, on the way to FINAL. */
static void close_queue(rill_uvstream_t *u) {
  if (u->oq == NULL) return;
  drop_queue(u);
  u->oq->polling = 0;
  if (u->oq->dup >= 0) {
    u->closes++;
    uv_close((uv_handle_t *)&u->oq->poll, poll_closed);
  }
}

/* The one place the handles are closed. */
static void final_close(rill_uvstream_t *u) {
  release(u);
  if (u->phase == P_FINAL) return;
  u->phase = P_FINAL;
  drop_out(u);
  rill__obj_unlink(&u->obj);
  u->closes = 1;
  close_queue(u);
  if (u->timer_init) {
    u->closes++;
    uv_close((uv_handle_t *)&u->aux->linger, handle_closed);
  }
  uv_close(&u->h.handle, handle_closed);
}

static void linger_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out) {
  rill_uvstream_t *u = h->data;
  *out = uv_buf_init(u->base.w->scratch, RILL_BUF_SIZE);
}

static void linger_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  rill_uvstream_t *u = st->data;
  if (nread > 0) u->aux->lingered += (size_t)nread;
  if (nread < 0 || u->aux->lingered > LINGER_BYTES) final_close(u);
}

static void linger_start(rill_uvstream_t *u) {
  u->phase = P_LINGER;
  if (u->reading) uv_read_stop(&u->h.stream);
  u->reading = 0;
  if (u->rerr || uv_read_start(&u->h.stream, linger_alloc, linger_read) != 0)
    final_close(u);
}

static void linger_timeout(uv_timer_t *t) {
  final_close(t->data);
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  rill_uvstream_t *u = req->data;
  u->shut_done = 1;
  if (u->phase != P_FLUSH) return; /* a plain shutdown(), or closed already */
  if (status < 0)
    final_close(u);
  else
    linger_start(u);
}

/* The queue is empty: our FIN goes (uv_shutdown), and shutdown_cb follows,
 * also when it cannot go. */
static void shut_now(rill_uvstream_t *u) {
  u->shut_wait = 0;
  u->aux->sreq.data = u;
  int r = uv_shutdown(&u->aux->sreq, &u->h.stream, shutdown_cb);
  if (r) shutdown_cb(&u->aux->sreq, r);
}

/* Ends the write side once what is queued has been sent. Returns 0, or an
 * error when the shutdown cannot start (nothing was queued). */
static int start_shutdown(rill_uvstream_t *u) {
  if (u->queued > 0) {
    u->shut_sent = 1;
    u->shut_wait = 1; /* queue_done calls shut_now */
    return 0;
  }
  u->aux->sreq.data = u;
  int r = uv_shutdown(&u->aux->sreq, &u->h.stream, shutdown_cb);
  if (r == 0) u->shut_sent = 1;
  return r;
}

static int uvs_shutdown(rill_stream_t *s) {
  rill_uvstream_t *u = U(s);
  if (u->shut_sent) return 0;
  if (u->phase != P_OPEN) return RILL_ECLOSED;
  if (aux(u) == NULL) return UV_ENOMEM;
  flush_out(u); /* a write error shows in the shutdown's own */
  return start_shutdown(u);
}

static void uvs_close(rill_stream_t *s) {
  rill_uvstream_t *u = U(s);
  if (u->phase != P_OPEN) return;
  flush_out(u);
  u->phase = P_FLUSH;
  u->want = 0;
  release(u);
  rill__stream_gone(s);
  /* No lingering while the worker is torn down: it must end now. */
  if (u->werr || u->rerr == UV_ECONNRESET || !uv_is_writable(&u->h.stream) ||
      s->w->stopping || aux(u) == NULL) {
    final_close(u);
    return;
  }
  uv_timer_init(s->w->loop, &u->aux->linger);
  u->aux->linger.data = u;
  u->timer_init = 1;
  uv_timer_start(&u->aux->linger, linger_timeout, LINGER_MS, 0);
  if (!u->shut_sent) {
    if (start_shutdown(u) != 0) final_close(u);
  } else if (u->shut_done) {
    linger_start(u);
  }
}

static void uvs_abort(rill_stream_t *s) {
  rill_uvstream_t *u = U(s);
  if (u->phase == P_FINAL) return;
  int was_open = u->phase == P_OPEN;
  u->want = 0;
  release(u);
  if (was_open) rill__stream_gone(s);
  /* A reset, where the socket allows one now: no shutdown pending. */
  if (was_open && u->h.handle.type == UV_TCP && !u->shut_sent) {
    u->phase = P_FINAL;
    drop_out(u);
    rill__obj_unlink(&u->obj);
    u->closes = 1;
    if (uv_tcp_close_reset(&u->h.tcp, handle_closed) == 0) {
      close_queue(u);
      return;
    }
    u->phase = P_OPEN; /* the reset was refused: close plainly */
  }
  final_close(u);
}

static int uvs_addr(rill_stream_t *s, int peer, char *host, size_t hostlen) {
  rill_uvstream_t *u = U(s);
  /* A PROXY header's addresses come first: a unix socket may carry one. */
  if (peer == RILL_ADDR_PROXY) {
    if (u->px == NULL) return UV_ENOENT;
    peer = RILL_ADDR_PEER;
  } else if (u->px) {
    return rill__sockaddr_str((struct sockaddr *)(peer ? &u->px->src : &u->px->dst), host,
                              hostlen);
  }
  if (u->h.handle.type != UV_TCP) return UV_ENOTSUP;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  int r = peer ? uv_tcp_getpeername(&u->h.tcp, (struct sockaddr *)&ss, &len)
               : uv_tcp_getsockname(&u->h.tcp, (struct sockaddr *)&ss, &len);
  if (r) return r;
  return rill__sockaddr_str((struct sockaddr *)&ss, host, hostlen);
}

static int uvs_ref(rill_stream_t *s, int ref) {
  rill_uvstream_t *u = U(s);
  if (ref)
    uv_ref(&u->h.handle);
  else
    uv_unref(&u->h.handle);
  return 0;
}

static const rill_stream_vt uvs_vt = {
    .name = "socket",
    .peek = uvs_peek,
    .consume = uvs_consume,
    .fill = uvs_fill,
    .write = uvs_write,
    .sendfile_fd = uvs_sendfile_fd,
    .flush = uvs_flush,
    .shutdown = uvs_shutdown,
    .close = uvs_close,
    .abort = uvs_abort,
    .addr = uvs_addr,
    .ref = uvs_ref,
};

/* A worker's teardown: whatever the phase, the handles close now. */
static void uvs_destroy(rill_obj_t *o) {
  rill_uvstream_t *u = rill__container_of(o, rill_uvstream_t, obj);
  if (u->phase == P_OPEN) rill__stream_gone(&u->base);
  final_close(u);
}

rill_uvstream_t *rill__uvstream_new(rill_worker_t *w, int kind) {
  rill_uvstream_t *u = calloc(1, sizeof(*u));
  if (u == NULL) return NULL;
  rill__stream_init(&u->base, &uvs_vt, w);
  int r = kind == UV_NAMED_PIPE ? uv_pipe_init(w->loop, &u->h.pipe, 0)
                                : uv_tcp_init(w->loop, &u->h.tcp);
  if (r) {
    free(u);
    return NULL;
  }
  u->h.handle.data = u;
  u->fl.flush = flush_listed;
  rill__obj_link(w, &u->obj, uvs_destroy);
  return u;
}

uv_stream_t *rill__uvstream_handle(rill_uvstream_t *u) {
  return &u->h.stream;
}

rill_stream_t *rill__uvstream_stream(rill_uvstream_t *u) {
  return &u->base;
}

void rill__uvstream_discard(rill_uvstream_t *u) {
  final_close(u);
}

void rill__uvstream_owner(rill_uvstream_t *u, void (*released)(void *),
                          void (*freed)(void *), void *arg) {
  u->on_release = released;
  u->on_free = freed;
  u->owner_arg = arg;
}

int rill__uvstream_set_addrs(rill_uvstream_t *u, const struct sockaddr *src,
                             const struct sockaddr *dst) {
  if (u->px == NULL && (u->px = calloc(1, sizeof(*u->px))) == NULL) return UV_ENOMEM;
  size_t len = src->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                          : sizeof(struct sockaddr_in);
  memcpy(&u->px->src, src, len);
  memcpy(&u->px->dst, dst, len);
  return 0;
}

int rill__sockaddr_str(const struct sockaddr *sa, char *host, size_t hostlen) {
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(a, host, hostlen);
    return ntohs(a->sin6_port);
  }
  const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
  uv_ip4_name(a, host, hostlen);
  return ntohs(a->sin_port);
}
