/* The file layer without Lua (file.c, file_cache.c): operations in the
 * thread pool, an abandoned open closing what it opened, sendfile to a
 * socket pair, reads from the page cache, and the open-file cache's expiry
 * and bound. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "file.h"

static rill_worker_t *W;
static int done_count;
static rill_fsop_t *finished; /* the last operation that called back */

static void done_cb(rill_fsop_t *op) {
  done_count++;
  finished = op;
}

/* Runs the loop until the operation calls back; returns it. */
static rill_fsop_t *finish(rill_fsop_t *op) {
  finished = NULL;
  while (finished != op)
    uv_run(W->loop, UV_RUN_ONCE);
  return op;
}

static int open_fds(void) {
  int n = 0;
  for (int fd = 0; fd < 4096; fd++)
    if (fcntl(fd, F_GETFD) != -1) n++;
  return n;
}

int main(void) {
  W = rill__worker_new(NULL);
  char path[] = "/tmp/rill_test_fileXXXXXX";
  int tfd = mkstemp(path);
  char data[100000];
  for (size_t i = 0; i < sizeof(data); i++)
    data[i] = (char)(i * 7);
  CHECK(write(tfd, data, sizeof(data)) == (ssize_t)sizeof(data), "write");
  close(tfd);
  int base = open_fds();

  /* open with stat, in one trip */
  rill_fsop_t *op;
  CHECK(rill__fs_open(W, path, 1, done_cb, NULL, &op) == 0, "open");
  op = finish(op);
  CHECK(op->result >= 0, "open: %d", op->result);
  CHECK(op->st.type == RILL_FT_FILE && op->st.size == sizeof(data), "stat of the open");
  rill_file_t *f = rill__file_new(W, op->result);
  rill__fsop_free(op);

  /* a read in the pool, and one from the page cache */
  CHECK(rill__fs_read(W, f, 1000, 5000, done_cb, NULL, &op) == 0, "read");
  op = finish(op);
  CHECK(op->result == 1000 && memcmp(op->buf, data + 5000, 1000) == 0, "read bytes");
  rill__fsop_free(op);
  char buf[1000];
  ssize_t n = rill__fs_read_now(f, buf, sizeof(buf), 99500);
  CHECK(n == RILL_EAGAIN || (n == 500 && memcmp(buf, data + 99500, 500) == 0),
        "read_now: %zd", n);

  /* sendfile to a non-blocking socket: what the socket takes, then the rest */
  int sv[2];
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
  fcntl(sv[0], F_SETFL, O_NONBLOCK);
  size_t sent = 0, got = 0;
  char *recv_buf = malloc(sizeof(data));
  while (got < sizeof(data)) {
    if (sent < sizeof(data)) {
      CHECK(rill__fs_sendfile(W, sv[0], f, (int64_t)sent, sizeof(data) - sent, done_cb, NULL,
                              &op) == 0, "sendfile");
      op = finish(op);
      CHECK(op->result > 0 || op->result == UV_EAGAIN, "sendfile: %d", op->result);
      sent += op->sent;
      rill__fsop_free(op);
    }
    ssize_t r = read(sv[1], recv_buf + got, sizeof(data) - got);
    if (r > 0) got += (size_t)r;
  }
  CHECK(memcmp(recv_buf, data, sizeof(data)) == 0, "sendfile bytes");
  free(recv_buf);
  /* past the end of the file: 0, the file ended */
  CHECK(rill__fs_sendfile(W, sv[0], f, sizeof(data), 10, done_cb, NULL, &op) == 0, "sendfile");
  op = finish(op);
  CHECK(op->result == 0 && op->sent == 0, "sendfile past the end: %d", op->result);
  rill__fsop_free(op);
  close(sv[0]);
  close(sv[1]);

  /* an abandoned open closes what it opened */
  CHECK(rill__fs_open(W, path, 0, done_cb, NULL, &op) == 0, "open");
  int before = done_count;
  rill__fsop_abandon(op);
  uv_run(W->loop, UV_RUN_DEFAULT);
  CHECK(done_count == before, "an abandoned operation does not call back");

  /* the cache: a hit while recent, a miss once older, a failure kept */
  rill_stat_t st = {.type = RILL_FT_FILE, .size = 42};
  rill__fcache_put(W, "/x", f, 0, &st);
  rill_file_t *g;
  int err;
  rill_stat_t st2;
  CHECK(rill__fcache_get(W, "/x", 1000, &g, &err, &st2) == 1 && g == f && st2.size == 42,
        "hit");
  CHECK(f->refs == 3, "refs: ours, the cache's, the hit's: %d", f->refs);
  rill__file_unref(g);
  CHECK(rill__fcache_get(W, "/y", 1000, &g, &err, &st2) == 0, "miss");
  rill__fcache_put(W, "/y", NULL, UV_ENOENT, NULL);
  CHECK(rill__fcache_get(W, "/y", 1000, &g, &err, &st2) == 1 && g == NULL && err == UV_ENOENT,
        "a failure");
  uv_sleep(5);
  uv_update_time(W->loop);
  CHECK(rill__fcache_get(W, "/x", 1, &g, &err, &st2) == 0, "too old");
  /* the bound: the least recently used go, and their references with them */
  char key[32];
  for (int i = 0; i < RILL_FCACHE_MAX + 10; i++) {
    snprintf(key, sizeof(key), "/k%d", i);
    rill__fcache_put(W, key, f, 0, &st);
    if (i == 0) CHECK(rill__fcache_get(W, "/x", 60000, &g, &err, &st2) == 1, "still there");
    if (i == 0) rill__file_unref(g);
  }
  CHECK(f->refs == 1 + RILL_FCACHE_MAX, "refs kept: %d", f->refs);
  CHECK(rill__fcache_get(W, "/y", 60000, &g, &err, &st2) == 0, "the oldest went");
  CHECK(rill__fcache_get(W, "/k0", 60000, &g, &err, &st2) == 0, "the oldest went");
  CHECK(rill__fcache_clear(W) == RILL_FCACHE_MAX, "clear");
  CHECK(f->refs == 1, "refs after clear: %d", f->refs);
  rill__file_unref(f);
  uv_run(W->loop, UV_RUN_DEFAULT);
  CHECK(open_fds() == base, "descriptors: %d, were %d", open_fds(), base);

  unlink(path);
  rill__worker_free(W);
  printf("%d checks, %d failures\n", checks, failures);
  return failures != 0;
}
