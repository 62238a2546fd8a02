/* A host whose C function waits for work on other threads without holding
 * up rill: slow_add(a, b) adds on libuv's thread pool, taking 200 ms, and
 * the Lua task that called it is suspended meanwhile (rill_suspend) and
 * resumed with the sum (rill_resume). Ten requests at once take about
 * 200 ms, not 2 s. rill runs on the host's own loop, beside a timer of the
 * host's.
 *
 *   cc slow_add.c $(pkg-config --cflags --libs rill) -o slow_add
 *   UV_THREADPOOL_SIZE=16 ./slow_add 8080
 *   curl 'http://127.0.0.1:8080/add?a=2&b=40'    → 42
 *   curl http://127.0.0.1:8080/stats              → jobs in flight at most, timer ticks
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <lauxlib.h>
#include <rill.h>

typedef struct {
  uv_work_t req;
  rill_waiter_t *waiter;
  double a, b, sum;
} job_t;

/* Jobs in flight now and at most; the pool's threads and the loop touch them. */
static uv_mutex_t lock;
static uv_cond_t more;
static int in_flight, max_in_flight;
static unsigned long ticks;
/* SLOW_ADD_TOGETHER=n (for the spec): a job first waits, up to 10 s, until
 * n jobs are in flight at once, which they can only be if no job's task
 * holds up the others. */
static int together;

/* On a thread of libuv's pool: the slow part. */
static void work(uv_work_t *req) {
  job_t *job = req->data;
  uv_mutex_lock(&lock);
  if (++in_flight > max_in_flight) max_in_flight = in_flight;
  uv_cond_broadcast(&more);
  uint64_t until = uv_hrtime() + 10000000000ull;
  while (in_flight < together && max_in_flight < together && uv_hrtime() < until)
    uv_cond_timedwait(&more, &lock, 100000000ull);
  uv_mutex_unlock(&lock);
  usleep(200 * 1000);
  job->sum = job->a + job->b;
  uv_mutex_lock(&lock);
  in_flight--;
  uv_mutex_unlock(&lock);
}

/* On the task's worker thread: what slow_add returns. L is NULL if the task
 * can no longer be resumed (rill stopped first): then only the job goes. */
static int push_sum(lua_State *L, void *ud) {
  job_t *job = ud;
  int n = 0;
  if (L) {
    lua_pushnumber(L, job->sum);
    n = 1;
  }
  free(job);
  return n;
}

/* On the loop's thread, after work(). */
static void after_work(uv_work_t *req, int status) {
  job_t *job = req->data;
  (void)status;
  rill_resume(job->waiter, push_sum, job);
}

/* require("rill.host").slow_add(a, b) → a + b, 200 ms later. */
static int slow_add(lua_State *L) {
  job_t *job = calloc(1, sizeof(*job));
  if (job == NULL) return luaL_error(L, "out of memory");
  job->a = luaL_checknumber(L, 1);
  job->b = luaL_checknumber(L, 2);
  job->req.data = job;
  int err = uv_queue_work(rill_loop(L), &job->req, work, after_work);
  if (err) {
    free(job);
    return luaL_error(L, "slow_add: %s", uv_strerror(err));
  }
  return rill_suspend(L, &job->waiter);
}

/* require("rill.host").stats() → jobs in flight at most, the host timer's ticks */
static int stats(lua_State *L) {
  uv_mutex_lock(&lock);
  lua_pushinteger(L, max_in_flight);
  uv_mutex_unlock(&lock);
  lua_pushnumber(L, (lua_Number)ticks);
  return 2;
}

static const char app[] =
    "local host = require 'rill.host'\n"
    "local router = require('rill').router()\n"
    "router:get('/add', function(req, res)\n"
    "  res:send(tostring(host.slow_add(tonumber(req.query.a), tonumber(req.query.b))))\n"
    "end)\n"
    "router:get('/stats', function(req, res)\n"
    "  local most, ticks = host.stats()\n"
    "  res:send(('%d %d'):format(most, ticks))\n"
    "end)\n"
    "return router\n";

static void tick(uv_timer_t *t) {
  (void)t;
  ticks++;
}

static rill_t *rt;
static uv_signal_t term;
static int stopped;

/* rill's stop has finished: it has closed its handles on our loop. */
static void on_stop(rill_t *r, void *ud) {
  (void)r;
  (void)ud;
  stopped = 1;
}

static void on_term(uv_signal_t *s, int signum) {
  (void)signum;
  uv_close((uv_handle_t *)s, NULL);
  rill_stop(rt);
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8080;
  uv_loop_t *loop = uv_default_loop();
  uv_mutex_init(&lock);
  uv_cond_init(&more);
  if (getenv("SLOW_ADD_TOGETHER")) together = atoi(getenv("SLOW_ADD_TOGETHER"));
  int err = rill_new_on_loop(&rt, loop, NULL);
  if (err == 0) err = rill_on_stop(rt, on_stop, NULL);
  if (err == 0) err = rill_register(rt, "slow_add", slow_add);
  if (err == 0) err = rill_register(rt, "stats", stats);
  if (err == 0) err = rill_listen(rt, "127.0.0.1", port, NULL);
  if (err == 0) err = rill_load_string(rt, app, "slow_add-app");
  if (err == 0) err = rill_start(rt);
  if (err) {
    fprintf(stderr, "slow_add: %s\n", rill_strerror(err));
    return 1;
  }
  uv_timer_t timer;
  uv_timer_init(loop, &timer);
  uv_timer_start(&timer, tick, 50, 50);
  uv_unref((uv_handle_t *)&timer);
  uv_signal_init(loop, &term);
  uv_signal_start(&term, on_term, SIGTERM);
  printf("slow_add: listening on 127.0.0.1:%d\n", rill_port(rt, 0));
  fflush(stdout);
  /* Returns by itself once rill has stopped and closed what it had here (the
   * timer is unreferenced, the signal handle closed): rill never stops it. */
  uv_run(loop, UV_RUN_DEFAULT);
  printf("slow_add: stopped %d, loop alive %d\n", stopped, uv_loop_alive(loop));
  uv_close((uv_handle_t *)&timer, NULL);
  rill_free(rt);
  uv_run(loop, UV_RUN_DEFAULT);
  int closed = uv_loop_close(loop);
  printf("slow_add: loop closed: %d\n", closed);
  return closed == 0 ? 0 : 1;
}
