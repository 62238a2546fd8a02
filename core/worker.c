/* A worker: one uv loop, the objects that live on it, a pool of input
 * buffers, the formatted Date header and the services of the layers above.
 * One thread runs one worker. See worker.h. */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "nosigpipe.h"
#include "worker.h"

void rill__obj_link(rill_worker_t *w, rill_obj_t *o, void (*destroy)(rill_obj_t *)) {
  o->destroy = destroy;
  o->shutdown = NULL;
  o->kind = RILL_OBJ_OTHER;
  o->done = 0;
  o->next = w->objs.next;
  o->prev = &w->objs;
  w->objs.next->prev = o;
  w->objs.next = o;
}

void rill__obj_unlink(rill_obj_t *o) {
  if (o->next == NULL) return;
  o->prev->next = o->next;
  o->next->prev = o->prev;
  o->next = o->prev = NULL;
}

static void cmd_cb(uv_async_t *h) {
  rill_worker_t *w = h->data;
  int cmds = __atomic_exchange_n(&w->cmds, 0, __ATOMIC_ACQ_REL);
  if (cmds && w->on_command && !w->stopping) w->on_command(w, cmds);
}

void rill__worker_command(rill_worker_t *w, int cmd) {
  __atomic_fetch_or(&w->cmds, cmd, __ATOMIC_ACQ_REL);
  uv_async_send(&w->cmd);
}

void rill__worker_add_service(rill_worker_t *w, rill_service_t *svc) {
  rill_service_t **p = &w->services;
  while (*p)
    p = &(*p)->next;
  svc->next = NULL;
  *p = svc;
}

static int busy(rill_worker_t *w) {
  if (w->busy > 0) return 1;
  for (rill_obj_t *o = w->objs.next; o != &w->objs; o = o->next)
    if ((o->kind == RILL_OBJ_CONN || o->kind == RILL_OBJ_WS) && !o->done) return 1;
  return 0;
}

void rill__worker_stop_now(rill_worker_t *w) {
  if (w->stop_done) return;
  w->stop_done = 1;
  if (w->graceful) {
    uv_timer_stop(&w->stop_check);
    uv_timer_stop(&w->grace_timer);
  }
  if (w->on_stopped) w->on_stopped(w);
  /* A host's loop is the host's to stop: we only take ours off it. */
  if (w->own_loop)
    uv_stop(w->loop);
  else
    rill__worker_close(w);
}

static void stop_check_cb(uv_timer_t *t) {
  rill_worker_t *w = t->data;
  if (!busy(w)) rill__worker_stop_now(w);
}

static void grace_cb(uv_timer_t *t) {
  rill_worker_t *w = t->data;
  rill__log(w, RILL_LOG_WARN, "grace period over: closing what is left");
  rill__worker_stop_now(w);
}

void rill__worker_stop(rill_worker_t *w, unsigned grace_ms) {
  if (w->graceful) return;
  w->graceful = 1;
  /* Collect first: a shutdown may unlink others (all memory goes in close
   * callbacks, later, so the pointers stay good). */
  size_t n = 0, cap = 64;
  rill_obj_t **list = malloc(cap * sizeof(*list));
  for (rill_obj_t *o = w->objs.next; list && o != &w->objs; o = o->next) {
    if (o->shutdown == NULL) continue;
    if (n == cap) {
      rill_obj_t **l = realloc(list, (cap *= 2) * sizeof(*list));
      if (l == NULL) break;
      list = l;
    }
    list[n++] = o;
  }
  for (size_t i = 0; i < n; i++)
    list[i]->shutdown(list[i]);
  free(list);
  uv_timer_init(w->loop, &w->stop_check);
  uv_timer_init(w->loop, &w->grace_timer);
  w->stop_check.data = w->grace_timer.data = w;
  uv_timer_start(&w->stop_check, stop_check_cb, 0, 50);
  uv_timer_start(&w->grace_timer, grace_cb, grace_ms, 0);
}

static void flush_cb(uv_handle_t *h);

void rill__flush_add(rill_worker_t *w, rill_flush_t *f) {
  if (f->listed) return;
  int idle = 1;
  for (int i = 0; i < RILL_FLUSH_LEVELS; i++)
    if (w->flush_head[i]) idle = 0;
  f->listed = 1;
  f->prev = NULL;
  f->next = w->flush_head[f->level];
  if (f->next) f->next->prev = f;
  w->flush_head[f->level] = f;
  if (idle && !w->stopping) {
    uv_prepare_start(&w->flush_prepare, (uv_prepare_cb)flush_cb);
    uv_check_start(&w->flush_check, (uv_check_cb)flush_cb);
  }
}

void rill__flush_remove(rill_worker_t *w, rill_flush_t *f) {
  if (!f->listed) return;
  f->listed = 0;
  if (f->prev)
    f->prev->next = f->next;
  else
    w->flush_head[f->level] = f->next;
  if (f->next) f->next->prev = f->prev;
  f->prev = f->next = NULL;
}

void rill__worker_flush(rill_worker_t *w) {
  /* A flush at one level adds to the levels below it: start again from
   * the top after each. */
  for (int i = RILL_FLUSH_LEVELS - 1; i >= 0;) {
    rill_flush_t *f = w->flush_head[i];
    if (f == NULL) {
      i--;
      continue;
    }
    rill__flush_remove(w, f);
    f->flush(f);
    i = RILL_FLUSH_LEVELS - 1;
  }
}

void rill__worker_hold(rill_worker_t *w) {
  w->hold++;
}

void rill__worker_release(rill_worker_t *w) {
  assert(w->hold > 0);
  if (--w->hold == 0 && w->release) w->release(w);
}

/* The end of a loop turn (prepare: after timers; check: after I/O) sends
 * what callbacks wrote outside tasks. */
static void flush_cb(uv_handle_t *h) {
  rill_worker_t *w = h->data;
  rill__worker_flush(w);
  uv_prepare_stop(&w->flush_prepare);
  uv_check_stop(&w->flush_check);
}

rill_worker_t *rill__worker_new(uv_loop_t *loop) {
  rill_worker_t *w = calloc(1, sizeof(*w));
  if (w == NULL) return NULL;
  if (loop == NULL) {
    loop = malloc(sizeof(*loop));
    if (loop == NULL || uv_loop_init(loop) != 0) {
      free(loop);
      free(w);
      return NULL;
    }
    w->own_loop = 1;
  }
  w->loop = loop;
  w->objs.next = w->objs.prev = &w->objs;
  w->m = &w->own_m;
  w->log_level = RILL_LOG_INFO;
  w->maxbufs = 32;
  w->bufs = calloc(w->maxbufs, sizeof(char *));
  w->scratch = malloc(RILL_BUF_SIZE);
  w->date_sec = -1;
  if (w->bufs == NULL || w->scratch == NULL) {
    free(w->bufs);
    free(w->scratch);
    if (w->own_loop) {
      uv_loop_close(loop);
      free(loop);
    }
    free(w);
    return NULL;
  }
  uv_async_init(loop, &w->cmd, cmd_cb);
  w->cmd.data = w;
  uv_unref((uv_handle_t *)&w->cmd);
  uv_prepare_init(loop, &w->flush_prepare);
  uv_check_init(loop, &w->flush_check);
  w->flush_prepare.data = w->flush_check.data = w;
  return w;
}

static void close_stray_cb(uv_handle_t *h) {}

static void close_stray(uv_handle_t *h, void *arg) {
  if (!uv_is_closing(h)) uv_close(h, close_stray_cb);
}

void rill__worker_close(rill_worker_t *w) {
  if (w->closed) return;
  w->closed = 1;
  w->stopping = 1;
  /* Destroying an object may unlink others (whatever was bound to it); take
   * the head each time. */
  while (w->objs.next != &w->objs) {
    rill_obj_t *o = w->objs.next;
    rill__obj_unlink(o);
    o->destroy(o);
  }
  for (rill_service_t *s = w->services; s; s = s->next)
    if (s->close) s->close(s, w);
  uv_close((uv_handle_t *)&w->cmd, close_stray_cb);
  uv_close((uv_handle_t *)&w->flush_prepare, close_stray_cb);
  uv_close((uv_handle_t *)&w->flush_check, close_stray_cb);
  if (w->graceful) {
    uv_close((uv_handle_t *)&w->stop_check, close_stray_cb);
    uv_close((uv_handle_t *)&w->grace_timer, close_stray_cb);
  }
}

void rill__worker_free(rill_worker_t *w) {
  /* Closed by its stop on a host's loop that has turned since: every close
   * is done (the host's uv_run returned), so the loop is not turned here. */
  int closed_before = w->closed && !w->own_loop;
  rill__worker_close(w);
  if (w->own_loop) {
    uv_run(w->loop, UV_RUN_DEFAULT);
  } else if (!closed_before) {
    /* The host's loop has handles of its own: turn it until ours are gone. */
    for (int i = 0; i < 16; i++)
      uv_run(w->loop, UV_RUN_NOWAIT);
  }
  for (rill_service_t *s = w->services, *next; s; s = next) {
    next = s->next;
    if (s->free) s->free(s, w);
  }
  w->services = NULL;
  /* Handles the host created on our loop are its own business; ours are all
   * closed by now. A loop we own must end empty. */
  if (w->own_loop) {
    uv_walk(w->loop, close_stray, NULL);
    uv_run(w->loop, UV_RUN_DEFAULT);
    uv_loop_close(w->loop);
    free(w->loop);
  }
  for (unsigned i = 0; i < w->nbufs; i++)
    free(w->bufs[i]);
  free(w->bufs);
  free(w->scratch);
  free(w->capture);
  free(w);
}

char *rill__buf_get(rill_worker_t *w) {
  if (w->nbufs > 0) {
    RILL_GAUGE(w->m->buffers_pooled, w->nbufs - 1);
    return w->bufs[--w->nbufs];
  }
  return malloc(RILL_BUF_SIZE);
}

void rill__buf_put(rill_worker_t *w, char *buf) {
  if (buf == NULL) return;
  if (w->nbufs < w->maxbufs) {
    w->bufs[w->nbufs++] = buf;
    RILL_GAUGE(w->m->buffers_pooled, w->nbufs);
  } else {
    free(buf);
  }
}

void rill__metrics_read(const rill_metrics_t *m, rill_metrics_t *out) {
  const uint64_t *from = (const uint64_t *)m;
  uint64_t *to = (uint64_t *)out;
  for (size_t i = 0; i < sizeof(*m) / sizeof(uint64_t); i++)
    to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

const char *rill__date_line(rill_worker_t *w, size_t *len) {
  time_t now = time(NULL);
  if ((int64_t)now != w->date_sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    w->date_len =
        strftime(w->date, sizeof(w->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    w->date_sec = (int64_t)now;
  }
  *len = w->date_len;
  return w->date;
}

int rill__random(rill_worker_t *w, void *buf, size_t n) {
  uint8_t *out = buf;
  while (n > 0) {
    if (w->rnd_left == 0) {
      ssize_t r = getrandom(w->rnd, sizeof(w->rnd), 0);
      if (r < 0) return uv_translate_sys_error(errno);
      w->rnd_left = (unsigned)r;
      continue;
    }
    size_t k = n < w->rnd_left ? n : w->rnd_left;
    /* Taken from the end, and wiped: a byte is never handed out twice. */
    uint8_t *src = w->rnd + w->rnd_left - k;
    memcpy(out, src, k);
    memset(src, 0, k);
    w->rnd_left -= (unsigned)k;
    out += k;
    n -= k;
  }
  return 0;
}

static const char *level_names[] = {"error", "warn", "info", "debug"};

static void log_v(rill_worker_t *w, int worker, int level, const char *fmt, va_list ap) {
  if (w != NULL && level > w->log_level) return;
  char msg[4096];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  if (w != NULL && w->log_cb) {
    w->log_cb(w->log_ud, level, worker, msg);
    return;
  }
  if (w != NULL && w->log_plain) {
    char line[4200];
    int n = snprintf(line, sizeof(line), "rill: %s: %s\n", level_names[level], msg);
    if (n < 0) return;
    if ((size_t)n >= sizeof(line)) { /* cut: still one line */
      n = sizeof(line) - 1;
      line[n - 1] = '\n';
    }
    rill__log_write(w, line, (size_t)n);
    return;
  }
  char when[32];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
  char line[4200];
  int n =
      snprintf(line, sizeof(line), "%s.%03ldZ [%s] [w%d] %s\n", when,
               ts.tv_nsec / 1000000, level_names[level], worker < 0 ? 0 : worker, msg);
  if (n < 0) return;
  if ((size_t)n >= sizeof(line)) { /* cut: still one line */
    n = sizeof(line) - 1;
    line[n - 1] = '\n';
  }
  rill__log_write(w, line, (size_t)n);
}

void rill__log(rill_worker_t *w, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_v(w, w ? w->id : 0, level, fmt, ap);
  va_end(ap);
}

void rill__log_host(rill_worker_t *w, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_v(w, -1, level, fmt, ap);
  va_end(ap);
}

/* Hands text, whole lines, to w's log callback one line at a time. */
static void log_lines_cb(rill_worker_t *w, const char *text, size_t len) {
  char line[4096];
  while (len > 0) {
    const char *nl = memchr(text, '\n', len);
    size_t n = nl ? (size_t)(nl - text) : len;
    size_t k = n < sizeof(line) - 1 ? n : sizeof(line) - 1;
    memcpy(line, text, k);
    line[k] = 0;
    w->log_cb(w->log_ud, RILL_LOG_INFO, w->id, line);
    if (!nl) break;
    text += n + 1;
    len -= n + 1;
  }
}

static int capture_here(rill_worker_t *w) {
  if (w == NULL || !w->capturing) return 0;
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(&self, &w->capture_thread);
}

void rill__log_write(rill_worker_t *w, const char *text, size_t len) {
  if (w != NULL && w->log_cb) {
    log_lines_cb(w, text, len);
    return;
  }
  if (!capture_here(w)) {
    /* One write per call, so that lines of several workers do not mix;
     * never SIGPIPE, if stderr is a pipe whose reader has gone. */
    rill__write_all_nosigpipe(STDERR_FILENO, text, len);
    return;
  }
  if (w->capture_len + len > RILL_LOG_CAPTURE_MAX) {
    for (size_t i = 0; i < len; i++)
      if (text[i] == '\n') w->capture_dropped++;
    return;
  }
  if (w->capture_len + len > w->capture_cap) {
    size_t cap = w->capture_cap ? w->capture_cap : 4096;
    while (cap < w->capture_len + len)
      cap *= 2;
    char *p = realloc(w->capture, cap);
    if (p == NULL) {
      w->capture_dropped++;
      return;
    }
    w->capture = p;
    w->capture_cap = cap;
  }
  memcpy(w->capture + w->capture_len, text, len);
  w->capture_len += len;
}

void rill__log_capture(rill_worker_t *w, int on) {
  w->capturing = on;
  if (on) w->capture_thread = uv_thread_self();
}

const char *rill__log_captured(rill_worker_t *w, size_t *len, unsigned long *dropped) {
  *len = w->capture_len;
  *dropped = w->capture_dropped;
  w->capture_len = 0;
  w->capture_dropped = 0;
  return w->capture ? w->capture : "";
}

const char *rill__errmsg(int err) {
  static __thread char buf[128];
  switch (err) {
  case UV_ETIMEDOUT:
    return "timeout";
  case UV_ECANCELED:
    return "canceled";
  case RILL_ECLOSED:
  case UV_EOF:
    return "closed";
  case RILL_ETOOLONG:
    return "too long";
  case RILL_EBODY:
    return "body too large";
  case RILL_EPROTO:
    return "protocol error";
  case RILL_ELOAD:
    return "the app did not load";
  case RILL_ESTATE:
    return "not in this state";
  case RILL_EFILE:
    return "file ended early (it shrank while it was sent)";
  default: {
    /* The _r forms: the plain ones allocate a message for an unknown code. */
    char name[32], text[80];
    uv_err_name_r(err, name, sizeof(name));
    if (strncmp(name, "Unknown", 7) == 0) { /* neither rill's nor libuv's */
      snprintf(buf, sizeof(buf), "unknown error %d", err);
      return buf;
    }
    uv_strerror_r(err, text, sizeof(text));
    snprintf(buf, sizeof(buf), "%s: %s", name, text);
    return buf;
  }
  }
}

const char *rill_strerror(int err) {
  return rill__errmsg(err);
}

const char *rill_version(void) {
  return RILL_VERSION_STRING;
}
