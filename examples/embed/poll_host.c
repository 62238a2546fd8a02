/* A host that is not built on libuv: its own poll(2) loop waits on rill's
 * backend descriptor beside a descriptor of its own, and calls
 * rill_run_once when rill has something to do. It also keeps its own
 * SIGTERM handler (rill installs none unless asked), takes rill's log lines
 * through a callback, sets HTTP limits, and hands its registered function
 * a context pointer.
 *
 *   cc poll_host.c $(pkg-config --cflags --libs rill) -o poll_host
 *   ./poll_host 8080
 *   curl http://127.0.0.1:8080/               → hello, visit 1
 *   curl --data-binary @big http://127.0.0.1:8080/   → 413 past 1024 bytes
 *   curl http://127.0.0.1:8080/boom           → 500, and a log line here
 *   curl http://127.0.0.1:8080/stream | head -c 10   → the host lives on
 *   kill -TERM <pid>                          → a graceful stop, exit 0
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <rill.h>

/* The host's state, which its registered function reaches through
 * rill_context (one worker here, so no lock). */
typedef struct {
  long visits;
} host_state_t;

/* require("rill.host").visit() → how many visits so far */
static int visit(lua_State *L) {
  host_state_t *st = rill_context(L);
  lua_pushinteger(L, ++st->visits);
  return 1;
}

/* rill's log lines, on the thread of the worker that logs (here the only
 * thread): the host decides where they go. */
static void on_log(void *ud, int level, int worker, const char *msg) {
  static const char *const names[] = {"error", "warn", "info", "debug"};
  (void)ud;
  printf("log: %s w%d %s\n", names[level], worker, msg);
  fflush(stdout);
}

/* The host's own SIGTERM handler: a byte into a pipe its poll watches. */
static int sig_pipe[2];

static void on_term(int sig) {
  (void)sig;
  int saved = errno;
  if (write(sig_pipe[1], "T", 1) < 0) { /* the pipe is full: a stop is on its way */
  }
  errno = saved;
}

static const char app[] = "local host = require 'rill.host'\n"
                          "return function(req, res)\n"
                          "  if req.path == '/boom' then error('kaboom') end\n"
                          "  if req.path == '/stream' then -- until the client goes\n"
                          "    local block = ('x'):rep(65536)\n"
                          "    while res:write(block) do end\n"
                          "    return\n"
                          "  end\n"
                          "  if req.method == 'POST' then\n"
                          "    local body = assert(req.body:read_all())\n"
                          "    return res:send(#body .. ' bytes\\n')\n"
                          "  end\n"
                          "  res:send('hello, visit ' .. host.visit() .. '\\n')\n"
                          "end\n";

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8080;
  if (pipe(sig_pipe) != 0) return 1;
  fcntl(sig_pipe[0], F_SETFL, O_NONBLOCK);
  fcntl(sig_pipe[1], F_SETFL, O_NONBLOCK);
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_term;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);

  static host_state_t state;
  rill_t *r = NULL;
  int err = rill_new(&r, NULL);
  if (err == 0) err = rill_on_log(r, on_log, NULL);
  if (err == 0) err = rill_set_int(r, RILL_OPT_MAX_BODY_BYTES, 1024);
  if (err == 0) err = rill_set_int(r, RILL_OPT_HEADER_TIMEOUT, 5000);
  if (err == 0) err = rill_set_int(r, RILL_OPT_GRACE, 5000);
  if (err == 0) err = rill_register_ctx(r, "visit", visit, &state);
  if (err == 0) err = rill_listen(r, "127.0.0.1", port, NULL);
  if (err == 0) err = rill_load_string(r, app, "poll_host-app");
  if (err == 0) err = rill_start(r);
  if (err) {
    fprintf(stderr, "poll_host: %s: %s\n", rill_strerror(err), rill_last_error(r));
    rill_free(r);
    return 1;
  }
  printf("poll_host: listening on 127.0.0.1:%d\n", rill_port(r, 0));
  fflush(stdout);

  /* The host's loop: no libuv here. */
  struct pollfd fds[2] = {{.fd = rill_backend_fd(r), .events = POLLIN},
                          {.fd = sig_pipe[0], .events = POLLIN}};
  int more = 1, stopping = 0;
  while (more) {
    int n = poll(fds, 2, rill_backend_timeout(r));
    if (n < 0 && errno != EINTR) break;
    if (n > 0 && (fds[1].revents & POLLIN)) {
      char b[16];
      while (read(sig_pipe[0], b, sizeof(b)) > 0) {}
      if (!stopping) {
        stopping = 1;
        rill_stop(r); /* requests in flight finish; then rill_run_once says 0 */
      }
    }
    more = rill_run_once(r);
  }
  rill_free(r);
  /* The host's handler is still its own. */
  struct sigaction now;
  sigaction(SIGTERM, NULL, &now);
  printf("poll_host: stopped after %ld visits, own SIGTERM handler: %s\n", state.visits,
         now.sa_handler == on_term ? "yes" : "no");
  return 0;
}
