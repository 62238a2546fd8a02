/* The embedding API (rill.h) as a host meets it: options that cannot work
 * are refused, messages are static, and no thread that runs rill's loops
 * can be killed by SIGPIPE while the host's own mask is left as it was. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <rill.h>

#include "check.h"

/* Per worker: -1 not seen yet, else whether SIGPIPE was blocked in its thread
 * while it served a request. */
static int blocked[2] = {-1, -1};

static int note_mask(lua_State *L) {
  sigset_t now;
  pthread_sigmask(SIG_BLOCK, NULL, &now);
  int i = rill_worker_index(L);
  if (i >= 0 && i < 2) __atomic_store_n(&blocked[i], sigismember(&now, SIGPIPE), __ATOMIC_SEQ_CST);
  return 0;
}

static const char app[] = "local host = require 'rill.host'\n"
                          "local block = ('x'):rep(65536)\n"
                          "return function(req, res)\n"
                          "  host.note_mask()\n"
                          "  if req.path == '/stream' then\n"
                          "    while res:write(block) do end\n"
                          "    return\n"
                          "  end\n"
                          "  res:send('ok')\n"
                          "end\n";

static int port;

static int stops;
static void on_stop(rill_t *r, void *ud) {
  (void)r;
  (*(int *)ud)++;
}

static int connect_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Requests on fresh connections until both workers have served some, with
 * streamed answers cut short (the server then writes to a gone peer). */
static void *client(void *arg) {
  rill_t *r = arg;
  char buf[4096];
  for (int i = 0; i < 400 && (__atomic_load_n(&blocked[0], __ATOMIC_SEQ_CST) < 0 ||
                              __atomic_load_n(&blocked[1], __ATOMIC_SEQ_CST) < 0 || i < 20);
       i++) {
    int fd = connect_port();
    if (fd < 0) break;
    const char *req = i % 2 ? "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                            : "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (write(fd, req, strlen(req)) < 0) break;
    if (read(fd, buf, sizeof(buf)) < 0) break;
    close(fd);
  }
  rill_stop(r);
  return NULL;
}

int main(void) {
  rill_t *r;
  /* options that cannot work */
  rill_options_t bad = {.log_level = "bogus"};
  CHECK(rill_new(&r, &bad) == UV_EINVAL, "rill_new(&r, &bad) == UV_EINVAL");
  bad = (rill_options_t){.workers = -1};
  CHECK(rill_new(&r, &bad) == UV_EINVAL, "rill_new(&r, &bad) == UV_EINVAL");
  bad = (rill_options_t){.grace = -1};
  CHECK(rill_new(&r, &bad) == UV_EINVAL, "rill_new(&r, &bad) == UV_EINVAL");

  /* static messages for rill's own codes, a name for libuv's, a number for others */
  CHECK(strcmp(rill_strerror(RILL_ELOAD), "the app did not load") == 0, "strcmp(rill_strerror(RILL_ELOAD), \"the app did not load\") == 0");
  CHECK(strcmp(rill_strerror(UV_ECONNRESET), "ECONNRESET: connection reset by peer") == 0, "strcmp(rill_strerror(UV_ECONNRESET), \"ECONNRESET: connection reset by peer\") == 0");
  CHECK(strstr(rill_strerror(-30099), "-30099") != NULL, "strstr(rill_strerror(-30099), \"-30099\") != NULL");

  rill_options_t o = {.workers = 2, .log_level = "warn", .grace = 5};
  CHECK(rill_new(&r, &o) == 0, "rill_new(&r, &o) == 0");
  CHECK(rill_register(r, "note_mask", note_mask) == 0, "rill_register(r, \"note_mask\", note_mask) == 0");
  CHECK(rill_listen(r, "127.0.0.1", 0, NULL) == 0, "rill_listen(r, \"127.0.0.1\", 0, NULL) == 0");
  CHECK(rill_load_string(r, app, "api-test") == 0, "rill_load_string(r, app, \"api-test\") == 0");
  CHECK(rill_start(r) == 0, "rill_start(r) == 0");
  port = rill_port(r, 0);
  CHECK(port > 0, "port > 0");

  sigset_t before, after;
  pthread_sigmask(SIG_BLOCK, NULL, &before);
  CHECK(!sigismember(&before, SIGPIPE), "!sigismember(&before, SIGPIPE)");
  pthread_t th;
  CHECK(pthread_create(&th, NULL, client, r) == 0, "pthread_create(&th, NULL, client, r) == 0");
  CHECK(rill_run(r) == 0, "rill_run(r) == 0");
  pthread_join(th, NULL);
  rill_free(r);

  /* both workers served with SIGPIPE blocked; the host's thread has its mask back */
  CHECK(blocked[0] == 1, "blocked[0] == 1");
  CHECK(blocked[1] == 1, "blocked[1] == 1");
  pthread_sigmask(SIG_BLOCK, NULL, &after);
  CHECK(!sigismember(&after, SIGPIPE), "!sigismember(&after, SIGPIPE)");
  /* a reload of a file that does not compile is refused, and said to the host */
  char path[] = "/tmp/rill-test-api-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  const char good[] = "return function(req, res) res:send('ok') end\n";
  const char broken[] = "return function(req, res) res:send('ok' end\n";
  CHECK(write(fd, good, sizeof(good) - 1) == (ssize_t)(sizeof(good) - 1), "write good");
  rill_options_t one = {.workers = 1, .log_level = "error"};
  CHECK(rill_new(&r, &one) == 0, "rill_new");
  CHECK(rill_listen(r, "127.0.0.1", 0, NULL) == 0, "rill_listen");
  CHECK(rill_load_file(r, path) == 0, "rill_load_file");
  CHECK(rill_start(r) == 0, "rill_start");
  CHECK(rill_reload(r) == 0, "reload of a good file");
  CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, broken, sizeof(broken) - 1, 0) > 0, "write broken");
  CHECK(rill_reload(r) == RILL_ELOAD, "reload of a broken file gives RILL_ELOAD");
  CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, good, sizeof(good) - 1, 0) > 0, "write good again");
  CHECK(rill_reload(r) == 0, "reload of the mended file");
  close(fd);
  unlink(path);
  rill_stop(r);
  CHECK(rill_run(r) == 0, "rill_run after rill_stop");
  rill_free(r);

  /* a host driving rill's loop with rill_run_once hears when the stop is done */
  CHECK(rill_new(&r, &one) == 0, "rill_new for run_once");
  CHECK(rill_on_stop(r, on_stop, &stops) == 0, "rill_on_stop");
  CHECK(rill_listen(r, "127.0.0.1", 0, NULL) == 0, "rill_listen");
  CHECK(rill_load_string(r, app, "run-once") == 0, "rill_load_string");
  CHECK(rill_register(r, "note_mask", note_mask) == 0, "rill_register");
  CHECK(rill_start(r) == 0, "rill_start");
  CHECK(rill_run_once(r) == 1, "rill_run_once while serving");
  rill_stop(r);
  int turns = 0;
  while (rill_run_once(r) && turns < 20000) {
    usleep(1000);
    turns++;
  }
  CHECK(turns < 20000, "rill_run_once returns 0 once the stop is done (%d turns)", turns);
  CHECK(stops == 1, "the stop callback ran once (%d)", stops);
  CHECK(rill_run_once(r) == 0, "and 0 after that");
  rill_free(r);

  printf("%d checks, %d failures\n", checks, failures);
  return failures != 0;
}
