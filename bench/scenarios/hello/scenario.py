"""hello: GET / -> "Hello, world!" on keep-alive connections, one request
per write and 16 pipelined per write, with the server's CPU time per request."""
import load
from report import Metric
from servers import ROOT, Bun, Nginx, Node, Rill

ORDER = 1
TITLE = 'GET / → "Hello, world!", wrk -t1 -c50 keep-alive, {duration} s per figure'
SERVERS = [
    Rill(ROOT / "examples/hello.lua"),
    Nginx("nginx.conf"),
    Nginx("nginx-lua.conf", label="nginx-lua", lua=True),
    Node("node.js"),
    Bun("bun.js", note="Bun.serve (uSockets); it does not batch the answers to pipelined "
                       "requests"),
]
METRICS = [
    Metric("rps", "req/s", "higher", limited_by="wrk_cpu"),
    Metric("wrk_cpu", "wrk CPU", fmt="{:.0f}%"),
    Metric("p50_ms", "p50 ms", "lower", "{:.2f}"),
    Metric("p99_ms", "p99 ms", "lower", "{:.2f}"),
    Metric("cpu_us", "server CPU µs/req", "lower", "{:.2f}"),
    Metric("rps16", "req/s, 16 pipelined", "higher", limited_by="wrk16_cpu"),
    Metric("wrk16_cpu", "wrk CPU", fmt="{:.0f}%"),
    Metric("cpu16_us", "server CPU µs/req, 16 pipelined", "lower", "{:.2f}"),
]


def measure(run, srv):
    load.warm_up(run, srv, "/")
    one = load.wrk(run, srv, "/")
    piped = load.wrk(run, srv, "/", pipeline=16)
    return {"rps": one["rps"], "wrk_cpu": one["client_cpu"], "p50_ms": one["p50_ms"],
            "p99_ms": one["p99_ms"], "cpu_us": one["cpu_us"],
            "rps16": piped["rps"], "wrk16_cpu": piped["client_cpu"],
            "cpu16_us": piped["cpu_us"]}
