"""router: a route with a path parameter answering a small JSON object."""
import load
from report import Metric
from servers import Nginx, Node, Rill

ORDER = 2
TITLE = ('GET /users/42 → {{"id":"42","name":"user 42"}} (application/json), '
         'wrk -t1 -c50 keep-alive, {duration} s per figure')
SERVERS = [
    Rill("app.lua"),
    Nginx("nginx-lua.conf", label="nginx-lua", lua=True),
    Node("node.js"),
]
METRICS = [
    Metric("rps", "req/s", "higher", limited_by="wrk_cpu"),
    Metric("wrk_cpu", "wrk CPU", fmt="{:.0f}%"),
    Metric("p50_ms", "p50 ms", "lower", "{:.2f}"),
    Metric("p99_ms", "p99 ms", "lower", "{:.2f}"),
    Metric("cpu_us", "server CPU µs/req", "lower", "{:.2f}"),
]


def measure(run, srv):
    load.warm_up(run, srv, "/users/42")
    r = load.wrk(run, srv, "/users/42")
    return {"rps": r["rps"], "wrk_cpu": r["client_cpu"], "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"], "cpu_us": r["cpu_us"]}
