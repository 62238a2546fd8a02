/* An in-memory transport. See memstream.h. */
#include <stdlib.h>
#include <string.h>

#include "memstream.h"

#define M(s) rill__container_of((s), memstream_t, base)

static memstream_t *due_head;

static void make_due(memstream_t *m) {
  if (m->due) return;
  m->due = 1;
  m->next_due = due_head;
  due_head = m;
}

static int grow(char **buf, size_t *cap, size_t need) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 256;
  while (c < need)
    c *= 2;
  char *b = realloc(*buf, c);
  if (b == NULL) return UV_ENOMEM;
  *buf = b;
  *cap = c;
  return 0;
}

static int ms_peek(rill_stream_t *s, const char **p, size_t *n) {
  memstream_t *m = M(s);
  *p = m->in + m->in_r;
  *n = m->in_len - m->in_r;
  if (*n > 0) return 0;
  if (m->closed) return RILL_ECLOSED;
  if (m->read_err) return m->read_err;
  return m->in_eof ? RILL_EOF : 0;
}

static void ms_consume(rill_stream_t *s, size_t n) {
  memstream_t *m = M(s);
  assert(n <= m->in_len - m->in_r);
  m->in_r += n;
  if (m->in_r == m->in_len) m->in_r = m->in_len = 0;
}

static int ms_fill(rill_stream_t *s) {
  memstream_t *m = M(s);
  if (m->closed) return RILL_ECLOSED;
  /* As a socket: nothing more will come, whatever is still unread. */
  if (m->read_err) return m->read_err;
  if (m->in_eof) return RILL_EOF;
  /* More than the reader has seen: readable() when more is fed. */
  m->want = 1;
  return 0;
}

static size_t pending_out(memstream_t *m) {
  return m->peer ? m->peer->in_len - m->peer->in_r : m->out_len;
}

static int ms_write(rill_stream_t *s, const uv_buf_t *bufs, unsigned nbufs) {
  memstream_t *m = M(s);
  if (m->closed || m->shut) return RILL_ECLOSED;
  for (unsigned i = 0; i < nbufs; i++) {
    if (m->peer) {
      memstream_feed(m->peer, bufs[i].base, bufs[i].len);
    } else {
      if (grow(&m->out, &m->out_cap, m->out_len + bufs[i].len)) return UV_ENOMEM;
      memcpy(m->out + m->out_len, bufs[i].base, bufs[i].len);
      m->out_len += bufs[i].len;
    }
  }
  if (m->out_limit && pending_out(m) > m->out_limit) {
    m->drain_wait = 1;
    return RILL_EAGAIN;
  }
  return 0;
}

static int ms_shutdown(rill_stream_t *s) {
  memstream_t *m = M(s);
  m->shut = 1;
  if (m->peer) memstream_eof(m->peer);
  return 0;
}

static void ms_close(rill_stream_t *s) {
  memstream_t *m = M(s);
  if (m->closed) return;
  m->closed = 1;
  m->want = 0;
  rill__stream_gone(s);
  if (m->peer) memstream_eof(m->peer);
}

static void ms_abort(rill_stream_t *s) {
  M(s)->aborted = 1;
  ms_close(s);
}

static const rill_stream_vt ms_vt = {
    .name = "memory",
    .peek = ms_peek,
    .consume = ms_consume,
    .fill = ms_fill,
    .write = ms_write,
    .shutdown = ms_shutdown,
    .close = ms_close,
    .abort = ms_abort,
};

memstream_t *memstream_new(rill_worker_t *w) {
  memstream_t *m = calloc(1, sizeof(*m));
  if (m) rill__stream_init(&m->base, &ms_vt, w);
  return m;
}

void memstream_join(memstream_t *a, memstream_t *b) {
  a->peer = b;
  b->peer = a;
}

void memstream_free(memstream_t *m) {
  if (m->due) { /* take it off the list */
    memstream_t **p = &due_head;
    while (*p != m)
      p = &(*p)->next_due;
    *p = m->next_due;
  }
  if (m->peer) m->peer->peer = NULL;
  free(m->in);
  free(m->out);
  free(m);
}

void memstream_feed(memstream_t *m, const void *p, size_t n) {
  if (n == 0 || m->closed) return;
  if (m->in_r > 0 && m->in_r == m->in_len) m->in_r = m->in_len = 0;
  if (grow(&m->in, &m->in_cap, m->in_len + n)) abort();
  memcpy(m->in + m->in_len, p, n);
  m->in_len += n;
  if (m->want) {
    m->due_readable = 1;
    make_due(m);
  }
}

void memstream_eof(memstream_t *m) {
  m->in_eof = 1;
  if (m->want) {
    m->due_readable = 1;
    make_due(m);
  }
}

size_t memstream_take(memstream_t *m, char *buf, size_t max) {
  size_t n = max == 0 || max > m->out_len ? m->out_len : max;
  if (buf) memcpy(buf, m->out, n);
  memmove(m->out, m->out + n, m->out_len - n);
  m->out_len -= n;
  if (m->drain_wait && m->out_len <= m->out_limit / 4) {
    m->due_drained = 1;
    make_due(m);
  }
  return n;
}

int memstream_run(void) {
  int delivered = 0;
  while (due_head) {
    memstream_t *m = due_head;
    due_head = m->next_due;
    m->due = 0;
    if (m->due_drained && !m->closed) {
      m->due_drained = 0;
      m->drain_wait = 0;
      delivered++;
      rill__stream_drained(&m->base, 0);
    }
    if (m->due_readable && m->want && !m->closed) {
      m->due_readable = 0;
      m->want = 0;
      delivered++;
      rill__stream_readable(&m->base, 0);
    }
    /* A joined peer's reader drained us: its writer may go on. */
    if (m->peer && m->peer->drain_wait && pending_out(m->peer) <= m->peer->out_limit / 4) {
      m->peer->due_drained = 1;
      make_due(m->peer);
    }
  }
  return delivered;
}
