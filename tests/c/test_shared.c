/* Shared dicts and channels without Lua (shared_dict.c, shared_chan.c): the
 * dict's semantics (types, expiry, add/replace/incr, the cap with eviction or
 * "no memory", keys, flush), then threads hammering one dict and one
 * channel: counters come out exact, and every subscriber on its own loop
 * gets every message in order, or an overflow once when its queue is small. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "shared_chan.h"
#include "shared_dict.h"

static int get_str(rill_sdict_t *d, const char *k, char *out, size_t cap) {
  size_t len;
  double num;
  int t = rill__sdict_get(d, k, strlen(k), out, cap - 1, &len, &num);
  if (t == RILL_SD_STRING && len < cap) out[len] = 0;
  return t;
}

static int set_str(rill_sdict_t *d, const char *k, const char *v, double ttl, int mode) {
  return rill__sdict_set(d, k, strlen(k), RILL_SD_STRING, v, strlen(v), 0, ttl, mode);
}

static void test_dict(void) {
  int created;
  rill_sdict_t *d = rill__sdict_open("t1", 2, 64 * 1024, &created);
  CHECK(d && created, "made");
  CHECK(rill__sdict_open("t1", 2, 1, &created) == d && !created, "the same dict, once");
  CHECK(rill__sdict_capacity(d) == 64 * 1024, "the first cap stays");
  char buf[256];
  size_t len;
  double num;

  CHECK(get_str(d, "a", buf, sizeof(buf)) == RILL_SD_NONE, "missing");
  CHECK(set_str(d, "a", "hello", 0, RILL_SD_SET) == 0, "set");
  CHECK(get_str(d, "a", buf, sizeof(buf)) == RILL_SD_STRING && strcmp(buf, "hello") == 0,
        "get: %s", buf);
  /* too small a buffer: the length, nothing copied */
  CHECK(rill__sdict_get(d, "a", 1, buf, 2, &len, &num) == RILL_SD_STRING && len == 5,
        "len");
  CHECK(rill__sdict_set(d, "n", 1, RILL_SD_NUMBER, NULL, 0, 1.5, 0, RILL_SD_SET) == 0,
        "num");
  CHECK(rill__sdict_get(d, "n", 1, buf, 10, &len, &num) == RILL_SD_NUMBER && num == 1.5,
        "n");
  CHECK(rill__sdict_set(d, "b", 1, RILL_SD_BOOLEAN, NULL, 0, 0, 0, RILL_SD_SET) == 0,
        "bool");
  CHECK(rill__sdict_get(d, "b", 1, buf, 10, &len, &num) == RILL_SD_BOOLEAN && num == 0,
        "b");
  /* an empty string and a key with zero bytes in it */
  CHECK(rill__sdict_set(d, "z\0z", 3, RILL_SD_STRING, "", 0, 0, 0, RILL_SD_SET) == 0,
        "empty");
  CHECK(rill__sdict_get(d, "z\0z", 3, buf, 10, &len, &num) == RILL_SD_STRING && len == 0,
        "empty value");
  CHECK(rill__sdict_get(d, "z", 1, buf, 10, &len, &num) == RILL_SD_NONE,
        "z is another key");

  /* add, replace */
  CHECK(set_str(d, "a", "x", 0, RILL_SD_ADD) == RILL_SD_EEXISTS, "add on a live key");
  CHECK(set_str(d, "new", "x", 0, RILL_SD_REPLACE) == RILL_SD_ENOTFOUND,
        "replace nothing");
  CHECK(set_str(d, "new", "x", 0, RILL_SD_ADD) == 0, "add");
  CHECK(set_str(d, "new", "y", 0, RILL_SD_REPLACE) == 0, "replace");
  CHECK(get_str(d, "new", buf, sizeof(buf)) == RILL_SD_STRING && strcmp(buf, "y") == 0,
        "y");

  /* incr */
  double out;
  CHECK(rill__sdict_incr(d, "n", 1, 2, 0, 0, 0, &out) == 0 && out == 3.5, "incr %g", out);
  CHECK(rill__sdict_incr(d, "a", 1, 1, 0, 0, 0, &out) == RILL_SD_ENOTNUM, "not a number");
  CHECK(rill__sdict_incr(d, "c", 1, 1, 0, 0, 0, &out) == RILL_SD_ENOTFOUND, "no init");
  CHECK(rill__sdict_incr(d, "c", 1, 1, 1, 10, 0, &out) == 0 && out == 11, "init %g", out);

  /* expiry */
  CHECK(set_str(d, "e", "soon", 30, RILL_SD_SET) == 0, "set ttl");
  double left;
  int tr = rill__sdict_ttl(d, "e", 1, &left); /* (or gone already, on a loaded machine) */
  CHECK((tr == 0 && left > 0 && left <= 30) || tr == RILL_SD_ENOTFOUND, "ttl %g", left);
  CHECK(rill__sdict_ttl(d, "a", 1, &left) == 0 && left == 0, "no expiry");
  uv_sleep(50);
  CHECK(get_str(d, "e", buf, sizeof(buf)) == RILL_SD_NONE, "expired");
  CHECK(rill__sdict_ttl(d, "e", 1, &left) == RILL_SD_ENOTFOUND, "ttl of nothing");
  CHECK(set_str(d, "e", "x", 0, RILL_SD_ADD) == 0, "add over an expired value");
  CHECK(rill__sdict_expire(d, "e", 1, 20) == 0, "expire");
  CHECK(set_str(d, "f", "x", 20, RILL_SD_SET) == 0, "f");
  uv_sleep(40);
  CHECK(rill__sdict_flush_expired(d, 0) == 2, "flush_expired");

  /* keys, delete, flush_all */
  char *block;
  size_t n;
  CHECK(rill__sdict_keys(d, 0, &block, &n) == 0 && n == 6, "keys %zu", n);
  CHECK(n > 0 && block[0] == 0 && block[1] == 1 && block[2] == 'c', "most recent first");
  free(block);
  CHECK(rill__sdict_keys(d, 2, &block, &n) == 0 && n == 2, "keys max");
  free(block);
  CHECK(rill__sdict_delete(d, "a", 1) == 0, "delete");
  CHECK(rill__sdict_delete(d, "a", 1) == RILL_SD_ENOTFOUND, "delete again");
  rill__sdict_flush_all(d);
  CHECK(rill__sdict_count(d) == 0 && rill__sdict_free_space(d) == 64 * 1024, "flushed");

  /* limits: a key past the limit; an entry larger than the cap */
  char *big = malloc(70000);
  memset(big, 'k', 70000);
  CHECK(rill__sdict_set(d, big, 65536, RILL_SD_NUMBER, NULL, 0, 1, 0, 0) ==
            RILL_SD_ETOOLARGE,
        "long key");
  CHECK(rill__sdict_set(d, "v", 1, RILL_SD_STRING, big, 65536, 0, 0, 0) ==
            RILL_SD_ETOOLARGE,
        "value past the cap");
  CHECK(rill__sdict_get(d, big, 65536, buf, 1, &len, &num) == RILL_SD_NONE,
        "get long key");

  /* the cap: set evicts the least recently used, safe_set and add fail */
  rill_sdict_t *s = rill__sdict_open("small", 5, 8192, NULL);
  char key[32];
  int i, evicted = 0;
  for (i = 0; i < 1000; i++) {
    snprintf(key, sizeof(key), "k%d", i);
    int r =
        rill__sdict_set(s, key, strlen(key), RILL_SD_STRING, big, 100, 0, 0, RILL_SD_SET);
    CHECK(r == 0 || r == 1, "set under the cap: %d", r);
    if (r == 1) evicted++;
    CHECK(rill__sdict_free_space(s) >= 0 && rill__sdict_capacity(s) == 8192,
          "within the cap");
  }
  CHECK(evicted > 900, "evicted %d", evicted);
  CHECK(rill__sdict_verify(s) == 0, "bookkeeping: %d", rill__sdict_verify(s));
  CHECK(rill__sdict_get(s, "k999", 4, buf, 200, &len, &num) == RILL_SD_STRING,
        "newest kept");
  CHECK(rill__sdict_get(s, "k0", 2, buf, 200, &len, &num) == RILL_SD_NONE,
        "oldest evicted");
  int r = rill__sdict_set(s, "x", 1, RILL_SD_STRING, big, 2000, 0, 0, RILL_SD_SAFE_SET);
  CHECK(r == RILL_SD_ENOMEM, "safe_set: no memory (%d)", r);
  r = rill__sdict_set(s, "x", 1, RILL_SD_STRING, big, 2000, 0, 0, RILL_SD_ADD);
  CHECK(r == RILL_SD_ENOMEM, "add: no memory (%d)", r);
  CHECK(rill__sdict_get(s, "k999", 4, buf, 200, &len, &num) == RILL_SD_STRING,
        "safe kept");
  r = rill__sdict_set(s, "k999", 4, RILL_SD_STRING, big, 3000, 0, 0, RILL_SD_REPLACE);
  CHECK(r == 1, "replace evicts as set does (%d)", r);
  /* expired entries make room for safe_set */
  rill__sdict_flush_all(s);
  for (i = 0; i < 1000; i++) {
    snprintf(key, sizeof(key), "t%d", i);
    if (rill__sdict_set(s, key, strlen(key), RILL_SD_STRING, big, 100, 0, 10,
                        RILL_SD_SAFE_SET) != 0)
      break;
  }
  CHECK(i > 10 && i < 1000, "filled at %d", i);
  uv_sleep(20);
  r = rill__sdict_set(s, "x", 1, RILL_SD_STRING, big, 2000, 0, 0, RILL_SD_SAFE_SET);
  CHECK(r == 0, "safe_set after expiry: %d", r);
  CHECK(rill__sdict_verify(s) == 0 && rill__sdict_verify(d) == 0, "bookkeeping");
  free(big);
}

/* ---- threads on one dict ---- */

#define THREADS 4
#define ROUNDS 20000

static rill_sdict_t *HD;

static void dict_worker(void *arg) {
  long id = (long)arg;
  char key[32], buf[64];
  memset(buf, 'v', sizeof(buf));
  for (int i = 0; i < ROUNDS; i++) {
    double out;
    rill__sdict_incr(HD, "count", 5, 1, 1, 0, 0, &out);
    snprintf(key, sizeof(key), "k%ld.%d", id, i % 100);
    rill__sdict_set(HD, key, strlen(key), RILL_SD_STRING, key, strlen(key), 0,
                    i % 3 ? 0 : 1, RILL_SD_SET);
    size_t len;
    double num;
    int t = rill__sdict_get(HD, key, strlen(key), buf, sizeof(buf), &len, &num);
    if (t == RILL_SD_STRING && (len != strlen(key) || memcmp(buf, key, len) != 0))
      CHECK(0, "a value from another key");
    /* the other operations now and then, each thread its own mix */
    char other[32];
    snprintf(other, sizeof(other), "o%d", i % 37);
    switch ((i + id) % 7) {
    case 0:
      rill__sdict_set(HD, other, strlen(other), RILL_SD_STRING, buf, i % 60, 0, 0,
                      RILL_SD_SAFE_SET);
      break;
    case 1:
      rill__sdict_set(HD, other, strlen(other), RILL_SD_NUMBER, NULL, 0, i, 2,
                      RILL_SD_ADD);
      break;
    case 2:
      rill__sdict_delete(HD, other, strlen(other));
      break;
    case 3:
      rill__sdict_expire(HD, other, strlen(other), 1);
      break;
    case 4:
      rill__sdict_set(HD, other, strlen(other), RILL_SD_BOOLEAN, NULL, 0, 1, 0,
                      RILL_SD_REPLACE);
      break;
    default:
      break;
    }
    if (i % 1000 == 0) {
      char *block;
      size_t n;
      if (rill__sdict_keys(HD, 50, &block, &n) == 0) free(block);
      rill__sdict_flush_expired(HD, 10);
      if (rill__sdict_verify(HD) != 0)
        CHECK(0, "bookkeeping: %d", rill__sdict_verify(HD));
    }
  }
}

static void test_dict_threads(void) {
  HD = rill__sdict_open("hammer", 6, 16384, NULL); /* small: evictions too */
  uv_thread_t th[THREADS];
  for (long i = 0; i < THREADS; i++)
    uv_thread_create(&th[i], dict_worker, (void *)i);
  for (int i = 0; i < THREADS; i++)
    uv_thread_join(&th[i]);
  size_t len;
  double num;
  char buf[8];
  int t = rill__sdict_get(HD, "count", 5, buf, sizeof(buf), &len, &num);
  /* count is the most used key: evictions take the least recently used */
  CHECK(t == RILL_SD_NUMBER && num == THREADS * ROUNDS, "count %g", num);
  CHECK(rill__sdict_verify(HD) == 0, "bookkeeping after: %d", rill__sdict_verify(HD));
  CHECK(rill__sdict_free_space(HD) >= 0, "within the cap");
}

/* ---- channels ---- */

#define MSGS 10000
#define SUBS 3

typedef struct {
  uv_loop_t loop;
  rill_chan_hub_t *hub;
  rill_chan_sub_t *sub;
  uv_async_t stop_async;
  long expect; /* the next message number */
  int overflows, bad, done, small;
  uv_sem_t *ready;
} sub_t;

static rill_chan_t *HC;

static void on_notify(void *data) {
  sub_t *s = data;
  rill_chan_msg_t *m;
  int r;
  while ((r = rill__chan_next(s->sub, &m)) != 0) {
    if (r < 0) {
      s->overflows++;
      continue;
    }
    char tmp[32];
    size_t n = m->len < sizeof(tmp) - 1 ? m->len : sizeof(tmp) - 1;
    memcpy(tmp, m->data, n);
    tmp[n] = 0;
    long v = atol(tmp);
    if (v == -1)
      s->done = 1;
    else if (s->small ? v < s->expect : v != s->expect)
      s->bad++;
    s->expect = v + 1;
    rill__chan_msg_unref(m);
    if (s->small) uv_sleep(1); /* slow: it must overflow */
  }
  if (s->done) {
    rill__chan_unsubscribe(s->sub);
    s->sub = NULL;
    rill__chan_hub_close(s->hub);
  }
}

static void sub_thread(void *arg) {
  sub_t *s = arg;
  uv_loop_init(&s->loop);
  s->hub = rill__chan_hub_new(&s->loop);
  s->sub = rill__chan_subscribe(HC, s->hub, s->small ? 16 : MSGS + 1, 0, on_notify, s);
  /* keeps the loop running until done: the hub's handle does not */
  uv_async_init(&s->loop, &s->stop_async, NULL);
  uv_sem_post(s->ready);
  while (!s->done)
    uv_run(&s->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&s->stop_async, NULL);
  uv_run(&s->loop, UV_RUN_DEFAULT);
  rill__chan_hub_free(s->hub);
  uv_loop_close(&s->loop);
}

static void publisher(void *arg) {
  (void)arg;
  char msg[32];
  for (long i = 0; i < MSGS; i++) {
    int n = snprintf(msg, sizeof(msg), "%ld", i);
    rill__chan_publish(HC, msg, (size_t)n);
  }
}

static void test_channel_threads(void) {
  HC = rill__chan_open("hammer", 6);
  CHECK(rill__chan_open("hammer", 6) == HC, "the same channel");
  CHECK(rill__chan_publish(HC, "x", 1) == 0, "no subscribers");
  uv_sem_t ready;
  uv_sem_init(&ready, 0);
  sub_t subs[SUBS + 1];
  uv_thread_t th[SUBS + 1];
  memset(subs, 0, sizeof(subs));
  for (int i = 0; i <= SUBS; i++) {
    subs[i].ready = &ready;
    subs[i].small = i == SUBS;
    uv_thread_create(&th[i], sub_thread, &subs[i]);
    uv_sem_wait(&ready);
  }
  CHECK(rill__chan_subscribers(HC) == SUBS + 1, "subscribers");
  /* one publisher: each subscriber must see its order */
  uv_thread_t pub;
  uv_thread_create(&pub, publisher, NULL);
  uv_thread_join(&pub);
  int reached = rill__chan_publish(HC, "-1", 2);
  CHECK(reached == SUBS + 1, "the end reached %d", reached);
  CHECK(rill__chan_publish(HC, "x", RILL_CHAN_MSG_MAX + 1) == RILL_CHAN_ETOOLARGE,
        "too large");
  for (int i = 0; i <= SUBS; i++)
    uv_thread_join(&th[i]);
  for (int i = 0; i < SUBS; i++) {
    CHECK(subs[i].bad == 0 && subs[i].overflows == 0, "sub %d: bad %d, overflows %d", i,
          subs[i].bad, subs[i].overflows);
    CHECK(subs[i].expect == 0, "sub %d got to the end", i); /* -1 + 1 */
  }
  CHECK(subs[SUBS].overflows > 0 && subs[SUBS].bad == 0, "slow sub: overflows %d, bad %d",
        subs[SUBS].overflows, subs[SUBS].bad);
  CHECK(rill__chan_subscribers(HC) == 0, "all gone");
  uv_sem_destroy(&ready);
}

/* A subscriber's queue: bounds in messages and bytes, overflow once, and a
 * hub closed with a subscriber left. */
static int notified;
static void count_notify(void *data) {
  notified++;
}

static void test_channel_queue(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_async_t keep; /* the hub's handle keeps no loop alive: this one does */
  uv_async_init(&loop, &keep, NULL);
  rill_chan_hub_t *h = rill__chan_hub_new(&loop);
  rill_chan_t *c = rill__chan_open("q", 1);
  rill_chan_sub_t *s = rill__chan_subscribe(c, h, 3, 10, count_notify, NULL);
  rill_chan_msg_t *m;
  CHECK(rill__chan_next(s, &m) == 0, "empty");
  CHECK(rill__chan_publish(c, "aaaa", 4) == 1, "1");
  CHECK(rill__chan_publish(c, "bbbb", 4) == 1, "2");
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(notified == 1, "one notify for two messages: %d", notified);
  CHECK(rill__chan_publish(c, "cccc", 4) == 1, "3 (past the bytes: overflow, then kept)");
  CHECK(rill__chan_next(s, &m) == RILL_CHAN_EOVERFLOW, "overflow first");
  CHECK(rill__chan_next(s, &m) == 1 && m->len == 4 && memcmp(m->data, "cccc", 4) == 0,
        "c");
  rill__chan_msg_unref(m);
  CHECK(rill__chan_next(s, &m) == 0, "then empty");
  CHECK(rill__chan_publish(c, "0123456789abc", 13) == 0, "larger than the bound");
  CHECK(rill__chan_next(s, &m) == RILL_CHAN_EOVERFLOW, "so it overflowed");
  for (int i = 0; i < 3; i++)
    rill__chan_publish(c, "x", 1);
  CHECK(rill__chan_publish(c, "y", 1) == 1, "4th: past the count");
  CHECK(rill__chan_next(s, &m) == RILL_CHAN_EOVERFLOW, "overflow");
  CHECK(rill__chan_next(s, &m) == 1 && m->data[0] == 'y', "y");
  rill__chan_msg_unref(m);
  rill__chan_publish(c, "z", 1);
  /* channels are counted: the last reference frees one */
  size_t nch = rill__chan_count();
  rill_chan_t *tmp = rill__chan_open("tmp", 3);
  rill_chan_sub_t *ts = rill__chan_subscribe(tmp, h, 0, 0, count_notify, NULL);
  CHECK(rill__chan_count() == nch + 1, "made");
  rill__chan_release(tmp);
  CHECK(rill__chan_count() == nch + 1, "the subscriber holds it");
  CHECK(rill__chan_publish(tmp, "x", 1) == 1, "it still reaches the subscriber");
  rill__chan_unsubscribe(ts);
  CHECK(rill__chan_count() == nch, "freed with the last");
  /* the hub closes first: the subscriber is off the channel, still freeable */
  rill__chan_hub_close(h);
  CHECK(rill__chan_subscribers(c) == 0, "off the channel");
  CHECK(rill__chan_publish(c, "w", 1) == 0, "reaches nobody");
  rill__chan_unsubscribe(s);
  CHECK(rill__chan_subscribe(c, h, 0, 0, count_notify, NULL) == NULL, "a closed hub");
  uv_close((uv_handle_t *)&keep, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  rill__chan_hub_free(h);
  uv_loop_close(&loop);
}

int main(void) {
  test_dict();
  test_dict_threads();
  test_channel_queue();
  test_channel_threads();
  printf("%d checks, %d failures\n", checks, failures);
  return failures != 0;
}
