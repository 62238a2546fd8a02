/* The open-file cache: a worker's recent opens by path. See file.h.
 *
 * A hash table of entries (chained, FNV-1a of the path) with a list in
 * order of use: a lookup that hits moves its entry to the front, a put past
 * RILL_FCACHE_MAX drops the entry at the back. An entry holds a reference
 * to its file; dropping the entry lets it go (the descriptor closes in the
 * pool once nothing else uses it). Nothing here waits: the opening itself
 * is the caller's (file.c's K_OPENSTAT). */
#include <stdlib.h>
#include <string.h>

#include "file.h"

#define NBUCKETS 1024 /* a power of two */

typedef struct entry_s entry_t;
struct entry_s {
  entry_t *next_in_bucket;
  entry_t *prev, *next; /* in order of use, most recent first */
  uint32_t hash;
  rill_file_t *f; /* NULL: the open failed with err */
  int err;
  rill_stat_t st;
  uint64_t checked; /* the loop's time (ms) of the open */
  char path[];
};

typedef struct {
  rill_service_t svc;
  entry_t *buckets[NBUCKETS];
  entry_t *head, *tail;
  unsigned n;
} fcache_t;

static uint32_t hash_of(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

static void unlink_entry(fcache_t *fc, entry_t *e) {
  entry_t **p = &fc->buckets[e->hash & (NBUCKETS - 1)];
  while (*p != e)
    p = &(*p)->next_in_bucket;
  *p = e->next_in_bucket;
  if (e->prev)
    e->prev->next = e->next;
  else
    fc->head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    fc->tail = e->prev;
  fc->n--;
}

static void drop(fcache_t *fc, entry_t *e) {
  unlink_entry(fc, e);
  rill__file_unref(e->f);
  free(e);
}

static void push_front(fcache_t *fc, entry_t *e) {
  e->prev = NULL;
  e->next = fc->head;
  if (fc->head) fc->head->prev = e;
  fc->head = e;
  if (fc->tail == NULL) fc->tail = e;
}

static entry_t *find(fcache_t *fc, const char *path, uint32_t h) {
  for (entry_t *e = fc->buckets[h & (NBUCKETS - 1)]; e; e = e->next_in_bucket)
    if (e->hash == h && strcmp(e->path, path) == 0) return e;
  return NULL;
}

/* At the worker's end, while its loop still runs: the descriptors go. */
static void fcache_close(rill_service_t *svc, rill_worker_t *w) {
  fcache_t *fc = (fcache_t *)svc;
  while (fc->head)
    drop(fc, fc->head);
  (void)w;
}

static void fcache_free(rill_service_t *svc, rill_worker_t *w) {
  fcache_close(svc, w);
  if (w->fcache == svc) w->fcache = NULL;
  free(svc);
}

static fcache_t *cache_of(rill_worker_t *w, int make) {
  if (w->fcache || !make) return w->fcache;
  fcache_t *fc = calloc(1, sizeof(*fc));
  if (fc == NULL) return NULL;
  fc->svc.close = fcache_close;
  fc->svc.free = fcache_free;
  rill__worker_add_service(w, &fc->svc);
  w->fcache = fc;
  return fc;
}

int rill__fcache_get(rill_worker_t *w, const char *path, uint64_t valid_ms, rill_file_t **f,
                     int *err, rill_stat_t *st) {
  fcache_t *fc = cache_of(w, 0);
  if (fc == NULL) return 0;
  uint32_t h = hash_of(path);
  entry_t *e = find(fc, path, h);
  if (e == NULL) return 0;
  if (uv_now(w->loop) - e->checked > valid_ms) return 0;
  if (e != fc->head) {
    /* most recently used: to the front */
    if (e->prev) e->prev->next = e->next;
    if (e->next)
      e->next->prev = e->prev;
    else
      fc->tail = e->prev;
    push_front(fc, e);
  }
  *f = e->f ? rill__file_ref(e->f) : NULL;
  *err = e->err;
  *st = e->st;
  return 1;
}

void rill__fcache_put(rill_worker_t *w, const char *path, rill_file_t *f, int err,
                      const rill_stat_t *st) {
  fcache_t *fc = cache_of(w, 1);
  if (fc == NULL) return;
  uint32_t h = hash_of(path);
  entry_t *old = find(fc, path, h);
  if (old) drop(fc, old);
  size_t pl = strlen(path);
  entry_t *e = malloc(sizeof(*e) + pl + 1);
  if (e == NULL) return;
  memcpy(e->path, path, pl + 1);
  e->hash = h;
  e->f = f ? rill__file_ref(f) : NULL;
  e->err = f ? 0 : err;
  if (st)
    e->st = *st;
  else
    memset(&e->st, 0, sizeof(e->st));
  e->checked = uv_now(w->loop);
  entry_t **b = &fc->buckets[h & (NBUCKETS - 1)];
  e->next_in_bucket = *b;
  *b = e;
  push_front(fc, e);
  fc->n++;
  while (fc->n > RILL_FCACHE_MAX)
    drop(fc, fc->tail);
}

unsigned rill__fcache_clear(rill_worker_t *w) {
  fcache_t *fc = cache_of(w, 0);
  unsigned n = fc ? fc->n : 0;
  if (fc) fcache_close(&fc->svc, w);
  return n;
}
