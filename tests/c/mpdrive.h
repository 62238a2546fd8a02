/* A reader of a multipart body for the C test and the fuzzer: the layer
 * (multipart.c) over a memstream, read as an application would, event by
 * event: next part, its data (taking up to `take` bytes at a time, and only
 * the first `keep` bytes of each part when keep is set: the rest is left for
 * rill__mp_next() to discard), next part... What it sees is written to a
 * text record: "P" then each header "name=value;" then "{" data "}" per
 * part, "." at the close delimiter, "E<code>" on an error. */
#ifndef RILL_MPDRIVE_H
#define RILL_MPDRIVE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memstream.h"
#include "multipart.h"

typedef struct {
  char *p;
  size_t len, cap;
} mpd_buf_t;

static inline void mpd_put(mpd_buf_t *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (q == NULL) abort();
    b->p = q;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = 0;
}

enum { MPD_NEXT, MPD_PART, MPD_DONE };

typedef struct {
  rill_multipart_t m;
  rill_binding_t b; /* the current part's reader */
  memstream_t *ms;
  mpd_buf_t rec;
  int state;
  int end;        /* RILL_EOF after the close delimiter, or the error */
  size_t take;    /* bytes taken per consume (0: all shown) */
  size_t keep;    /* bytes of each part read (0: all) */
  size_t got;     /* of the current part */
  uint64_t data;  /* data bytes of every part, read or skipped */
  unsigned waits; /* readable() or on_next() calls */
  int in_call;    /* readable() inside a call of ours breaks the contract */
  int broken;     /* set when it did */
  int check;      /* keep each part's data, to look for the delimiter in it */
  mpd_buf_t part;
  int delim_in_data; /* a part's data held the delimiter */
} mpd_t;

static void mpd_drive(mpd_t *d);

static void mpd_readable(rill_binding_t *b, int status) {
  mpd_t *d = rill__container_of(b, mpd_t, b);
  if (d->in_call) d->broken = 1;
  d->waits++;
  mpd_drive(d);
}

static void mpd_gone(rill_binding_t *b) {}

static const rill_binding_ops_t mpd_ops = {.readable = mpd_readable, .gone = mpd_gone};

static void mpd_on_next(rill_multipart_t *m) {
  mpd_t *d = m->data;
  if (d->in_call) d->broken = 1;
  d->waits++;
  mpd_drive(d);
}

static void mpd_finish(mpd_t *d, int r) {
  char e[32];
  if (r == RILL_EOF)
    mpd_put(&d->rec, ".", 1);
  else
    mpd_put(&d->rec, e, (size_t)snprintf(e, sizeof(e), "E%d", r));
  d->end = r;
  d->state = MPD_DONE;
}

static void mpd_drive(mpd_t *d) {
  d->in_call++;
  while (d->state != MPD_DONE) {
    if (d->state == MPD_NEXT) {
      int r = rill__mp_next(&d->m);
      if (r == RILL_EAGAIN) break;
      if (r != 0) {
        mpd_finish(d, r);
        break;
      }
      mpd_put(&d->rec, "P", 1);
      for (unsigned i = 0; i < d->m.nfields; i++) {
        const rill_mp_field_t *f = &d->m.fields[i];
        mpd_put(&d->rec, d->m.hbuf + f->name_off, f->name_len);
        mpd_put(&d->rec, "=", 1);
        mpd_put(&d->rec, d->m.hbuf + f->value_off, f->value_len);
        mpd_put(&d->rec, ";", 1);
      }
      mpd_put(&d->rec, "{", 1);
      rill__stream_bind(&d->m.base, &d->b, &mpd_ops);
      d->state = MPD_PART;
      d->got = 0;
    }
    rill_stream_t *s = &d->m.base;
    const char *p;
    size_t n;
    int r = s->vt->peek(s, &p, &n);
    if (r == RILL_EOF || (r == 0 && d->keep && d->got >= d->keep)) {
      mpd_put(&d->rec, "}", 1);
      if (d->check && d->part.len >= d->m.dlen &&
          memmem(d->part.p, d->part.len, d->m.delim, d->m.dlen))
        d->delim_in_data = 1;
      d->part.len = 0;
      d->state = MPD_NEXT;
      continue;
    }
    if (r < 0) {
      mpd_finish(d, r);
      break;
    }
    if (n > 0) {
      if (d->take && n > d->take) n = d->take;
      if (d->keep && n > d->keep - d->got) n = d->keep - d->got;
      mpd_put(&d->rec, p, n);
      if (d->check) mpd_put(&d->part, p, n);
      d->got += n;
      d->data += n;
      s->vt->consume(s, n);
      continue;
    }
    r = s->vt->fill(s);
    if (r < 0) {
      mpd_finish(d, r);
      break;
    }
    r = s->vt->peek(s, &p, &n);
    if (r == 0 && n == 0) break; /* readable() follows */
  }
  d->in_call--;
}

/* Starts d over ms; RILL_EAGAIN-style waits end in d's callbacks. */
static inline int mpd_start(mpd_t *d, rill_worker_t *w, memstream_t *ms,
                            const char *boundary, unsigned max_parts, size_t max_header) {
  memset(d, 0, sizeof(*d));
  d->ms = ms;
  int r = rill__mp_init(&d->m, w, &ms->base, boundary, strlen(boundary), max_parts,
                        max_header);
  if (r) return r;
  d->m.on_next = mpd_on_next;
  d->m.data = d;
  mpd_drive(d);
  return 0;
}

static inline void mpd_free(mpd_t *d) {
  rill__stream_unbind(&d->b);
  rill__mp_release(&d->m);
  free(d->rec.p);
  free(d->part.p);
  d->rec.p = d->part.p = NULL;
}

#endif
