/* A C program that embeds rill: it registers a C function, and a Lua handler
 * serves HTTP with the function's value.
 *
 *   cc host.c $(pkg-config --cflags --libs rill) -o host && ./host 8080
 *   curl http://127.0.0.1:8080/        → the answer is 42
 *   curl http://127.0.0.1:8080/stream  → x... until the client closes
 */
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <rill.h>

/* require("rill.host").answer() */
static int answer(lua_State *L) {
  lua_pushinteger(L, 42);
  return 1;
}

static const char app[] = "local host = require 'rill.host'\n"
                          "local block = ('x'):rep(65536)\n"
                          "return function(req, res)\n"
                          "  res:header('Content-Type', 'text/plain')\n"
                          "  if req.path == '/stream' then -- until the client goes\n"
                          "    while res:write(block) do end\n"
                          "    return\n"
                          "  end\n"
                          "  res:send('the answer is ' .. host.answer() .. '\\n')\n"
                          "end\n";

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8080;
  rill_t *r = NULL;
  int err = rill_new(&r, NULL);
  /* rill installs no signal handler unless asked: here SIGTERM and SIGINT
   * stop it, SIGHUP reloads. */
  if (err == 0) err = rill_set_int(r, RILL_OPT_SIGNALS, 1);
  if (err == 0) err = rill_register(r, "answer", answer);
  if (err == 0) err = rill_listen(r, "127.0.0.1", port, NULL);
  if (err == 0) err = rill_load_string(r, app, "host-app");
  if (err == 0) err = rill_start(r);
  if (err) {
    fprintf(stderr, "host: %s: %s\n", rill_strerror(err), rill_last_error(r));
    return 1;
  }
  printf("host: listening on 127.0.0.1:%d\n", rill_port(r, 0));
  fflush(stdout);
  int code = rill_run(r); /* until SIGTERM or SIGINT */
  rill_free(r);
  return code;
}
