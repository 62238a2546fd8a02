"""shared: a handler that uses a shared dict (one incr, eleven gets) per
request: rill.shared.dict against nginx's lua_shared_dict."""
import load
from report import Metric
from servers import Nginx, Rill

ORDER = 2.5
TITLE = ("GET /dict: one incr and eleven gets on a shared dict per request, "
         "wrk -t1 -c50 keep-alive, {duration} s")
SERVERS = [
    Rill("app.lua"),
    Nginx("nginx-lua.conf", label="nginx-lua", lua=True,
          note="`lua_shared_dict` (lua-nginx-module)"),
]
METRICS = [
    Metric("rps", "req/s", "higher", limited_by="wrk_cpu"),
    Metric("wrk_cpu", "wrk CPU", fmt="{:.0f}%"),
    Metric("p99_ms", "p99 ms", "lower", "{:.2f}"),
    Metric("cpu_us", "server CPU µs/req", "lower", "{:.2f}"),
]
NOTES = [
    "Compare with hello's server CPU µs/req: the difference is the cost of the twelve "
    "dict operations (each takes the dict's lock; rill's are FFI calls).",
]


def measure(run, srv):
    load.warm_up(run, srv, "/dict")
    r = load.wrk(run, srv, "/dict")
    return {"rps": r["rps"], "wrk_cpu": r["client_cpu"], "p99_ms": r["p99_ms"],
            "cpu_us": r["cpu_us"]}
