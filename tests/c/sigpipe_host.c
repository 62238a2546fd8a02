/* A host that leaves SIGPIPE as a process gets it: at its default action
 * (the process ends, status 141) and unblocked, on the one thread that runs
 * everything (rill_new_on_loop: rill's worker is the host's loop). A write
 * of rill's that raised SIGPIPE would kill it; spec/sigpipe_spec.lua has
 * clients leave in the middle of large answers, many times, and checks that
 * it lives on.
 *
 *   sigpipe_host APP.lua [CERT KEY]
 *
 * Serves APP.lua on 127.0.0.1, on a free port (and with TLS on a second one
 * when CERT and KEY are given), prints "ports PLAIN TLS pid PID" (TLS 0
 * without),
 * and stops on SIGTERM (a uv_signal of its own); then prints what SIGPIPE's
 * disposition and this thread's mask are, to show rill changed neither. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <pthread.h>
#include <rill.h>

static rill_t *r;
static uv_signal_t term;

static void on_term(uv_signal_t *s, int sig) {
  (void)sig;
  rill_stop(r);
  uv_close((uv_handle_t *)s, NULL);
}

int main(int argc, char **argv) {
  if (argc != 2 && argc != 4) {
    fprintf(stderr, "usage: sigpipe_host APP.lua [CERT KEY]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_DFL);
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_UNBLOCK, &pipe, NULL);

  uv_loop_t loop;
  uv_loop_init(&loop);
  int err = rill_new_on_loop(&r, &loop, NULL);
  if (err == 0) err = rill_listen(r, "127.0.0.1", 0, NULL);
  if (err == 0 && argc == 4) {
    rill_listen_options_t o = {argv[2], argv[3]};
    err = rill_listen(r, "127.0.0.1", 0, &o);
  }
  if (err == 0) err = rill_load_file(r, argv[1]);
  if (err == 0) err = rill_start(r);
  if (err) {
    fprintf(stderr, "sigpipe_host: %s\n", rill_strerror(err));
    return 1;
  }
  printf("ports %d %d pid %d\n", rill_port(r, 0), argc == 4 ? rill_port(r, 1) : 0,
         (int)getpid());
  fflush(stdout);
  uv_signal_init(&loop, &term);
  uv_signal_start(&term, on_term, SIGTERM);
  uv_run(&loop, UV_RUN_DEFAULT);
  rill_free(r);
  uv_loop_close(&loop);

  struct sigaction sa;
  sigset_t mask;
  sigaction(SIGPIPE, NULL, &sa);
  pthread_sigmask(SIG_BLOCK, NULL, &mask);
  printf("sigpipe: %s, %s\n", sa.sa_handler == SIG_DFL ? "default" : "changed",
         sigismember(&mask, SIGPIPE) ? "blocked" : "unblocked");
  return 0;
}
