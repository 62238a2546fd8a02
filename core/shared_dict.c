/* Shared dicts: see shared_dict.h. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "shared_dict.h"

typedef struct entry_s entry_t;
struct entry_s {
  entry_t *hnext;       /* in its bucket */
  entry_t *prev, *next; /* in order of use, most recent first */
  uint64_t hash;
  uint64_t expires; /* ms on the monotonic clock; 0: never */
  double num;
  size_t klen, vlen, cost;
  int type;
  char data[]; /* the key, then a string's bytes */
};

struct rill_sdict_s {
  rill_sdict_t *next; /* in the registry */
  uv_mutex_t lock;
  entry_t **buckets; /* nbuckets, a power of two */
  size_t nbuckets, count;
  entry_t lru; /* the list head: lru.next most recent, lru.prev least */
  size_t cap, used;
  uint64_t k0, k1; /* the hash's key */
  size_t nlen;
  char name[];
};

const char *rill__sdict_errmsg(int err) {
  switch (err) {
  case RILL_SD_ENOMEM:
    return "no memory";
  case RILL_SD_EEXISTS:
    return "exists";
  case RILL_SD_ENOTFOUND:
    return "not found";
  case RILL_SD_ENOTNUM:
    return "not a number";
  case RILL_SD_ETOOLARGE:
    return "too large";
  default:
    return rill__errmsg(err);
  }
}

/* ---- SipHash-1-3 (Aumasson and Bernstein), 64-bit output ---- */

#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                         \
  do {                                                                                   \
    v0 += v1;                                                                            \
    v1 = ROTL(v1, 13);                                                                   \
    v1 ^= v0;                                                                            \
    v0 = ROTL(v0, 32);                                                                   \
    v2 += v3;                                                                            \
    v3 = ROTL(v3, 16);                                                                   \
    v3 ^= v2;                                                                            \
    v0 += v3;                                                                            \
    v3 = ROTL(v3, 21);                                                                   \
    v3 ^= v0;                                                                            \
    v2 += v1;                                                                            \
    v1 = ROTL(v1, 17);                                                                   \
    v1 ^= v2;                                                                            \
    v2 = ROTL(v2, 32);                                                                   \
  } while (0)

static uint64_t load64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

static uint64_t siphash(uint64_t k0, uint64_t k1, const void *data, size_t len) {
  const unsigned char *p = data;
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  size_t whole = len & ~(size_t)7;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = load64(p + i);
    v3 ^= m;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t i = 0; i < (len & 7); i++)
    b |= (uint64_t)p[whole + i] << (8 * i);
  v3 ^= b;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the registry ---- */

static uv_once_t registry_once = UV_ONCE_INIT;
static uv_mutex_t registry_lock;
static rill_sdict_t *registry;

static void registry_init(void) {
  uv_mutex_init(&registry_lock);
}

static uint64_t now_ms(void) {
  return uv_hrtime() / 1000000 + 1; /* never 0, which means "never" */
}

static rill_sdict_t *dict_new(const char *name, size_t nlen, size_t cap) {
  rill_sdict_t *d = calloc(1, sizeof(*d) + nlen + 1);
  if (d == NULL) return NULL;
  d->nbuckets = 64;
  d->buckets = calloc(d->nbuckets, sizeof(*d->buckets));
  if (d->buckets == NULL) {
    free(d);
    return NULL;
  }
  uint64_t k[2];
  if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k)) {
    k[0] = uv_hrtime();
    k[1] = (uint64_t)(uintptr_t)d;
  }
  d->k0 = k[0];
  d->k1 = k[1];
  uv_mutex_init(&d->lock);
  d->lru.next = d->lru.prev = &d->lru;
  d->cap = cap < RILL_SD_MIN_CAP ? RILL_SD_MIN_CAP : cap;
  d->nlen = nlen;
  memcpy(d->name, name, nlen);
  return d;
}

rill_sdict_t *rill__sdict_open(const char *name, size_t nlen, size_t cap, int *created) {
  uv_once(&registry_once, registry_init);
  if (created) *created = 0;
  uv_mutex_lock(&registry_lock);
  rill_sdict_t *d = registry;
  while (d && !(d->nlen == nlen && memcmp(d->name, name, nlen) == 0))
    d = d->next;
  if (d == NULL) {
    /* Made under the registry's lock: two workers naming a new dict at
     * once must get the same one. (Rare, and only a few allocations.) */
    d = dict_new(name, nlen, cap);
    if (d) {
      d->next = registry;
      registry = d;
      if (created) *created = 1;
    }
  }
  uv_mutex_unlock(&registry_lock);
  return d;
}

/* ---- entries (all under the dict's lock unless said) ---- */

static entry_t *find(rill_sdict_t *d, const char *key, size_t klen, uint64_t h) {
  for (entry_t *e = d->buckets[h & (d->nbuckets - 1)]; e; e = e->hnext)
    if (e->hash == h && e->klen == klen && memcmp(e->data, key, klen) == 0) return e;
  return NULL;
}

static int expired(const entry_t *e, uint64_t now) {
  return e->expires != 0 && e->expires <= now;
}

static void lru_unlink(entry_t *e) {
  e->prev->next = e->next;
  e->next->prev = e->prev;
}

static void lru_front(rill_sdict_t *d, entry_t *e) {
  e->next = d->lru.next;
  e->prev = &d->lru;
  d->lru.next->prev = e;
  d->lru.next = e;
}

/* Takes e out of the table and the list and onto *dead (freed by the caller
 * after the lock is dropped). */
static void remove_entry(rill_sdict_t *d, entry_t *e, entry_t **dead) {
  entry_t **p = &d->buckets[e->hash & (d->nbuckets - 1)];
  while (*p != e)
    p = &(*p)->hnext;
  *p = e->hnext;
  lru_unlink(e);
  d->used -= e->cost;
  d->count--;
  e->hnext = *dead;
  *dead = e;
}

static void free_dead(entry_t *dead) {
  while (dead) {
    entry_t *n = dead->hnext;
    free(dead);
    dead = n;
  }
}

/* Doubles the buckets when entries outnumber them. Allocates under the
 * lock, rarely (log2 of the largest count); a failure keeps the chains. */
static void grow(rill_sdict_t *d) {
  if (d->count < d->nbuckets || d->nbuckets >= ((size_t)1 << 30)) return;
  size_t n = d->nbuckets * 2;
  entry_t **b = calloc(n, sizeof(*b));
  if (b == NULL) return;
  for (size_t i = 0; i < d->nbuckets; i++) {
    entry_t *e = d->buckets[i];
    while (e) {
      entry_t *next = e->hnext;
      e->hnext = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(d->buckets);
  d->buckets = b;
  d->nbuckets = n;
}

static void insert(rill_sdict_t *d, entry_t *e) {
  entry_t **b = &d->buckets[e->hash & (d->nbuckets - 1)];
  e->hnext = *b;
  *b = e;
  lru_front(d, e);
  d->used += e->cost;
  d->count++;
  grow(d);
}

/* Removes up to max expired entries (0: all), least recently used first. */
static int sweep(rill_sdict_t *d, uint64_t now, int max, entry_t **dead) {
  int n = 0;
  entry_t *e = d->lru.prev;
  while (e != &d->lru && (max <= 0 || n < max)) {
    entry_t *prev = e->prev;
    if (expired(e, now)) {
      remove_entry(d, e, dead);
      n++;
    }
    e = prev;
  }
  return n;
}

/* Makes room for need more bytes, keeping keep (the entry being replaced,
 * or NULL). With evict, live entries go too, least recently used first
 * (*evicted is set); without, only expired ones. Returns whether there is
 * room now. */
static int make_room(rill_sdict_t *d, size_t need, entry_t *keep, int evict, uint64_t now,
                     int *evicted, entry_t **dead) {
  if (d->used + need <= d->cap) return 1;
  if (!evict) {
    sweep(d, now, 0, dead);
    return d->used + need <= d->cap;
  }
  while (d->used + need > d->cap) {
    entry_t *e = d->lru.prev;
    if (e == keep) e = e->prev;
    if (e == &d->lru) return 0; /* cannot happen: need fits in the cap */
    if (!expired(e, now)) *evicted = 1;
    remove_entry(d, e, dead);
  }
  return 1;
}

static uint64_t expiry(double ttl_ms, uint64_t now) {
  if (!(ttl_ms > 0)) return 0;
  if (ttl_ms > 1e15) ttl_ms = 1e15;
  uint64_t t = (uint64_t)ttl_ms;
  return now + (t ? t : 1);
}

/* ---- operations ---- */

int rill__sdict_get(rill_sdict_t *d, const char *key, size_t klen, char *buf,
                    size_t bufcap, size_t *len, double *num) {
  *len = 0;
  *num = 0;
  if (klen > RILL_SD_KEY_MAX) return RILL_SD_NONE;
  uint64_t h = siphash(d->k0, d->k1, key, klen);
  uint64_t now = now_ms();
  entry_t *dead = NULL;
  int type = RILL_SD_NONE;
  uv_mutex_lock(&d->lock);
  entry_t *e = find(d, key, klen, h);
  if (e && expired(e, now)) {
    remove_entry(d, e, &dead);
  } else if (e) {
    type = e->type;
    *num = e->num;
    *len = e->vlen;
    if (type == RILL_SD_STRING && e->vlen <= bufcap) memcpy(buf, e->data + klen, e->vlen);
    lru_unlink(e);
    lru_front(d, e);
  }
  uv_mutex_unlock(&d->lock);
  free_dead(dead);
  return type;
}

static entry_t *entry_new(const char *key, size_t klen, int type, const char *s,
                          size_t len, double num, uint64_t h) {
  size_t vlen = type == RILL_SD_STRING ? len : 0;
  entry_t *e = malloc(sizeof(*e) + klen + vlen);
  if (e == NULL) return NULL;
  e->hash = h;
  e->klen = klen;
  e->vlen = vlen;
  e->cost = sizeof(*e) + klen + vlen;
  e->type = type;
  e->num = type == RILL_SD_BOOLEAN ? (num != 0) : type == RILL_SD_NUMBER ? num : 0;
  e->expires = 0;
  memcpy(e->data, key, klen);
  if (vlen) memcpy(e->data + klen, s, vlen);
  return e;
}

int rill__sdict_set(rill_sdict_t *d, const char *key, size_t klen, int type,
                    const char *s, size_t len, double num, double ttl_ms, int mode) {
  if (type < RILL_SD_STRING || type > RILL_SD_BOOLEAN || mode < RILL_SD_SET ||
      mode > RILL_SD_REPLACE)
    return UV_EINVAL;
  if (klen > RILL_SD_KEY_MAX) return RILL_SD_ETOOLARGE;
  if (type == RILL_SD_STRING && len > d->cap) return RILL_SD_ETOOLARGE;
  uint64_t h = siphash(d->k0, d->k1, key, klen);
  entry_t *n = entry_new(key, klen, type, s, len, num, h);
  if (n == NULL) return UV_ENOMEM;
  if (n->cost > d->cap) {
    free(n);
    return RILL_SD_ETOOLARGE;
  }
  uint64_t now = now_ms();
  n->expires = expiry(ttl_ms, now);
  entry_t *dead = NULL;
  int r = 0, evicted = 0;
  uv_mutex_lock(&d->lock);
  entry_t *old = find(d, key, klen, h);
  if (old && expired(old, now)) {
    remove_entry(d, old, &dead);
    old = NULL;
  }
  if (mode == RILL_SD_ADD && old) {
    r = RILL_SD_EEXISTS;
  } else if (mode == RILL_SD_REPLACE && !old) {
    r = RILL_SD_ENOTFOUND;
  } else {
    size_t freed = old ? old->cost : 0;
    size_t need = n->cost > freed ? n->cost - freed : 0;
    if (!make_room(d, need, old, mode == RILL_SD_SET || mode == RILL_SD_REPLACE, now,
                   &evicted, &dead)) {
      r = RILL_SD_ENOMEM;
    } else {
      if (old) remove_entry(d, old, &dead); /* live: make_room kept it */
      insert(d, n);
      n = NULL;
      r = evicted;
    }
  }
  uv_mutex_unlock(&d->lock);
  free(n);
  free_dead(dead);
  return r;
}

int rill__sdict_incr(rill_sdict_t *d, const char *key, size_t klen, double by,
                     int has_init, double init, double init_ttl_ms, double *out) {
  *out = 0;
  if (klen > RILL_SD_KEY_MAX) return has_init ? RILL_SD_ETOOLARGE : RILL_SD_ENOTFOUND;
  uint64_t h = siphash(d->k0, d->k1, key, klen);
  uint64_t now = now_ms();
  entry_t *n = NULL;
  if (has_init) {
    /* Made before the lock, in case the key has no value. */
    n = entry_new(key, klen, RILL_SD_NUMBER, NULL, 0, init + by, h);
    if (n == NULL) return UV_ENOMEM;
    n->expires = expiry(init_ttl_ms, now);
  }
  entry_t *dead = NULL;
  int r = 0, evicted = 0;
  uv_mutex_lock(&d->lock);
  entry_t *e = find(d, key, klen, h);
  if (e && expired(e, now)) {
    remove_entry(d, e, &dead);
    e = NULL;
  }
  if (e) {
    if (e->type != RILL_SD_NUMBER) {
      r = RILL_SD_ENOTNUM;
    } else {
      e->num += by;
      *out = e->num;
      lru_unlink(e);
      lru_front(d, e);
    }
  } else if (n == NULL) {
    r = RILL_SD_ENOTFOUND;
  } else if (!make_room(d, n->cost, NULL, 1, now, &evicted, &dead)) {
    r = RILL_SD_ENOMEM;
  } else {
    insert(d, n);
    *out = n->num;
    n = NULL;
    r = evicted;
  }
  uv_mutex_unlock(&d->lock);
  free(n);
  free_dead(dead);
  return r;
}

int rill__sdict_delete(rill_sdict_t *d, const char *key, size_t klen) {
  if (klen > RILL_SD_KEY_MAX) return RILL_SD_ENOTFOUND;
  uint64_t h = siphash(d->k0, d->k1, key, klen);
  uint64_t now = now_ms();
  entry_t *dead = NULL;
  int r = RILL_SD_ENOTFOUND;
  uv_mutex_lock(&d->lock);
  entry_t *e = find(d, key, klen, h);
  if (e) {
    if (!expired(e, now)) r = 0;
    remove_entry(d, e, &dead);
  }
  uv_mutex_unlock(&d->lock);
  free_dead(dead);
  return r;
}

/* Finds a live entry and applies: ttl (set) or reads it. */
static int with_expiry(rill_sdict_t *d, const char *key, size_t klen, double *ms,
                       int set) {
  if (klen > RILL_SD_KEY_MAX) return RILL_SD_ENOTFOUND;
  uint64_t h = siphash(d->k0, d->k1, key, klen);
  uint64_t now = now_ms();
  entry_t *dead = NULL;
  int r = RILL_SD_ENOTFOUND;
  uv_mutex_lock(&d->lock);
  entry_t *e = find(d, key, klen, h);
  if (e && expired(e, now)) {
    remove_entry(d, e, &dead);
  } else if (e) {
    r = 0;
    if (set)
      e->expires = expiry(*ms, now);
    else
      *ms = e->expires ? (double)(e->expires - now) : 0;
  }
  uv_mutex_unlock(&d->lock);
  free_dead(dead);
  return r;
}

int rill__sdict_ttl(rill_sdict_t *d, const char *key, size_t klen, double *ms_left) {
  *ms_left = 0;
  return with_expiry(d, key, klen, ms_left, 0);
}

int rill__sdict_expire(rill_sdict_t *d, const char *key, size_t klen, double ttl_ms) {
  return with_expiry(d, key, klen, &ttl_ms, 1);
}

void rill__sdict_flush_all(rill_sdict_t *d) {
  uv_mutex_lock(&d->lock);
  entry_t *first = d->lru.next == &d->lru ? NULL : d->lru.next;
  d->lru.prev->next = NULL; /* the list, cut loose, ends in NULL */
  d->lru.next = d->lru.prev = &d->lru;
  memset(d->buckets, 0, d->nbuckets * sizeof(*d->buckets));
  d->used = 0;
  d->count = 0;
  uv_mutex_unlock(&d->lock);
  while (first) {
    entry_t *n = first->next;
    free(first);
    first = n;
  }
}

int rill__sdict_flush_expired(rill_sdict_t *d, int max) {
  entry_t *dead = NULL;
  uint64_t now = now_ms();
  uv_mutex_lock(&d->lock);
  int n = sweep(d, now, max, &dead);
  uv_mutex_unlock(&d->lock);
  free_dead(dead);
  return n;
}

int rill__sdict_keys(rill_sdict_t *d, int max, char **out, size_t *count) {
  *out = NULL;
  *count = 0;
  uint64_t now = now_ms();
  uv_mutex_lock(&d->lock);
  size_t bytes = 0, n = 0;
  for (entry_t *e = d->lru.next; e != &d->lru && (max <= 0 || n < (size_t)max);
       e = e->next)
    if (!expired(e, now)) {
      bytes += 2 + e->klen;
      n++;
    }
  /* One block, copied under the lock: the caller makes Lua strings of it
   * after the lock is dropped. */
  char *p = malloc(bytes ? bytes : 1);
  if (p == NULL) {
    uv_mutex_unlock(&d->lock);
    return UV_ENOMEM;
  }
  size_t at = 0, k = 0;
  for (entry_t *e = d->lru.next; e != &d->lru && k < n; e = e->next) {
    if (expired(e, now)) continue;
    p[at] = (char)(e->klen >> 8);
    p[at + 1] = (char)(e->klen & 0xff);
    memcpy(p + at + 2, e->data, e->klen);
    at += 2 + e->klen;
    k++;
  }
  uv_mutex_unlock(&d->lock);
  *out = p;
  *count = n;
  return 0;
}

double rill__sdict_capacity(rill_sdict_t *d) {
  return (double)d->cap; /* fixed when made */
}

double rill__sdict_free_space(rill_sdict_t *d) {
  uv_mutex_lock(&d->lock);
  size_t left = d->cap - d->used;
  uv_mutex_unlock(&d->lock);
  return (double)left;
}

double rill__sdict_count(rill_sdict_t *d) {
  uv_mutex_lock(&d->lock);
  size_t n = d->count;
  uv_mutex_unlock(&d->lock);
  return (double)n;
}

int rill__sdict_verify(rill_sdict_t *d) {
  int bad = 0;
  uv_mutex_lock(&d->lock);
  size_t n = 0, used = 0;
  for (entry_t *e = d->lru.next; e != &d->lru && !bad; e = e->next) {
    if (e->next->prev != e) bad = 1;
    if (find(d, e->data, e->klen, e->hash) != e) bad = 2;
    if (e->hash != siphash(d->k0, d->k1, e->data, e->klen)) bad = 3;
    if (e->cost != sizeof(*e) + e->klen + e->vlen) bad = 4;
    n++;
    used += e->cost;
  }
  size_t in_buckets = 0;
  for (size_t i = 0; i < d->nbuckets && !bad; i++)
    for (entry_t *e = d->buckets[i]; e; e = e->hnext)
      in_buckets++;
  if (!bad && (n != d->count || in_buckets != n)) bad = 5;
  if (!bad && used != d->used) bad = 6;
  if (!bad && d->used > d->cap) bad = 7;
  uv_mutex_unlock(&d->lock);
  return bad;
}
