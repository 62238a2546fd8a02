"""redis: rill.redis against Node with ioredis, both as clients of one
redis-server: GET/SET commands per CPU second of the client process, one
command in flight per connection and in pipelines of 100. Here the servers
the harness starts are redis-servers (one per row, on the load generator's
CPU); the row's client runs on the server CPU, the one measured."""
from pathlib import Path

import load
import procs
from report import Metric
from servers import Server

ORDER = 11
TITLE = ("GET/SET from a Redis client (rill.redis, Node + ioredis) to redis-server 7 on "
         "the other CPU, {short} s per figure")


class RedisFor(Server):
    """A redis-server on CPU_CLIENT for the row's client (label)."""

    def __init__(self, label, client, note=None):
        super().__init__(client, label, note, cpus=procs.CPU_CLIENT)
        self.client = client

    def argv(self, port, run, workdir):
        return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(workdir)]


SERVERS = [
    RedisFor("rill", "client.lua",
             note="client.lua: rill.redis, a thread per connection; pipelines with "
                  "r:pipeline"),
    RedisFor("node", "client.js",
             note="client.js: ioredis (npm), a promise chain per connection; pipelines "
                  "with r.pipeline().exec()"),
]
METRICS = [
    Metric("single_cps", "single: commands per CPU second", "higher", "{:,.0f}"),
    Metric("single_ops", "commands/s", "higher", "{:,.0f}", limited_by="single_redis"),
    Metric("single_redis", "redis-server CPU", fmt="{:.0f}%"),
    Metric("pipe_cps", "pipelined: commands per CPU second", "higher", "{:,.0f}"),
    Metric("pipe_ops", "commands/s", "higher", "{:,.0f}", limited_by="pipe_redis"),
    Metric("pipe_redis", "redis-server CPU", fmt="{:.0f}%"),
]
NOTES = [
    "single: 50 connections, each with one command in flight (SET then GET of a 16-byte "
    "value, 1,000 keys); pipelined: 4 connections, each sending batches of 100 commands "
    "(50 SET, 50 GET) and waiting for their replies",
    "commands/s is bound by round trips (neither the client nor redis-server is busy: "
    "see their CPU), so the figure that compares is commands per CPU second",
    "commands per CPU second: commands done over the client process's own CPU time "
    "(user + system, measured inside it: os.clock, process.cpuUsage) over the same "
    "seconds, after a warm-up; the client runs alone on the server CPU",
]


HERE = Path(__file__).resolve().parent


def measure(run, srv):
    figures = {}
    for mode, key in (("single", "single"), ("pipeline", "pipe")):
        if srv.label == "rill":
            argv = [run.rill_bin, "run", str(HERE / "client.lua"), str(srv.port), mode,
                    str(run.short)]
        else:
            argv = ["node", str(HERE / "client.js"), str(srv.port), mode, str(run.short)]
        before = srv.cpu_seconds()
        out, _, wall = load._run(argv, cpu=procs.CPU_SERVER)
        redis_cpu = srv.cpu_seconds() - before
        r = load._result(out, srv.label)
        if r["ops"] == 0:
            raise load.BenchError(f"{srv.label} {mode}: no command done")
        figures.update({f"{key}_cps": r["ops"] / r["cpu"], f"{key}_ops": r["ops"] / r["wall"],
                        # over the whole client run (warm-up and start-up too)
                        f"{key}_redis": 100 * redis_cpu / wall})
    return figures
