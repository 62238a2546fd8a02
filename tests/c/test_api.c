/* The embedding API (rill.h) as a host meets it: options that cannot work
 * are refused, messages are static, rill's own threads block SIGPIPE while
 * the host's thread keeps its mask;
 * limits set with rill_set_int hold against curl; the host's signal
 * handlers stay; rill's log lines, its errors, the context pointer and the
 * worker hooks reach the host on the right threads; a host's own loop is
 * never stopped by rill; a host that is not built on libuv drives rill by
 * polling its backend descriptor.
 *
 * `test_api sigpipe` (ctest c_api_sigpipe): a host on its own loop with
 * SIGPIPE at SIG_DFL survives clients that close streamed answers early. */
#include <errno.h>
#include <poll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
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
  if (i >= 0 && i < 2)
    __atomic_store_n(&blocked[i], sigismember(&now, SIGPIPE), __ATOMIC_SEQ_CST);
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
  for (int i = 0;
       i < 400 && (__atomic_load_n(&blocked[0], __ATOMIC_SEQ_CST) < 0 ||
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

static int test_basics(void) {
  rill_t *r;
  /* options that cannot work */
  rill_options_t bad = {.log_level = "bogus"};
  CHECK(rill_new(&r, &bad) == UV_EINVAL, "rill_new(&r, &bad) == UV_EINVAL");
  bad = (rill_options_t){.workers = -1};
  CHECK(rill_new(&r, &bad) == UV_EINVAL, "rill_new(&r, &bad) == UV_EINVAL");
  bad = (rill_options_t){.grace = -1};
  CHECK(rill_new(&r, &bad) == UV_EINVAL, "rill_new(&r, &bad) == UV_EINVAL");

  /* static messages for rill's own codes, a name for libuv's, a number for others */
  CHECK(strcmp(rill_strerror(RILL_ELOAD), "the app did not load") == 0,
        "strcmp(rill_strerror(RILL_ELOAD), \"the app did not load\") == 0");
  CHECK(strcmp(rill_strerror(UV_ECONNRESET), "ECONNRESET: connection reset by peer") == 0,
        "strcmp(rill_strerror(UV_ECONNRESET), \"ECONNRESET: connection reset by peer\") "
        "== 0");
  CHECK(strstr(rill_strerror(-30099), "-30099") != NULL,
        "strstr(rill_strerror(-30099), \"-30099\") != NULL");

  rill_options_t o = {.workers = 2, .log_level = "warn", .grace = 5};
  CHECK(rill_new(&r, &o) == 0, "rill_new(&r, &o) == 0");
  CHECK(rill_register(r, "note_mask", note_mask) == 0,
        "rill_register(r, \"note_mask\", note_mask) == 0");
  CHECK(rill_listen(r, "127.0.0.1", 0, NULL) == 0,
        "rill_listen(r, \"127.0.0.1\", 0, NULL) == 0");
  CHECK(rill_load_string(r, app, "api-test") == 0,
        "rill_load_string(r, app, \"api-test\") == 0");
  CHECK(rill_start(r) == 0, "rill_start(r) == 0");
  port = rill_port(r, 0);
  CHECK(port > 0, "port > 0");

  sigset_t before, after;
  pthread_sigmask(SIG_BLOCK, NULL, &before);
  CHECK(!sigismember(&before, SIGPIPE), "!sigismember(&before, SIGPIPE)");
  pthread_t th;
  CHECK(pthread_create(&th, NULL, client, r) == 0,
        "pthread_create(&th, NULL, client, r) == 0");
  CHECK(rill_run(r) == 0, "rill_run(r) == 0");
  pthread_join(th, NULL);
  rill_free(r);

  /* worker 1, on rill's own thread, served with SIGPIPE blocked; worker 0,
   * on the host's thread, with the host's mask, untouched */
  CHECK(blocked[0] == 0, "blocked[0] == 0");
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
  CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, broken, sizeof(broken) - 1, 0) > 0,
        "write broken");
  CHECK(rill_reload(r) == RILL_ELOAD, "reload of a broken file gives RILL_ELOAD");
  CHECK(strstr(rill_last_error(r), path) != NULL &&
            strstr(rill_last_error(r), ":1:") != NULL,
        "rill_last_error names the file and line: %s", rill_last_error(r));
  const char raises[] = "local db = nil\nreturn db.connect()\n";
  CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, raises, sizeof(raises) - 1, 0) > 0,
        "write raising");
  CHECK(rill_reload(r) == RILL_ELOAD, "reload of a file that raises gives RILL_ELOAD");
  CHECK(strstr(rill_last_error(r), path) != NULL &&
            strstr(rill_last_error(r), ":2:") != NULL,
        "rill_last_error names the file and line: %s", rill_last_error(r));
  CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, good, sizeof(good) - 1, 0) > 0,
        "write good again");
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

  return 0;
}

/* ---- helpers ---- */

/* Sends req on a fresh connection to port and reads the answer until the
 * server closes (10 s at most) into buf; returns the bytes read or -1. */
static int exchange(int to, const char *req, char *buf, size_t len) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)to)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      (req[0] && write(fd, req, strlen(req)) < 0)) {
    close(fd);
    return -1;
  }
  size_t n = 0;
  for (;;) {
    ssize_t k = read(fd, buf + n, len - 1 - n);
    if (k < 0) {
      n = (size_t)-1;
      break;
    }
    if (k == 0) break;
    n += (size_t)k;
    if (n == len - 1) break;
  }
  close(fd);
  if (n == (size_t)-1) return -1;
  buf[n] = 0;
  return (int)n;
}

/* Runs a shell command and returns its first line of output (or ""). */
static void run_cmd(const char *cmd, char *out, size_t len) {
  out[0] = 0;
  FILE *f = popen(cmd, "r");
  if (f == NULL) return;
  if (fgets(out, (int)len, f) == NULL) out[0] = 0;
  pclose(f);
  out[strcspn(out, "\n")] = 0;
}

/* ---- options and errors ---- */

static int test_options(void) {
  rill_t *r;
  CHECK(rill_new(&r, NULL) == 0, "rill_new");
  CHECK(strcmp(rill_last_error(r), "") == 0, "no error yet");
  CHECK(rill_set_int(r, RILL_OPT_MAX_BODY_BYTES, -5) == UV_EINVAL, "a negative size");
  CHECK(strstr(rill_last_error(r), "max_body_bytes") != NULL,
        "the error names the option: %s", rill_last_error(r));
  CHECK(rill_set_int(r, RILL_OPT_HEADER_TIMEOUT, 0) == UV_EINVAL, "a timeout of 0");
  CHECK(rill_set_int(r, RILL_OPT_MAX_HEADER_BYTES, 10) == UV_EINVAL,
        "max_header_bytes < 64");
  CHECK(rill_set_int(r, RILL_OPT_SIGNALS, 2) == UV_EINVAL, "signals 2");
  CHECK(rill_set_int(r, RILL_OPT_LOG_LEVEL, 4) == UV_EINVAL, "log level 4");
  CHECK(rill_set_int(r, 99, 1) == UV_EINVAL, "an unknown option");
  CHECK(strstr(rill_last_error(r), "unknown option 99") != NULL, "%s",
        rill_last_error(r));
  CHECK(rill_set_str(r, RILL_OPT_LOG_LEVEL, "bogus") == UV_EINVAL, "log level bogus");
  CHECK(rill_set_str(r, RILL_OPT_MAX_BODY_BYTES, "10") == UV_EINVAL,
        "a string for a number");
  CHECK(rill_set_int(r, RILL_OPT_MAX_BODY_BYTES, -1) == 0, "-1: no limit");
  CHECK(rill_set_int(r, RILL_OPT_MAX_CONNECTIONS_PER_ADDRESS, 0) == 0, "0: no limit");
  CHECK(rill_set_str(r, RILL_OPT_LOG_LEVEL, "error") == 0, "log level error");
  CHECK(rill_set_int(r, RILL_OPT_GRACE, 2000) == 0, "grace 2000 ms");
  CHECK(rill_backend_fd(r) == RILL_ESTATE, "no backend before rill_start");
  /* rill_start without an app says so */
  CHECK(rill_start(r) == RILL_ELOAD, "rill_start without an app");
  CHECK(strstr(rill_last_error(r), "no app") != NULL, "%s", rill_last_error(r));
  CHECK(rill_load_string(r, "return function(req, res) res:send('x') end", "opts") == 0,
        "load");
  CHECK(rill_start(r) == 0, "rill_start");
  CHECK(rill_set_int(r, RILL_OPT_HEADER_TIMEOUT, 1000) == RILL_ESTATE, "set after start");
  CHECK(rill_backend_fd(r) >= 0, "a backend descriptor");
  rill_stop(r);
  CHECK(rill_run(r) == 0, "rill_run");
  rill_free(r);

  /* an app that raises while it starts: RILL_ELOAD, and the host hears why */
  CHECK(rill_new(&r, NULL) == 0, "rill_new");
  CHECK(rill_set_int(r, RILL_OPT_LOG_LEVEL, RILL_LOG_ERROR) == 0, "log level");
  CHECK(rill_load_string(r, "error('no database')", "raising-app") == 0, "load");
  CHECK(rill_start(r) == RILL_ELOAD, "rill_start of an app that raises");
  CHECK(strstr(rill_last_error(r), "raising-app:1: no database") != NULL, "%s",
        rill_last_error(r));
  rill_free(r);

  /* every code of rill's has a static message; none allocates */
  static const int codes[] = {RILL_ECLOSED, RILL_ETOOLONG, RILL_EBODY,     RILL_EPROTO,
                              RILL_ELOAD,   RILL_ESTATE,   RILL_ETIMEDOUT, RILL_EOF};
  for (size_t i = 0; i < sizeof(codes) / sizeof(*codes); i++) {
    const char *m = rill_strerror(codes[i]);
    CHECK(m == rill_strerror(codes[i]) && strncmp(m, "Unknown", 7) != 0,
          "a static message for %d: %s", codes[i], m);
  }
  CHECK(strcmp(rill_strerror(RILL_ESTATE), "not in this state") == 0, "RILL_ESTATE");
  CHECK(strcmp(rill_strerror(-30099), "unknown error -30099") == 0, "%s",
        rill_strerror(-30099));
  CHECK(strcmp(rill_strerror(UV_EINVAL), "EINVAL: invalid argument") == 0, "%s",
        rill_strerror(UV_EINVAL));
  for (int i = 0; i < 1000; i++)
    rill_strerror(-30000 - i); /* valgrind / ASan: no leak */
  return 0;
}

/* ---- one runtime of two workers: limits, log, context, hooks, signals ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_t start_thread[2];
static int starts[2], stop_calls[2], stop_on_thread[2];
static int ctx_calls[2], ctx_ok[2];
static int error_lines[2], error_on_thread[2], other_lines;
static volatile sig_atomic_t host_terms;
static rill_t *rt2;
static int ctx_value = 7;

static void on_term(int sig) {
  (void)sig;
  host_terms++;
}

static void worker_start(rill_t *r, int worker, lua_State *L, void *ud) {
  (void)ud;
  if (worker < 0 || worker > 1 || r != rt2) return;
  pthread_mutex_lock(&mu);
  starts[worker]++;
  start_thread[worker] = pthread_self();
  pthread_mutex_unlock(&mu);
  /* before the app loads: a global the app reads */
  lua_pushinteger(L, 100 + worker);
  lua_setglobal(L, "HOST_WORKER");
}

static void worker_stop(rill_t *r, int worker, void *ud) {
  (void)ud;
  if (worker < 0 || worker > 1 || r != rt2) return;
  pthread_mutex_lock(&mu);
  stop_calls[worker]++;
  stop_on_thread[worker] = pthread_equal(start_thread[worker], pthread_self());
  pthread_mutex_unlock(&mu);
}

static void on_log(void *ud, int level, int worker, const char *msg) {
  (void)ud;
  pthread_mutex_lock(&mu);
  if (level == RILL_LOG_ERROR && strstr(msg, "kaboom") && worker >= 0 && worker < 2) {
    error_lines[worker]++;
    error_on_thread[worker] = pthread_equal(start_thread[worker], pthread_self());
  } else if (level != RILL_LOG_ERROR) {
    other_lines++; /* "serving api-runtime on http://..." */
  }
  pthread_mutex_unlock(&mu);
}

/* require("rill.host").whoami() → the worker index, checking its context */
static int whoami(lua_State *L) {
  int i = rill_worker_index(L);
  if (i >= 0 && i < 2) {
    pthread_mutex_lock(&mu);
    ctx_calls[i]++;
    if (rill_context(L) == &ctx_value && rill_runtime(L) == rt2 &&
        pthread_equal(start_thread[i], pthread_self()))
      ctx_ok[i]++;
    pthread_mutex_unlock(&mu);
  }
  lua_pushinteger(L, i);
  return 1;
}

static const char app2[] = "local host = require 'rill.host'\n"
                           "return function(req, res)\n"
                           "  if req.path == '/boom' then error('kaboom') end\n"
                           "  if req.path == '/upload' then\n"
                           "    local body, err = req.body:read_all()\n"
                           "    return res:send(tostring(body and #body or err))\n"
                           "  end\n"
                           "  res:send(('%d %d'):format(host.whoami(), HOST_WORKER))\n"
                           "end\n";

static int port2;
static int seen[2], globals_ok, boomed, status413;
static int idle_closed, status431;

static void *client2(void *arg) {
  (void)arg;
  char buf[8192];
  /* both workers answer, each with its own index and global */
  for (int i = 0; i < 400 && (!seen[0] || !seen[1] || i < 10); i++) {
    int n = exchange(port2, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", buf,
                     sizeof(buf));
    if (n <= 0) break;
    char *body = strstr(buf, "\r\n\r\n");
    int w, g;
    if (body && sscanf(body + 4, "%d %d", &w, &g) == 2 && w >= 0 && w < 2) {
      seen[w] = 1;
      if (g == 100 + w) globals_ok++;
    }
  }
  /* handlers that raise, until each worker has logged one */
  for (int i = 0; i < 400; i++) {
    pthread_mutex_lock(&mu);
    int done = error_lines[0] > 0 && error_lines[1] > 0;
    pthread_mutex_unlock(&mu);
    if (done) break;
    int n = exchange(port2, "GET /boom HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     buf, sizeof(buf));
    if (n > 0 && strncmp(buf, "HTTP/1.1 500", 12) == 0) boomed++;
  }
  /* max_body_bytes 1000: curl's 2000-byte upload gets 413 */
  char cmd[256], out[64];
  snprintf(
      cmd, sizeof(cmd),
      "head -c 2000 /dev/zero | curl -s -o /dev/null -w '%%{http_code}' --data-binary @- "
      "http://127.0.0.1:%d/upload",
      port2);
  run_cmd(cmd, out, sizeof(out));
  status413 = strcmp(out, "413") == 0;
  /* max_headers 8: curl's request with thirteen gets 431 */
  snprintf(
      cmd, sizeof(cmd),
      "curl -s -o /dev/null -w '%%{http_code}' -H 'A: 1' -H 'B: 2' -H 'C: 3' -H 'D: 4' "
      "-H 'E: 5' -H 'F: 6' -H 'G: 7' -H 'H: 8' -H 'I: 9' -H 'J: 10' http://127.0.0.1:%d/",
      port2);
  run_cmd(cmd, out, sizeof(out));
  status431 = strcmp(out, "431") == 0;
  /* header_timeout 300 ms: a connection that sends nothing is closed (well
   * before the default 30 s, and before exchange gives up at 10 s) */
  int n = exchange(port2, "", buf, sizeof(buf));
  idle_closed = n >= 0;
  /* the host's SIGTERM handler is the one in place while rill runs */
  kill(getpid(), SIGTERM);
  for (int i = 0; i < 10000 && host_terms == 0; i++) /* delivered to some thread */
    usleep(1000);
  rill_stop(rt2);
  return NULL;
}

static int test_runtime(void) {
  struct sigaction sa, now;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_term;
  sigemptyset(&sa.sa_mask);
  CHECK(sigaction(SIGTERM, &sa, NULL) == 0, "the host's SIGTERM handler");

  rill_options_t o = {.workers = 2};
  CHECK(rill_new(&rt2, &o) == 0, "rill_new");
  CHECK(rill_on_log(rt2, on_log, NULL) == 0, "rill_on_log");
  CHECK(rill_on_worker(rt2, worker_start, worker_stop, NULL) == 0, "rill_on_worker");
  CHECK(rill_register_ctx(rt2, "whoami", whoami, &ctx_value) == 0, "rill_register_ctx");
  CHECK(rill_set_int(rt2, RILL_OPT_MAX_BODY_BYTES, 1000) == 0, "max_body_bytes");
  CHECK(rill_set_int(rt2, RILL_OPT_HEADER_TIMEOUT, 300) == 0, "header_timeout");
  CHECK(rill_set_int(rt2, RILL_OPT_MAX_HEADERS, 8) == 0, "max_headers");
  CHECK(rill_set_int(rt2, RILL_OPT_LOG_LEVEL, RILL_LOG_INFO) == 0, "log level");
  CHECK(rill_listen(rt2, "127.0.0.1", 0, NULL) == 0, "rill_listen");
  CHECK(rill_load_string(rt2, app2, "api-runtime") == 0, "rill_load_string");
  CHECK(rill_start(rt2) == 0, "rill_start: %s", rill_last_error(rt2));
  port2 = rill_port(rt2, 0);
  CHECK(sigaction(SIGTERM, NULL, &now) == 0 && now.sa_handler == on_term,
        "the host's SIGTERM handler stays after rill_start");
  pthread_t th;
  CHECK(pthread_create(&th, NULL, client2, NULL) == 0, "pthread_create");
  CHECK(rill_run(rt2) == 0, "rill_run");
  pthread_join(th, NULL);
  rill_free(rt2);

  CHECK(seen[0] && seen[1], "both workers answered (%d %d)", seen[0], seen[1]);
  CHECK(globals_ok >= 2, "the start hook's globals reached the app (%d)", globals_ok);
  CHECK(starts[0] == 1 && starts[1] == 1, "start once per worker (%d %d)", starts[0],
        starts[1]);
  CHECK(stop_calls[0] == 1 && stop_calls[1] == 1, "stop once per worker (%d %d)",
        stop_calls[0], stop_calls[1]);
  CHECK(stop_on_thread[0] && stop_on_thread[1], "stop on the worker's thread");
  CHECK(ctx_calls[0] > 0 && ctx_ok[0] == ctx_calls[0] && ctx_calls[1] > 0 &&
            ctx_ok[1] == ctx_calls[1],
        "rill_context, rill_runtime and the thread in the registered function (%d/%d "
        "%d/%d)",
        ctx_ok[0], ctx_calls[0], ctx_ok[1], ctx_calls[1]);
  CHECK(boomed > 0, "a handler that raises gives 500");
  CHECK(error_lines[0] > 0 && error_lines[1] > 0,
        "each worker's handler error reached the log callback (%d %d)", error_lines[0],
        error_lines[1]);
  CHECK(error_on_thread[0] && error_on_thread[1], "on the worker's thread");
  CHECK(other_lines > 0, "rill's other lines reach the callback too");
  CHECK(status413, "max_body_bytes set with rill_set_int: curl got 413");
  CHECK(idle_closed, "header_timeout set with rill_set_int closed an idle connection");
  CHECK(status431, "max_headers set with rill_set_int: curl got 431");
  CHECK(host_terms == 1, "the host's handler took the SIGTERM (%d)", host_terms);
  CHECK(sigaction(SIGTERM, NULL, &now) == 0 && now.sa_handler == on_term,
        "and it stays after rill_free");

  /* RILL_OPT_SIGNALS: rill's handler while it runs (a SIGTERM stops it),
   * the host's again after rill_free */
  rill_t *r;
  CHECK(rill_new(&r, NULL) == 0, "rill_new");
  CHECK(rill_set_int(r, RILL_OPT_SIGNALS, 1) == 0, "RILL_OPT_SIGNALS");
  CHECK(rill_set_int(r, RILL_OPT_LOG_LEVEL, RILL_LOG_ERROR) == 0, "log level");
  CHECK(rill_load_string(r, "return function(req, res) res:send('x') end", "sig") == 0,
        "load");
  CHECK(rill_start(r) == 0, "rill_start");
  CHECK(sigaction(SIGTERM, NULL, &now) == 0 && now.sa_handler != on_term,
        "rill watches SIGTERM when asked");
  kill(getpid(), SIGTERM);
  CHECK(rill_run(r) == 0, "a SIGTERM stopped rill_run");
  rill_free(r);
  CHECK(sigaction(SIGTERM, NULL, &now) == 0 && now.sa_handler == on_term,
        "the host's handler is back after rill_free");
  CHECK(host_terms == 1, "and it did not see rill's SIGTERM (%d)", host_terms);
  raise(SIGTERM);
  CHECK(host_terms == 2, "the host's handler is called after rill_free (%d)", host_terms);
  signal(SIGTERM, SIG_DFL);
  return 0;
}

/* ---- a line not from a worker: worker -1, on the host's thread ---- */

static int host_lines, host_lines_here;
static pthread_t main_thread;

static void on_host_log(void *ud, int level, int worker, const char *msg) {
  if (level == RILL_LOG_ERROR && worker == -1 && strstr(msg, (const char *)ud)) {
    host_lines++;
    host_lines_here += pthread_equal(pthread_self(), main_thread);
  }
}

static int test_host_lines(void) {
  char path[] = "/tmp/rill-test-api-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  const char good[] = "return function(req, res) res:send('ok') end\n";
  CHECK(write(fd, good, sizeof(good) - 1) == (ssize_t)(sizeof(good) - 1), "write");
  main_thread = pthread_self();
  rill_t *r;
  CHECK(rill_new(&r, NULL) == 0, "rill_new");
  CHECK(rill_on_log(r, on_host_log, path) == 0, "rill_on_log");
  CHECK(rill_load_file(r, path) == 0, "rill_load_file");
  CHECK(rill_start(r) == 0, "rill_start");
  CHECK(ftruncate(fd, 0) == 0 && pwrite(fd, "return (", 8, 0) == 8, "write broken");
  CHECK(rill_reload(r) == RILL_ELOAD, "reload of a broken file");
  CHECK(host_lines == 1 && host_lines_here == 1,
        "the refusal reached the log callback as worker -1 on the host's thread (%d %d)",
        host_lines, host_lines_here);
  close(fd);
  unlink(path);
  rill_stop(r);
  CHECK(rill_run(r) == 0, "rill_run");
  rill_free(r);
  return 0;
}

/* ---- the host's own loop ---- */

static int loop_stopped, loop_ticks, loop_port, loop_served;
static int loop_starts, loop_stops, loop_stops_at_stop;

static void loop_worker_start(rill_t *r, int worker, lua_State *L, void *ud) {
  (void)r, (void)L, (void)ud;
  if (worker == 0) loop_starts++;
}

static void loop_worker_stop(rill_t *r, int worker, void *ud) {
  (void)r, (void)ud;
  if (worker == 0) loop_stops++;
}
static uv_timer_t host_timer;

static void on_loop_stop(rill_t *r, void *ud) {
  (void)r;
  (void)ud;
  loop_stopped++;
  loop_stops_at_stop = loop_stops;
}

/* The host's own timer, referenced: the host's uv_run cannot return while
 * it runs. It ends itself once rill's stop has finished. */
static void host_tick(uv_timer_t *t) {
  loop_ticks++;
  if (loop_stopped) uv_close((uv_handle_t *)t, NULL);
}

static void *loop_client(void *arg) {
  char buf[4096];
  int n = exchange(loop_port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                   buf, sizeof(buf));
  loop_served = n > 0 && strstr(buf, "\r\n\r\nx") != NULL;
  rill_stop(arg); /* from another thread */
  return NULL;
}

static int test_host_loop(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0, "uv_loop_init");
  rill_t *r;
  CHECK(rill_new_on_loop(&r, &loop, NULL) == 0, "rill_new_on_loop");
  CHECK(rill_on_stop(r, on_loop_stop, NULL) == 0, "rill_on_stop");
  CHECK(rill_on_worker(r, loop_worker_start, loop_worker_stop, NULL) == 0,
        "rill_on_worker");
  CHECK(rill_set_int(r, RILL_OPT_LOG_LEVEL, RILL_LOG_ERROR) == 0, "log level");
  CHECK(rill_listen(r, "127.0.0.1", 0, NULL) == 0, "rill_listen");
  CHECK(rill_load_string(r, "return function(req, res) res:send('x') end", "loop") == 0,
        "load");
  CHECK(rill_start(r) == 0, "rill_start");
  CHECK(rill_backend_fd(r) == UV_EINVAL, "no backend descriptor on the host's loop");
  loop_port = rill_port(r, 0);
  uv_timer_init(&loop, &host_timer);
  uv_timer_start(&host_timer, host_tick, 10, 10);
  pthread_t th;
  CHECK(pthread_create(&th, NULL, loop_client, r) == 0, "pthread_create");
  int runs = 0;
  uv_run(&loop, UV_RUN_DEFAULT);
  runs++;
  pthread_join(th, NULL);
  /* uv_run returned once, by itself: the host's timer had ended, after
   * rill's stop, and nothing of rill's was left on the loop */
  CHECK(loop_served, "rill served on the host's loop");
  CHECK(runs == 1 && loop_stopped == 1, "stopped once (%d)", loop_stopped);
  CHECK(uv_is_closing((uv_handle_t *)&host_timer),
        "uv_run returned only once the host's "
        "timer had ended (rill never stopped it)");
  CHECK(!uv_loop_alive(&loop), "nothing of rill's is left on the loop");
  CHECK(loop_starts == 1 && loop_stops_at_stop == 1,
        "the worker's hooks ran once each, stop before rill_on_stop's callback");
  rill_free(r);
  CHECK(loop_stops == 1, "and not again in rill_free");
  CHECK(uv_loop_close(&loop) == 0, "uv_loop_close after rill_free");
  return 0;
}

/* RILL_OPT_SIGNALS on the host's loop, beside the host's own libuv watcher
 * of SIGHUP: rill's stop leaves the host's watcher working. */
static int hups, sig_stopped;
static uv_timer_t sig_timer;

static void host_hup(uv_signal_t *h, int signum) {
  (void)h, (void)signum;
  hups++;
}

static void sig_on_stop(rill_t *r, void *ud) {
  (void)r, (void)ud;
  sig_stopped = 1;
}

static void sig_tick(uv_timer_t *t) {
  if (sig_stopped) uv_close((uv_handle_t *)t, NULL);
}

static int test_loop_signals(void) {
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0, "uv_loop_init");
  rill_t *r;
  CHECK(rill_new_on_loop(&r, &loop, NULL) == 0, "rill_new_on_loop");
  CHECK(rill_set_int(r, RILL_OPT_SIGNALS, 1) == 0, "RILL_OPT_SIGNALS");
  CHECK(rill_set_int(r, RILL_OPT_LOG_LEVEL, RILL_LOG_ERROR) == 0, "log level");
  CHECK(rill_on_stop(r, sig_on_stop, NULL) == 0, "rill_on_stop");
  CHECK(rill_load_string(r, "return function(req, res) res:send('x') end", "sigs") == 0,
        "load");
  CHECK(rill_start(r) == 0, "rill_start");
  uv_signal_t hup;
  uv_signal_init(&loop, &hup);
  uv_signal_start(&hup, host_hup, SIGHUP);
  uv_unref((uv_handle_t *)&hup);
  uv_timer_init(&loop, &sig_timer);
  uv_timer_start(&sig_timer, sig_tick, 5, 5);
  rill_stop(r);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(sig_stopped, "stopped");
  raise(SIGHUP);
  uv_ref((uv_handle_t *)&hup); /* a loop with no referenced handle does not turn */
  for (int i = 0; i < 100 && hups == 0; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(hups == 1, "the host's own SIGHUP watcher still works after rill's stop (%d)",
        hups);
  uv_close((uv_handle_t *)&hup, NULL);
  rill_free(r);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0, "uv_loop_close");
  struct sigaction now;
  CHECK(sigaction(SIGHUP, NULL, &now) == 0 && now.sa_handler == SIG_DFL,
        "SIGHUP is back at its default");
  return 0;
}

/* ---- a host that is not built on libuv: poll(2) on the backend fd ---- */

static int poll_port, poll_served;

static void *poll_client(void *arg) {
  char buf[4096];
  int n = exchange(poll_port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                   buf, sizeof(buf));
  poll_served = n > 0 && strstr(buf, "\r\n\r\nx") != NULL;
  rill_stop(arg);
  return NULL;
}

static int test_backend_fd(void) {
  rill_t *r;
  CHECK(rill_new(&r, NULL) == 0, "rill_new");
  CHECK(rill_set_int(r, RILL_OPT_LOG_LEVEL, RILL_LOG_ERROR) == 0, "log level");
  CHECK(rill_listen(r, "127.0.0.1", 0, NULL) == 0, "rill_listen");
  CHECK(rill_load_string(r, "return function(req, res) res:send('x') end", "poll") == 0,
        "load");
  CHECK(rill_start(r) == 0, "rill_start");
  poll_port = rill_port(r, 0);
  int fd = rill_backend_fd(r);
  CHECK(fd >= 0, "rill_backend_fd");
  pthread_t th;
  CHECK(pthread_create(&th, NULL, poll_client, r) == 0, "pthread_create");
  /* Waits in poll(2), never in libuv: each wakeup (the descriptor turned
   * readable, or the timeout passed) is one rill_run_once. */
  int turns = 0, waits = 0, bad_timeout = 0;
  for (;;) {
    int timeout = rill_backend_timeout(r);
    if (timeout < -1) bad_timeout++;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout) > 0) waits++;
    turns++;
    if (!rill_run_once(r) || turns > 100000) break;
  }
  pthread_join(th, NULL);
  CHECK(poll_served, "served while the host polled");
  CHECK(waits > 0 && turns < 100000, "woken by the descriptor (%d of %d turns)", waits,
        turns);
  CHECK(bad_timeout == 0, "rill_backend_timeout gave -1 or more");
  rill_free(r);
  return 0;
}

/* ---- SIGPIPE at SIG_DFL in a host that runs its own loop ----
 * Passes once no write of rill's raises SIGPIPE (issue 16, part D): until
 * then the process dies of SIGPIPE (status 141), so ctest runs it apart
 * (c_api_sigpipe). */

static int pipe_port;

static void *pipe_client(void *arg) {
  char buf[4096];
  for (int i = 0; i < 50; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)pipe_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
      close(fd);
      break;
    }
    const char *req = "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n";
    if (write(fd, req, strlen(req)) < 0 || read(fd, buf, sizeof(buf)) < 0) {
      close(fd);
      break;
    }
    /* A FIN first (the server's socket goes to CLOSE_WAIT), then a reset
     * (close with unread data): the kernel answers the server's next write
     * with EPIPE, and SIGPIPE unless the write asked for none. */
    shutdown(fd, SHUT_WR);
    if (read(fd, buf, sizeof(buf)) < 0) {
      close(fd);
      break;
    }
    close(fd);
  }
  int n = exchange(pipe_port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                   buf, sizeof(buf));
  CHECK(n > 0 && strstr(buf, "\r\n\r\nok") != NULL, "the host still serves");
  rill_stop(arg);
  return NULL;
}

static int test_sigpipe(void) {
  signal(SIGPIPE, SIG_DFL);
  sigset_t pipe_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_UNBLOCK, &pipe_set, NULL);
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0, "uv_loop_init");
  rill_t *r;
  CHECK(rill_new_on_loop(&r, &loop, NULL) == 0, "rill_new_on_loop");
  CHECK(rill_set_int(r, RILL_OPT_LOG_LEVEL, RILL_LOG_ERROR) == 0, "log level");
  CHECK(rill_listen(r, "127.0.0.1", 0, NULL) == 0, "rill_listen");
  CHECK(rill_load_string(r, app, "sigpipe") == 0, "load");
  CHECK(rill_register(r, "note_mask", note_mask) == 0, "rill_register");
  CHECK(rill_start(r) == 0, "rill_start");
  pipe_port = rill_port(r, 0);
  pthread_t th;
  CHECK(pthread_create(&th, NULL, pipe_client, r) == 0, "pthread_create");
  uv_run(&loop, UV_RUN_DEFAULT);
  pthread_join(th, NULL);
  rill_free(r);
  CHECK(uv_loop_close(&loop) == 0, "uv_loop_close");
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "sigpipe") == 0) {
    test_sigpipe();
  } else {
    test_basics();
    test_options();
    test_runtime();
    test_host_lines();
    test_host_loop();
    test_loop_signals();
    test_backend_fd();
  }
  printf("%d checks, %d failures\n", checks, failures);
  return failures != 0;
}
